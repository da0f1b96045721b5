//! Storage: SeaORM over SQLite (embedded default) or PostgreSQL. The only
//! module that imports `sea_orm`; it implements the store traits the domain
//! defines.

mod accept_at_once;
mod accounts;
mod checkpoint;
mod contacts;
mod delivery;
pub mod entities;
mod flush;
mod live;
mod messages;
pub mod page_cache;
mod server_keys;
pub mod sqlite_memory;
mod suppressions;
mod templates;
mod tracking;
mod wal_writes;
mod webhook_deliveries;
mod webhooks;
mod writer;

pub use delivery::lock_event_order;

use std::time::Duration;

use posthorn_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, RuntimeErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use crate::domain::Error;

/// Sets SQLite up for this process before anything opens a database: its
/// memory from the process's allocator with no statistics kept
/// ([`sqlite_memory`]) and the layer over its page cache ([`page_cache`]).
/// True when both are in place; false when SQLite was used before in the
/// process, which leaves its defaults (slower, as correct). Call it first
/// in `main`, while no other thread uses SQLite.
pub fn prepare_sqlite() -> bool {
    let memory = sqlite_memory::install();
    page_cache::install() && memory
}

/// For a test of something that has to be set before SQLite's first use
/// in a process, where other tests of the same binary have used it
/// already: outside such a process, runs the test `name` again in a
/// process of its own, asserts that it passed there and returns false;
/// inside it, returns true, and the test goes on.
#[cfg(test)]
pub(crate) fn in_fresh_process(name: &str) -> bool {
    const ALONE: &str = "UNIT_TEST_IN_FRESH_PROCESS";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let run = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs");
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{out}\n{err}");
    assert!(out.contains("1 passed"), "{out}\n{err}");
    false
}

/// The database, shared by every door and worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// The connection the accept path's careful commit writes through. On
    /// SQLite it is one connection of its own, taken only on the writer
    /// thread's turn (`Writer::turn`); on PostgreSQL it is the pool, and
    /// every write goes through it.
    writer: DatabaseConnection,
    /// On SQLite, the thread every frequent write goes through (see
    /// `writer`): its connection's page cache stays warm (a pooled
    /// connection drops its cache whenever another one wrote) and a
    /// transaction is one call.
    sqlite_writer: Option<std::sync::Arc<writer::Writer>>,
    /// Bumped after every commit that wrote events, and on PostgreSQL
    /// whenever any process sharing the database did: wakes the worker
    /// pool, and on PostgreSQL the watchers.
    event_signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// On SQLite, the runs of events handed to watchers and how far the
    /// events table may be read (see `live`).
    live: Option<live::Readers>,
    /// Makes the SQLite writer's commits durable (see `flush`); `None` on
    /// PostgreSQL, whose commits are durable when they return, and for an
    /// in-memory database.
    flusher: Option<std::sync::Arc<flush::Flusher>>,
    /// Copies the SQLite write-ahead log back into the database file (see
    /// `checkpoint`); `None` on PostgreSQL.
    checkpointer: Option<std::sync::Arc<checkpoint::Checkpointer>>,
    /// The PostgreSQL `LISTEN` task, stopped with the last handle.
    _listening: Option<std::sync::Arc<Listening>>,
}

/// The PostgreSQL notification channel every event-writing transaction
/// notifies (on commit) and every process listens on.
pub(crate) const EVENTS_CHANNEL: &str = "posthorn_events";

/// Owns the listening task; aborts it when dropped.
#[derive(Debug)]
struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening on [`EVENTS_CHANNEL`]; returns once `LISTEN` holds, so
/// nothing committed after [`Store::connect`] returns goes unnoticed.
async fn listen(url: &str) -> Result<sea_orm::sqlx::postgres::PgListener, sea_orm::sqlx::Error> {
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    Ok(listener)
}

/// Bumps `signal` for every notification on [`EVENTS_CHANNEL`], so watchers
/// and workers of this process see what other processes committed as it
/// happens. A lost connection is reopened, and the signal bumped in case a
/// notification was missed meanwhile.
async fn forward_notifications(
    mut listener: sea_orm::sqlx::postgres::PgListener,
    url: String,
    signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
) {
    let bump = || signal.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => bump(),
            // The connection dropped; the next call reconnects.
            Ok(None) => bump(),
            Err(error) => {
                tracing::warn!(%error, "lost the PostgreSQL event notifications; reconnecting");
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match listen(&url).await {
                        Ok(again) => {
                            listener = again;
                            bump();
                            break;
                        }
                        Err(error) => tracing::warn!(%error, "cannot LISTEN for events; retrying"),
                    }
                }
            }
        }
    }
}

