//! Contacts, and the suppression an unsubscription adds beside them (by
//! the API, or by the unsubscribe link of a delivered message).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
};

use super::entities::{contacts, events, suppressions};
use super::{Store, db_error, json};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::contacts::{Contact, ContactCursor, ContactFilter, ContactStore, ListedContact};
use crate::domain::email::EmailAddress;
use crate::domain::links::UnsubscribeStore;
use crate::domain::messages::{EventDetails, EventType};
use crate::domain::suppressions::{SuppressionOrigin, SuppressionReason};
use crate::domain::{Error, Result};

fn from_row(m: contacts::Model) -> Result<ListedContact> {
    let corrupt = |what: &str| Error::Internal(anyhow::anyhow!("contact row {}: bad {what}", m.id));
    let fields = serde_json::from_str(&m.fields).map_err(|_| corrupt("fields"))?;
    let lists = serde_json::from_str(&m.lists).map_err(|_| corrupt("lists"))?;
    Ok(ListedContact {
        row: m.id,
        contact: Contact {
            account_id: m.account_id,
            email: EmailAddress::from_stored(m.email, m.email_key),
            first_name: m.first_name,
            last_name: m.last_name,
            fields,
            lists,
            subscribed: m.subscribed,
            unsubscribed_at: m.unsubscribed_at.map(from_micros),
            created_at: from_micros(m.created_at),
            updated_at: from_micros(m.updated_at),
        },
    })
}

impl ContactStore for Store {
    async fn contact(&self, account_id: &str, email_key: &str) -> Result<Option<Contact>> {
        contacts::Entity::find()
            .filter(contacts::Column::AccountId.eq(account_id))
            .filter(contacts::Column::EmailKey.eq(email_key))
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(|m| from_row(m).map(|listed| listed.contact))
            .transpose()
    }

    async fn upsert_contact(&self, c: &Contact, subscribed: Option<bool>) -> Result<Contact> {
        let row = contacts::ActiveModel {
            account_id: Set(c.account_id.clone()),
            email: Set(c.email.as_str().to_owned()),
            email_key: Set(c.email.key().to_owned()),
            first_name: Set(c.first_name.clone()),
            last_name: Set(c.last_name.clone()),
            fields: Set(json(&c.fields)?),
            lists: Set(json(&c.lists)?),
            subscribed: Set(c.subscribed),
            unsubscribed_at: Set(c.unsubscribed_at.map(to_micros)),
            created_at: Set(to_micros(c.created_at)),
            updated_at: Set(to_micros(c.updated_at)),
            ..Default::default()
        };
        let mut on_conflict =
            OnConflict::columns([contacts::Column::AccountId, contacts::Column::EmailKey]);
        on_conflict.update_columns([
            contacts::Column::Email,
            contacts::Column::FirstName,
            contacts::Column::LastName,
            contacts::Column::Fields,
            contacts::Column::Lists,
            contacts::Column::UpdatedAt,
        ]);
        // The state changes only when asked to, in the statement itself: an
        // unsubscription that lands between a read and this write is kept.
        if subscribed.is_some() {
            on_conflict.update_column(contacts::Column::Subscribed);
            on_conflict.value(
                contacts::Column::UnsubscribedAt,
                Expr::cust(
                    "CASE WHEN excluded.subscribed THEN NULL \
                     ELSE COALESCE(contacts.unsubscribed_at, excluded.unsubscribed_at) END",
                ),
            );
        }
        let stored = contacts::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_with_returning(self.db())
            .await
            .map_err(db_error)?;
        Ok(from_row(stored)?.contact)
    }

