//! Storage: SeaORM over SQLite (embedded default) or PostgreSQL. The only
//! module that imports `sea_orm`; it implements the store traits the domain
//! defines.

mod accounts;
mod delivery;
pub mod entities;
mod messages;
mod suppressions;
mod templates;

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
    /// Bumped after every commit that wrote events: wakes watchers.
    event_signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
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
            });
        let db = Database::connect(options).await.map_err(db_error)?;
        Ok(Store {
            db,
            event_signal: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
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