/// The page size of a SQLite database Posthorn creates. Every commit
/// writes each page it changed to the write-ahead log whole, and an accept
/// changes one page in each of a dozen B-trees, most by a row or an index
/// entry of a few dozen bytes: with 2 KB pages a half-loaded B1 wrote 15–16
/// frames of 2 KB per accept instead of 11 of 4 KB, its log flushes took
/// 346–432 µs at the median instead of 415–468, and its p99 was lower in
/// each of six alternated pairs (8.8–13.1 ms against 13.4–16.0 on one
/// machine). 1 KB pages wrote fewer bytes still (16–17 frames of 1 KB),
/// but their p99 was no better than with 4 KB (15.1 and 15.5 ms). A
/// database keeps the page size it was created with.
const PAGE_SIZE: u32 = 2048;

/// The default of the `sqlite_log_mb` setting: SQLite's write-ahead log is
/// started over past this many megabytes of frames (`checkpoint::Wal`).
/// Under B1's half load a log of 64 MB started over about every 0.7 s, each
/// time holding every accept for the writer's own checkpoint (5–20 ms);
/// longer logs had a lower paced p99 in most alternated pairs
/// (`BENCHMARKS.md`, B1). PostgreSQL's `max_wal_size` defaults to a
/// gigabyte for the same trade.
pub const DEFAULT_SQLITE_LOG_MB: u64 = 256;

/// How long a statement waits for a lock another connection holds before
/// it fails, and the request with it, as STORAGE_UNAVAILABLE (retryable):
/// SQLite's busy timeout, PostgreSQL's `lock_timeout`. Without the latter
/// a send waited as long as any other session held a table lock (24 s in
/// a trial with `LOCK TABLE messages`), and every request behind it too.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How connections to `url` are opened. On SQLite a connection keeps a
/// page cache larger than the 2 MB default and reads without a memory map:
/// mapped pages count as the server's resident memory (a 64 MB map put
/// B3's peak at 135 MB, 79–85 MB without), and every connection remapped
/// the file each time it grew, each time with a TLB shootdown on every
/// core.
fn options(
    url: &str,
    max_connections: u32,
    synchronous: SqliteSynchronous,
    log_bound: i64,
) -> ConnectOptions {
    let url = normalise_url(url);
    let mut options = ConnectOptions::new(url.as_str());
    options
        .max_connections(max_connections)
        // The pool pings a connection before handing it out, which on
        // SQLite is one more round trip to the connection's thread per
        // transaction or query (0.2–1 ms under load) to test a connection
        // that cannot have dropped: it is a file in this process.
        .test_before_acquire(!url.starts_with("sqlite:"))
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |o| {
            o.page_size(PAGE_SIZE)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(LOCK_WAIT)
                .foreign_keys(true)
                .pragma("mmap_size", "0")
                .pragma("cache_size", "-16384")
                .pragma("temp_store", "memory")
                // Checkpoints run in the background (`checkpoint`),
                // not inside whichever commit crosses the threshold.
                .pragma("wal_autocheckpoint", "0")
                // A log started over keeps its file (shrinking it costs
                // the writer 6 ms); only past the log's hard bound
                // (`checkpoint::Wal::bound`) is it cut back to that.
                .pragma("journal_size_limit", log_bound.to_string())
        })
        .map_sqlx_postgres_opts(|o| {
            o.options([("lock_timeout", format!("{}ms", LOCK_WAIT.as_millis()))])
        });
    options
}

/// Turns a user-facing database URL into the one the driver needs: plain
/// SQLite paths create the file on first start.
pub fn normalise_url(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    }
}

