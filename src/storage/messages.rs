//! Messages, their recipients (the delivery queue), attachments, events and
//! idempotency records: the group-commit transaction of the accept path and
//! the read and control side.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend,
    DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
    Value,
};
use serde_json::{Map, Value as Json};

use super::entities::{
    attachments, daily_usage, events, idempotency_keys, message_tags, messages, recipients,
};
use super::{Store, db_error};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::messages::{
    ChangeOutcome, Engagement, Event, EventDetails, EventType, Message, MessageCursor,
    MessageFilter, MessageStore, Recipient, RecipientKind, Status, StoredAttachment, TemplateRef,
};
use crate::domain::send::commit::{AcceptStore, CommitJob, IdempotencyRecord, JobOutcome};
use crate::domain::suppressions::Suppression;
use crate::domain::watch::{EventStore, Live, WatchFilter};
use crate::domain::{Durable, Error, Result};

/// Rows per multi-row INSERT: well under SQLite's 32,766 and PostgreSQL's
/// 65,535 bind parameters for the widest table.
pub(super) const ROWS_PER_INSERT: usize = 400;

fn corrupt(what: &str, id: &str) -> Error {
    Error::Internal(anyhow::anyhow!("stored {what} of {id} is unreadable"))
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("strings serialise")
}

fn json_pairs(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).expect("strings serialise")
}

fn message_from(m: messages::Model) -> Result<Message> {
    let list = |text: &str, what: &str| -> Result<Vec<String>> {
        serde_json::from_str(text).map_err(|_| corrupt(what, &m.id))
    };
    let pairs = |text: &str, what: &str| -> Result<Vec<(String, String)>> {
        serde_json::from_str(text).map_err(|_| corrupt(what, &m.id))
    };
    let template = match (&m.template_slug, m.template_version) {
        (Some(slug), Some(version)) => Some(TemplateRef {
            slug: slug.clone(),
            version,
            variables: match &m.variables {
                Some(text) => serde_json::from_str::<Map<String, Json>>(text)
                    .map_err(|_| corrupt("variables", &m.id))?,
                None => Map::new(),
            },
        }),
        _ => None,
    };
    Ok(Message {
        status: Status::parse(&m.status).ok_or_else(|| corrupt("status", &m.id))?,
        to: list(&m.to_addrs, "to")?,
        cc: list(&m.cc_addrs, "cc")?,
        bcc: list(&m.bcc_addrs, "bcc")?,
        reply_to: list(&m.reply_to, "reply_to")?,
        tags: list(&m.tags, "tags")?,
        headers: pairs(&m.headers, "headers")?,
        metadata: pairs(&m.metadata, "metadata")?,
        template,
        id: m.id,
        account_id: m.account_id,
        from_email: m.from_email,
        from_name: m.from_name,
        subject: m.subject,
        html: m.html.unwrap_or_default(),
        text: m.text_body.unwrap_or_default(),
        message_id_header: m.message_id_header,
        track_opens: m.track_opens,
        track_clicks: m.track_clicks,
        unsubscribe: m.unsubscribe,
        test_mode: m.test_mode,
        size_bytes: m.size_bytes,
        resent_from: m.resent_from,
        idempotency_key: m.idempotency_key,
        scheduled_at: m.scheduled_at.map(from_micros),
        created_at: from_micros(m.created_at),
        updated_at: from_micros(m.updated_at),
        recipients: Vec::new(),
        attachments: Vec::new(),
        events: Vec::new(),
    })
}

fn recipient_from(r: recipients::Model) -> Result<Recipient> {
    let id = r.message_id.clone();
    Ok(Recipient {
        kind: RecipientKind::parse(&r.kind).ok_or_else(|| corrupt("recipient kind", &id))?,
        status: Status::parse(&r.state).ok_or_else(|| corrupt("recipient state", &id))?,
        email: r.email,
        name: r.name,
        attempts: r.attempts,
        last_response: r.last_response.unwrap_or_default(),
        next_attempt_at: r.next_attempt_at.map(from_micros),
        updated_at: from_micros(r.updated_at),
        engagement: Engagement {
            first_opened_at: r.first_opened_at.map(from_micros),
            open_count: r.open_count,
            first_clicked_at: r.first_clicked_at.map(from_micros),
            click_count: r.click_count,
        },
    })
}

pub(super) fn event_from(e: events::Model) -> Result<Event> {
    let id = e.message_id.clone();
    Ok(Event {
        event_type: EventType::parse(&e.event_type).ok_or_else(|| corrupt("event type", &id))?,
        status: Status::parse(&e.status).ok_or_else(|| corrupt("event status", &id))?,
        details: serde_json::from_str::<EventDetails>(&e.details)
            .map_err(|_| corrupt("event details", &id))?,
        cursor: e.id,
        message_id: e.message_id,
        recipient: e.recipient,
        occurred_at: from_micros(e.occurred_at),
    })
}

fn record_from(m: idempotency_keys::Model) -> IdempotencyRecord {
    IdempotencyRecord {
        account_id: m.account_id,
        key: m.idempotency_key,
        method: m.method,
        fingerprint: m.fingerprint,
        response: m.response.unwrap_or_default(),
        created_at: from_micros(m.created_at),
        expires_at: from_micros(m.expires_at),
    }
}

/// The state every stored idempotency record is written with: its
/// response is stored in the same transaction as the claim.
const KEY_STATE: &str = "complete";

/// The stored row of an idempotency record.
pub(super) fn key_row(r: &IdempotencyRecord) -> idempotency_keys::ActiveModel {
    idempotency_keys::ActiveModel {
        account_id: Set(r.account_id.clone()),
        idempotency_key: Set(r.key.clone()),
        method: Set(r.method.clone()),
        fingerprint: Set(r.fingerprint.clone()),
        state: Set(KEY_STATE.into()),
        response: Set(Some(r.response.clone())),
        created_at: Set(to_micros(r.created_at)),
        expires_at: Set(to_micros(r.expires_at)),
    }
}

/// The columns of an idempotency record as an accept's claim writes them.
pub(super) const KEY_INSERT: [&str; 8] = [
    "account_id",
    "idempotency_key",
    "method",
    "fingerprint",
    "state",
    "response",
    "created_at",
    "expires_at",
];

