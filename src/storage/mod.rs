//! Storage: SeaORM over SQLite (embedded default) or PostgreSQL. The only
//! module that imports `sea_orm`; it implements the store traits the domain
//! defines.

mod accept_at_once;
mod accounts;
mod delivery;
pub mod entities;
mod flush;
mod messages;
mod suppressions;
mod templates;
mod writer;

use std::time::Duration;

use posthorn_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    RuntimeErr,
};

use crate::domain::Error;

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
    /// whenever any process sharing the database did: wakes watchers and
    /// the worker pool.
    event_signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Makes the SQLite writer's commits durable (see `flush`); `None` on
    /// PostgreSQL, whose commits are durable when they return, and for an
    /// in-memory database.
    flusher: Option<std::sync::Arc<flush::Flusher>>,
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

/// How connections to `url` are opened. On SQLite a connection keeps a
/// page cache larger than the 2 MB default and reads without a memory map:
/// mapped pages count as the server's resident memory (a 64 MB map put
/// B3's peak at 135 MB, 79–85 MB without), and every connection remapped
/// the file each time it grew, each time with a TLB shootdown on every
/// core.
fn options(url: &str, max_connections: u32, synchronous: SqliteSynchronous) -> ConnectOptions {
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
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .pragma("mmap_size", "0")
                .pragma("cache_size", "-16384")
                .pragma("temp_store", "memory")
                // Checkpoints run in the background (`checkpoint_loop`),
                // not inside whichever commit crosses the threshold.
                .pragma("wal_autocheckpoint", "0")
                // A log started over keeps its file (shrinking it costs
                // the writer 6 ms); only past the log's hard bound
                // (`WAL_MAX_FRAMES`) is it cut back to that.
                .pragma("journal_size_limit", "268435456")
        });
    options
}

/// How often the SQLite write-ahead log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Past this many frames (4 KB pages) the write-ahead log is started over
/// from its beginning (`Wal::restart_due`): 64 MB.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// At most this many frames (1 MB) left for the writer to copy when it
/// finishes a checkpoint itself. A checkpoint finds to copy what was
/// written while the one before it ran, so while the log is long and the
/// last one copied more than this, the background checkpoints run back to
/// back (at most [`CATCH_UP_PASSES`] a tick), each shorter than the last:
/// the writer's own checkpoint, which every accept waits for, stays short.
const WAL_RESTART_REMAINING: i64 = 256;

/// At most this many background checkpoints in a row per tick.
const CATCH_UP_PASSES: u32 = 16;

/// Past this many frames (256 MB) the writer finishes the checkpoint
/// whatever is left to copy.
const WAL_MAX_FRAMES: i64 = 4 * WAL_RESTART_FRAMES;

/// The SQLite write-ahead log as the last checkpoint found it.
///
/// SQLite starts the log over from its beginning only when a write begins
/// after a checkpoint that copied every frame. Under steady writes the
/// background checkpoint never catches up with the frames added while it
/// runs, so the log would grow without end (gigabytes within a minute of
/// B1, every fsync paying for the growing file). So once the log is long
/// and the background checkpoints have nearly caught up with it, the writer
/// runs one checkpoint itself just before its next transaction, with
/// nothing being written meanwhile: it completes, and that transaction
/// starts the log over.
#[derive(Debug, Default)]
pub(crate) struct Wal {
    /// Frames in the log.
    frames: std::sync::atomic::AtomicI64,
    /// Of those, frames copied into the database.
    copied: std::sync::atomic::AtomicI64,
    /// Frames the last checkpoint copied: about what the next will find.
    last_copy: std::sync::atomic::AtomicI64,
}

impl Wal {
    /// Notes what a checkpoint reported; returns how many frames it copied.
    fn saw(&self, frames: i64, copied: i64) -> i64 {
        use std::sync::atomic::Ordering::Relaxed;
        let before = self.copied.swap(copied, Relaxed);
        // Fewer copied than before: the log was started over meanwhile.
        let last_copy = if copied >= before {
            copied - before
        } else {
            copied
        };
        self.last_copy.store(last_copy, Relaxed);
        self.frames.store(frames, Relaxed);
        last_copy
    }

    /// About how many frames a checkpoint would copy now.
    fn behind(&self) -> i64 {
        use std::sync::atomic::Ordering::Relaxed;
        let uncopied = self.frames.load(Relaxed) - self.copied.load(Relaxed);
        uncopied.max(self.last_copy.load(Relaxed))
    }