impl Store {
    /// Connects to the database at `url` (`sqlite://…` or `postgres://…`).
    /// SQLite runs in WAL mode with a busy timeout and foreign keys on, and
    /// an acknowledged commit survives power loss: the pool commits with
    /// `synchronous=FULL`, the writer with `synchronous=NORMAL` and its
    /// commits waited for through [`Store::durable`] (see `flush`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, Error> {
        Store::connect_with_log(url, max_connections, DEFAULT_SQLITE_LOG_MB).await
    }

    /// [`Store::connect`], with SQLite's write-ahead log started over past
    /// `sqlite_log_mb` megabytes of frames (its file then stays under twice
    /// that); ignored on PostgreSQL.
    pub async fn connect_with_log(
        url: &str,
        max_connections: u32,
        sqlite_log_mb: u64,
    ) -> Result<Store, Error> {
        let restart_at = (sqlite_log_mb.clamp(1, 1 << 20) as i64) << 20;
        let wal = std::sync::Arc::new(checkpoint::Wal::new(restart_at));
        let log_bound = wal.bound();
        let db = match Database::connect(options(
            url,
            max_connections,
            SqliteSynchronous::Full,
            log_bound,
        ))
        .await
        {
            Ok(db) => db,
            Err(error) => return Err(why_not_connected(url, error).await),
        };
        let event_signal = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let mut listening = None;
        let mut checkpointer = None;
        let mut flusher = None;
        let mut sqlite_writer = None;
        let mut live = None;
        let writer = match db.get_database_backend() {
            DatabaseBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                let file = pool.connect_options().get_filename().to_path_buf();
                if !file.is_file() {
                    return Err(Error::StorageUnavailable(anyhow::anyhow!(
                        "the SQLite database must be a file, not {}",
                        file.display()
                    )));
                }
                checkpointer = Some(std::sync::Arc::new(checkpoint::Checkpointer::start(
                    &file,
                    wal.clone(),
                )?));
                // The writers' commits are flushed by the flusher, off
                // their path.
                let started = flush::Flusher::start(file.clone()).map_err(|e| {
                    Error::StorageUnavailable(
                        anyhow::Error::new(e).context("starting the log-flushing thread"),
                    )
                })?;
                let started = std::sync::Arc::new(started);
                // What a process before this one committed may still be
                // only in the kernel's cache: flushed first, so that all of
                // it counts as on disk.
                started.wait(started.ticket()).await?;
                let on_disk = live::OnDisk::new(newest_event(&db).await);
                let publisher =
                    live::Publisher::new(event_signal.clone(), started.clone(), on_disk);
                live = Some(publisher.readers());
                flusher = Some(started);
                sqlite_writer = Some(std::sync::Arc::new(writer::Writer::start(
                    &file,
                    wal.clone(),
                    Some(publisher),
                )?));
                Database::connect(options(url, 1, SqliteSynchronous::Normal, log_bound))
                    .await
                    .map_err(db_error)?
            }
            DatabaseBackend::Postgres => {
                let listener = listen(url)
                    .await
                    .map_err(|e| db_error(DbErr::Conn(RuntimeErr::SqlxError(e.into()))))?;
                let task = tokio::spawn(forward_notifications(
                    listener,
                    url.to_owned(),
                    event_signal.clone(),
                ));
                listening = Some(std::sync::Arc::new(Listening(task)));
                db.clone()
            }
            _ => db.clone(),
        };
        Ok(Store {
            db,
            writer,
            sqlite_writer,
            checkpointer,
            event_signal,
            live,
            flusher,
            _listening: listening,
        })
    }

    /// Returns which database this is, for logs: "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DatabaseBackend::Sqlite => "sqlite",
            DatabaseBackend::Postgres => "postgres",
            _ => "other",
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), Error> {
        Migrator::up(&self.db, None).await.map_err(db_error)
    }

    /// Returns the names of migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, Error> {
        let pending = Migrator::get_pending_migrations(&self.db)
            .await
            .map_err(db_error)?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }

    /// Returns the names of the migrations applied to this database.
    pub async fn applied_migrations(&self) -> Result<Vec<String>, Error> {
        let applied = Migrator::get_applied_migrations(&self.db)
            .await
            .map_err(db_error)?;
        Ok(applied.iter().map(|m| m.name().to_owned()).collect())
    }

    /// Why this store can acknowledge nothing more until the server
    /// restarts (a flush of SQLite's log failed, and the kernel may have
    /// dropped what it could not write); `None` while it can.
    pub fn broken(&self) -> Option<String> {
        self.flusher
            .as_ref()
            .and_then(|flusher| flusher.failure())
            .map(|cause| broken_reason(&cause))
    }

    /// Resolves with [`Store::broken`]'s reason once the store breaks;
    /// never on a store that cannot (PostgreSQL).
    pub async fn breaks(&self) -> String {
        match &self.flusher {
            Some(flusher) => broken_reason(&flusher.failed().await),
            None => std::future::pending().await,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.db.ping().await.map_err(db_error)
    }

    /// Returns the names of the tables in the database.
    pub async fn table_names(&self) -> Result<Vec<String>, Error> {
        let sql = match self.db.get_database_backend() {
            DatabaseBackend::Postgres => {
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1"
            }
            _ => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
        };
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql,
            ))
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").map_err(db_error))
            .collect()
    }

    /// Closes every connection; pending writes are complete when it returns.
    pub async fn close(self) -> Result<(), Error> {
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
            self.writer.close().await.map_err(db_error)?;
        }
        let closed = self.db.close().await.map_err(db_error);
        // Last: its connection, closing after every other, copies what is
        // left of the log into the database file and removes the log.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
        closed
    }

    /// The connection itself, for tests that inspect or sabotage the schema.
    #[doc(hidden)]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// The SQLite writer thread. Only SQLite's code paths call this, and
    /// a SQLite store always has one.
    fn sqlite_writer(&self) -> &writer::Writer {
        self.sqlite_writer
            .as_deref()
            .expect("a SQLite store starts its writer thread")
    }

    /// Waits until every commit the writer made before this call is
    /// durable; what the writer commits is not acknowledged before.
    pub(crate) fn durable(&self) -> impl std::future::Future<Output = Result<(), Error>> + use<> {
        let ticket = self.flusher.as_ref().map(|f| (f.clone(), f.ticket()));
        async move {
            match ticket {
                Some((flusher, ticket)) => flusher.wait(ticket).await,
                None => Ok(()),
            }
        }
    }

    /// Resolves once a commit that wrote events is durable: on SQLite,
    /// one the writer thread made (which hands the events to the watchers
    /// and wakes the workers itself, see `live`) before this call; on
    /// PostgreSQL, where the commit was durable when it returned, at once,
    /// having woken them.
    pub(crate) fn events_durable(&self) -> crate::domain::Durable {
        if self.sqlite_writer.is_none() {
            self.events_written();
        }
        Box::pin(self.durable())
    }

    /// Wakes the watchers and the workers after a commit that wrote events
    /// and that the SQLite writer thread did not make: on SQLite, by having
    /// the thread hand them over after its next commit, which it makes at
    /// once.
    pub(crate) fn events_written(&self) {
        match &self.sqlite_writer {
            Some(writer) => {
                let nudge = writer.transaction(|_| Ok(writer::Writes::Keep(())));
                tokio::spawn(async move {
                    if let Err(error) = nudge.await {
                        tracing::warn!(
                            error = error.chain(),
                            "handing committed events to the watchers failed"
                        );
                    }
                });
            }
            None => self.wake_workers(),
        }
    }

    /// Wakes the workers (and on PostgreSQL the watchers) of this process.
    pub(crate) fn wake_workers(&self) {
        self.event_signal.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The newest event in the database, 0 when there is none yet (or no
/// events table: migrations have not run).
async fn newest_event(db: &DatabaseConnection) -> i64 {
    let newest = db
        .query_one_raw(sea_orm::Statement::from_string(
            DatabaseBackend::Sqlite,
            live::NEWEST_EVENT,
        ))
        .await;
    match newest {
        Ok(Some(row)) => row.try_get_by_index::<i64>(0).unwrap_or(0),
        _ => 0,
    }
}

/// The rows past `(created_at, last_id)` in a listing ordered by both
/// columns: later ones when it ascends, earlier ones when it descends.
fn past_key<C: sea_orm::ColumnTrait>(
    (created, id): (C, C),
    created_at: i64,
    last_id: impl Into<sea_orm::Value>,
    ascending: bool,
) -> sea_orm::Condition {
    let last_id = last_id.into();
    let (earlier_or_later, same_time) = if ascending {
        (created.gt(created_at), id.gt(last_id))
    } else {
        (created.lt(created_at), id.lt(last_id))
    };
    sea_orm::Condition::any().add(earlier_or_later).add(
        sea_orm::Condition::all()
            .add(created.eq(created_at))
            .add(same_time),
    )
}

/// What a broken store says of itself, given why its flush failed.
fn broken_reason(cause: &str) -> String {
    format!(
        "flushing the SQLite write-ahead log failed ({cause}); nothing is acknowledged until the server restarts"
    )
}

/// Whether SQLite's (extended) result code names a condition a retry can
/// outlast: busy past the busy timeout, locked, read-only, an I/O error,
/// full, cannot open. The writer thread's errors and the pool's are judged
/// by this one table (`writer::sqlite_error`, [`db_error`]).
pub(super) fn sqlite_transient(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 8 | 10 | 13 | 14)
}

/// Whether a PostgreSQL SQLSTATE names a condition a retry can outlast:
/// connection exceptions (08), insufficient resources (53: disk full, out
/// of memory, too many connections), operator intervention (57: shutdown,
/// cancelled), a lock not available in time (55P03), serialization
/// failures (40001) and deadlocks (40P01).
fn postgres_transient(sqlstate: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
        || matches!(sqlstate, "55P03" | "40001" | "40P01")
}

/// A value stored as JSON text.
fn json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(e.into()))
}