    async fn list_contacts(
        &self,
        account_id: &str,
        filter: &ContactFilter,
        after: Option<ContactCursor>,
        limit: u64,
    ) -> Result<Vec<ListedContact>> {
        let mut query = contacts::Entity::find().filter(contacts::Column::AccountId.eq(account_id));
        if let Some(list) = &filter.list {
            // Lists are stored as a JSON array of strings, in which a
            // quote is always escaped inside a name: the name as a JSON
            // string, quotes included, is found only as a whole element.
            let find = match self.db().get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => "strpos",
                _ => "instr",
            };
            let position = Func::cust(Alias::new(find))
                .arg(Expr::col(contacts::Column::Lists))
                .arg(json(list)?);
            query = query.filter(Expr::expr(position).gt(0));
        }
        if let Some(subscribed) = filter.subscribed {
            query = query.filter(contacts::Column::Subscribed.eq(subscribed));
        }
        if let Some(after) = after {
            let key = (contacts::Column::CreatedAt, contacts::Column::Id);
            query = query.filter(super::past_key(key, after.created_at, after.id, true));
        }
        query
            .order_by_asc(contacts::Column::CreatedAt)
            .order_by_asc(contacts::Column::Id)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn delete_contact(&self, account_id: &str, email_key: &str) -> Result<bool> {
        let result = contacts::Entity::delete_many()
            .filter(contacts::Column::AccountId.eq(account_id))
            .filter(contacts::Column::EmailKey.eq(email_key))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    async fn unsubscribe_contact(
        &self,
        account_id: &str,
        email_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Contact>> {
        let now = to_micros(now);
        let tx = self.db().begin().await.map_err(db_error)?;
        let updated = contacts::Entity::update_many()
            .col_expr(contacts::Column::Subscribed, Expr::value(false))
            .col_expr(
                contacts::Column::UnsubscribedAt,
                Expr::expr(Func::coalesce([
                    Expr::col(contacts::Column::UnsubscribedAt),
                    Expr::value(now),
                ])),
            )
            .col_expr(contacts::Column::UpdatedAt, Expr::value(now))
            .filter(contacts::Column::AccountId.eq(account_id))
            .filter(contacts::Column::EmailKey.eq(email_key))
            .exec_with_returning(&tx)
            .await
            .map_err(db_error)?;
        let Some(contact) = updated.into_iter().next() else {
            return Ok(None);
        };
        let suppression = suppressions::ActiveModel {
            account_id: Set(account_id.to_owned()),
            email: Set(contact.email.clone()),
            email_key: Set(contact.email_key.clone()),
            reason: Set(SuppressionReason::Unsubscribed.as_str().to_owned()),
            origin: Set(SuppressionOrigin::Api.as_str().to_owned()),
            message_id: Set(None),
            expires_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        };
        suppressions::Entity::insert(suppression)
            .on_conflict(super::suppressions::for_good())
            .try_insert()
            .exec(&tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(from_row(contact)?.contact))
    }
}

impl UnsubscribeStore for Store {
    async fn unsubscribe_recipient(
        &self,
        message_id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>> {
        let now = to_micros(now);
        let tx = self.db().begin().await.map_err(db_error)?;
        // The event-order lock before the message's row (see
        // `EVENT_ORDER_LOCK`); nothing on SQLite.
        super::delivery::lock_event_order(&tx).await?;
        // The message's account, read by a write that changes nothing: a
        // SQLite transaction that reads before it writes can be refused
        // its write when another commit came in between.
        let backend = tx.get_database_backend();
        let found = tx
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                super::delivery::placeholders(
                    backend,
                    "UPDATE messages SET updated_at = updated_at WHERE id = ? \
                     RETURNING account_id, status",
                ),
                [message_id.into()],
            ))
            .await
            .map_err(db_error)?;
        let Some(row) = found else {
            return Ok(None);
        };
        let account_id: String = row.try_get("", "account_id").map_err(db_error)?;
        let status: String = row.try_get("", "status").map_err(db_error)?;
        let email_key = EmailAddress::key_of_stored(recipient);
        let suppression = suppressions::ActiveModel {
            account_id: Set(account_id.clone()),
            email: Set(recipient.to_owned()),
            email_key: Set(email_key.clone()),
            reason: Set(SuppressionReason::Unsubscribed.as_str().to_owned()),
            origin: Set(SuppressionOrigin::UnsubscribeLink.as_str().to_owned()),
            message_id: Set(Some(message_id.to_owned())),
            expires_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        };
        let suppressed = suppressions::Entity::insert(suppression)
            .on_conflict(super::suppressions::for_good())
            .try_insert()
            .exec(&tx)
            .await
            .map_err(db_error)?;
        let suppressed = matches!(suppressed, sea_orm::TryInsertResult::Inserted(_));
        let contact = contacts::Entity::update_many()
            .col_expr(contacts::Column::Subscribed, Expr::value(false))
            .col_expr(contacts::Column::UnsubscribedAt, Expr::value(now))
            .col_expr(contacts::Column::UpdatedAt, Expr::value(now))
            .filter(contacts::Column::AccountId.eq(&account_id))
            .filter(contacts::Column::EmailKey.eq(&email_key))
            .filter(contacts::Column::Subscribed.eq(true))
            .exec(&tx)
            .await
            .map_err(db_error)?
            .rows_affected
            > 0;
        let changed = suppressed || contact;
        if changed {
            let details = EventDetails {
                reason: "unsubscribed with the message's one-click link".into(),
                ..Default::default()
            };
            events::Entity::insert(events::ActiveModel {
                account_id: Set(account_id),
                message_id: Set(message_id.to_owned()),
                recipient: Set(recipient.to_owned()),
                event_type: Set(EventType::Unsubscribed.as_str().to_owned()),
                status: Set(status),
                details: Set(json(&details)?),
                occurred_at: Set(now),
                ..Default::default()
            })
            .exec(&tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        if changed {
            self.events_written();
        }
        Ok(Some(changed))
    }
}