    /// Whether the log is long and the background checkpoints have not yet
    /// caught up with it closely enough for the writer to finish.
    fn catching_up(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let frames = self.frames.load(Relaxed);
        (WAL_RESTART_FRAMES..WAL_MAX_FRAMES).contains(&frames)
            && self.behind() > WAL_RESTART_REMAINING
    }

    /// Whether the writer should checkpoint before its next transaction;
    /// once true it is false until the next checkpoint reports.
    pub(crate) fn restart_due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let frames = self.frames.load(Relaxed);
        let due = frames >= WAL_MAX_FRAMES
            || (frames >= WAL_RESTART_FRAMES && self.behind() <= WAL_RESTART_REMAINING);
        if due {
            self.saw(0, 0);
        }
        due
    }
}

/// Copies the SQLite write-ahead log into the database file every
/// [`CHECKPOINT_EVERY`], on a pooled connection, so no accept waits for a
/// checkpoint (SQLite's own would run inside the commit that crossed 1,000
/// pages, and showed as the p99 of B1). PASSIVE never blocks the writer.
/// After each checkpoint the database file is flushed ([`database_file`]).
/// Ends when the pool is closed.
async fn checkpoint_loop(db: DatabaseConnection, wal: std::sync::Arc<Wal>) {
    let file = database_file(&db);
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for _ in 0..CATCH_UP_PASSES {
            let copied = match checkpoint(&db).await {
                Ok(Some((frames, copied))) => wal.saw(frames, copied),
                Ok(None) => 0,
                Err(DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) => return,
                Err(error) if is_closed(&error) => return,
                Err(error) => {
                    tracing::warn!(%error, "the SQLite checkpoint failed; it runs again shortly");
                    break;
                }
            };
            // Nothing copied, nothing to flush.
            if let (true, Some(file)) = (copied > 0, &file) {
                let file = file.clone();
                match tokio::task::spawn_blocking(move || flush_in_steps(&file)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "flushing the SQLite database file failed")
                    }
                    Err(_) => return,
                }
            }
            if !wal.catching_up() {
                break;
            }
        }
    }
}

/// One PASSIVE checkpoint: the frames in the log and the frames copied, or
/// `None` when the database is not in WAL mode.
async fn checkpoint(db: &DatabaseConnection) -> std::result::Result<Option<(i64, i64)>, DbErr> {
    let sql = "PRAGMA wal_checkpoint(PASSIVE)";
    let statement = sea_orm::Statement::from_string(DatabaseBackend::Sqlite, sql);
    // (busy, frames in the log, frames copied); -1 when not in WAL mode.
    Ok(db.query_one_raw(statement).await?.and_then(|row| {
        let frames: i64 = row.try_get_by_index(1).ok()?;
        let copied: i64 = row.try_get_by_index(2).ok()?;
        (frames >= 0).then_some((frames, copied))
    }))
}

/// The SQLite database file, opened once more so the checkpoint loop can
/// flush it. A background checkpoint copies pages into the database but
/// flushes the file only when it reaches the end of the log, which under
/// steady writes it never does; so every page it copied since the log last
/// started over waited for the writer's own checkpoint to flush them, 15 ms
/// in B1, with every accept waiting behind it. Flushed after each background
/// checkpoint, the writer's flush holds only what it copied itself.
///
/// Closing this descriptor releases the process's POSIX locks on the file
/// (SQLite's own connections in this process keep their state): it is
/// closed only when the loop ends, with the store, and Posthorn is the one
/// process using its SQLite database. `None` for an in-memory database.
fn database_file(db: &DatabaseConnection) -> Option<std::sync::Arc<std::fs::File>> {
    let options = db.get_sqlite_connection_pool().connect_options();
    std::fs::File::open(options.get_filename())
        .ok()
        .map(std::sync::Arc::new)
}

/// How much of the database file one step of [`flush_in_steps`] writes out.
#[cfg(target_os = "linux")]
const FLUSH_STEP: i64 = 1 << 20;

/// Writes the database file's dirty pages out a megabyte of the file at a
/// time, then flushes it. One `fdatasync` puts all of a checkpoint's pages
/// (up to 20 MB, scattered) before the device at once, and the writer's
/// next commit, whose own flush queues behind them, waited 4–6 ms for it;
/// in steps, the commits' flushes get through between them.
fn flush_in_steps(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        let mut offset = 0;
        while offset < len {
            // SAFETY: sync_file_range reads its integer arguments; the
            // descriptor is open for as long as `file` is borrowed.
            if unsafe { libc::sync_file_range(file.as_raw_fd(), offset, FLUSH_STEP, flags) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            offset += FLUSH_STEP;
        }
    }
    file.sync_data()
}

