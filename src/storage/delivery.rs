//! The delivery queue: claiming due recipients with a lease, renewing and
//! rescuing leases, and recording each attempt with the recipient's new
//! state, its event and the message's aggregate status in one transaction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement, TransactionTrait, UpdateMany, Value,
};

use super::entities::{delivery_attempts, events, messages, recipients};
use super::{Store, db_error};
use crate::domain::Result;
use crate::domain::clock::to_micros;
use crate::domain::delivery::{AttemptResult, Claimed, DeliveryStore, Outcome};
use crate::domain::messages::{EventType, Message, Status, aggregate};

/// States a worker may claim.
const CLAIMABLE: &str = "('queued', 'scheduled', 'deferred')";

/// PostgreSQL hands out event ids when rows are inserted, not when they
/// commit; transactions that write events take this lock first, so event
/// ids become visible in order and a watcher reading by cursor skips none.
pub(crate) const EVENT_ORDER_LOCK: i64 = 0x706f_7374_686f_726e;

/// `?` placeholders as the backend spells them.
fn placeholders(backend: DatabaseBackend, sql: &str) -> String {
    if backend != DatabaseBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The statement that serialises event-writing transactions on PostgreSQL
/// (see [`EVENT_ORDER_LOCK`]); none on SQLite, whose writer is single.
pub(crate) fn event_order_lock(backend: DatabaseBackend) -> Option<Statement> {
    (backend == DatabaseBackend::Postgres).then(|| {
        Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [EVENT_ORDER_LOCK.into()],
        )
    })
}

/// Takes [`event_order_lock`] in the transaction.
pub(crate) async fn lock_event_order<C: ConnectionTrait>(db: &C) -> Result<()> {
    if let Some(lock) = event_order_lock(db.get_database_backend()) {
        db.execute_raw(lock).await.map_err(db_error)?;
    }
    Ok(())
}

/// Clears the lease of the rows an update touches.
fn free_lease(update: UpdateMany<recipients::Entity>) -> UpdateMany<recipients::Entity> {
    update
        .col_expr(
            recipients::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            recipients::Column::LeaseUntil,
            Expr::value(Option::<i64>::None),
        )
}

fn new_state(outcome: &Outcome, retry: bool) -> Status {
    match outcome {
        Outcome::Sent => Status::Sent,
        Outcome::Delivered => Status::Delivered,
        Outcome::Deferred if retry => Status::Deferred,
        Outcome::Deferred | Outcome::Failed => Status::Failed,
        Outcome::Bounced { .. } => Status::Bounced,
    }
}

fn event_type(state: Status) -> EventType {
    match state {
        Status::Sent => EventType::Sent,
        Status::Delivered => EventType::Delivered,
        Status::Deferred => EventType::Deferred,
        Status::Bounced => EventType::Bounced,
        _ => EventType::Failed,
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Sent => "sent",
        Outcome::Delivered => "delivered",
        Outcome::Deferred => "deferred",
        Outcome::Bounced { hard: true } => "bounced_hard",
        Outcome::Bounced { hard: false } => "bounced",
        Outcome::Failed => "failed",
    }
}

