//! The suppression list.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::suppressions;
use super::messages::ROWS_PER_INSERT;
use super::{Store, db_error};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::email::EmailAddress;
use crate::domain::suppressions::{
    Suppression, SuppressionCursor, SuppressionOrigin, SuppressionPage, SuppressionReason,
    SuppressionStore,
};
use crate::domain::{Error, Result};

fn from_row(m: suppressions::Model) -> Result<Suppression> {
    let corrupt =
        |what: &str| Error::Internal(anyhow::anyhow!("suppression row {}: unknown {what}", m.id));
    Ok(Suppression {
        reason: SuppressionReason::parse(&m.reason).ok_or_else(|| corrupt("reason"))?,
        origin: SuppressionOrigin::parse(&m.origin).ok_or_else(|| corrupt("origin"))?,
        account_id: m.account_id,
        email: EmailAddress::from_stored(m.email, m.email_key),
        message_id: m.message_id,
        created_at: from_micros(m.created_at),
        expires_at: m.expires_at.map(from_micros),
    })
}

/// The account's suppressions, in force at `now`, of the addresses with
/// these keys, by key; on `conn`, which may be a transaction.
pub(super) async fn suppressed_in<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    email_keys: &[String],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Suppression>> {
    let mut found = HashMap::new();
    for chunk in email_keys.chunks(ROWS_PER_INSERT) {
        let rows = suppressions::Entity::find()
            .filter(suppressions::Column::AccountId.eq(account_id))
            .filter(suppressions::Column::EmailKey.is_in(chunk.iter().map(String::as_str)))
            .filter(
                Condition::any()
                    .add(suppressions::Column::ExpiresAt.is_null())
                    .add(suppressions::Column::ExpiresAt.gt(to_micros(now))),
            )
            .all(conn)
            .await
            .map_err(db_error)?;
        for row in rows {
            let suppression = from_row(row)?;
            found.insert(suppression.email.key().to_owned(), suppression);
        }
    }
    Ok(found)
}

impl SuppressionStore for Store {
    async fn suppression(&self, account_id: &str, email_key: &str) -> Result<Option<Suppression>> {
        suppressions::Entity::find()
            .filter(suppressions::Column::AccountId.eq(account_id))
            .filter(suppressions::Column::EmailKey.eq(email_key))
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn put_suppression(&self, s: &Suppression) -> Result<()> {
        let row = suppressions::ActiveModel {
            account_id: Set(s.account_id.clone()),
            email: Set(s.email.as_str().to_owned()),
            email_key: Set(s.email.key().to_owned()),
            reason: Set(s.reason.as_str().to_owned()),
            origin: Set(s.origin.as_str().to_owned()),
            message_id: Set(s.message_id.clone()),
            expires_at: Set(s.expires_at.map(to_micros)),
            created_at: Set(to_micros(s.created_at)),
            ..Default::default()
        };
        suppressions::Entity::insert(row)
            .on_conflict(replace())
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn list_suppressions(
        &self,
        account_id: &str,
        reason: Option<SuppressionReason>,
        now: DateTime<Utc>,
        after: Option<SuppressionCursor>,
        limit: u64,
    ) -> Result<SuppressionPage> {
        let mut query = suppressions::Entity::find()
            .filter(suppressions::Column::AccountId.eq(account_id))
            .filter(
                Condition::any()
                    .add(suppressions::Column::ExpiresAt.is_null())
                    .add(suppressions::Column::ExpiresAt.gt(to_micros(now))),
            );
        if let Some(reason) = reason {
            query = query.filter(suppressions::Column::Reason.eq(reason.as_str()));
        }
        if let Some(after) = after {
            let key = (suppressions::Column::CreatedAt, suppressions::Column::Id);
            query = query.filter(super::past_key(key, after.created_at, after.id, false));
        }
        let mut rows = query
            .order_by_desc(suppressions::Column::CreatedAt)
            .order_by_desc(suppressions::Column::Id)
            .limit(limit + 1)
            .all(self.db())
            .await
            .map_err(db_error)?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|last| SuppressionCursor {
                created_at: last.created_at,
                id: last.id,
            })
        } else {
            None
        };
        Ok(SuppressionPage {
            suppressions: rows.into_iter().map(from_row).collect::<Result<_>>()?,
            next,
        })
    }

    async fn suppressed_among(
        &self,
        account_id: &str,
        email_keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Suppression>> {
        suppressed_in(self.db(), account_id, email_keys, now).await
    }

    async fn delete_suppression(&self, account_id: &str, email_key: &str) -> Result<bool> {
        let result = suppressions::Entity::delete_many()
            .filter(suppressions::Column::AccountId.eq(account_id))
            .filter(suppressions::Column::EmailKey.eq(email_key))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }
}

/// On a suppression already there: the new one takes its place.
fn replace() -> OnConflict {
    OnConflict::columns([
        suppressions::Column::AccountId,
        suppressions::Column::EmailKey,
    ])
    .update_columns([
        suppressions::Column::Email,
        suppressions::Column::Reason,
        suppressions::Column::Origin,
        suppressions::Column::MessageId,
        suppressions::Column::ExpiresAt,
        suppressions::Column::CreatedAt,
    ])
    .to_owned()
}

/// On a suppression already there: one without an end stays as it is (a
/// bounce is still a bounce); one that would end becomes the new one, for
/// good.
pub(super) fn for_good() -> OnConflict {
    replace()
        .action_and_where(suppressions::Column::ExpiresAt.is_not_null())
        .to_owned()
}