/// The row of an idempotency record, in the order of [`KEY_INSERT`].
pub(super) fn key_values(r: &IdempotencyRecord) -> [Value; 8] {
    [
        text(&r.account_id),
        text(&r.key),
        text(&r.method),
        text(&r.fingerprint),
        text(KEY_STATE),
        Value::Bytes(Some(r.response.clone())),
        big(to_micros(r.created_at)),
        big(to_micros(r.expires_at)),
    ]
}

/// Claims the jobs' idempotency keys: inserts each, or takes over a record
/// that expired. Returns the jobs whose key another live record holds.
async fn claim_keys(tx: &DatabaseTransaction, jobs: &[CommitJob]) -> Result<HashSet<usize>> {
    let claims: Vec<(usize, &IdempotencyRecord)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| j.idempotency.as_ref().map(|r| (i, r)))
        .collect();
    if claims.is_empty() {
        return Ok(HashSet::new());
    }
    let mut claimed: HashSet<(String, String)> = HashSet::new();
    for chunk in claims.chunks(ROWS_PER_INSERT) {
        let rows = chunk.iter().map(|(_, r)| key_row(r));
        let on_conflict = OnConflict::columns([
            idempotency_keys::Column::AccountId,
            idempotency_keys::Column::IdempotencyKey,
        ])
        .update_columns([
            idempotency_keys::Column::Method,
            idempotency_keys::Column::Fingerprint,
            idempotency_keys::Column::State,
            idempotency_keys::Column::Response,
            idempotency_keys::Column::CreatedAt,
            idempotency_keys::Column::ExpiresAt,
        ])
        .action_and_where(
            Expr::col((
                idempotency_keys::Entity,
                idempotency_keys::Column::ExpiresAt,
            ))
            .lte(Expr::cust("excluded.created_at")),
        )
        .to_owned();
        let inserted = idempotency_keys::Entity::insert_many(rows)
            .on_conflict(on_conflict)
            .try_insert()
            .exec_with_returning_many(tx)
            .await
            .map_err(db_error)?;
        if let sea_orm::TryInsertResult::Inserted(models) = inserted {
            claimed.extend(
                models
                    .into_iter()
                    .map(|m| (m.account_id, m.idempotency_key)),
            );
        }
    }
    Ok(claims
        .into_iter()
        .filter(|(_, r)| !claimed.contains(&(r.account_id.clone(), r.key.clone())))
        .map(|(i, _)| i)
        .collect())
}

/// The address keys of the chosen jobs' recipients still to check against
/// their account's suppression list, per account (each key once), with
/// the earliest time one of its jobs was accepted.
pub(super) fn unchecked_by_account(
    jobs: &[CommitJob],
    chosen: impl Fn(usize) -> bool,
) -> Vec<(&str, Vec<String>, DateTime<Utc>)> {
    let mut accounts: Vec<(&str, Vec<String>, DateTime<Utc>)> = Vec::new();
    for (_, job) in jobs.iter().enumerate().filter(|(i, _)| chosen(*i)) {
        let index = match accounts.iter().position(|(a, ..)| *a == job.account_id) {
            Some(index) => index,
            None => {
                accounts.push((job.account_id.as_str(), Vec::new(), job.accepted_at));
                accounts.len() - 1
            }
        };
        let (_, keys, at) = &mut accounts[index];
        keys.extend(job.unchecked_keys());
        *at = Ord::min(*at, job.accepted_at);
    }
    for (_, keys, _) in &mut accounts {
        keys.sort_unstable();
        keys.dedup();
    }
    accounts
}

/// The jobs (not in `skip`) with recipients on their account's suppression
/// list, with those suppressions by address key: read in the transaction
/// that stores the others, so a suppression committed before it applies.
async fn suppressed_jobs(
    tx: &DatabaseTransaction,
    jobs: &[CommitJob],
    skip: &HashSet<usize>,
) -> Result<HashMap<usize, HashMap<String, Suppression>>> {
    let mut found = HashMap::new();
    for (account_id, keys, at) in unchecked_by_account(jobs, |i| !skip.contains(&i)) {
        found.insert(
            account_id,
            super::suppressions::suppressed_in(tx, account_id, &keys, at).await?,
        );
    }
    let mut suppressed = HashMap::new();
    // A skipped job is left out here too: its key belongs to another
    // request, which giving the claim back would delete.
    for (i, job) in jobs.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
        let Some(list) = found.get(job.account_id.as_str()) else {
            continue;
        };
        let hits: HashMap<String, Suppression> = job
            .unchecked_keys()
            .filter_map(|key| list.get(&key).map(|s| (key, s.clone())))
            .collect();
        if !hits.is_empty() {
            suppressed.insert(i, hits);
        }
    }
    Ok(suppressed)
}

/// Counts the jobs' recipients against each account's quota for the day.
/// Returns the jobs that do not fit, with the quota they exceed, and the
/// statements that record the new usage.
///
/// One statement per account and day makes sure the usage row exists, takes
/// its lock (PostgreSQL's upsert locks the row to the end of the
/// transaction; SQLite's writer holds the database) and reads both the
/// usage and the account's own quota, so a changed quota applies at once.
/// (On SQLite the transaction holds the write lock from its start: see
/// `storage::begin_writing`.)
async fn count_quota(
    tx: &DatabaseTransaction,
    jobs: &[CommitJob],
    skip: &HashSet<usize>,
) -> Result<(HashMap<usize, u64>, Vec<Statement>)> {
    let mut accounts: Vec<(&str, i64)> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if !skip.contains(&i) && !accounts.contains(&(job.account_id.as_str(), job.day)) {
            accounts.push((job.account_id.as_str(), job.day));
        }
    }
    // One order for every transaction, so two that count the same
    // accounts (batches of one process, or of several) lock their usage
    // rows in the same order and never wait for each other in a circle.
    accounts.sort_unstable();
    let backend = tx.get_database_backend();
    let read_usage = match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO daily_usage (account_id, day, recipients) VALUES ($1, $2, 0) \
             ON CONFLICT (account_id, day) DO UPDATE SET recipients = daily_usage.recipients \
             RETURNING recipients, (SELECT daily_quota FROM accounts WHERE id = $1) AS own_quota"
        }
        _ => {
            "INSERT INTO daily_usage (account_id, day, recipients) VALUES (?1, ?2, 0) \
             ON CONFLICT (account_id, day) DO UPDATE SET recipients = daily_usage.recipients \
             RETURNING recipients, (SELECT daily_quota FROM accounts WHERE id = ?1) AS own_quota"
        }
    };
    let mut over = HashMap::new();
    let mut writes = Vec::new();
    for (account_id, day) in accounts {
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                read_usage,
                [account_id.into(), day.into()],
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the usage upsert returned no row")))?;
        let recipients: i64 = row.try_get("", "recipients").map_err(db_error)?;
        let own: Option<i64> = row.try_get("", "own_quota").map_err(db_error)?;
        let mut used = Ord::max(recipients, 0) as u64;
        let before = used;
        for (i, job) in jobs.iter().enumerate() {
            if skip.contains(&i) || job.account_id != account_id || job.day != day {
                continue;
            }
            let wanted = job.recipients();
            match quota_of(own, job.daily_quota) {
                Some(quota) if used + wanted > quota => {
                    over.insert(i, quota);
                }
                _ => used += wanted,
            }
        }
        if used != before {
            writes.push(
                daily_usage::Entity::update_many()
                    .col_expr(daily_usage::Column::Recipients, Expr::value(used as i64))
                    .filter(daily_usage::Column::AccountId.eq(account_id))
                    .filter(daily_usage::Column::Day.eq(day))
                    .build(backend),
            );
        }
    }
    Ok((over, writes))
}

