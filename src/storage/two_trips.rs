//! SQLite transactions in two trips to the driver's worker thread: the
//! accept path's group commit here, the delivery recorder's in
//! `delivery.rs`. Every statement of a group commit is a message to that thread
//! and a wake-up back; under load each trip costs a scheduling delay of
//! 0.2–1 ms, more than the statement itself. Here the `BEGIN`, the key
//! claims, the usage counts and every INSERT travel as one query and the
//! `COMMIT` as the second. When a key turns out to be taken or an account
//! out of quota, the transaction is rolled back and the careful path
//! decides job by job (`Store::commit_job_by_job`): replays and refusals
//! are rare, so they pay for the extra trips. [`Open`] holds the writer
//! connection while such a hand-begun transaction is open, and begins it,
//! with the checkpoint that restarts the write-ahead log when one is due.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::sqlite::{Sqlite, SqliteRow};
use sea_orm::sqlx::{self, AssertSqlSafe, Row};
use sea_orm::{DatabaseBackend, DbErr, EntityTrait, QueryTrait, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;

use super::entities::idempotency_keys;
use super::messages::{ROWS_PER_INSERT, job_inserts, joined, key_row, quota_of};
use super::{Store, db_error};
use crate::domain::send::commit::{CommitJob, JobOutcome};
use crate::domain::{Error, Result};

/// What the claims and usage statements return, one shape for both so a
/// multi-statement query yields rows of one kind: (what, account, day,
/// recipients counted for the day, the account's own quota).
const KEY_CLAIMED: i64 = 1;
const USAGE: i64 = 2;

pub(super) fn sqlx_error(error: sqlx::Error) -> Error {
    db_error(DbErr::Query(RuntimeErr::SqlxError(error.into())))
}

/// The writer connection while a transaction begun by hand may be open.
/// Dropped open (an error, or a cancelled future), it closes the connection
/// instead of returning it to the pool, and SQLite rolls back.
pub(super) struct Open {
    conn: Option<PoolConnection<Sqlite>>,
    /// What goes ahead of the first query: `BEGIN IMMEDIATE`, after the
    /// checkpoint that lets the write-ahead log start over when it is due
    /// (see `Wal`).
    opening: Vec<Statement>,
    /// Rows of `opening` to leave out of what the first query returns: the
    /// checkpoint's.
    skip: usize,
}

impl Open {
    /// Takes the SQLite writer connection of `store`; the transaction
    /// begins with the first [`Open::fetch`].
    pub(super) async fn begin(store: &Store) -> Result<Open> {
        let pool = store.writer().get_sqlite_connection_pool();
        let conn = pool.acquire().await.map_err(sqlx_error)?;
        let backend = DatabaseBackend::Sqlite;
        let mut opening = Vec::new();
        let restart = store.wal().restart_due();
        if restart {
            opening.push(Statement::from_string(
                backend,
                "PRAGMA wal_checkpoint(PASSIVE)",
            ));
        }
        opening.push(Statement::from_string(backend, "BEGIN IMMEDIATE"));
        Ok(Open {
            conn: Some(conn),
            opening,
            skip: usize::from(restart),
        })
    }

    fn conn(&mut self) -> &mut PoolConnection<Sqlite> {
        self.conn
            .as_mut()
            .expect("the connection is held until released")
    }

    /// Runs `statements`, joined into as few queries as they fit, and
    /// returns every row they return. On an error the transaction is
    /// rolled back (or, failing that, the connection closed).
    pub(super) async fn fetch(&mut self, statements: Vec<Statement>) -> Result<Vec<SqliteRow>> {
        let mut all = std::mem::take(&mut self.opening);
        all.extend(statements);
        let mut rows = Vec::new();
        for (sql, values) in joined(all) {
            let query = sqlx::query_with(AssertSqlSafe(sql), SqlxValues(sea_orm::Values(values)));
            match query.fetch_all(&mut **self.conn()).await {
                Ok(more) => rows.extend(more),
                Err(error) => {
                    if sqlx::raw_sql("ROLLBACK")
                        .execute(&mut **self.conn())
                        .await
                        .is_ok()
                    {
                        self.release();
                    }
                    return Err(sqlx_error(error));
                }
            }
        }
        let skip = std::mem::take(&mut self.skip).min(rows.len());
        rows.drain(..skip);
        Ok(rows)
    }

    /// Ends the transaction with `sql` (COMMIT or ROLLBACK); the connection
    /// goes back to the pool only if that worked.
    pub(super) async fn finish(mut self, sql: &'static str) -> Result<()> {
        sqlx::raw_sql(sql)
            .execute(&mut **self.conn())
            .await
            .map_err(sqlx_error)?;
        self.release();
        Ok(())
    }

    /// Returns the connection to the pool: no transaction is open on it.
    pub(super) fn release(&mut self) {
        self.conn.take();
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl Store {
    /// Stores every job of `jobs` in one transaction of two trips, when
    /// every key is free and every account has room; `None` (nothing
    /// stored) when not, for the careful path to decide.
    pub(super) async fn commit_in_two_trips(
        &self,
        jobs: &[CommitJob],
    ) -> Result<Option<Vec<JobOutcome>>> {
        let backend = DatabaseBackend::Sqlite;
        let mut statements = Vec::new();
        let claims: Vec<_> = jobs.iter().filter_map(|j| j.idempotency.as_ref()).collect();
        for chunk in claims.chunks(ROWS_PER_INSERT) {
            let mut claim = idempotency_keys::Entity::insert_many(chunk.iter().map(|r| key_row(r)))
                .on_conflict(
                    OnConflict::columns([
                        idempotency_keys::Column::AccountId,
                        idempotency_keys::Column::IdempotencyKey,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .build(backend);
            claim
                .sql
                .push_str(&format!(" RETURNING {KEY_CLAIMED}, account_id, 0, 0, NULL"));
            statements.push(claim);
        }
        let mut wanted: Vec<((&str, i64), i64)> = Vec::new();
        for job in jobs {
            let group = (job.account_id.as_str(), job.day);
            let count = job.recipients() as i64;
            match wanted.iter_mut().find(|(g, _)| *g == group) {
                Some((_, n)) => *n += count,
                None => wanted.push((group, count)),
            }
        }
        for ((account_id, day), count) in &wanted {
            statements.push(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO daily_usage (account_id, day, recipients) VALUES (?, ?, ?) \
                     ON CONFLICT (account_id, day) DO UPDATE \
                     SET recipients = daily_usage.recipients + excluded.recipients \
                     RETURNING {USAGE}, account_id, day, recipients, \
                     (SELECT daily_quota FROM accounts WHERE id = ?)"
                ),
                [
                    (*account_id).into(),
                    (*day).into(),
                    (*count).into(),
                    (*account_id).into(),
                ],
            ));
        }
        statements.extend(job_inserts(backend, jobs, |_| true));

        let mut open = Open::begin(self).await?;
        let rows = open.fetch(statements).await?;
        if !all_fit(jobs, claims.len(), &rows).map_err(sqlx_error)? {
            open.finish("ROLLBACK").await?;
            return Ok(None);
        }
        open.finish("COMMIT").await?;
        Ok(Some(vec![JobOutcome::Committed; jobs.len()]))
    }
}

/// Whether every one of `claims` keys was claimed and every job's account
/// stays within its quota with the whole batch counted.
fn all_fit(
    jobs: &[CommitJob],
    claims: usize,
    rows: &[SqliteRow],
) -> std::result::Result<bool, sqlx::Error> {
    let mut claimed = 0;
    let mut usage: HashMap<(String, i64), (i64, Option<i64>)> = HashMap::new();
    for row in rows {
        match row.try_get::<i64, _>(0)? {
            KEY_CLAIMED => claimed += 1,
            USAGE => {
                usage.insert(
                    (row.try_get(1)?, row.try_get(2)?),
                    (row.try_get(3)?, row.try_get(4)?),
                );
            }
            _ => {}
        }
    }
    if claimed != claims {
        return Ok(false);
    }
    Ok(jobs.iter().all(|job| {
        let Some((used, own)) = usage.get(&(job.account_id.clone(), job.day)) else {
            return false;
        };
        quota_of(*own, job.daily_quota).is_none_or(|quota| Ord::max(*used, 0) as u64 <= quota)
    }))
}
