//! The webhook outbox as the dispatcher and the delivery log see it. The
//! rows themselves are written by the trigger on `events` (migration 6).
//! Claims and records go through the writer (on SQLite its thread), like
//! the delivery queue's.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait, Value,
};

use super::delivery::placeholders;
use super::entities::{webhook_attempts, webhook_deliveries};
use super::{Store, db_error};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::paging::Keyset;
use crate::domain::webhook_deliveries::{
    DeliveryFilter, DeliveryStatus, Disabled, Due, EventPayload, LoggedAttempt, Next, Recorded,
    Room, WebhookDelivery, WebhookDeliveryStore, event_id,
};
use crate::domain::{Error, Result};

/// What a claimed delivery is sent with: its endpoint, secrets and event.
const DUE: &str = "SELECT d.id, d.webhook_id, d.attempts, w.url, w.secret, w.previous_secret, \
       w.previous_secret_expires_at, e.id, d.event_type, e.occurred_at, e.message_id, \
       e.recipient, e.status, e.details, m.tags, m.metadata \
     FROM webhook_deliveries d \
     JOIN webhooks w ON w.id = d.webhook_id \
     JOIN events e ON e.id = d.event_id \
     JOIN messages m ON m.id = e.message_id \
     WHERE d.id IN";

/// `(?, ?, …)` for `n` values.
fn list(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

fn statement(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

fn due_from(row: &sea_orm::QueryResult, now: i64) -> std::result::Result<Due, sea_orm::DbErr> {
    let get_text = |i: usize| row.try_get_by_index::<String>(i);
    let mut secrets = vec![get_text(4)?];
    let previous: Option<String> = row.try_get_by_index(5)?;
    let until: Option<i64> = row.try_get_by_index(6)?;
    if let (Some(previous), Some(until)) = (previous, until)
        && until > now
    {
        secrets.push(previous);
    }
    Ok(Due {
        id: get_text(0)?,
        webhook_id: get_text(1)?,
        failures: row.try_get_by_index(2)?,
        url: get_text(3)?,
        secrets,
        event: EventPayload {
            cursor: row.try_get_by_index(7)?,
            event_type: get_text(8)?,
            occurred_at: from_micros(row.try_get_by_index(9)?),
            message_id: get_text(10)?,
            recipient: get_text(11)?,
            status: get_text(12)?,
            details: get_text(13)?,
            tags: get_text(14)?,
            metadata: get_text(15)?,
        },
    })
}

fn disabled_from(row: &sea_orm::QueryResult) -> std::result::Result<Disabled, sea_orm::DbErr> {
    Ok(Disabled {
        webhook_id: row.try_get_by_index(0)?,
        account_id: row.try_get_by_index(1)?,
        reason: row.try_get_by_index(2)?,
    })
}

/// The statements that store one attempt and what follows it.
fn record_statements(
    backend: DatabaseBackend,
    record: &Recorded,
    disable_after: Duration,
) -> Vec<Statement> {
    let at = to_micros(record.attempted_at);
    let attempt = &record.attempt;
    let failures = record.failures;
    let (status, next_at, failures) = match record.next {
        Next::Succeeded => (DeliveryStatus::Succeeded, None, failures),
        Next::RetryAt(when) => (DeliveryStatus::Pending, Some(to_micros(when)), failures + 1),
        Next::Abandoned => (DeliveryStatus::Abandoned, None, failures + 1),
    };
    let mut statements = vec![
        // A delivery deleted with its endpoint meanwhile keeps no attempt.
        statement(
            backend,
            "INSERT INTO webhook_attempts (delivery_id, status_code, latency_us, error, \
               response_snippet, attempted_at) \
             SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = ?)",
            vec![
                record.delivery_id.clone().into(),
                i32::from(attempt.status_code).into(),
                i64::try_from(attempt.latency.as_micros())
                    .unwrap_or(i64::MAX)
                    .into(),
                attempt.error.clone().into(),
                attempt.snippet.clone().into(),
                at.into(),
                record.delivery_id.clone().into(),
            ],
        ),
        // Claimed again meanwhile (the lease ran out): the newer claim
        // decides the state.
        statement(
            backend,
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, \
               lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND lease_owner = ?",
            vec![
                status.as_str().into(),
                failures.into(),
                next_at.into(),
                at.into(),
                record.delivery_id.clone().into(),
                record.lease.clone().into(),
            ],
        ),
    ];
    let disable = |reason: String, condition: &str, extra: Vec<Value>| {
        let mut values: Vec<Value> = vec![
            false.into(),
            reason.into(),
            at.into(),
            record.webhook_id.clone().into(),
        ];
        values.extend(extra);
        statement(
            backend,
            &format!(
                "UPDATE webhooks SET active = ?, disabled_reason = ?, updated_at = ? \
                 WHERE id = ? AND active {condition} \
                 RETURNING id, account_id, disabled_reason"
            ),
            values,
        )
    };
    if record.next == Next::Succeeded {
        statements.push(statement(
            backend,
            "UPDATE webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL",
            vec![record.webhook_id.clone().into()],
        ));
    } else if let Some(reason) = record.gone() {
        statements.push(disable(reason, "", vec![]));
    } else {
        statements.push(statement(
            backend,
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
            vec![at.into(), record.webhook_id.clone().into()],
        ));
        let since = at - i64::try_from(disable_after.as_micros()).unwrap_or(i64::MAX);
        let days = disable_after.as_secs_f64() / 86_400.0;
        statements.push(disable(
            format!("no delivery succeeded for {days} days"),
            "AND failing_since <= ?",
            vec![since.into()],
        ));
    }
    statements
}

fn logged(m: webhook_attempts::Model) -> LoggedAttempt {
    LoggedAttempt {
        attempted_at: from_micros(m.attempted_at),
        status_code: u16::try_from(m.status_code).unwrap_or(0),
        latency: Duration::from_micros(u64::try_from(m.latency_us).unwrap_or(0)),
        error: m.error,
        snippet: m.response_snippet,
    }
}

impl Store {
    /// Runs `statements` in one transaction and returns the rows they
    /// return, as a driver's query results.
    async fn write_returning(&self, statements: Vec<Statement>) -> Result<Vec<QueryRow>> {
        if self.writer().get_database_backend() == DatabaseBackend::Sqlite {
            let rows = self.sqlite_writer().write(statements).await?;
            return Ok(rows.into_iter().map(QueryRow::Sqlite).collect());
        }
        let txn = self.writer().begin().await.map_err(db_error)?;
        let mut rows = Vec::new();
        for statement in statements {
            rows.extend(
                txn.query_all_raw(statement)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(QueryRow::Driver),
            );
        }
        txn.commit().await.map_err(db_error)?;
        Ok(rows)
    }

    /// A read-only transaction that sees one snapshot throughout: a
    /// delivery and its attempts are read by two queries, and a record
    /// committing between them must not show one without the other.
    async fn snapshot(&self) -> Result<sea_orm::DatabaseTransaction> {
        let (isolation, access) = match self.db().get_database_backend() {
            // SQLite's transactions read one snapshot and take no options.
            DatabaseBackend::Sqlite => (None, None),
            _ => (
                Some(sea_orm::IsolationLevel::RepeatableRead),
                Some(sea_orm::AccessMode::ReadOnly),
            ),
        };
        self.db()
            .begin_with_config(isolation, access)
            .await
            .map_err(db_error)
    }

    /// The deliveries `found`, with their attempts, in the order given.
    async fn deliveries_with_attempts(
        &self,
        db: &impl ConnectionTrait,
        found: Vec<webhook_deliveries::Model>,
    ) -> Result<Vec<WebhookDelivery>> {
        let ids: Vec<String> = found.iter().map(|d| d.id.clone()).collect();
        let mut attempts: HashMap<String, Vec<LoggedAttempt>> = HashMap::new();
        if !ids.is_empty() {
            for attempt in webhook_attempts::Entity::find()
                .filter(webhook_attempts::Column::DeliveryId.is_in(ids))
                .order_by_asc(webhook_attempts::Column::Id)
                .all(db)
                .await
                .map_err(db_error)?
            {
                attempts
                    .entry(attempt.delivery_id.clone())
                    .or_default()
                    .push(logged(attempt));
            }
        }
        found
            .into_iter()
            .map(|d| {
                let status = DeliveryStatus::parse(&d.status).ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("delivery {}: status {}", d.id, d.status))
                })?;
                Ok(WebhookDelivery {
                    attempts: attempts.remove(&d.id).unwrap_or_default(),
                    event_id: event_id(d.event_id),
                    next_attempt_at: (status == DeliveryStatus::Pending)
                        .then(|| d.next_attempt_at.map(from_micros))
                        .flatten(),
                    created_at: from_micros(d.created_at),
                    id: d.id,
                    webhook_id: d.webhook_id,
                    event_type: d.event_type,
                    status,
                })
            })
            .collect()
    }
}