fn is_closed(error: &DbErr) -> bool {
    matches!(
        error,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
            if matches!(e.as_ref(), sea_orm::sqlx::Error::PoolClosed)
    )
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
        let db = Database::connect(options(url, max_connections, SqliteSynchronous::Full))
            .await
            .map_err(db_error)?;
        let event_signal = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let mut listening = None;
        let wal = std::sync::Arc::new(Wal::default());
        let mut flusher = None;
        let mut sqlite_writer = None;
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
                tokio::spawn(checkpoint_loop(db.clone(), wal.clone()));
                // The writers' commits are flushed by the flusher, off
                // their path.
                let started = flush::Flusher::start(file.clone()).map_err(|e| {
                    Error::StorageUnavailable(
                        anyhow::Error::new(e).context("starting the log-flushing thread"),
                    )
                })?;
                flusher = Some(std::sync::Arc::new(started));
                sqlite_writer = Some(std::sync::Arc::new(writer::Writer::start(
                    &file,
                    wal.clone(),
                )?));
                Database::connect(options(url, 1, SqliteSynchronous::Normal))
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
            event_signal,
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
        self.db.close().await.map_err(db_error)
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

    /// Resolves once every commit the writer made before this call is
    /// durable, and then wakes the watchers and the workers.
    pub(crate) fn durable_then_signal(&self) -> crate::domain::Durable {
        let (durable, store) = (self.durable(), self.clone());
        Box::pin(async move {
            durable.await?;
            store.events_written();
            Ok(())
        })
    }

    /// Wakes the watchers after a commit that wrote events.
    pub(crate) fn events_written(&self) {
        self.event_signal.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Classifies a database error: lost or unreachable connections are
/// STORAGE_UNAVAILABLE (retryable); everything else is internal.
pub(crate) fn db_error(err: DbErr) -> Error {
    let unavailable = match &err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    };
    if unavailable {
        Error::StorageUnavailable(err.into())
    } else {
        Error::Internal(err.into())
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    /// A log of `frames` whose last checkpoint copied `last` and left
    /// `left` uncopied.
    fn log(frames: i64, last: i64, left: i64) -> Wal {
        let wal = Wal::default();
        wal.saw(frames, frames - left - last);
        wal.saw(frames, frames - left);
        wal
    }

    #[test]
    fn the_log_is_started_over_once_long_and_caught_up_with_or_too_long() {
        assert!(!Wal::default().restart_due(), "an empty log");
        let limit = WAL_RESTART_REMAINING;
        assert!(!log(WAL_RESTART_FRAMES - 1, 0, 0).restart_due(), "short");
        let far = log(WAL_RESTART_FRAMES, limit + 1, 0);
        assert!(!far.restart_due(), "long, the last copy too large");
        let left = log(WAL_RESTART_FRAMES, 0, limit + 1);
        assert!(!left.restart_due(), "long, too much left to copy");
        let near = log(WAL_RESTART_FRAMES, limit, limit);
        assert!(near.restart_due(), "long and caught up with");
        assert!(
            !near.restart_due(),
            "once until the next checkpoint reports"
        );
        let huge = log(WAL_MAX_FRAMES, WAL_MAX_FRAMES, 0);
        assert!(huge.restart_due(), "too long, whatever is left");
    }

    #[test]
    fn the_background_checkpoint_catches_up_only_with_a_long_log_far_behind() {
        let limit = WAL_RESTART_REMAINING;
        assert!(
            !log(WAL_RESTART_FRAMES - 1, 5_000, 0).catching_up(),
            "short"
        );
        assert!(
            log(WAL_RESTART_FRAMES, limit + 1, 0).catching_up(),
            "a large last copy"
        );
        assert!(
            log(WAL_RESTART_FRAMES, 0, limit + 1).catching_up(),
            "much left"
        );
        assert!(
            !log(WAL_RESTART_FRAMES, limit, 0).catching_up(),
            "close enough"
        );
        assert!(
            !log(WAL_MAX_FRAMES, 5_000, 0).catching_up(),
            "too long: the writer finishes now"
        );
    }

    #[test]
    fn a_log_started_over_counts_its_first_copy_from_nothing() {
        let wal = log(WAL_RESTART_FRAMES, 5_000, 0);
        wal.saw(300, 300);
        assert_eq!(wal.behind(), 300);
    }
}
