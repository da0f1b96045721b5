//! Storage: SeaORM over SQLite (embedded default) or PostgreSQL. The only
//! module that imports `sea_orm`; it implements the store traits the domain
//! defines.

mod accounts;
mod delivery;
pub mod entities;
mod messages;
mod suppressions;
mod templates;
mod two_trips;

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
    /// The connection the accept path's group commit writes through. On
    /// SQLite it is one connection of its own, so its page cache stays
    /// warm (a pooled connection drops its cache whenever another one
    /// wrote) and the writer never waits for the pool; on PostgreSQL it is
    /// the pool.
    writer: DatabaseConnection,
    /// Bumped after every commit that wrote events, and on PostgreSQL
    /// whenever any process sharing the database did: wakes watchers and
    /// the worker pool.
    event_signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// What the SQLite checkpoints last saw of the write-ahead log.
    wal: std::sync::Arc<Wal>,
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

/// How connections to `url` are opened. On SQLite reads go through a
/// memory map and a page cache larger than the 2 MB default, which saves a
/// copy of every page read from the file. The map is held to 64 MB: mapped
/// pages count as the server's resident memory, and with the log started
/// over (see [`Wal`]) reads come from the database file, so a 256 MB map
/// took B3's peak RSS from 88 MB to 170 MB.
fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(normalise_url(url));
    options
        .max_connections(max_connections)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .pragma("mmap_size", "67108864")
                .pragma("cache_size", "-16384")
                .pragma("temp_store", "memory")
                // Checkpoints run in the background (`checkpoint_loop`),
                // not inside whichever commit crosses the threshold.
                .pragma("wal_autocheckpoint", "0")
                // A log started over keeps its file; beyond this it shrinks.
                .pragma("journal_size_limit", "67108864")
        });
    options
}

/// How often the SQLite write-ahead log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Past this many frames (4 KB pages) the write-ahead log is started over
/// from its beginning (`Wal::restart_due`): 64 MB.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// At most this many frames still to copy for the writer to finish a
/// checkpoint itself: 4 MB, a few milliseconds.
const WAL_RESTART_REMAINING: i64 = 1_024;

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
/// and the background checkpoint has copied nearly all of it, the writer
/// runs one checkpoint itself just before its next transaction, with
/// nothing being written meanwhile: it completes, and that transaction
/// starts the log over.
#[derive(Debug, Default)]
pub(crate) struct Wal {
    /// Frames in the log.
    frames: std::sync::atomic::AtomicI64,
    /// Of those, frames copied into the database.
    copied: std::sync::atomic::AtomicI64,
}

impl Wal {
    /// Notes what a checkpoint reported.
    fn saw(&self, frames: i64, copied: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.frames.store(frames, Relaxed);
        self.copied.store(copied, Relaxed);
    }

    /// Whether the writer should checkpoint before its next transaction;
    /// once true it is false until the next checkpoint reports.
    pub(crate) fn restart_due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let frames = self.frames.load(Relaxed);
        let due = frames >= WAL_MAX_FRAMES
            || (frames >= WAL_RESTART_FRAMES
                && frames - self.copied.load(Relaxed) <= WAL_RESTART_REMAINING);
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
/// Ends when the pool is closed.
async fn checkpoint_loop(db: DatabaseConnection, wal: std::sync::Arc<Wal>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checkpoint = sea_orm::Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA wal_checkpoint(PASSIVE)",
        );
        match db.query_one_raw(checkpoint).await {
            // (busy, frames in the log, frames copied); -1 when not in WAL mode.
            Ok(Some(row)) => {
                if let (Ok(frames), Ok(copied)) = (row.try_get_by_index(1), row.try_get_by_index(2))
                {
                    wal.saw(frames, copied);
                }
            }
            Ok(None) => {}
            Err(DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) => return,
            Err(error) if is_closed(&error) => return,
            Err(error) => {
                tracing::warn!(%error, "the SQLite checkpoint failed; it runs again shortly")
            }
        }
    }
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
    /// SQLite runs in WAL mode with `synchronous=FULL`, a busy timeout and
    /// foreign keys on, so an acknowledged commit survives power loss.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, Error> {
        let db = Database::connect(options(url, max_connections))
            .await
            .map_err(db_error)?;
        let event_signal = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let mut listening = None;
        let wal = std::sync::Arc::new(Wal::default());
        let writer = match db.get_database_backend() {
            DatabaseBackend::Sqlite => {
                tokio::spawn(checkpoint_loop(db.clone(), wal.clone()));
                Database::connect(options(url, 1)).await.map_err(db_error)?
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
            event_signal,
            wal,
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
        if self.db.get_database_backend() == DatabaseBackend::Sqlite {
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

    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
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

    #[test]
    fn the_log_is_started_over_once_long_and_nearly_copied_or_too_long() {
        let wal = Wal::default();
        assert!(!wal.restart_due(), "an empty log");
        wal.saw(WAL_RESTART_FRAMES - 1, WAL_RESTART_FRAMES - 1);
        assert!(!wal.restart_due(), "short, all copied");
        wal.saw(
            WAL_RESTART_FRAMES,
            WAL_RESTART_FRAMES - WAL_RESTART_REMAINING - 1,
        );
        assert!(!wal.restart_due(), "long, but too much left to copy");
        wal.saw(
            WAL_RESTART_FRAMES,
            WAL_RESTART_FRAMES - WAL_RESTART_REMAINING,
        );
        assert!(wal.restart_due(), "long and nearly copied");
        assert!(!wal.restart_due(), "once until the next checkpoint reports");
        wal.saw(WAL_MAX_FRAMES, 0);
        assert!(wal.restart_due(), "too long, whatever is left");
    }
}
