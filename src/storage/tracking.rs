//! What recipients do with delivered mail — open it, click its links,
//! complain about it: the recipient's counts, first times and status, the
//! message's aggregate and the event, in one transaction each.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

use super::entities::{events, messages, recipients, suppressions};
use super::{Store, db_error, json};
use crate::domain::Result;
use crate::domain::clock::to_micros;
use crate::domain::email::EmailAddress;
use crate::domain::feedback::FeedbackStore;
use crate::domain::messages::{EventDetails, EventType, Status, aggregate};
use crate::domain::suppressions::{SuppressionOrigin, SuppressionReason};
use crate::domain::tracking::{Engagement, EngagementStore};

/// The recipient states an engagement moves on from, and where to.
fn moves(event: EventType) -> (&'static [&'static str], Status) {
    match event {
        EventType::Clicked => (&["sent", "delivered", "opened"], Status::Clicked),
        _ => (&["sent", "delivered"], Status::Opened),
    }
}

impl EngagementStore for Store {
    async fn record_engagement(
        &self,
        message_id: &str,
        recipient: &str,
        engagement: Engagement,
    ) -> Result<bool> {
        let now = to_micros(engagement.at);
        let mut update = recipients::Entity::update_many()
            .filter(recipients::Column::MessageId.eq(message_id))
            .filter(recipients::Column::Email.eq(recipient));
        if engagement.counted {
            let (count, first) = match engagement.event {
                EventType::Clicked => (
                    recipients::Column::ClickCount,
                    recipients::Column::FirstClickedAt,
                ),
                _ => (
                    recipients::Column::OpenCount,
                    recipients::Column::FirstOpenedAt,
                ),
            };
            let (from, to) = moves(engagement.event);
            let moving = || recipients::Column::State.is_in(from.iter().copied());
            // Every right-hand side reads the row as it was.
            update = update
                .col_expr(count, Expr::col(count).add(1))
                .col_expr(
                    first,
                    Expr::expr(Func::coalesce([Expr::col(first), Expr::value(now)])),
                )
                .col_expr(
                    recipients::Column::State,
                    Expr::case(moving(), to.as_str())
                        .finally(Expr::col(recipients::Column::State))
                        .into(),
                )
                .col_expr(
                    recipients::Column::UpdatedAt,
                    Expr::case(moving(), now)
                        .finally(Expr::col(recipients::Column::UpdatedAt))
                        .into(),
                );
        } else {
            // Changes nothing, but writes first: a SQLite transaction that
            // read before writing can be refused its write.
            update = update.col_expr(
                recipients::Column::UpdatedAt,
                Expr::col(recipients::Column::UpdatedAt),
            );
        }
        let tx = self.db().begin().await.map_err(db_error)?;
        let account_id = update
            .exec_with_returning(&tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .map(|r| r.account_id);
        let Some(account_id) = account_id else {
            return Ok(false);
        };
        let event = Appended {
            account_id: &account_id,
            message_id,
            recipient,
            event: engagement.event,
            details: &engagement.details,
            at: now,
        };
        event.append(&tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.events_written();
        Ok(true)
    }
}

/// An event about one recipient, appended after its state changed, with the
/// message's aggregate brought up to date.
struct Appended<'a> {
    account_id: &'a str,
    message_id: &'a str,
    recipient: &'a str,
    event: EventType,
    details: &'a EventDetails,
    at: i64,
}

impl Appended<'_> {
    async fn append(&self, tx: &DatabaseTransaction) -> Result<()> {
        // The event-order lock first: on PostgreSQL it also serialises the
        // aggregate's read with the delivery recorder's.
        super::delivery::lock_event_order(tx).await?;
        let states: Vec<String> = recipients::Entity::find()
            .select_only()
            .column(recipients::Column::State)
            .filter(recipients::Column::MessageId.eq(self.message_id))
            .into_tuple()
            .all(tx)
            .await
            .map_err(db_error)?;
        let status = aggregate(states.iter().filter_map(|s| Status::parse(s)));
        messages::Entity::update_many()
            .col_expr(messages::Column::Status, Expr::value(status.as_str()))
            .col_expr(messages::Column::UpdatedAt, Expr::value(self.at))
            .filter(messages::Column::Id.eq(self.message_id))
            .filter(messages::Column::Status.ne(status.as_str()))
            .exec(tx)
            .await
            .map_err(db_error)?;
        events::Entity::insert(events::ActiveModel {
            account_id: Set(self.account_id.to_owned()),
            message_id: Set(self.message_id.to_owned()),
            recipient: Set(self.recipient.to_owned()),
            event_type: Set(self.event.as_str().to_owned()),
            status: Set(status.as_str().to_owned()),
            details: Set(json(self.details)?),
            occurred_at: Set(self.at),
            ..Default::default()
        })
        .exec(tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

impl FeedbackStore for Store {
    async fn recipients_of(
        &self,
        account_id: &str,
        message_id: &str,
    ) -> Result<Option<Vec<String>>> {
        let emails: Vec<String> = recipients::Entity::find()
            .select_only()
            .column(recipients::Column::Email)
            .filter(recipients::Column::MessageId.eq(message_id))
            .filter(recipients::Column::AccountId.eq(account_id))
            .into_tuple()
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok((!emails.is_empty()).then_some(emails))
    }

    async fn record_complaint(
        &self,
        account_id: &str,
        message_id: &str,
        recipient: &str,
        details: EventDetails,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let now = to_micros(at);
        let complained = Status::Complained.as_str();
        let tx = self.db().begin().await.map_err(db_error)?;
        let changed = recipients::Entity::update_many()
            .col_expr(recipients::Column::State, Expr::value(complained))
            .col_expr(recipients::Column::UpdatedAt, Expr::value(now))
            .filter(recipients::Column::MessageId.eq(message_id))
            .filter(recipients::Column::AccountId.eq(account_id))
            .filter(recipients::Column::Email.eq(recipient))
            .filter(recipients::Column::State.ne(complained))
            .exec(&tx)
            .await
            .map_err(db_error)?
            .rows_affected
            > 0;
        if !changed {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        suppressions::Entity::insert(suppressions::ActiveModel {
            account_id: Set(account_id.to_owned()),
            email: Set(recipient.to_owned()),
            email_key: Set(EmailAddress::key_of_stored(recipient)),
            reason: Set(SuppressionReason::Complained.as_str().to_owned()),
            origin: Set(SuppressionOrigin::Complaint.as_str().to_owned()),
            message_id: Set(Some(message_id.to_owned())),
            expires_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        })
        .on_conflict(super::suppressions::for_good())
        .try_insert()
        .exec(&tx)
        .await
        .map_err(db_error)?;
        let event = Appended {
            account_id,
            message_id,
            recipient,
            event: EventType::Complained,
            details: &details,
            at: now,
        };
        event.append(&tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.events_written();
        Ok(true)
    }
}
