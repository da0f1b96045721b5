//! The SQLite writer: one thread that owns the connection every frequent
//! write goes through (accepts, delivery records, queue claims and leases)
//! and runs each of those transactions from `BEGIN` to `COMMIT` in one call.
//!
//! Through the driver, every statement was a message to the driver's thread
//! and every result a message back, each with a wake-up on both sides; with
//! two cores busy, a two-query transaction waited 2–3 ms for scheduling while
//! SQLite itself needed a fraction of that, and every accept and delivery
//! record queued behind it. Here a transaction is one closure sent to the
//! thread and one answer back; statements are prepared once and kept.
//!
//! The rare writes that stay on the driver's writer connection (an accept
//! batch decided job by job) take [`Writer::turn`] first, which the thread
//! holds while it runs a transaction, so the two connections never wait for
//! each other in SQLite's busy handler, which sleeps in steps of milliseconds.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
use rusqlite::{ToSql, ffi::ErrorCode};
use sea_orm::{Statement, Value};

use super::Wal;
use crate::domain::{Error, Result};

/// Prepared statements kept per connection. Multi-row inserts differ by
/// their row count, so a busy writer sees a few dozen distinct statements.
const KEPT_STATEMENTS: usize = 256;

type Job = Box<dyn FnOnce(&mut Session) + Send>;

enum Message {
    Run(Job),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The handle to the writer thread; the thread ends, closing its
/// connection, when the last handle is dropped or [`Writer::close`] is called.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Message>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Writer {
    /// Opens the database file at `path` and starts the thread. Its
    /// commits do not flush the log (`synchronous=NORMAL`): what it commits
    /// is acknowledged once the flusher has (see `flush`).
    pub(super) fn start(path: &Path, wal: Arc<Wal>) -> Result<Writer> {
        let conn = open(path).map_err(|e| {
            Error::StorageUnavailable(anyhow::Error::new(e).context("opening the SQLite writer"))
        })?;
        let (jobs, queue) = mpsc::channel();
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let session = Session { conn, wal };
        let held = turn.clone();
        std::thread::Builder::new()
            .name("posthorn-writer".into())
            .spawn(move || serve(session, queue, held))
            .map_err(|e| {
                Error::StorageUnavailable(
                    anyhow::Error::new(e).context("starting the SQLite writer thread"),
                )
            })?;
        Ok(Writer { jobs, turn })
    }

    /// Runs `work` on the writer thread and returns what it returned. A
    /// transaction `work` leaves open is rolled back.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Session) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |session| {
            let _ = answer.send(work(session));
        });
        self.jobs.send(Message::Run(job)).map_err(|_| closed())?;
        answered.await.map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "the SQLite writer failed while running a transaction"
            ))
        })?
    }

    /// Waits until the thread is between transactions and keeps it there
    /// while the guard lives.
    pub(super) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Ends the thread and closes its connection once the transactions
    /// sent before have run.
    pub(super) async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn closed() -> Error {
    Error::StorageUnavailable(anyhow::anyhow!("the SQLite writer is closed"))
}

fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The same settings as the pool's connections (see `options`).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA mmap_size = 67108864; PRAGMA cache_size = -16384; PRAGMA temp_store = memory; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 268435456;",
    )?;
    conn.set_prepared_statement_cache_capacity(KEPT_STATEMENTS);
    Ok(conn)
}

/// The thread: runs each job in turn. A job that panicked or left its
/// transaction open has it rolled back; its caller sees it fail.
fn serve(mut session: Session, queue: mpsc::Receiver<Message>, turn: Arc<tokio::sync::Mutex<()>>) {
    loop {
        let Ok(message) = queue.recv() else {
            return;
        };
        match message {
            Message::Run(job) => {
                let _turn = turn.blocking_lock();
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut session)));
                if ran.is_err() {
                    tracing::error!("a transaction on the SQLite writer panicked");
                }
                if !session.conn.is_autocommit()
                    && let Err(error) = session.conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(%error, "rolling back on the SQLite writer failed");
                }
            }
            Message::Close(done) => {
                // Nothing is taken after this: later callers hear at once
                // that the writer is closed.
                drop(queue);
                drop(session);
                let _ = done.send(());
                return;
            }
        }
    }
}

/// The writer's connection, as a job sees it.
pub(super) struct Session {
    conn: rusqlite::Connection,
    wal: Arc<Wal>,
}

impl Session {
    /// Begins a write transaction, after the checkpoint that lets the
    /// write-ahead log start over when one is due (see `Wal`).
    pub(super) fn begin(&mut self) -> Result<()> {
        if self.wal.restart_due() {
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(sqlite_error)?;
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_error)
    }