/// Begins a transaction on `db` that reads before it writes. On SQLite it
/// takes the write lock at `BEGIN` (`IMMEDIATE`), waiting behind other
/// writers as any write does. A deferred transaction reads a snapshot, and
/// its first write is refused at once (SQLITE_BUSY_SNAPSHOT, "database is
/// locked") when another connection committed after that snapshot: the
/// writer thread's turn keeps that thread out, not the pool's own writes,
/// such as a key's last-used time. Such a refusal answered a whole batch of
/// sends UNAVAILABLE (`tests/api/limits.rs`). PostgreSQL ignores the mode.
pub(crate) async fn begin_writing(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    db.begin_with_options(options).await.map_err(db_error)
}

/// The error of a pool that could not open its first connection. sqlx's
/// pool answers a PostgreSQL server it cannot use with "pool timed out",
/// hiding why; one connection made directly says why (refused, no such
/// database or role, a wrong password).
async fn why_not_connected(url: &str, error: DbErr) -> Error {
    use sea_orm::sqlx::Connection as _;
    let timed_out = matches!(
        &error,
        DbErr::Conn(RuntimeErr::SqlxError(e)) if matches!(e.as_ref(), sea_orm::sqlx::Error::PoolTimedOut)
    );
    if timed_out && (url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            sea_orm::sqlx::postgres::PgConnection::connect(url),
        )
        .await;
        if let Ok(Err(cause)) = attempt {
            return Error::StorageUnavailable(
                anyhow::Error::new(cause).context("cannot connect to PostgreSQL"),
            );
        }
    }
    db_error(error)
}

