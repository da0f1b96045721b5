//! Webhook endpoints and their secrets.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::webhooks;
use super::{Store, db_error, json};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::paging::Keyset;
use crate::domain::webhooks::{Webhook, WebhookStore};
use crate::domain::{Error, Result};

fn from_row(m: webhooks::Model) -> Result<Webhook> {
    let events = serde_json::from_str(&m.events)
        .map_err(|_| Error::Internal(anyhow::anyhow!("webhook {}: bad events", m.id)))?;
    Ok(Webhook {
        id: m.id,
        account_id: m.account_id,
        url: m.url,
        events,
        active: m.active,
        description: m.description,
        disabled_reason: m.disabled_reason,
        created_at: from_micros(m.created_at),
        updated_at: from_micros(m.updated_at),
    })
}

fn of_account(account_id: &str, id: &str) -> Condition {
    Condition::all()
        .add(webhooks::Column::AccountId.eq(account_id))
        .add(webhooks::Column::Id.eq(id))
}

impl WebhookStore for Store {
    async fn insert_webhook(&self, w: &Webhook, secret: &str) -> Result<()> {
        webhooks::Entity::insert(webhooks::ActiveModel {
            id: Set(w.id.clone()),
            account_id: Set(w.account_id.clone()),
            url: Set(w.url.clone()),
            events: Set(json(&w.events)?),
            active: Set(w.active),
            description: Set(w.description.clone()),
            secret: Set(secret.to_owned()),
            previous_secret: Set(None),
            previous_secret_expires_at: Set(None),
            disabled_reason: Set(None),
            failing_since: Set(None),
            created_at: Set(to_micros(w.created_at)),
            updated_at: Set(to_micros(w.updated_at)),
        })
        .exec(self.db())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn webhook(&self, account_id: &str, id: &str) -> Result<Option<Webhook>> {
        webhooks::Entity::find()
            .filter(of_account(account_id, id))
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn list_webhooks(
        &self,
        account_id: &str,
        after: Option<Keyset>,
        limit: u64,
    ) -> Result<Vec<Webhook>> {
        let mut query = webhooks::Entity::find().filter(webhooks::Column::AccountId.eq(account_id));
        if let Some(Keyset { at, id }) = after {
            let key = (webhooks::Column::CreatedAt, webhooks::Column::Id);
            query = query.filter(super::past_key(key, at, id, true));
        }
        query
            .order_by_asc(webhooks::Column::CreatedAt)
            .order_by_asc(webhooks::Column::Id)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn update_webhook(&self, w: &Webhook) -> Result<bool> {
        let mut update = webhooks::Entity::update_many()
            .col_expr(webhooks::Column::Url, Expr::value(w.url.clone()))
            .col_expr(webhooks::Column::Events, Expr::value(json(&w.events)?))
            .col_expr(webhooks::Column::Active, Expr::value(w.active))
            .col_expr(
                webhooks::Column::Description,
                Expr::value(w.description.clone()),
            )
            .col_expr(
                webhooks::Column::DisabledReason,
                Expr::value(w.disabled_reason.clone()),
            )
            .col_expr(
                webhooks::Column::UpdatedAt,
                Expr::value(to_micros(w.updated_at)),
            );
        if w.active {
            // A working endpoint starts counting failures afresh.
            update = update.col_expr(webhooks::Column::FailingSince, Expr::value(None::<i64>));
        }
        let changed = update
            .filter(of_account(&w.account_id, &w.id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(changed.rows_affected > 0)
    }

    async fn delete_webhook(&self, account_id: &str, id: &str) -> Result<bool> {
        // Its deliveries and their attempts go with it (ON DELETE CASCADE).
        let deleted = webhooks::Entity::delete_many()
            .filter(of_account(account_id, id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected > 0)
    }

    async fn signing(
        &self,
        account_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, Vec<String>)>> {
        let found = webhooks::Entity::find()
            .filter(of_account(account_id, id))
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(found.map(|w| {
            let mut secrets = vec![w.secret];
            if let (Some(previous), Some(until)) = (w.previous_secret, w.previous_secret_expires_at)
                && until > to_micros(now)
            {
                secrets.push(previous);
            }
            (w.url, secrets)
        }))
    }

    async fn rotate_secret(
        &self,
        account_id: &str,
        id: &str,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<bool> {
        let rotated = webhooks::Entity::update_many()
            .col_expr(
                webhooks::Column::PreviousSecret,
                Expr::col(webhooks::Column::Secret),
            )
            .col_expr(
                webhooks::Column::PreviousSecretExpiresAt,
                Expr::value(to_micros(previous_until)),
            )
            .col_expr(webhooks::Column::Secret, Expr::value(secret.to_owned()))
            .filter(of_account(account_id, id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(rotated.rows_affected > 0)
    }
}