impl DeliveryStore for Store {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Claimed>> {
        let backend = self.db().get_database_backend();
        let lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = placeholders(
            backend,
            &format!(
                "UPDATE recipients SET lease_owner = ?, lease_until = ? \
                 WHERE id IN (SELECT id FROM recipients \
                   WHERE state IN {CLAIMABLE} \
                     AND (next_attempt_at IS NULL OR next_attempt_at <= ?) \
                     AND (lease_until IS NULL OR lease_until < ?) \
                   ORDER BY next_attempt_at, id LIMIT ?{lock}) \
                 RETURNING id, message_id, account_id, email, attempts"
            ),
        );
        let now = to_micros(now);
        let values: Vec<Value> = vec![
            owner.into(),
            to_micros(lease_until).into(),
            now.into(),
            now.into(),
            (limit as i64).into(),
        ];
        let rows = self
            .db()
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            claimed.push(Claimed {
                recipient_id: row.try_get("", "id").map_err(db_error)?,
                message_id: row.try_get("", "message_id").map_err(db_error)?,
                account_id: row.try_get("", "account_id").map_err(db_error)?,
                email: row.try_get("", "email").map_err(db_error)?,
                attempts: row.try_get("", "attempts").map_err(db_error)?,
            });
        }
        claimed.sort_by_key(|c| c.recipient_id);
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        owner: &str,
        recipient_ids: &[i64],
        lease_until: DateTime<Utc>,
    ) -> Result<()> {
        recipients::Entity::update_many()
            .col_expr(
                recipients::Column::LeaseUntil,
                Expr::value(to_micros(lease_until)),
            )
            .filter(recipients::Column::Id.is_in(recipient_ids.iter().copied()))
            .filter(recipients::Column::LeaseOwner.eq(owner))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let result = free_lease(recipients::Entity::update_many())
            .filter(recipients::Column::LeaseUntil.lt(to_micros(now)))
            .filter(recipients::Column::LeaseOwner.is_not_null())
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }

    async fn message_for_delivery(&self, message_id: &str) -> Result<Option<Message>> {
        let Some(row) = messages::Entity::find_by_id(message_id)
            .one(self.db())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        Store::load_message(self.db(), &row.account_id, message_id, true).await
    }

    async fn store_raw_mime(&self, message_id: &str, raw: &[u8]) -> Result<()> {
        messages::Entity::update_many()
            .col_expr(messages::Column::RawMime, Expr::value(raw.to_vec()))
            .filter(messages::Column::Id.eq(message_id))
            .filter(messages::Column::RawMime.is_null())
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn record_attempts(&self, owner: &str, results: &[AttemptResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let tx = self.db().begin().await.map_err(db_error)?;
        let mut changed: Vec<(&AttemptResult, Status)> = Vec::new();
        for result in results {
            let state = new_state(&result.outcome, result.retry_at.is_some());
            let response = if result.reply.code > 0 {
                format!("{} {}", result.reply.code, result.reply.text)
            } else {
                result.reply.text.clone()
            };
            let updated = free_lease(recipients::Entity::update_many())
                .col_expr(recipients::Column::State, Expr::value(state.as_str()))
                .col_expr(
                    recipients::Column::Attempts,
                    Expr::value(result.claimed.attempts + 1),
                )
                .col_expr(
                    recipients::Column::LastResponse,
                    Expr::value(response.clone()),
                )
                .col_expr(
                    recipients::Column::NextAttemptAt,
                    Expr::value(
                        result
                            .retry_at
                            .filter(|_| state == Status::Deferred)
                            .map(to_micros),
                    ),
                )
                .col_expr(
                    recipients::Column::UpdatedAt,
                    Expr::value(to_micros(result.attempted_at)),
                )
                .filter(recipients::Column::Id.eq(result.claimed.recipient_id))
                .filter(recipients::Column::LeaseOwner.eq(owner))
                .exec(&tx)
                .await
                .map_err(db_error)?;
            if updated.rows_affected == 0 {
                // The lease was lost (rescued and claimed elsewhere, or the
                // message cancelled): this worker's result does not count.
                continue;
            }
            delivery_attempts::Entity::insert(delivery_attempts::ActiveModel {
                recipient_id: Set(result.claimed.recipient_id),
                message_id: Set(result.claimed.message_id.clone()),
                outcome: Set(outcome_name(&result.outcome).to_owned()),
                smtp_code: Set((result.reply.code > 0).then_some(i32::from(result.reply.code))),
                enhanced_code: Set(
                    (!result.reply.enhanced.is_empty()).then(|| result.reply.enhanced.clone())
                ),
                response: Set(response),
                remote_mta: Set(Some(if result.reply.remote.is_empty() {
                    result.transport.clone()
                } else {
                    format!("{} {}", result.transport, result.reply.remote)
                })),
                duration_us: Set(result.duration.as_micros().min(i64::MAX as u128) as i64),
                attempted_at: Set(to_micros(result.attempted_at)),
                ..Default::default()
            })
            .exec_without_returning(&tx)
            .await
            .map_err(db_error)?;
            changed.push((result, state));
        }

        // Each touched message's aggregate over all its recipients.
        let ids: Vec<String> = {
            let mut ids: Vec<String> = changed
                .iter()
                .map(|(r, _)| r.claimed.message_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let mut states: BTreeMap<String, Vec<Status>> = BTreeMap::new();
        if !ids.is_empty() {
            let rows: Vec<(String, String)> = recipients::Entity::find()
                .select_only()
                .columns([recipients::Column::MessageId, recipients::Column::State])
                .filter(recipients::Column::MessageId.is_in(ids))
                .into_tuple()
                .all(&tx)
                .await
                .map_err(db_error)?;
            for (message_id, state) in rows {
                if let Some(status) = Status::parse(&state) {
                    states.entry(message_id).or_default().push(status);
                }
            }
        }
        let updated_at = results
            .iter()
            .map(|r| to_micros(r.attempted_at))
            .max()
            .unwrap_or_default();
        let mut aggregates: HashMap<String, Status> = HashMap::new();
        for (message_id, statuses) in states {
            let status = aggregate(statuses);
            messages::Entity::update_many()
                .col_expr(messages::Column::Status, Expr::value(status.as_str()))
                .col_expr(messages::Column::UpdatedAt, Expr::value(updated_at))
                .filter(messages::Column::Id.eq(message_id.as_str()))
                .exec(&tx)
                .await
                .map_err(db_error)?;
            aggregates.insert(message_id, status);
        }

        if !changed.is_empty() {
            lock_event_order(&tx).await?;
            let rows: Vec<events::ActiveModel> = changed
                .iter()
                .map(|(result, state)| {
                    let reason = match (&result.outcome, state) {
                        (Outcome::Deferred, Status::Failed) => "expired",
                        (Outcome::Bounced { hard: true }, _) => "hard_bounce",
                        (Outcome::Bounced { hard: false }, _) => "soft_bounce",
                        _ => "",
                    };
                    let details = result.reply.details(reason);
                    events::ActiveModel {
                        account_id: Set(result.claimed.account_id.clone()),
                        message_id: Set(result.claimed.message_id.clone()),
                        recipient: Set(result.claimed.email.clone()),
                        event_type: Set(event_type(*state).as_str().to_owned()),
                        status: Set(aggregates
                            .get(&result.claimed.message_id)
                            .copied()
                            .unwrap_or(*state)
                            .as_str()
                            .to_owned()),
                        details: Set(serde_json::to_string(&details).expect("details serialise")),
                        occurred_at: Set(to_micros(result.attempted_at)),
                        ..Default::default()
                    }
                })
                .collect();
            events::Entity::insert_many(rows)
                .exec_without_returning(&tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        self.events_written();
        Ok(())
    }
}