/// A row from either the SQLite writer or the driver.
enum QueryRow {
    Sqlite(super::writer::Row),
    Driver(sea_orm::QueryResult),
}

impl QueryRow {
    fn disabled(&self) -> Result<Disabled> {
        match self {
            QueryRow::Sqlite(row) => Ok(Disabled {
                webhook_id: row.text(0)?,
                account_id: row.text(1)?,
                reason: row.text(2)?,
            }),
            QueryRow::Driver(row) => disabled_from(row).map_err(db_error),
        }
    }

    fn id(&self) -> Result<String> {
        match self {
            QueryRow::Sqlite(row) => row.text(0),
            QueryRow::Driver(row) => row.try_get_by_index(0).map_err(db_error),
        }
    }
}

impl WebhookDeliveryStore for Store {
    async fn claim_webhook_deliveries(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        room: &Room,
    ) -> Result<Vec<Due>> {
        let backend = self.writer().get_database_backend();
        let now = to_micros(now);
        // On SQLite, only events already on disk: a webhook never tells of
        // an event a power cut could still take back.
        let on_disk = self.live.as_ref().map_or(i64::MAX, |r| r.newest_on_disk());
        let full = room.full();
        let skip = if full.is_empty() {
            String::new()
        } else {
            format!("AND d.webhook_id NOT IN {}", list(full.len()))
        };
        let mut values: Vec<Value> = vec![now.into(), now.into(), on_disk.into()];
        values.extend(full.into_iter().map(Value::from));
        values.push((room.candidates() as i64).into());
        // Candidates are read on a reading connection: the dispatcher looks
        // after every commit that wrote events, most times finds none, and
        // that costs the writer nothing.
        let candidates = self
            .db()
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT d.id, d.webhook_id FROM webhook_deliveries d \
                     JOIN webhooks w ON w.id = d.webhook_id \
                     WHERE d.status = 'pending' AND d.next_attempt_at <= ? \
                       AND (d.lease_until IS NULL OR d.lease_until < ?) \
                       AND d.event_id <= ? AND w.active {skip} \
                     ORDER BY d.next_attempt_at LIMIT ?"
                ),
                values,
            ))
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
            .collect::<std::result::Result<Vec<(String, String)>, sea_orm::DbErr>>()
            .map_err(db_error)?;
        let picked = room.pick(candidates);
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        // Taken only if still due and free: another dispatcher may have
        // claimed one since it was read.
        let mut values: Vec<Value> = vec![lease.into(), to_micros(lease_until).into()];
        values.extend(picked.iter().map(|id| Value::from(id.clone())));
        values.extend([now.into()]);
        let claim = statement(
            backend,
            &format!(
                "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? \
                 WHERE id IN {} AND status = 'pending' \
                   AND (lease_until IS NULL OR lease_until < ?) \
                 RETURNING id",
                list(picked.len())
            ),
            values,
        );
        let ids = self
            .write_returning(vec![claim])
            .await?
            .iter()
            .map(QueryRow::id)
            .collect::<Result<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let read = statement(
            backend,
            &format!("{DUE} {}", list(ids.len())),
            ids.into_iter().map(Value::from).collect(),
        );
        let rows = self.db().query_all_raw(read).await.map_err(db_error)?;
        rows.iter()
            .map(|row| due_from(row, now).map_err(db_error))
            .collect()
    }

    async fn record_webhook_attempts(
        &self,
        records: Vec<Recorded>,
        disable_after: Duration,
    ) -> Result<Vec<Disabled>> {
        let backend = self.writer().get_database_backend();
        let statements = records
            .iter()
            .flat_map(|r| record_statements(backend, r, disable_after))
            .collect();
        self.write_returning(statements)
            .await?
            .iter()
            .map(QueryRow::disabled)
            .collect()
    }

    async fn list_webhook_deliveries(
        &self,
        account_id: &str,
        webhook_id: &str,
        filter: &DeliveryFilter,
        before: Option<Keyset>,
        limit: u64,
    ) -> Result<Vec<WebhookDelivery>> {
        use webhook_deliveries::Column;
        let mut query = webhook_deliveries::Entity::find()
            .filter(Column::AccountId.eq(account_id))
            .filter(Column::WebhookId.eq(webhook_id));
        if let Some(status) = filter.status {
            query = query.filter(Column::Status.eq(status.as_str()));
        }
        if let Some(event_type) = &filter.event_type {
            query = query.filter(Column::EventType.eq(event_type.as_str()));
        }
        if let Some(Keyset { at, id }) = before {
            query = query.filter(super::past_key(
                (Column::CreatedAt, Column::Id),
                at,
                id,
                false,
            ));
        }
        let snapshot = self.snapshot().await?;
        let found = query
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        self.deliveries_with_attempts(&snapshot, found).await
    }

    async fn replay_webhook_delivery(
        &self,
        account_id: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookDelivery>> {
        use webhook_deliveries::Column;
        let now = to_micros(now);
        let replayed = webhook_deliveries::Entity::update_many()
            .col_expr(
                Column::Status,
                Expr::value(DeliveryStatus::Pending.as_str()),
            )
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::NextAttemptAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(delivery_id))
            .filter(Column::WebhookId.eq(webhook_id))
            .filter(Column::AccountId.eq(account_id))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        if replayed.rows_affected == 0 {
            return Ok(None);
        }
        // Wakes the dispatcher, which waits for committed events.
        self.wake_workers();
        let snapshot = self.snapshot().await?;
        let found = webhook_deliveries::Entity::find_by_id(delivery_id)
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        Ok(self.deliveries_with_attempts(&snapshot, found).await?.pop())
    }
}