    /// Ends the transaction with `COMMIT`.
    pub(super) fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_error)
    }

    /// Ends the transaction with `ROLLBACK`.
    pub(super) fn rollback(&mut self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK").map_err(sqlite_error)
    }

    /// Runs `statements` in order and returns every row they return.
    pub(super) fn fetch(&mut self, statements: &[Statement]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for statement in statements {
            self.run_one(statement, &mut rows).map_err(sqlite_error)?;
        }
        Ok(rows)
    }

    fn run_one(&mut self, statement: &Statement, rows: &mut Vec<Row>) -> rusqlite::Result<()> {
        let mut prepared = self.conn.prepare_cached(&statement.sql)?;
        if let Some(values) = &statement.values {
            for (i, value) in values.0.iter().enumerate() {
                prepared.raw_bind_parameter(i + 1, Bind(value))?;
            }
        }
        let columns = prepared.column_count();
        let mut returned = prepared.raw_query();
        while let Some(row) = returned.next()? {
            let values = (0..columns)
                .map(|i| row.get::<_, Sql>(i))
                .collect::<rusqlite::Result<_>>()?;
            rows.push(Row(values));
        }
        Ok(())
    }
}

/// A row a statement returned.
#[derive(Debug)]
pub(super) struct Row(Vec<Sql>);

impl Row {
    fn column(&self, i: usize) -> Result<&Sql> {
        self.0.get(i).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("a writer query returned no column {i}"))
        })
    }

    /// Column `i` as an integer.
    pub(super) fn int(&self, i: usize) -> Result<i64> {
        match self.column(i)? {
            Sql::Integer(n) => Ok(*n),
            other => Err(mistyped(i, "an integer", other)),
        }
    }

    /// Column `i` as an integer or NULL.
    pub(super) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.column(i)? {
            Sql::Null => Ok(None),
            Sql::Integer(n) => Ok(Some(*n)),
            other => Err(mistyped(i, "an integer or NULL", other)),
        }
    }

    /// Column `i` as text.
    pub(super) fn text(&self, i: usize) -> Result<String> {
        match self.column(i)? {
            Sql::Text(s) => Ok(s.clone()),
            other => Err(mistyped(i, "text", other)),
        }
    }
}

fn mistyped(i: usize, wanted: &str, found: &Sql) -> Error {
    Error::Internal(anyhow::anyhow!(
        "column {i} of a writer query: expected {wanted}, found {:?}",
        found.data_type()
    ))
}

/// A SeaORM value bound as SQLite stores it, as the driver binds it:
/// booleans and integers as integers, text and blobs borrowed.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        fn int(n: Option<i64>) -> ToSqlOutput<'static> {
            ToSqlOutput::Owned(n.map_or(Sql::Null, Sql::Integer))
        }
        fn real(n: Option<f64>) -> ToSqlOutput<'static> {
            ToSqlOutput::Owned(n.map_or(Sql::Null, Sql::Real))
        }
        Ok(match self.0 {
            Value::Bool(v) => int(v.map(i64::from)),
            Value::TinyInt(v) => int(v.map(i64::from)),
            Value::SmallInt(v) => int(v.map(i64::from)),
            Value::Int(v) => int(v.map(i64::from)),
            Value::BigInt(v) => int(*v),
            Value::TinyUnsigned(v) => int(v.map(i64::from)),
            Value::SmallUnsigned(v) => int(v.map(i64::from)),
            Value::Unsigned(v) => int(v.map(i64::from)),
            Value::BigUnsigned(v) => int(v
                .map(i64::try_from)
                .transpose()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?),
            Value::Float(v) => real(v.map(f64::from)),
            Value::Double(v) => real(*v),
            Value::String(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Char(Some(c)) => ToSqlOutput::Owned(Sql::Text(c.to_string())),
            Value::Bytes(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Json(Some(j)) => ToSqlOutput::Owned(Sql::Text(j.to_string())),
            Value::String(None) | Value::Char(None) | Value::Bytes(None) | Value::Json(None) => {
                ToSqlOutput::Owned(Sql::Null)
            }
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("the SQLite writer binds no {other:?}").into(),
                ));
            }
        })
    }
}

