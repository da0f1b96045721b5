//! The delivery queue: claiming due recipients with a lease, renewing and
//! rescuing leases, and recording each attempt with the recipient's new
//! state, its event and the message's aggregate status in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait, Statement, TransactionTrait, UpdateMany, Value,
};

use super::entities::{recipients, suppressions};
use super::messages::{EVENT_INSERT, Rows};
use super::writer::{Row, Writes};
use super::{Store, db_error};
use crate::domain::clock::to_micros;
use crate::domain::delivery::{AttemptResult, Claimed, DeliveryRecord, DeliveryStore, Outcome};
use crate::domain::email::EmailAddress;
use crate::domain::messages::{EventDetails, EventType, Message, Status, aggregate};
use crate::domain::suppressions::{SuppressionOrigin, SuppressionReason};
use crate::domain::{Durable, Result};

/// States a worker may claim. The queue's partial index (`ix_recipients_due`,
/// migration 3) repeats this list word for word: SQLite uses a partial index
/// only for a query that repeats its condition, so a change here needs a
/// migration there.
const CLAIMABLE: &str = "('queued', 'scheduled', 'deferred')";

/// PostgreSQL hands out event ids when rows are inserted, not when they
/// commit; transactions that write events take this lock first, so event
/// ids become visible in order and a watcher reading by cursor skips none.
/// They take it before they update a stored message: the recorder holds
/// it while it updates the aggregates, so the other order can deadlock.
pub(crate) const EVENT_ORDER_LOCK: i64 = 0x706f_7374_686f_726e;

/// `?` placeholders as the backend spells them.
pub(super) fn placeholders(backend: DatabaseBackend, sql: &str) -> String {
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
/// (see [`EVENT_ORDER_LOCK`]) and notifies every listening process when
/// the transaction commits; none on SQLite, whose writer is single.
pub(crate) fn event_order_lock(backend: DatabaseBackend) -> Option<Statement> {
    (backend == DatabaseBackend::Postgres).then(|| {
        Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')",
            [EVENT_ORDER_LOCK.into(), super::EVENTS_CHANNEL.into()],
        )
    })
}

/// Takes the event-order lock in the transaction (PostgreSQL; nothing on
/// SQLite): every event writer's step before it updates a stored message.
pub async fn lock_event_order<C: ConnectionTrait>(db: &C) -> Result<()> {
    if let Some(lock) = event_order_lock(db.get_database_backend()) {
        db.execute_raw(lock).await.map_err(db_error)?;
    }
    Ok(())
}

fn backend_is_postgres<C: ConnectionTrait>(db: &C) -> bool {
    db.get_database_backend() == DatabaseBackend::Postgres
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
        Outcome::Deferred | Outcome::Ambiguous if retry => Status::Deferred,
        Outcome::Deferred | Outcome::Ambiguous | Outcome::Failed => Status::Failed,
        Outcome::Bounced { .. } => Status::Bounced,
        Outcome::Suppressed => Status::Suppressed,
    }
}

fn event_type(state: Status) -> EventType {
    match state {
        Status::Sent => EventType::Sent,
        Status::Delivered => EventType::Delivered,
        Status::Deferred => EventType::Deferred,
        Status::Bounced => EventType::Bounced,
        Status::Suppressed => EventType::Suppressed,
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
        Outcome::Ambiguous => "ambiguous",
        Outcome::Suppressed => "suppressed",
    }
}

/// The text kept for a reply: code and text, or what went wrong.
fn response_text(result: &AttemptResult) -> String {
    if result.reply.code > 0 {
        format!("{} {}", result.reply.code, result.reply.text)
    } else {
        result.reply.text.clone()
    }
}