/// Rows for a table's multi-row INSERTs, written out directly. Building
/// them as ActiveModels through sea-query's builder cloned every value
/// twice and wrote the statement's text again for every batch: 4 % of the
/// server's instructions in a B5 leg under callgrind.
pub(super) struct Rows<const N: usize> {
    table: &'static str,
    columns: [&'static str; N],
    /// Written after the VALUES list (an ON CONFLICT or RETURNING clause).
    tail: &'static str,
    values: Vec<Value>,
}

/// Statements of at most this many rows keep their text per thread: at
/// half load most batches carry one or two accepts, and writing the same
/// INSERTs out again for each took 2.8 % of the CPU samples of B1's bench
/// process paced at 3,500/s.
const KEPT_TEXT_ROWS: usize = 16;

/// Which INSERT a kept text is: table, tail, row count and whether for
/// PostgreSQL.
type TextKey = (&'static str, &'static str, usize, bool);

thread_local! {
    /// The text of the INSERTs written on this thread, with the columns it
    /// names (bounded: a handful of tables and tails, [`KEPT_TEXT_ROWS`]
    /// row counts each).
    static INSERT_TEXT: std::cell::RefCell<HashMap<TextKey, (Vec<&'static str>, String)>> =
        std::cell::RefCell::new(HashMap::new());
}

impl<const N: usize> Rows<N> {
    pub(super) fn new(table: &'static str, columns: [&'static str; N]) -> Self {
        Rows::with_tail(table, columns, "")
    }

    /// Rows whose INSERTs end with `tail`.
    pub(super) fn with_tail(
        table: &'static str,
        columns: [&'static str; N],
        tail: &'static str,
    ) -> Self {
        Rows {
            table,
            columns,
            tail,
            values: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: [Value; N]) {
        self.values.extend(row);
    }

    /// The INSERTs, [`ROWS_PER_INSERT`] rows each.
    pub(super) fn statements(self, backend: DatabaseBackend) -> Vec<Statement> {
        let postgres = backend == DatabaseBackend::Postgres;
        let mut values = self.values.into_iter();
        let mut statements = Vec::new();
        while values.len() > 0 {
            let chunk: Vec<Value> = values.by_ref().take(N * ROWS_PER_INSERT).collect();
            let rows = chunk.len() / N;
            let written = || insert_text(self.table, &self.columns, self.tail, rows, postgres);
            let sql = if rows <= KEPT_TEXT_ROWS {
                INSERT_TEXT.with_borrow_mut(|kept| {
                    let (columns, text) = kept
                        .entry((self.table, self.tail, rows, postgres))
                        .or_default();
                    // Kept for other columns of the same table: written anew.
                    if *columns != self.columns {
                        *columns = self.columns.to_vec();
                        *text = written();
                    }
                    text.clone()
                })
            } else {
                written()
            };
            statements.push(Statement::from_sql_and_values(backend, sql, chunk));
        }
        statements
    }
}

/// The text of an INSERT of `rows` rows of `columns` into `table`, ending
/// with `tail`; PostgreSQL's parameters numbered, SQLite's not.
fn insert_text(table: &str, columns: &[&str], tail: &str, rows: usize, postgres: bool) -> String {
    let n = columns.len();
    let mut sql = format!("INSERT INTO \"{table}\" (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "\"{column}\"");
    }
    sql.push_str(") VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..n {
            if column > 0 {
                sql.push_str(", ");
            }
            if postgres {
                let _ = write!(sql, "${}", row * n + column + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// The columns an accept writes: every column of a message
/// ([`MESSAGE_COLUMNS`], which its reader reads); of the others, all but
/// those that keep their defaults (a new recipient has not been opened or
/// clicked yet) and the ids of recipients and events, the database's.
const RECIPIENT_INSERT: [&str; 13] = [
    "message_id",
    "account_id",
    "email",
    "name",
    "kind",
    "state",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "attempts",
    "last_response",
    "created_at",
    "updated_at",
];
pub(super) const EVENT_INSERT: [&str; 7] = [
    "account_id",
    "message_id",
    "recipient",
    "event_type",
    "status",
    "details",
    "occurred_at",
];
const TAG_INSERT: [&str; 4] = ["message_id", "tag", "account_id", "created_at"];

fn text(s: &str) -> Value {
    Value::String(Some(s.to_owned()))
}

fn maybe_text(s: Option<&str>) -> Value {
    Value::String(s.map(str::to_owned))
}

fn big(n: i64) -> Value {
    Value::BigInt(Some(n))
}

/// A message's row, in the order of [`MESSAGE_COLUMNS`].
fn message_values(m: &Message) -> [Value; MESSAGE_COLUMNS.len()] {
    let template = m.template.as_ref();
    [
        text(&m.id),
        text(&m.account_id),
        text(m.status.as_str()),
        text(&m.from_email),
        text(&m.from_name),
        Value::String(Some(json_list(&m.to))),
        Value::String(Some(json_list(&m.cc))),
        Value::String(Some(json_list(&m.bcc))),
        Value::String(Some(json_list(&m.reply_to))),
        text(&m.subject),
        text(&m.html),
        text(&m.text),
        maybe_text(template.map(|t| t.slug.as_str())),
        Value::Int(template.map(|t| t.version)),
        Value::String(template.map(|t| Json::Object(t.variables.clone()).to_string())),
        Value::String(Some(json_pairs(&m.headers))),
        Value::String(Some(json_list(&m.tags))),
        Value::String(Some(json_pairs(&m.metadata))),
        text(&m.message_id_header),
        Value::Bool(Some(m.track_opens)),
        Value::Bool(Some(m.track_clicks)),
        Value::Bool(Some(m.unsubscribe)),
        Value::Bool(Some(m.test_mode)),
        big(m.size_bytes),
        Value::Bytes(None),
        maybe_text(m.resent_from.as_deref()),
        maybe_text(m.idempotency_key.as_deref()),
        Value::BigInt(m.scheduled_at.map(to_micros)),
        big(to_micros(m.created_at)),
        big(to_micros(m.updated_at)),
    ]
}

/// An event's row, in the order of [`EVENT_INSERT`].
fn event_values(account_id: &str, e: &Event) -> [Value; 7] {
    [
        text(account_id),
        text(&e.message_id),
        text(&e.recipient),
        text(e.event_type.as_str()),
        text(e.status.as_str()),
        Value::String(Some(
            serde_json::to_string(&e.details).expect("details serialise"),
        )),
        big(to_micros(e.occurred_at)),
    ]
}

/// The INSERTs that store the jobs `stored` selects: messages, recipients
/// (the queue), attachments, first events and tags, in that order.
pub(super) fn job_inserts(
    backend: DatabaseBackend,
    jobs: &[CommitJob],
    stored: impl Fn(usize) -> bool,
) -> Vec<Statement> {
    let mut message_rows = Rows::new("messages", MESSAGE_COLUMNS);
    let mut recipient_rows = Rows::new("recipients", RECIPIENT_INSERT);
    let mut event_rows = Rows::new("events", EVENT_INSERT);
    let mut tag_rows = Rows::new("message_tags", TAG_INSERT);
    let mut attachment_rows = Vec::new();
    for job in jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| stored(i).then_some(job))
    {
        for m in &job.messages {
            message_rows.push(message_values(m));
            for r in &m.recipients {
                recipient_rows.push([
                    text(&m.id),
                    text(&m.account_id),
                    text(&r.email),
                    text(&r.name),
                    text(r.kind.as_str()),
                    text(r.status.as_str()),
                    Value::BigInt(r.next_attempt_at.map(to_micros)),
                    Value::String(None),
                    Value::BigInt(None),
                    Value::Int(Some(r.attempts)),
                    Value::String(None),
                    big(to_micros(m.created_at)),
                    big(to_micros(r.updated_at)),
                ]);
            }
            for a in &m.attachments {
                attachment_rows.push(attachments::ActiveModel {
                    message_id: Set(m.id.clone()),
                    filename: Set(a.filename.clone()),
                    content_type: Set(a.content_type.clone()),
                    content_id: Set(a.content_id.clone()),
                    size_bytes: Set(a.size_bytes),
                    content: Set(a.content.clone()),
                    ..Default::default()
                });
            }
            for e in &m.events {
                event_rows.push(event_values(&m.account_id, e));
            }
            let mut seen = HashSet::new();
            for tag in m.tags.iter().filter(|t| seen.insert(t.as_str())) {
                tag_rows.push([
                    text(&m.id),
                    text(tag),
                    text(&m.account_id),
                    big(to_micros(m.created_at)),
                ]);
            }
        }
    }
    let mut statements = message_rows.statements(backend);
    statements.extend(recipient_rows.statements(backend));
    // Attachments can be megabytes each: one per statement.
    statements.extend(
        attachment_rows
            .into_iter()
            .map(|row| attachments::Entity::insert(row).build(backend)),
    );
    // Events last, after PostgreSQL's ordering lock, so it is held as
    // briefly as possible.
    statements.extend(super::delivery::event_order_lock(backend));
    statements.extend(event_rows.statements(backend));
    statements.extend(tag_rows.statements(backend));
    statements
}

/// The daily quota that applies: the account's own (`Some(0)` is an
/// account without a limit), else the server's `default`.
pub(super) fn quota_of(own: Option<i64>, default: Option<u64>) -> Option<u64> {
    match own {
        Some(0) => None,
        Some(n) => Some(Ord::max(n, 0) as u64),
        None => default,
    }
}

/// Runs `statements` in order. SQLite takes them as one multi-statement
/// query: one hop to the driver's worker thread instead of one each, which
/// is most of what a small group commit costs. PostgreSQL's extended
/// protocol takes one statement at a time.
pub(super) async fn execute_all(
    tx: &DatabaseTransaction,
    statements: Vec<Statement>,
) -> Result<()> {
    let backend = tx.get_database_backend();
    if backend != DatabaseBackend::Sqlite {
        for statement in statements {
            tx.execute_raw(statement).await.map_err(db_error)?;
        }
        return Ok(());
    }
    for (sql, values) in joined(statements) {
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            sql,
            values,
        ))
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// Joins SQLite `statements` into multi-statement queries with their
/// values. SQLite binds at most 32,766 parameters per statement, not per
/// query, so statements are joined while the text stays reasonable; large
/// values (attachments) make a query of their own. Only positional `?`
/// parameters join: a numbered one would index the whole query's values.
fn joined(statements: Vec<Statement>) -> Vec<(String, Vec<sea_orm::Value>)> {
    let mut queries = Vec::new();
    let mut sql = String::new();
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut bytes = 0usize;
    for statement in statements {
        let size = statement.sql.len()
            + statement
                .values
                .as_ref()
                .map_or(0, |v| v.0.iter().map(value_size).sum());
        if !sql.is_empty() && bytes + size > JOINED_QUERY_BYTES {
            queries.push((std::mem::take(&mut sql), std::mem::take(&mut values)));
            bytes = 0;
        }
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.map(|v| v.0).unwrap_or_default());
        bytes += size;
    }
    if !sql.is_empty() {
        queries.push((sql, values));
    }
    queries
}

/// Past this many bytes of SQL and values a joined query is sent and a new
/// one begun.
const JOINED_QUERY_BYTES: usize = 4 << 20;

fn value_size(value: &sea_orm::Value) -> usize {
    match value {
        sea_orm::Value::String(Some(s)) => s.len(),
        sea_orm::Value::Bytes(Some(b)) => b.len(),
        _ => 8,
    }
}

/// The queries for the recipients and attachments of the messages `ids`,
/// in id order.
fn parts_of(
    ids: Vec<String>,
) -> (
    sea_orm::Select<recipients::Entity>,
    sea_orm::Select<attachments::Entity>,
) {
    (
        recipients::Entity::find()
            .filter(recipients::Column::MessageId.is_in(ids.clone()))
            .order_by_asc(recipients::Column::Id),
        attachments::Entity::find()
            .filter(attachments::Column::MessageId.is_in(ids))
            .order_by_asc(attachments::Column::Id),
    )
}

/// Gives each of `messages` its recipients and attachments.
fn attach(
    messages: &mut [Message],
    recipients: Vec<recipients::Model>,
    attachments: impl IntoIterator<Item = (String, StoredAttachment)>,
) -> Result<()> {
    let index: HashMap<String, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    for row in recipients {
        if let Some(&i) = index.get(&row.message_id) {
            messages[i].recipients.push(recipient_from(row)?);
        }
    }
    for (message_id, attachment) in attachments {
        if let Some(&i) = index.get(&message_id) {
            messages[i].attachments.push(attachment);
        }
    }
    Ok(())
}

/// A stored attachment row, with the message it belongs to.
fn stored(row: attachments::Model) -> (String, StoredAttachment) {
    let attachment = StoredAttachment {
        filename: row.filename,
        content_type: row.content_type,
        content_id: row.content_id,
        size_bytes: row.size_bytes,
        content: row.content,
    };
    (row.message_id, attachment)
}

/// A reader of a model from a row on the SQLite writer, and the names of
/// the columns it reads: each field from the column at its position, so
/// the fields are listed in the order `Entity::find` selects them (a test
/// compares the two). Looking every field's column up by its name compared
/// the names of all the columns before it, for every row: about 6 % of the
/// writer thread's time in a `perf` profile of a B5 leg, and a sixth of its
/// instructions under callgrind.
macro_rules! model_reader {
    ($reader:ident, $columns:ident, $($model:ident)::+ { $($field:ident),* $(,)? }) => {
        #[cfg_attr(not(test), allow(dead_code))] // Only tests read some.
        const $columns: [&str; [$(stringify!($field)),*].len()] = [$(stringify!($field)),*];

        fn $reader(row: &rusqlite::Row<'_>) -> rusqlite::Result<$($model)::+> {
            // The fields are read in the order written.
            let mut column = 0;
            let mut next = || {
                column += 1;
                column - 1
            };
            Ok($($model)::+ { $($field: row.get(next())?),* })
        }
    };
}

model_reader!(
    message_model,
    MESSAGE_COLUMNS,
    messages::Model {
        id,
        account_id,
        status,
        from_email,
        from_name,
        to_addrs,
        cc_addrs,
        bcc_addrs,
        reply_to,
        subject,
        html,
        text_body,
        template_slug,
        template_version,
        variables,
        headers,
        tags,
        metadata,
        message_id_header,
        track_opens,
        track_clicks,
        unsubscribe,
        test_mode,
        size_bytes,
        raw_mime,
        resent_from,
        idempotency_key,
        scheduled_at,
        created_at,
        updated_at,
    }
);

model_reader!(
    recipient_model,
    RECIPIENT_COLUMNS,
    recipients::Model {
        id,
        message_id,
        account_id,
        email,
        name,
        kind,
        state,
        next_attempt_at,
        lease_owner,
        lease_until,
        attempts,
        last_response,
        created_at,
        updated_at,
        first_opened_at,
        open_count,
        first_clicked_at,
        click_count,
    }
);

model_reader!(
    attachment_model,
    ATTACHMENT_COLUMNS,
    attachments::Model {
        id,
        message_id,
        filename,
        content_type,
        content_id,
        size_bytes,
        content,
    }
);

impl Store {
    /// A transaction for a change that reads before it writes (cancel,
    /// reschedule, an accept batch decided job by job): on SQLite on the
    /// driver's writer connection during the writer thread's turn, holding
    /// the write lock from its start (see [`super::begin_writing`]), so no
    /// other writer can commit between what its statements read and what
    /// they write.
    async fn change_transaction(
        &self,
    ) -> Result<(Option<tokio::sync::MutexGuard<'_, ()>>, DatabaseTransaction)> {
        let turn = match &self.sqlite_writer {
            Some(writer) => Some(writer.turn().await),
            None => None,
        };
        let tx = super::begin_writing(self.writer()).await?;
        Ok((turn, tx))
    }

    /// Ends a change: gives the writer thread its turn back, waits until
    /// the commit is on disk (the writer's connection does not flush it
    /// itself), and hands the event to watchers and workers.
    async fn after_change(&self, turn: Option<tokio::sync::MutexGuard<'_, ()>>) -> Result<()> {
        drop(turn);
        self.durable().await?;
        self.events_written();
        Ok(())
    }

    /// The accept transaction decided job by job: claims the keys, counts
    /// each job against its quota, then stores the jobs that may be.
    async fn commit_job_by_job(&self, jobs: &[CommitJob]) -> Result<Vec<JobOutcome>> {
        // On SQLite, the writer thread waits meanwhile (see `writer`).
        let (_turn, tx) = self.change_transaction().await?;
        let backend = tx.get_database_backend();
        let taken = claim_keys(&tx, jobs).await?;
        let mut suppressed = suppressed_jobs(&tx, jobs, &taken).await?;
        let mut skip = taken.clone();
        skip.extend(suppressed.keys());
        let (over, mut statements) = count_quota(&tx, jobs, &skip).await?;
        // Jobs not stored give their fresh key claims back.
        for i in over.keys().chain(suppressed.keys()) {
            if let Some(record) = &jobs[*i].idempotency {
                statements.push(
                    idempotency_keys::Entity::delete_many()
                        .filter(idempotency_keys::Column::AccountId.eq(record.account_id.as_str()))
                        .filter(idempotency_keys::Column::IdempotencyKey.eq(record.key.as_str()))
                        .build(backend),
                );
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for i in 0..jobs.len() {
            outcomes.push(if taken.contains(&i) {
                JobOutcome::KeyTaken
            } else if let Some(found) = suppressed.remove(&i) {
                JobOutcome::Suppressed(found)
            } else if let Some(quota) = over.get(&i) {
                JobOutcome::OverQuota(*quota)
            } else {
                JobOutcome::Committed
            });
        }
        statements.extend(job_inserts(backend, jobs, |i| {
            outcomes[i] == JobOutcome::Committed
        }));
        execute_all(&tx, statements).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcomes)
    }
}

impl AcceptStore for Store {
    async fn commit_jobs(&self, jobs: &[CommitJob]) -> Result<(Vec<JobOutcome>, Durable)> {
        let outcomes = match self.writer().get_database_backend() {
            DatabaseBackend::Sqlite => match self.commit_at_once(jobs).await? {
                // Answered once durable already (see `writer::gather`).
                Some(outcomes) => return Ok((outcomes, Box::pin(std::future::ready(Ok(()))))),
                None => {
                    let outcomes = self.commit_job_by_job(jobs).await?;
                    // Not the writer thread's commit: it has to be told.
                    self.events_written();
                    outcomes
                }
            },
            _ => self.commit_job_by_job(jobs).await?,
        };
        // The ticket is taken now, after the COMMIT: the flush it waits for
        // covers this transaction.
        Ok((outcomes, self.events_durable()))
    }

    async fn idempotency_record(
        &self,
        account_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let record = idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::AccountId.eq(account_id))
            .filter(idempotency_keys::Column::IdempotencyKey.eq(key))
            .filter(idempotency_keys::Column::ExpiresAt.gt(to_micros(now)))
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(record_from);
        // A record read here may come from a commit whose callers are still
        // waiting for its flush: it is replayed only once durable.
        if record.is_some() {
            self.durable().await?;
        }
        Ok(record)
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64> {
        let result = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::ExpiresAt.lte(to_micros(now)))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }
}

impl Store {
    /// The messages `ids` with their recipients and attachment contents,
    /// for delivery (three queries however many).
    pub(super) async fn load_for_delivery(&self, ids: &[String]) -> Result<Vec<Message>> {
        let found =
            messages::Entity::find().filter(messages::Column::Id.is_in(ids.iter().cloned()));
        if let Some(writer) = &self.sqlite_writer {
            // On SQLite the writer reads them: it wrote them moments ago, so
            // its page cache holds them, where a pooled connection would
            // start with an emptied cache.
            let backend = DatabaseBackend::Sqlite;
            let (found, parts) = (found.build(backend), parts_of(ids.to_vec()));
            let (recipients, attachments) = (parts.0.build(backend), parts.1.build(backend));
            let (rows, recipients, attachments) = writer
                .read(move |s| {
                    Ok((
                        s.query(&found, message_model)?,
                        s.query(&recipients, recipient_model)?,
                        s.query(&attachments, attachment_model)?,
                    ))
                })
                .await?;
            let mut list = rows
                .into_iter()
                .map(message_from)
                .collect::<Result<Vec<_>>>()?;
            attach(&mut list, recipients, attachments.into_iter().map(stored))?;
            return Ok(list);
        }
        let rows = found.all(self.db()).await.map_err(db_error)?;
        let mut list = rows
            .into_iter()
            .map(message_from)
            .collect::<Result<Vec<_>>>()?;
        Self::attach_parts(self.db(), &mut list, true).await?;
        Ok(list)
    }

    async fn attach_parts<C: ConnectionTrait>(
        db: &C,
        messages: &mut [Message],
        with_content: bool,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        let (recipients, attachments) = parts_of(ids);
        let recipients = recipients.all(db).await.map_err(db_error)?;
        if with_content {
            let attachments = attachments.all(db).await.map_err(db_error)?;
            return attach(messages, recipients, attachments.into_iter().map(stored));
        }
        let rows: Vec<(String, String, String, Option<String>, i64)> = attachments
            .select_only()
            .columns([
                attachments::Column::MessageId,
                attachments::Column::Filename,
                attachments::Column::ContentType,
                attachments::Column::ContentId,
                attachments::Column::SizeBytes,
            ])
            .into_tuple()
            .all(db)
            .await
            .map_err(db_error)?;
        let described = rows.into_iter().map(
            |(message_id, filename, content_type, content_id, size_bytes)| {
                let attachment = StoredAttachment {
                    filename,
                    content_type,
                    content_id,
                    size_bytes,
                    content: Vec::new(),
                };
                (message_id, attachment)
            },
        );
        attach(messages, recipients, described)
    }

    pub(super) async fn load_message<C: ConnectionTrait>(
        db: &C,
        account_id: &str,
        id: &str,
        with_content: bool,
    ) -> Result<Option<Message>> {
        let Some(row) = messages::Entity::find_by_id(id)
            .filter(messages::Column::AccountId.eq(account_id))
            .one(db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let mut list = [message_from(row)?];
        Self::attach_parts(db, &mut list, with_content).await?;
        let [mut message] = list;
        message.events = events::Entity::find()
            .filter(events::Column::MessageId.eq(id))
            .filter(events::Column::AccountId.eq(account_id))
            .order_by_asc(events::Column::Id)
            .all(db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(event_from)
            .collect::<Result<_>>()?;
        Ok(Some(message))
    }

    /// Ends a cancel or reschedule: `changed` recipients were updated by the
    /// conditional UPDATE; none means the message is missing or too far along.
    async fn finish_change(
        tx: DatabaseTransaction,
        account_id: &str,
        id: &str,
        changed: u64,
        status: Option<Status>,
        scheduled_at: Option<DateTime<Utc>>,
        event: &Event,
    ) -> Result<ChangeOutcome> {
        if changed == 0 {
            let current = messages::Entity::find_by_id(id)
                .filter(messages::Column::AccountId.eq(account_id))
                .one(&tx)
                .await
                .map_err(db_error)?;
            tx.rollback().await.map_err(db_error)?;
            return Ok(match current {
                None => ChangeOutcome::NotFound,
                Some(row) => ChangeOutcome::TooLate(
                    Status::parse(&row.status).ok_or_else(|| corrupt("status", id))?,
                ),
            });
        }
        // The event-order lock before the message's row (see
        // `EVENT_ORDER_LOCK`).
        super::delivery::lock_event_order(&tx).await?;
        let mut update = messages::Entity::update_many()
            .col_expr(
                messages::Column::UpdatedAt,
                Expr::value(to_micros(event.occurred_at)),
            )
            .filter(messages::Column::Id.eq(id));
        if let Some(status) = status {
            update = update.col_expr(messages::Column::Status, Expr::value(status.as_str()));
        }
        if let Some(at) = scheduled_at {
            update = update.col_expr(messages::Column::ScheduledAt, Expr::value(to_micros(at)));
        }
        update.exec(&tx).await.map_err(db_error)?;
        let mut row = Rows::new("events", EVENT_INSERT);
        row.push(event_values(account_id, event));
        execute_all(&tx, row.statements(tx.get_database_backend())).await?;
        let message = Self::load_message(&tx, account_id, id, false)
            .await?
            .ok_or_else(|| corrupt("message", id))?;
        tx.commit().await.map_err(db_error)?;
        Ok(ChangeOutcome::Changed(Box::new(message)))
    }
}

/// Recipients of the message that stop a change: anything but `allowed`
/// states, or claimed by a worker.
fn blockers(id: &str, allowed: &[&str]) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(recipients::Entity)
        .and_where(recipients::Column::MessageId.eq(id))
        .cond_where(
            Condition::any()
                .add(recipients::Column::State.is_not_in(allowed.iter().copied()))
                .add(recipients::Column::LeaseOwner.is_not_null()),
        )
        .to_owned()
}

impl MessageStore for Store {
    async fn message(&self, account_id: &str, id: &str) -> Result<Option<Message>> {
        Self::load_message(self.db(), account_id, id, false).await
    }

    async fn raw_mime(&self, account_id: &str, id: &str) -> Result<Option<Option<Vec<u8>>>> {
        let row: Option<Option<Vec<u8>>> = messages::Entity::find_by_id(id)
            .filter(messages::Column::AccountId.eq(account_id))
            .select_only()
            .column(messages::Column::RawMime)
            .into_tuple()
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(row)
    }

    async fn message_with_content(&self, account_id: &str, id: &str) -> Result<Option<Message>> {
        Self::load_message(self.db(), account_id, id, true).await
    }

    async fn list_messages(
        &self,
        account_id: &str,
        filter: &MessageFilter,
        after: Option<&MessageCursor>,
        limit: u64,
    ) -> Result<Vec<Message>> {
        let mut query = messages::Entity::find().filter(messages::Column::AccountId.eq(account_id));
        if let Some(status) = filter.status {
            query = query.filter(messages::Column::Status.eq(status.as_str()));
        }
        if let Some(tag) = &filter.tag {
            query = query.filter(
                messages::Column::Id.in_subquery(
                    Query::select()
                        .column(message_tags::Column::MessageId)
                        .from(message_tags::Entity)
                        .and_where(message_tags::Column::AccountId.eq(account_id))
                        .and_where(message_tags::Column::Tag.eq(tag.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(to) = &filter.to {
            query = query.filter(
                messages::Column::Id.in_subquery(
                    Query::select()
                        .column(recipients::Column::MessageId)
                        .from(recipients::Entity)
                        .and_where(recipients::Column::AccountId.eq(account_id))
                        .and_where(
                            Expr::expr(Func::lower(Expr::col(recipients::Column::Email)))
                                .eq(to.as_str()),
                        )
                        .to_owned(),
                ),
            );
        }
        if let Some(from) = &filter.from {
            query = query.filter(
                Expr::expr(Func::lower(Expr::col(messages::Column::FromEmail))).eq(from.as_str()),
            );
        }
        if let Some(t) = filter.created_after {
            query = query.filter(messages::Column::CreatedAt.gte(to_micros(t)));
        }
        if let Some(t) = filter.created_before {
            query = query.filter(messages::Column::CreatedAt.lt(to_micros(t)));
        }
        if let Some(cursor) = after {
            let key = (messages::Column::CreatedAt, messages::Column::Id);
            query = query.filter(super::past_key(
                key,
                cursor.created_at,
                cursor.id.as_str(),
                false,
            ));
        }
        let rows = query
            .order_by_desc(messages::Column::CreatedAt)
            .order_by_desc(messages::Column::Id)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?;
        let mut list = rows
            .into_iter()
            .map(message_from)
            .collect::<Result<Vec<_>>>()?;
        Self::attach_parts(self.db(), &mut list, false).await?;
        Ok(list)
    }

    async fn cancel_message(
        &self,
        account_id: &str,
        id: &str,
        event: &Event,
    ) -> Result<ChangeOutcome> {
        let (turn, tx) = self.change_transaction().await?;
        let changed = recipients::Entity::update_many()
            .col_expr(
                recipients::Column::State,
                Expr::value(Status::Cancelled.as_str()),
            )
            .col_expr(
                recipients::Column::NextAttemptAt,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                recipients::Column::UpdatedAt,
                Expr::value(to_micros(event.occurred_at)),
            )
            .filter(recipients::Column::MessageId.eq(id))
            .filter(recipients::Column::AccountId.eq(account_id))
            .filter(recipients::Column::State.is_in(["queued", "scheduled"]))
            .filter(
                Expr::exists(blockers(
                    id,
                    &["queued", "scheduled", "suppressed", "cancelled"],
                ))
                .not(),
            )
            .exec(&tx)
            .await
            .map_err(db_error)?
            .rows_affected;
        let outcome = Self::finish_change(
            tx,
            account_id,
            id,
            changed,
            Some(Status::Cancelled),
            None,
            event,
        )
        .await?;
        self.after_change(turn).await?;
        Ok(outcome)
    }

    async fn reschedule_message(
        &self,
        account_id: &str,
        id: &str,
        at: DateTime<Utc>,
        event: &Event,
    ) -> Result<ChangeOutcome> {
        let (turn, tx) = self.change_transaction().await?;
        let changed = recipients::Entity::update_many()
            .col_expr(
                recipients::Column::NextAttemptAt,
                Expr::value(to_micros(at)),
            )
            .col_expr(
                recipients::Column::UpdatedAt,
                Expr::value(to_micros(event.occurred_at)),
            )
            .filter(recipients::Column::MessageId.eq(id))
            .filter(recipients::Column::AccountId.eq(account_id))
            .filter(recipients::Column::State.eq("scheduled"))
            .filter(Expr::exists(blockers(id, &["scheduled", "suppressed"])).not())
            .exec(&tx)
            .await
            .map_err(db_error)?
            .rows_affected;
        let outcome =
            Self::finish_change(tx, account_id, id, changed, None, Some(at), event).await?;
        self.after_change(turn).await?;
        Ok(outcome)
    }
}

impl EventStore for Store {
    async fn events_after(
        &self,
        filter: &WatchFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Event>> {
        let mut query = events::Entity::find()
            .filter(events::Column::AccountId.eq(filter.account_id.as_str()))
            .filter(events::Column::Id.gt(after));
        if let Some(live) = &self.live {
            query = query.filter(events::Column::Id.lte(live.newest_on_disk()));
        }
        if let Some(id) = &filter.message_id {
            query = query.filter(events::Column::MessageId.eq(id.as_str()));
        }
        if !filter.types.is_empty() {
            query = query
                .filter(events::Column::EventType.is_in(filter.types.iter().map(|t| t.as_str())));
        }
        query
            .order_by_asc(events::Column::Id)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(event_from)
            .collect()
    }

    async fn latest_cursor(&self) -> Result<i64> {
        if let Some(live) = &self.live {
            return Ok(live.newest_on_disk());
        }
        let latest: Option<Option<i64>> = events::Entity::find()
            .select_only()
            .column_as(events::Column::Id.max(), "latest")
            .into_tuple()
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(latest.flatten().unwrap_or(0))
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.event_signal.subscribe()
    }

    fn live(&self) -> Live {
        match &self.live {
            Some(live) => Live::Published(live.subscribe()),
            None => Live::Signal(self.event_signal.subscribe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DatabaseBackend, EntityTrait, QueryTrait};

    use super::*;

    /// The columns of `Entity::find()`'s SELECT on SQLite, in order.
    fn selected<E: EntityTrait>(find: sea_orm::Select<E>) -> Vec<String> {
        let sql = find.build(DatabaseBackend::Sqlite).sql;
        let list = sql
            .strip_prefix("SELECT ")
            .and_then(|rest| rest.split(" FROM ").next())
            .expect("a SELECT … FROM");
        list.split(", ")
            .map(|column| {
                let name = column.rsplit('.').next().expect("a column");
                name.trim_matches('"').to_owned()
            })
            .collect()
    }

    /// The columns of an entity that an accept's INSERT leaves out.
    fn left_out<C: sea_orm::Iterable + sea_orm::IdenStatic>(written: &[&str]) -> Vec<&'static str> {
        C::iter()
            .map(|c| c.as_str())
            .filter(|c| !written.contains(c))
            .collect()
    }

    #[test]
    fn an_accept_writes_every_column_but_the_ids_and_what_starts_at_its_default() {
        // A column added to one of these tables has to be written by an
        // accept, or named here as starting at its default.
        assert_eq!(
            left_out::<messages::Column>(&MESSAGE_COLUMNS),
            Vec::<&str>::new()
        );
        assert_eq!(
            left_out::<recipients::Column>(&RECIPIENT_INSERT),
            [
                "id",
                "first_opened_at",
                "open_count",
                "first_clicked_at",
                "click_count"
            ]
        );
        assert_eq!(left_out::<events::Column>(&EVENT_INSERT), ["id"]);
        assert_eq!(
            left_out::<idempotency_keys::Column>(&KEY_INSERT),
            Vec::<&str>::new()
        );
        assert_eq!(
            left_out::<message_tags::Column>(&TAG_INSERT),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn multi_row_inserts_number_their_parameters_per_statement() {
        let mut rows = Rows::new("t", ["a", "b"]);
        for i in 0..(ROWS_PER_INSERT as i64 + 1) {
            rows.push([Value::BigInt(Some(i)), Value::String(Some(format!("v{i}")))]);
        }
        let sqlite = rows.statements(DatabaseBackend::Sqlite);
        assert_eq!(sqlite.len(), 2);
        assert!(
            sqlite[0]
                .sql
                .starts_with(r#"INSERT INTO "t" ("a", "b") VALUES (?, ?), (?, ?)"#)
        );
        assert_eq!(
            sqlite[0].values.as_ref().map(|v| v.0.len()),
            Some(2 * ROWS_PER_INSERT)
        );
        assert_eq!(sqlite[1].sql, r#"INSERT INTO "t" ("a", "b") VALUES (?, ?)"#);
        assert_eq!(
            sqlite[1].values.as_ref().map(|v| v.0.clone()),
            Some(vec![
                Value::BigInt(Some(ROWS_PER_INSERT as i64)),
                Value::String(Some(format!("v{ROWS_PER_INSERT}")))
            ])
        );

        let mut rows = Rows::new("t", ["a", "b"]);
        for i in 0..(ROWS_PER_INSERT as i64 + 1) {
            rows.push([Value::BigInt(Some(i)), Value::String(None)]);
        }
        let postgres = rows.statements(DatabaseBackend::Postgres);
        assert!(
            postgres[0]
                .sql
                .starts_with(r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4)"#)
        );
        let last = 2 * ROWS_PER_INSERT;
        assert!(
            postgres[0]
                .sql
                .ends_with(&format!("(${}, ${last})", last - 1))
        );
        assert_eq!(
            postgres[1].sql,
            r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2)"#
        );
        assert!(
            Rows::new("t", ["a"])
                .statements(DatabaseBackend::Postgres)
                .is_empty()
        );
    }

    #[test]
    fn a_kept_insert_text_names_the_columns_of_the_rows_it_writes() {
        let one = |columns: &'static [&'static str]| match columns {
            [a] => {
                let mut rows = Rows::new("t", [*a]);
                rows.push([Value::Int(Some(1))]);
                rows.statements(DatabaseBackend::Sqlite)
            }
            [a, b] => {
                let mut rows = Rows::with_tail("t", [*a, *b], " RETURNING 1");
                rows.push([Value::Int(Some(1)), Value::Int(Some(2))]);
                rows.push([Value::Int(Some(3)), Value::Int(Some(4))]);
                rows.statements(DatabaseBackend::Postgres)
            }
            _ => unreachable!(),
        };
        for _ in 0..2 {
            assert_eq!(one(&["a"])[0].sql, r#"INSERT INTO "t" ("a") VALUES (?)"#);
            assert_eq!(one(&["b"])[0].sql, r#"INSERT INTO "t" ("b") VALUES (?)"#);
            assert_eq!(
                one(&["a", "b"])[0].sql,
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4) RETURNING 1"#
            );
        }
    }

    #[test]
    fn the_writer_reads_each_field_from_the_column_the_query_selects_there() {
        assert_eq!(selected(messages::Entity::find()), MESSAGE_COLUMNS);
        let (recipients, attachments) = parts_of(vec!["msg_1".into()]);
        assert_eq!(selected(recipients), RECIPIENT_COLUMNS);
        assert_eq!(selected(attachments), ATTACHMENT_COLUMNS);
    }
}