/// Classifies a SQLite error as the driver's are (`db_error`): a busy,
/// full, unreadable or unopenable database is STORAGE_UNAVAILABLE
/// (retryable); everything else, constraint failures included, internal.
pub(super) fn sqlite_error(error: rusqlite::Error) -> Error {
    let unavailable = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
        )
    );
    let error = anyhow::Error::new(error).context("the SQLite writer");
    if unavailable {
        Error::StorageUnavailable(error)
    } else {
        Error::Internal(error)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;

    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let writer = Writer::start(&dir.path().join("w.db"), Arc::default()).expect("writer");
        (dir, writer)
    }

    fn sql(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values)
    }

    async fn count(writer: &Writer) -> i64 {
        let rows = writer
            .run(|s| s.fetch(&[sql("SELECT COUNT(*) FROM t", vec![])]))
            .await
            .expect("count");
        rows[0].int(0).expect("a count")
    }

    async fn create(writer: &Writer) {
        writer
            .run(|s| {
                s.fetch(&[sql(
                    "CREATE TABLE t (b INTEGER, n INTEGER, x TEXT, y BLOB, r REAL)",
                    vec![],
                )])
            })
            .await
            .expect("table");
    }

    #[tokio::test]
    async fn values_are_stored_as_the_driver_stores_them_and_read_back() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let rows = writer
            .run(|s| {
                s.fetch(&[sql(
                    "INSERT INTO t VALUES (?, ?, ?, ?, ?) \
                     RETURNING b, n, x, typeof(y), r, typeof(b)",
                    vec![
                        true.into(),
                        u32::MAX.into(),
                        "zwölf".into(),
                        vec![0u8, 1, 2].into(),
                        1.5f64.into(),
                    ],
                )])
            })
            .await
            .expect("insert");
        let row = &rows[0];
        assert_eq!(row.int(0).unwrap(), 1, "true is 1");
        assert_eq!(row.int(1).unwrap(), i64::from(u32::MAX));
        assert_eq!(row.text(2).unwrap(), "zwölf");
        assert_eq!(row.text(3).unwrap(), "blob");
        assert_eq!(row.text(5).unwrap(), "integer");
        let Err(Error::Internal(error)) = row.int(2) else {
            panic!("text is not an integer");
        };
        assert!(error.to_string().contains("column 2"), "{error}");
        let missing: Option<String> = None;
        let rows = writer
            .run(move |s| {
                s.fetch(&[sql(
                    "INSERT INTO t (n, x) VALUES (?, ?) RETURNING n, x",
                    vec![Option::<i64>::None.into(), missing.into()],
                )])
            })
            .await
            .expect("nulls");
        assert_eq!(rows[0].opt_int(0).unwrap(), None);
    }

    #[tokio::test]
    async fn a_value_sqlite_cannot_hold_is_refused_and_nothing_is_written() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let result = writer
            .run(|s| s.fetch(&[sql("INSERT INTO t (n) VALUES (?)", vec![u64::MAX.into()])]))
            .await;
        assert!(matches!(result, Err(Error::Internal(_))), "{result:?}");
        assert_eq!(count(&writer).await, 0);
    }

    #[tokio::test]
    async fn a_transaction_left_open_or_a_panic_is_rolled_back_and_the_writer_goes_on() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let left_open = writer
            .run(|s| {
                s.begin()?;
                s.fetch(&[sql("INSERT INTO t (n) VALUES (1)", vec![])])?;
                Err::<(), _>(Error::Internal(anyhow::anyhow!("gave up")))
            })
            .await;
        assert!(left_open.is_err());
        assert_eq!(
            count(&writer).await,
            0,
            "the open transaction was rolled back"
        );

        let panicked = writer
            .run(|s| -> Result<()> {
                s.begin()?;
                s.fetch(&[sql("INSERT INTO t (n) VALUES (2)", vec![])])?;
                panic!("a bug in a job");
            })
            .await;
        assert!(matches!(panicked, Err(Error::Internal(_))), "{panicked:?}");
        assert_eq!(
            count(&writer).await,
            0,
            "the panicked job's writes are gone"
        );

        writer
            .run(|s| {
                s.begin()?;
                s.fetch(&[sql("INSERT INTO t (n) VALUES (3)", vec![])])?;
                s.commit()
            })
            .await
            .expect("a later transaction commits");
        assert_eq!(count(&writer).await, 1);
    }

    #[tokio::test]
    async fn the_thread_holds_the_turn_while_a_job_runs_and_lets_it_go_after() {
        let (_dir, writer) = writer();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (finish, finishing) = std::sync::mpsc::channel::<()>();
        let writer = Arc::new(writer);
        let job = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .run(move |_| {
                        started_tx.send(()).expect("started");
                        finishing.recv().expect("told to finish");
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started.recv().expect("the job started"))
            .await
            .expect("joined");
        assert!(
            writer.turn.try_lock().is_err(),
            "a careful commit cannot start while the job runs"
        );
        finish.send(()).expect("finish");
        job.await.expect("joined").expect("the job ran");
        drop(writer.turn().await);
    }

    #[tokio::test]
    async fn after_close_nothing_runs_and_callers_hear_unavailable() {
        let (_dir, writer) = writer();
        writer.close().await;
        let result = writer.run(|_| Ok(())).await;
        assert!(
            matches!(result, Err(Error::StorageUnavailable(_))),
            "{result:?}"
        );
    }
}