/// The recipients a claim's `RETURNING id, message_id, account_id, email,
/// attempts` leased under `lease`, in id order.
fn claimed_rows(rows: Vec<sea_orm::QueryResult>, lease: &str) -> Result<Vec<Claimed>> {
    let mut claimed = rows
        .into_iter()
        .map(|row| {
            Ok(Claimed {
                lease: lease.to_owned(),
                recipient_id: row.try_get("", "id").map_err(db_error)?,
                message_id: row.try_get("", "message_id").map_err(db_error)?,
                account_id: row.try_get("", "account_id").map_err(db_error)?,
                email: row.try_get("", "email").map_err(db_error)?,
                attempts: row.try_get("", "attempts").map_err(db_error)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|c| c.recipient_id);
    Ok(claimed)
}

/// Recipients per statement when recording (SQLite binds at most 32,766
/// parameters in one statement).
const RECORD_CHUNK: usize = 256;

/// The columns of a delivery attempt as a record writes them: all but the
/// id.
const ATTEMPT_INSERT: [&str; 9] = [
    "recipient_id",
    "message_id",
    "outcome",
    "smtp_code",
    "enhanced_code",
    "response",
    "remote_mta",
    "duration_us",
    "attempted_at",
];

/// [`claimed_rows`] from the SQLite writer's rows.
fn claimed_from(rows: Vec<Row>, lease: &str) -> Result<Vec<Claimed>> {
    let mut claimed = rows
        .into_iter()
        .map(|row| {
            Ok(Claimed {
                lease: lease.to_owned(),
                recipient_id: row.int(0)?,
                message_id: row.text(1)?,
                account_id: row.text(2)?,
                email: row.text(3)?,
                attempts: i32::try_from(row.int(4)?).unwrap_or(i32::MAX),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|c| c.recipient_id);
    Ok(claimed)
}

impl DeliveryStore for Store {
    async fn claim_due(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Claimed>> {
        let backend = self.writer().get_database_backend();
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
                     AND lease_owner IS NULL \
                   ORDER BY next_attempt_at, id LIMIT ?{lock}) \
                 RETURNING id, message_id, account_id, email, attempts"
            ),
        );
        // An expired lease is not claimed here: the rescuer takes it over
        // and records the ambiguous attempt first.
        let values: Vec<Value> = vec![
            lease.into(),
            to_micros(lease_until).into(),
            to_micros(now).into(),
            (limit as i64).into(),
        ];
        // Every queue write goes through the writer: on SQLite that is one
        // thread, so writers queue in order instead of sleeping in the
        // busy handler.
        let claim = Statement::from_sql_and_values(backend, sql, values);
        if backend == DatabaseBackend::Sqlite {
            return claimed_from(self.sqlite_writer().write(vec![claim]).await?, lease);
        }
        let rows = self.writer().query_all_raw(claim).await.map_err(db_error)?;
        claimed_rows(rows, lease)
    }

    async fn renew_leases(
        &self,
        lease: &str,
        recipient_ids: &[i64],
        lease_until: DateTime<Utc>,
    ) -> Result<()> {
        let backend = self.writer().get_database_backend();
        let renew = recipients::Entity::update_many()
            .col_expr(
                recipients::Column::LeaseUntil,
                Expr::value(to_micros(lease_until)),
            )
            .filter(recipients::Column::Id.is_in(recipient_ids.iter().copied()))
            .filter(recipients::Column::LeaseOwner.eq(lease))
            .build(backend);
        if backend == DatabaseBackend::Sqlite {
            self.sqlite_writer().write(vec![renew]).await?;
        } else {
            self.writer().execute_raw(renew).await.map_err(db_error)?;
        }
        Ok(())
    }

    async fn claim_expired(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let backend = self.writer().get_database_backend();
        let now = to_micros(now);
        let sql = placeholders(
            backend,
            &format!(
                "UPDATE recipients SET lease_owner = ?, lease_until = ? \
                 WHERE lease_owner IS NOT NULL AND lease_until < ? AND state IN {CLAIMABLE} \
                 RETURNING id, message_id, account_id, email, attempts"
            ),
        );
        let claim = Statement::from_sql_and_values(
            backend,
            sql,
            [lease.into(), to_micros(lease_until).into(), now.into()],
        );
        // Leases left on recipients that were cancelled or finished meanwhile.
        let free = free_lease(recipients::Entity::update_many())
            .filter(recipients::Column::LeaseUntil.lt(now))
            .filter(recipients::Column::LeaseOwner.is_not_null())
            .build(backend);
        if backend == DatabaseBackend::Sqlite {
            return claimed_from(self.sqlite_writer().write(vec![claim, free]).await?, lease);
        }
        let rows = self.writer().query_all_raw(claim).await.map_err(db_error)?;
        let claimed = claimed_rows(rows, lease)?;
        self.writer().execute_raw(free).await.map_err(db_error)?;
        Ok(claimed)
    }

    async fn release_leases(&self, claimed: &[Claimed]) -> Result<u64> {
        let mut by_lease: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for c in claimed {
            by_lease.entry(&c.lease).or_default().push(c.recipient_id);
        }
        let backend = self.writer().get_database_backend();
        let mut frees = Vec::new();
        for (lease, ids) in by_lease {
            for chunk in ids.chunks(RECORD_CHUNK) {
                let mut free = free_lease(recipients::Entity::update_many())
                    .filter(recipients::Column::Id.is_in(chunk.iter().copied()))
                    .filter(recipients::Column::LeaseOwner.eq(lease))
                    .build(backend);
                free.sql.push_str(" RETURNING id");
                frees.push(free);
            }
        }
        let released = if backend == DatabaseBackend::Sqlite {
            self.sqlite_writer().write(frees).await?.len()
        } else {
            let mut released = 0;
            for free in frees {
                released += self
                    .writer()
                    .query_all_raw(free)
                    .await
                    .map_err(db_error)?
                    .len();
            }
            released
        } as u64;
        // Another worker, here or in another process, may take them now.
        self.wake_workers();
        if backend_is_postgres(self.writer()) {
            self.writer()
                .execute_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT pg_notify($1, '')",
                    [super::EVENTS_CHANNEL.into()],
                ))
                .await
                .map_err(db_error)?;
        }
        Ok(released)
    }

    async fn messages_for_delivery(&self, message_ids: &[String]) -> Result<Vec<Message>> {
        let mut messages = Vec::with_capacity(message_ids.len());
        for chunk in message_ids.chunks(RECORD_CHUNK) {
            messages.extend(self.load_for_delivery(chunk).await?);
        }
        Ok(messages)
    }

    async fn record_attempts(&self, records: Vec<DeliveryRecord>) -> Result<Durable> {
        if records.iter().all(|r| r.results.is_empty()) {
            return Ok(nothing_to_flush());
        }
        if self.writer().get_database_backend() == DatabaseBackend::Sqlite {
            return self.record_on_thread(records).await;
        }
        let results: Vec<&AttemptResult> = records.iter().flat_map(|r| &r.results).collect();
        let writer = self.writer();
        let backend = writer.get_database_backend();
        let tx = writer.begin().await.map_err(db_error)?;

        // 1. Each recipient's new state, where its lease still holds. The
        // first statement writes, so the write lock is taken at once.
        let mut held: HashSet<i64> = HashSet::with_capacity(results.len());
        for update in state_updates(backend, &results, "RETURNING id") {
            for row in tx.query_all_raw(update).await.map_err(db_error)? {
                held.insert(row.try_get("", "id").map_err(db_error)?);
            }
        }
        let changed = changed(&results, &held);
        if changed.is_empty() {
            tx.rollback().await.map_err(db_error)?;
            return Ok(nothing_to_flush());
        }

        // 2. The touched messages' recipients as they now stand. The
        // event-order lock comes first: on PostgreSQL it also serialises
        // the reads of pools recording recipients of the same message.
        lock_event_order(&tx).await?;
        let touched = distinct_messages(changed.iter().map(|(r, _)| *r));
        let mut states: BTreeMap<String, Vec<Status>> = BTreeMap::new();
        for chunk in touched.chunks(RECORD_CHUNK) {
            let rows: Vec<(String, String)> = recipients::Entity::find()
                .select_only()
                .columns([recipients::Column::MessageId, recipients::Column::State])
                .filter(recipients::Column::MessageId.is_in(chunk.iter().copied()))
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

        // 3. The attempts, the aggregates and the events.
        super::messages::execute_all(&tx, later_writes(backend, &records, &changed, states))
            .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(self.events_durable())
    }
}

impl Store {
    /// `record_attempts` on SQLite, as one piece of work on the writer
    /// thread (see `writer`): the recipients' new states and a read of
    /// every recipient of the batch's messages, then the attempts,
    /// aggregates and events.
    async fn record_on_thread(&self, records: Vec<DeliveryRecord>) -> Result<Durable> {
        let backend = DatabaseBackend::Sqlite;
        let results: Vec<&AttemptResult> = records.iter().flat_map(|r| &r.results).collect();
        let mut first = state_updates(backend, &results, &format!("RETURNING {HELD}, id, '', ''"));
        let messages = distinct_messages(results.iter().copied());
        for chunk in messages.chunks(RECORD_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            first.push(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT {STATE}, 0, message_id, state FROM recipients \
                     WHERE message_id IN ({marks})"
                ),
                chunk.iter().map(|id| Value::from(*id)),
            ));
        }
        let changed_any = self
            .sqlite_writer()
            .transaction(move |session| {
                let rows = session.fetch(&first)?;
                let mut held: HashSet<i64> = HashSet::with_capacity(rows.len());
                let mut all_states: BTreeMap<String, Vec<Status>> = BTreeMap::new();
                for row in &rows {
                    match row.int(0)? {
                        HELD => {
                            held.insert(row.int(1)?);
                        }
                        STATE => {
                            if let Some(status) = Status::parse(&row.text(3)?) {
                                all_states.entry(row.text(2)?).or_default().push(status);
                            }
                        }
                        _ => {}
                    }
                }
                let results: Vec<&AttemptResult> =
                    records.iter().flat_map(|r| &r.results).collect();
                let changed = changed(&results, &held);
                if changed.is_empty() {
                    return Ok(Writes::Undo(false));
                }
                let touched = distinct_messages(changed.iter().map(|(r, _)| *r));
                all_states.retain(|id, _| touched.binary_search(&id.as_str()).is_ok());
                session.fetch(&later_writes(backend, &records, &changed, all_states))?;
                Ok(Writes::Keep(true))
            })
            .await?;
        // The workers are answered, and the watchers woken, once durable.
        Ok(if changed_any {
            self.events_durable()
        } else {
            nothing_to_flush()
        })
    }
}

/// The wait of a transaction that changed nothing.
fn nothing_to_flush() -> Durable {
    Box::pin(std::future::ready(Ok(())))
}

/// What the first statements of `record_on_thread` return, one row shape for
/// both: a recipient whose lease held (its id), or a recipient's state.
const HELD: i64 = 1;
const STATE: i64 = 2;

/// The messages of `results`, each once, in order.
fn distinct_messages<'a>(results: impl Iterator<Item = &'a AttemptResult>) -> Vec<&'a str> {
    results
        .map(|r| r.claimed.message_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The results whose recipient's lease held, with the recipient's new state.
fn changed<'a>(
    results: &[&'a AttemptResult],
    held: &HashSet<i64>,
) -> Vec<(&'a AttemptResult, Status)> {
    results
        .iter()
        .filter(|r| held.contains(&r.claimed.recipient_id))
        .map(|r| (*r, new_state(&r.outcome, r.retry_at.is_some())))
        .collect()
}

/// Each recipient's new state, where the lease it was claimed under still
/// holds: a lost lease (rescued and claimed elsewhere, or the message
/// cancelled) means the result does not count. `returning` names what the
/// updated rows return (their id).
fn state_updates(
    backend: DatabaseBackend,
    results: &[&AttemptResult],
    returning: &str,
) -> Vec<Statement> {
    results
        .chunks(RECORD_CHUNK)
        .map(|chunk| {
            let mut sql = String::from(
                "UPDATE recipients SET state = v.column2, attempts = v.column3, \
                 last_response = v.column4, next_attempt_at = v.column5, \
                 updated_at = v.column6, lease_owner = NULL, lease_until = NULL \
                 FROM (VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
            for (i, result) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(
                    "(CAST(? AS BIGINT), ?, CAST(? AS INTEGER), ?, CAST(? AS BIGINT), CAST(? AS BIGINT), ?)",
                );
                let state = new_state(&result.outcome, result.retry_at.is_some());
                let next = result
                    .retry_at
                    .filter(|_| state == Status::Deferred)
                    .map(to_micros);
                values.extend([
                    result.claimed.recipient_id.into(),
                    state.as_str().into(),
                    (result.claimed.attempts
                        + i32::from(result.outcome != Outcome::Suppressed))
                    .into(),
                    response_text(result).into(),
                    next.into(),
                    to_micros(result.attempted_at).into(),
                    result.claimed.lease.as_str().into(),
                ]);
            }
            sql.push_str(
                ") AS v WHERE recipients.id = v.column1 AND recipients.lease_owner = v.column7 ",
            );
            sql.push_str(returning);
            Statement::from_sql_and_values(backend, placeholders(backend, &sql), values)
        })
        .collect()
}

/// Suppresses, for good, the addresses of recipients that hard-bounced
/// (5.1.x, 5.5.0: the mailbox does not exist), in the transaction that
/// records the bounce. A suppression without an end that already holds an
/// address stays as it is; one that would end becomes this one. Policy
/// refusals (5.7.x) are not the recipient's fault and suppress nothing.
fn bounce_suppressions(
    backend: DatabaseBackend,
    changed: &[(&AttemptResult, Status)],
) -> Option<Statement> {
    let mut seen = HashSet::new();
    let rows: Vec<suppressions::ActiveModel> = changed
        .iter()
        .filter(|(result, _)| matches!(result.outcome, Outcome::Bounced { hard: true }))
        .filter_map(|(result, _)| {
            let key = EmailAddress::key_of_stored(&result.claimed.email);
            // One row per address: PostgreSQL refuses to update a row twice
            // in one statement.
            seen.insert((result.claimed.account_id.clone(), key.clone()))
                .then(|| suppressions::ActiveModel {
                    account_id: Set(result.claimed.account_id.clone()),
                    email: Set(result.claimed.email.clone()),
                    email_key: Set(key),
                    reason: Set(SuppressionReason::Bounced.as_str().to_owned()),
                    origin: Set(SuppressionOrigin::Bounce.as_str().to_owned()),
                    message_id: Set(Some(result.claimed.message_id.clone())),
                    expires_at: Set(None),
                    created_at: Set(to_micros(result.attempted_at)),
                    ..Default::default()
                })
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(
        suppressions::Entity::insert_many(rows)
            .on_conflict(super::suppressions::for_good())
            .build(backend),
    )
}

/// The writes that follow the state updates: the attempt history, each
/// touched message's aggregate over all its recipients (`states`, read after
/// the updates) with its MIME the first time it was built, and one event
/// per changed recipient in cursor order.
fn later_writes(
    backend: DatabaseBackend,
    records: &[DeliveryRecord],
    changed: &[(&AttemptResult, Status)],
    states: BTreeMap<String, Vec<Status>>,
) -> Vec<Statement> {
    let mut writes: Vec<Statement> = Vec::new();
    // A recipient left out for its suppression was not attempted.
    let attempted: Vec<&AttemptResult> = changed
        .iter()
        .map(|(result, _)| *result)
        .filter(|result| result.outcome != Outcome::Suppressed)
        .collect();
    let mut attempt_rows = Rows::new("delivery_attempts", ATTEMPT_INSERT);
    for result in attempted {
        let remote = if result.reply.remote.is_empty() {
            result.transport.clone()
        } else {
            format!("{} {}", result.transport, result.reply.remote)
        };
        attempt_rows.push([
            Value::BigInt(Some(result.claimed.recipient_id)),
            Value::String(Some(result.claimed.message_id.clone())),
            Value::String(Some(outcome_name(&result.outcome).to_owned())),
            Value::Int((result.reply.code > 0).then_some(i32::from(result.reply.code))),
            Value::String(
                (!result.reply.enhanced.is_empty()).then(|| result.reply.enhanced.clone()),
            ),
            Value::String(Some(response_text(result))),
            Value::String(Some(remote)),
            Value::BigInt(Some(
                result.duration.as_micros().min(i64::MAX as u128) as i64
            )),
            Value::BigInt(Some(to_micros(result.attempted_at))),
        ]);
    }
    writes.extend(attempt_rows.statements(backend));
    let mut aggregates: HashMap<String, Status> = HashMap::new();
    for (message_id, statuses) in states {
        let status = aggregate(statuses);
        let record = records.iter().find(|r| r.message_id == message_id);
        let updated_at = record
            .into_iter()
            .flat_map(|r| &r.results)
            .map(|r| to_micros(r.attempted_at))
            .max()
            .unwrap_or_default();
        let raw: Option<Vec<u8>> = record.and_then(|r| r.raw_mime.clone());
        writes.push(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "UPDATE messages SET status = ?, updated_at = ?, \
                 raw_mime = COALESCE(raw_mime, ?) WHERE id = ?",
            ),
            [
                status.as_str().into(),
                updated_at.into(),
                raw.into(),
                message_id.as_str().into(),
            ],
        ));
        aggregates.insert(message_id, status);
    }

    writes.extend(bounce_suppressions(backend, changed));

    // One event per changed recipient, in cursor order.
    let mut event_rows = Rows::new("events", EVENT_INSERT);
    for (result, state) in changed {
        let reason = match (&result.outcome, state) {
            (Outcome::Deferred | Outcome::Ambiguous, Status::Failed) => "expired",
            (Outcome::Ambiguous, _) => "lease_expired",
            (Outcome::Bounced { hard: true }, _) => "hard_bounce",
            (Outcome::Bounced { hard: false }, _) => "soft_bounce",
            _ => "",
        };
        let details = match result.outcome {
            // No reply: what the event says is why nothing was tried.
            Outcome::Suppressed => EventDetails {
                reason: result.reply.text.clone(),
                ..Default::default()
            },
            _ => result.reply.details(reason),
        };
        let status = aggregates
            .get(&result.claimed.message_id)
            .copied()
            .unwrap_or(*state);
        event_rows.push([
            Value::String(Some(result.claimed.account_id.clone())),
            Value::String(Some(result.claimed.message_id.clone())),
            Value::String(Some(result.claimed.email.clone())),
            Value::String(Some(event_type(*state).as_str().to_owned())),
            Value::String(Some(status.as_str().to_owned())),
            Value::String(Some(
                serde_json::to_string(&details).expect("details serialise"),
            )),
            Value::BigInt(Some(to_micros(result.attempted_at))),
        ]);
    }
    writes.extend(event_rows.statements(backend));
    writes
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    use super::ATTEMPT_INSERT;
    use crate::storage::entities::delivery_attempts;

    #[test]
    fn a_record_writes_every_column_of_an_attempt_but_its_id() {
        // A column added to the table has to be written by a record.
        let left_out: Vec<&str> = delivery_attempts::Column::iter()
            .map(|c| c.as_str())
            .filter(|c| !ATTEMPT_INSERT.contains(c))
            .collect();
        assert_eq!(left_out, ["id"]);
    }
}
