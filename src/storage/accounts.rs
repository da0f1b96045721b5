//! Accounts, API keys and identities.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use super::entities::{accounts, api_keys, identities};
use super::{Store, db_error};
use crate::domain::accounts::{Account, AccountStore, ApiKey, Identity, IdentityKind};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::limits::Overrides;
use crate::domain::{Error, Result, Scopes};

fn account_from(m: accounts::Model) -> Account {
    Account {
        id: m.id,
        name: m.name,
        created_at: from_micros(m.created_at),
    }
}

fn key_from(m: api_keys::Model) -> Result<ApiKey> {
    Ok(ApiKey {
        scopes: Scopes::from_stored(&m.scopes).map_err(|e| Error::Internal(e.into()))?,
        id: m.id,
        account_id: m.account_id,
        name: m.name,
        prefix: m.prefix,
        secret_hash: m.secret_hash,
        test_mode: m.test_mode,
        created_at: from_micros(m.created_at),
        last_used_at: m.last_used_at.map(from_micros),
        revoked_at: m.revoked_at.map(from_micros),
    })
}

fn identity_from(m: identities::Model) -> Identity {
    Identity {
        kind: if m.kind == "domain" {
            IdentityKind::Domain
        } else {
            IdentityKind::Address
        },
        id: m.id,
        account_id: m.account_id,
        value: m.value,
        verified: m.verified,
        created_at: from_micros(m.created_at),
    }
}

impl AccountStore for Store {
    async fn insert_account(&self, account: &Account) -> Result<()> {
        accounts::Entity::insert(accounts::ActiveModel {
            id: Set(account.id.clone()),
            name: Set(account.name.clone()),
            created_at: Set(to_micros(account.created_at)),
            ..Default::default()
        })
        .exec(self.db())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        let found = accounts::Entity::find()
            .filter(accounts::Column::Name.eq(name))
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(found.map(account_from))
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = accounts::Entity::find()
            .order_by_asc(accounts::Column::CreatedAt)
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(account_from).collect())
    }

    async fn count_accounts(&self) -> Result<u64> {
        accounts::Entity::find()
            .count(self.db())
            .await
            .map_err(db_error)
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<()> {
        api_keys::Entity::insert(api_keys::ActiveModel {
            id: Set(key.id.clone()),
            account_id: Set(key.account_id.clone()),
            name: Set(key.name.clone()),
            prefix: Set(key.prefix.clone()),
            secret_hash: Set(key.secret_hash.clone()),
            scopes: Set(key.scopes.to_stored()),
            test_mode: Set(key.test_mode),
            created_at: Set(to_micros(key.created_at)),
            last_used_at: Set(key.last_used_at.map(to_micros)),
            revoked_at: Set(key.revoked_at.map(to_micros)),
        })
        .exec(self.db())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn account_overrides(&self, account_id: &str) -> Result<Overrides> {
        let row = accounts::Entity::find_by_id(account_id)
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(row.map_or_else(Overrides::default, |m| Overrides {
            rate_per_second: m.rate_limit_per_second,
            burst: m.rate_limit_burst.map(|b| b.max(1) as u32),
            daily_quota: m.daily_quota.map(|q| q.max(0) as u64),
        }))
    }

    async fn set_account_overrides(&self, account_id: &str, o: Overrides) -> Result<()> {
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::RateLimitPerSecond,
                o.rate_per_second.into(),
            )
            .col_expr(
                accounts::Column::RateLimitBurst,
                o.burst.map(|b| b.min(i32::MAX as u32) as i32).into(),
            )
            .col_expr(
                accounts::Column::DailyQuota,
                o.daily_quota.map(|q| q.min(i64::MAX as u64) as i64).into(),
            )
            .filter(accounts::Column::Id.eq(account_id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::Prefix.eq(prefix))
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(key_from)
            .transpose()
    }

    async fn list_keys(&self, account_id: &str) -> Result<Vec<ApiKey>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::AccountId.eq(account_id))
            .order_by_asc(api_keys::Column::CreatedAt)
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(key_from)
            .collect()
    }

    async fn revoke_key(
        &self,
        account_id: &str,
        id_or_prefix: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let result = api_keys::Entity::update_many()
            .col_expr(
                api_keys::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(to_micros(at)),
            )
            .filter(api_keys::Column::AccountId.eq(account_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .filter(
                Condition::any()
                    .add(api_keys::Column::Id.eq(id_or_prefix))
                    .add(api_keys::Column::Prefix.eq(id_or_prefix)),
            )
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    async fn touch_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<()> {
        api_keys::Entity::update_many()
            .col_expr(
                api_keys::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(to_micros(at)),
            )
            .filter(api_keys::Column::Id.eq(key_id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn insert_identity(&self, identity: &Identity) -> Result<()> {
        identities::Entity::insert(identities::ActiveModel {
            id: Set(identity.id.clone()),
            account_id: Set(identity.account_id.clone()),
            kind: Set(identity.kind.as_str().to_owned()),
            value: Set(identity.value.clone()),
            verified: Set(identity.verified),
            verified_at: Set(identity.verified.then(|| to_micros(identity.created_at))),
            created_at: Set(to_micros(identity.created_at)),
        })
        .exec(self.db())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn list_identities(&self, account_id: &str) -> Result<Vec<Identity>> {
        let rows = identities::Entity::find()
            .filter(identities::Column::AccountId.eq(account_id))
            .order_by_asc(identities::Column::CreatedAt)
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(identity_from).collect())
    }

    async fn delete_identity(&self, account_id: &str, value: &str) -> Result<bool> {
        let result = identities::Entity::delete_many()
            .filter(identities::Column::AccountId.eq(account_id))
            .filter(identities::Column::Value.eq(value))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }
}
