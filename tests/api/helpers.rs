//! The harness: `spawn_app()` starts the real server on port 0 with a fresh
//! database (a temporary SQLite file, or a new PostgreSQL database when
//! `POSTHORN_TEST_DATABASE_URL` is set) and two accounts with keys.

use std::net::SocketAddr;

use posthorn::config::Settings;
use posthorn::domain::accounts::Accounts;
use posthorn::domain::keys::KeyMode;
use posthorn::domain::{Scope, Scopes};
use posthorn::startup::Application;
use posthorn::storage::Store;
use sea_orm::ConnectionTrait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test database that is removed when the test ends.
pub enum TestDatabase {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// Creates a fresh database; `None` for PostgreSQL when no URL is configured.
    pub async fn create(backend: Backend) -> Option<(TestDatabase, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("posthorn.db").display());
                Some((TestDatabase::Sqlite { _dir: dir }, url))
            }
            Backend::Postgres => {
                let admin_url = std::env::var("POSTHORN_TEST_DATABASE_URL")
                    .ok()
                    .filter(|u| !u.is_empty())?;
                let name = format!("posthorn_t_{}", uuid::Uuid::now_v7().simple());
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .expect("connect to POSTHORN_TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.expect("close admin connection");
                let (base, _) = admin_url
                    .rsplit_once('/')
                    .expect("a database URL ends in /DATABASE");
                let url = format!("{base}/{name}");
                Some((TestDatabase::Postgres { admin_url, name }, url))
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any runtime guarantee: use a thread of our own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// An account created for a test, with a key holding every scope.
pub struct TestAccount {
    pub name: String,
    pub id: String,
    pub key: String,
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    /// The links-only listener's URL, when the test asked for one.
    pub public_url: Option<String>,
    pub channel: Channel,
    pub http: reqwest::Client,
    pub store: Store,
    pub account_a: TestAccount,
    pub account_b: TestAccount,
    pub backend: Backend,
    /// The test database, for a second connection to it.
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

/// Starts the server on `backend`; `None` when that backend is not configured.
pub async fn try_spawn_app(backend: Backend) -> Option<TestApp> {
    try_spawn_app_with(backend, |_| {}).await
}

/// Starts the server on `backend` with settings changed by `configure`.
pub async fn try_spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let (database, url) = TestDatabase::create(backend).await?;
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().expect("loopback address");
    settings.database_url = url;
    settings.database_max_connections = 5;
    settings.shutdown_grace = std::time::Duration::from_secs(10);
    // Tests send in bursts; the limits have tests of their own.
    settings.policy.rate_per_second = 100_000.0;
    settings.policy.burst = 100_000;
    // Accept-side tests see mail as accepted; delivery tests turn it on.
    settings.deliver = false;
    configure(&mut settings);

    let store = Store::connect_with_log(
        &settings.database_url,
        settings.database_max_connections,
        settings.sqlite_log_mb,
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let accounts = Accounts::new(store.clone());
    let account_a = create_account(&accounts, "acme").await;
    let account_b = create_account(&accounts, "globex").await;

    let app = Application::build(&settings, store.clone())
        .await
        .expect("build application");
    let addr = app.local_addr();
    let public_url = app.public_addr().map(|public| format!("http://{public}"));
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = shutdown_rx.await;
    }));
    let base_url = format!("http://{addr}");
    let channel = Channel::from_shared(base_url.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connect gRPC channel");
    Some(TestApp {
        addr,
        base_url,
        public_url,
        channel,
        http: reqwest::Client::builder()
            .http1_only()
            .build()
            .expect("http client"),
        store,
        account_a,
        account_b,
        backend,
        database_url: settings.database_url.clone(),
        shutdown: Some(shutdown_tx),
        server: Some(server),
        _database: database,
    })
}

/// Starts the server on SQLite.
pub async fn spawn_app() -> TestApp {
    try_spawn_app(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

async fn create_account(accounts: &Accounts<Store>, name: &str) -> TestAccount {
    let account = accounts.create_account(name).await.expect("create account");
    accounts
        .add_identity(name, &format!("{name}.example"), true)
        .await
        .expect("add identity");
    let key = accounts
        .create_key(name, "test", Scopes::all(), KeyMode::Live)
        .await
        .expect("create key");
    TestAccount {
        name: name.to_owned(),
        id: account.id,
        key: key.plaintext,
    }
}

impl TestApp {
    /// Creates another key for account A with exactly these scopes.
    pub async fn key_with_scopes(&self, scopes: &[Scope]) -> String {
        Accounts::new(self.store.clone())
            .create_key(
                &self.account_a.name,
                "scoped",
                Scopes::new(scopes.iter().copied()),
                KeyMode::Live,
            )
            .await
            .expect("create key")
            .plaintext
    }

    /// A test-mode key of account A with every scope: its mail is captured.
    pub async fn test_mode_key(&self) -> String {
        Accounts::new(self.store.clone())
            .create_key(&self.account_a.name, "test", Scopes::all(), KeyMode::Test)
            .await
            .expect("create key")
            .plaintext
    }

    /// The server's database connection.
    pub fn store_connection(&self) -> &sea_orm::DatabaseConnection {
        self.store.connection()
    }

    /// Revokes one of account A's keys.
    pub async fn revoke(&self, key: &str) {
        let prefix = posthorn::domain::keys::parse(key)
            .expect("a valid key")
            .prefix;
        Accounts::new(self.store.clone())
            .revoke_key(&self.account_a.name, &prefix)
            .await
            .expect("revoke");
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.wait_stopped().await
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server task to end and returns its result.
    pub async fn wait_stopped(&mut self) -> anyhow::Result<()> {
        let server = self.server.take().expect("the server is running");
        server.await.expect("the server task does not panic")
    }
}

/// Adds an API key to a tonic request, in one of the two accepted headers.
pub fn with_key<T>(message: T, header: KeyHeader, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let (name, value) = header.pair(key);
    request
        .metadata_mut()
        .insert(name, value.parse().expect("ascii header value"));
    request
}

/// The two ways a key can be presented.
#[derive(Clone, Copy, Debug)]
pub enum KeyHeader {
    Bearer,
    XApiKey,
}

impl KeyHeader {
    pub const BOTH: [KeyHeader; 2] = [KeyHeader::Bearer, KeyHeader::XApiKey];

    pub fn pair(self, key: &str) -> (&'static str, String) {
        match self {
            KeyHeader::Bearer => ("authorization", format!("Bearer {key}")),
            KeyHeader::XApiKey => ("x-api-key", key.to_owned()),
        }
    }
}

/// Returns the `ErrorInfo.reason` of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Runs each scenario on SQLite, and on PostgreSQL when
/// `POSTHORN_TEST_DATABASE_URL` is set, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    // `configure = |settings| …;` first adjusts each server's settings.
    (configure = $configure:expr; $(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn scenario($app: $crate::helpers::TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::try_spawn_app_with($crate::helpers::Backend::Sqlite, $configure)
                        .await
                        .expect("SQLite is always available");
                    scenario(app).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    match $crate::helpers::try_spawn_app_with($crate::helpers::Backend::Postgres, $configure).await {
                        Some(app) => scenario(app).await,
                        None => eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set"),
                    }
                }
            }
        )*
    };
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $crate::on_both_databases! {
            configure = |_| {};
            $(async fn $name($app: TestApp) $body)*
        }
    };
}

/// The `ErrorInfo.reason` of a `google.rpc.Status` in its JSON form (REST).
pub fn json_reason(status: &serde_json::Value) -> String {
    status["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        })
        .and_then(|d| d["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The fields of the `BadRequest` violations of a JSON `google.rpc.Status`.
pub fn json_violations(status: &serde_json::Value) -> Vec<String> {
    status["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        })
        .and_then(|d| d["field_violations"].as_array())
        .map(|v| {
            v.iter()
                .filter_map(|v| v["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