/// Classifies a database error: lost or unreachable connections, and the
/// database's own errors that a retry can outlast ([`sqlite_transient`],
/// [`postgres_transient`]), are STORAGE_UNAVAILABLE (retryable); everything
/// else is internal.
pub(crate) fn db_error(err: DbErr) -> Error {
    let unavailable = match &err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed => true,
                sea_orm::sqlx::Error::Database(e) => {
                    let sqlite = e
                        .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                        .is_some();
                    e.code().is_some_and(|code| {
                        if sqlite {
                            code.parse().is_ok_and(sqlite_transient)
                        } else {
                            postgres_transient(&code)
                        }
                    })
                }
                _ => false,
            }
        }
        _ => false,
    };
    if unavailable {
        Error::StorageUnavailable(err.into())
    } else {
        Error::Internal(err.into())
    }
}

#[cfg(test)]
mod tests {
    use super::{postgres_transient, sqlite_transient};

    #[test]
    fn errors_a_retry_can_outlast_are_told_from_the_rest() {
        // SQLite: busy, busy with a stale snapshot, full, I/O, read-only.
        for code in [5, 517, 6, 13, 10, 778, 8, 14] {
            assert!(sqlite_transient(code), "{code}");
        }
        // SQLite: a constraint, a UNIQUE constraint, a syntax error.
        for code in [19, 2067, 1] {
            assert!(!sqlite_transient(code), "{code}");
        }
        // PostgreSQL: connection lost, disk full, shut down, cancelled by a
        // timeout, lock timeout, serialization failure, deadlock.
        for code in [
            "08006", "53100", "57P01", "57014", "55P03", "40001", "40P01",
        ] {
            assert!(postgres_transient(code), "{code}");
        }
        // PostgreSQL: unique and foreign key violations, undefined table.
        for code in ["23505", "23503", "42P01"] {
            assert!(!postgres_transient(code), "{code}");
        }
    }
}
