//! Opens and clicks of delivered mail: the recipient's counts and first
//! times, its status, the message's aggregate and the event, in one
//! transaction.

use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::entities::{events, messages, recipients};
use super::{Store, db_error, json};
use crate::domain::Result;
use crate::domain::clock::to_micros;
use crate::domain::messages::{EventType, Status, aggregate};
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
        // The event-order lock first: on PostgreSQL it also serialises the
        // aggregate's read with the delivery recorder's.
        super::delivery::lock_event_order(&tx).await?;
        let states: Vec<String> = recipients::Entity::find()
            .select_only()
            .column(recipients::Column::State)
            .filter(recipients::Column::MessageId.eq(message_id))
            .into_tuple()
            .all(&tx)
            .await
            .map_err(db_error)?;
        let status = aggregate(states.iter().filter_map(|s| Status::parse(s)));
        messages::Entity::update_many()
            .col_expr(messages::Column::Status, Expr::value(status.as_str()))
            .col_expr(messages::Column::UpdatedAt, Expr::value(now))
            .filter(messages::Column::Id.eq(message_id))
            .filter(messages::Column::Status.ne(status.as_str()))
            .exec(&tx)
            .await
            .map_err(db_error)?;
        events::Entity::insert(events::ActiveModel {
            account_id: Set(account_id),
            message_id: Set(message_id.to_owned()),
            recipient: Set(recipient.to_owned()),
            event_type: Set(engagement.event.as_str().to_owned()),
            status: Set(status.as_str().to_owned()),
            details: Set(json(&engagement.details)?),
            occurred_at: Set(now),
            ..Default::default()
        })
        .exec(&tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.events_written();
        Ok(true)
    }
}
