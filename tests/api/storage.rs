//! Migrations on both databases: applied on start, the whole schema present.

use crate::on_both_databases;

/// A SQLite database from before the idempotency records were keyed by
/// their primary key alone (`m20261201_000003_lean_indexes` rebuilds the
/// table), and one from before they went back to a table of their own
/// (`m20261207_000007_idempotency_rowid` rebuilds it again): a record
/// stored then is still there, and still found, after; and a second
/// claim of its key is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_stored_before_the_table_was_rebuilt_are_kept() {
    for migrated in [2, 6] {
        record_survives_the_rebuilds(migrated).await;
    }
}

async fn record_survives_the_rebuilds(migrated: u32) {
    use posthorn::domain::send::commit::AcceptStore;
    use posthorn_migrations::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/older.db", dir.path().display());
    let store = posthorn::storage::Store::connect(&url, 4).await.unwrap();
    Migrator::up(store.connection(), Some(migrated))
        .await
        .unwrap();
    let accounts = posthorn::domain::accounts::Accounts::new(store.clone());
    let account = accounts.create_account("acme").await.unwrap();
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::hours(24);
    let insert = |key: &str| {
        format!(
            "INSERT INTO idempotency_keys (account_id, idempotency_key, method, fingerprint, \
             state, response, created_at, expires_at) VALUES ('{}', '{key}', 'SendEmail', 'f1', \
             'complete', x'0a03616263', {}, {})",
            account.id,
            now.timestamp_micros(),
            expires.timestamp_micros()
        )
    };
    store
        .connection()
        .execute_unprepared(&insert("order-1001"))
        .await
        .unwrap();

    store.migrate().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    let record = store
        .idempotency_record(&account.id, "order-1001", now)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the record stored after migration {migrated} survives"));
    assert_eq!(
        (record.method.as_str(), record.fingerprint.as_str()),
        ("SendEmail", "f1")
    );
    assert_eq!(record.response, [0x0a, 0x03, b'a', b'b', b'c']);
    assert_eq!(
        record.expires_at.timestamp_micros(),
        expires.timestamp_micros()
    );
    let again = store
        .connection()
        .execute_unprepared(&insert("order-1001"))
        .await;
    assert!(again.is_err(), "the key stays unique: {again:?}");
    let rows = store
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE name = 'idempotency_keys'",
        ))
        .await
        .unwrap();
    let sql: String = rows[0].try_get_by_index(0).unwrap();
    assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
}

const TABLES: [&str; 21] = [
    "daily_usage",
    "accounts",
    "api_keys",
    "attachments",
    "branding",
    "contacts",
    "delivery_attempts",
    "events",
    "identities",
    "idempotency_keys",
    "message_tags",
    "messages",
    "recipients",
    "server_keys",
    "suppressions",
    "template_versions",
    "templates",
    "webhook_attempts",
    "webhook_deliveries",
    "webhooks",
    "seaql_migrations",
];

on_both_databases! {
    async fn migrations_apply_on_start_and_create_the_whole_schema(app: TestApp) {
        assert_eq!(
            app.store.applied_migrations().await.unwrap(),
            [
                "m20261122_000001_initial",
                "m20261122_000002_limits",
                "m20261201_000003_lean_indexes",
                "m20261204_000004_server_keys",
                "m20261204_000005_engagement",
                "m20261205_000006_webhook_outbox",
                "m20261207_000007_idempotency_rowid",
            ]
        );
        assert!(app.store.pending_migrations().await.unwrap().is_empty());
        let tables = app.store.table_names().await.unwrap();
        for table in TABLES {
            assert!(tables.iter().any(|t| t == table), "{table} missing on {:?}: {tables:?}", app.backend);
        }
    }

    async fn migrating_again_is_a_no_op(app: TestApp) {
        let applied = app.store.applied_migrations().await.unwrap();
        app.store.migrate().await.unwrap();
        assert_eq!(app.store.applied_migrations().await.unwrap(), applied);
        assert!(app.store.pending_migrations().await.unwrap().is_empty());
    }

    async fn accounts_keys_and_identities_round_trip(app: TestApp) {
        use posthorn::domain::accounts::{Accounts, IdentityKind};
        let accounts = Accounts::new(app.store.clone());
        let names: Vec<String> = accounts.list_accounts().await.unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["acme", "globex"]);
        let identities = accounts.list_identities("acme").await.unwrap();
        assert_eq!(identities.len(), 1);
        assert_eq!((identities[0].kind, identities[0].value.as_str(), identities[0].verified), (IdentityKind::Domain, "acme.example", true));
        let again = accounts.add_identity("acme", "ACME.example", true).await.unwrap_err();
        assert!(matches!(again, posthorn::domain::Error::AlreadyExists { .. }), "{again:?}");
        accounts.remove_identity("acme", "acme.example").await.unwrap();
        assert!(accounts.list_identities("acme").await.unwrap().is_empty());
        assert!(accounts.list_identities("globex").await.unwrap().len() == 1, "another account's identities are untouched");
        let duplicate = accounts.create_account("acme").await.unwrap_err();
        assert!(matches!(duplicate, posthorn::domain::Error::AlreadyExists { .. }));
    }
}

/// The SQLite write-ahead log's salt, which SQLite changes each time it
/// starts the log over, and the log file's size.
fn log_salt_and_size(path: &str) -> ([u8; 8], u64) {
    use std::io::Read;
    let mut header = [0; 24];
    let Ok(mut file) = std::fs::File::open(path) else {
        return ([0; 8], 0);
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file.read_exact(&mut header).is_err() {
        return ([0; 8], size);
    }
    (header[16..24].try_into().unwrap(), size)
}

/// Under a steady stream of sends the SQLite write-ahead log keeps being
/// started over, and its file stays bounded (twice `sqlite_log_mb`, here
/// 64 MB, give or take what is written before a checkpoint reports the
/// log's length) though several times that is written. SQLite restarts
/// the log only after a checkpoint that copied every frame, which a
/// background checkpoint never completes while writes go on: before the
/// writer finished it itself, one accept benchmark left a 2.3 GB log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_log_stays_bounded_under_a_steady_stream_of_sends() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde_json::json;

    let app = crate::helpers::try_spawn_app_with(crate::helpers::Backend::Sqlite, |s| {
        s.policy.rate_per_second = 1_000_000.0;
        s.policy.burst = 1_000_000;
        s.policy.daily_quota = None;
        s.sqlite_log_mb = 64;
    })
    .await
    .expect("SQLite is always available");
    let app = Arc::new(app);
    let mut item = crate::send::inline_json();
    item["html"] = json!(format!("<p>{}</p>", "x".repeat(100_000)));
    // About 1 MB of pages per request.
    let body = Arc::new(json!({ "messages": vec![item; 10] }));
    let send = |app: Arc<crate::helpers::TestApp>, body: Arc<serde_json::Value>| async move {
        let key = app.account_a.key.clone();
        let (status, _, json) = crate::send::post(&app, &key, "/v1/send/batch", &body, &[]).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{json}");
        assert_eq!(json["accepted_count"], 10, "{json}");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..3)
        .map(|_| {
            let (app, body, stop) = (app.clone(), body.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    send(app.clone(), body.clone()).await;
                }
            })
        })
        .collect();
    let wal = format!("{}-wal", app.database_url.trim_start_matches("sqlite://"));
    let (mut salt, mut largest, mut restarts) = (log_salt_and_size(&wal).0, 0, 0);
    // 100 requests of ours, 300 or more in all: over 300 MB, past the
    // bound. The bound is 128 MB; up to a checkpoint's tick of writes
    // (200 ms) more may be in the file before the writer learns its length.
    for _ in 0..100 {
        send(app.clone(), body.clone()).await;
        let (now, size) = log_salt_and_size(&wal);
        largest = largest.max(size);
        assert!(size <= 142 << 20, "the log file grew to {size} bytes");
        if now != salt {
            restarts += 1;
            salt = now;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(
        restarts >= 2,
        "the log started over {restarts} times; its file reached {largest} bytes"
    );
}

/// On SQLite a commit is visible to every connection before the flush that
/// makes it durable. The events table is read (by a watcher's replay, or
/// after it missed live events) only up to what the server knows is on
/// disk, so no watcher holds a cursor that a power cut could take back and
/// hand to another event after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_read_only_once_the_server_knows_them_durable() {
    use posthorn::domain::delivery::DeliveryStore;
    use posthorn::domain::watch::{EventStore, WatchFilter};
    use sea_orm::ConnectionTrait;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/events.db", dir.path().display());
    let store = posthorn::storage::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let accounts = posthorn::domain::accounts::Accounts::new(store.clone());
    let account = accounts.create_account("acme").await.unwrap();
    // Committed on a connection of the pool, not by the writer thread whose
    // commits the server flushes: in the table, not yet known durable.
    let insert = format!(
        "INSERT INTO events (account_id, message_id, recipient, event_type, status, details, \
         occurred_at) VALUES ('{}', 'msg_1', 'jane@example.com', 'queued', 'queued', '{{}}', {})",
        account.id,
        chrono::Utc::now().timestamp_micros()
    );
    store
        .connection()
        .execute_unprepared(&insert)
        .await
        .unwrap();
    let filter = WatchFilter {
        account_id: account.id.clone(),
        ..Default::default()
    };
    assert!(store.events_after(&filter, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.latest_cursor().await.unwrap(), 0);

    // The writer thread's next commit takes it in; once that is flushed,
    // the event is read.
    let mut flushed = store.event_signal();
    let now = chrono::Utc::now();
    store
        .claim_due("lease-1", now, now + chrono::Duration::minutes(5), 10)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), flushed.changed())
        .await
        .expect("the commit was flushed")
        .unwrap();
    let events = store.events_after(&filter, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message_id, "msg_1");
    assert_eq!(store.latest_cursor().await.unwrap(), events[0].cursor);
    store.close().await.unwrap();
}

/// A SQLite database Posthorn creates has 2 KB pages (every commit writes
/// each page it changed to the log whole); one created earlier with 4 KB
/// pages keeps them, and is migrated and served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_gets_2_kb_pages_and_an_older_one_keeps_its_own() {
    use posthorn::storage::Store;
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    async fn page_size(store: &Store) -> i64 {
        let pragma = Statement::from_string(DatabaseBackend::Sqlite, "PRAGMA page_size");
        let row = store.connection().query_one_raw(pragma).await.unwrap();
        row.expect("a row").try_get_by_index(0).unwrap()
    }

    let dir = tempfile::tempdir().unwrap();
    let fresh = format!("sqlite://{}/fresh.db", dir.path().display());
    let store = Store::connect(&fresh, 4).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(page_size(&store).await, 2048);

    let older = dir.path().join("older.db");
    rusqlite::Connection::open(&older)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
        .unwrap();
    let store = Store::connect(&format!("sqlite://{}", older.display()), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(page_size(&store).await, 4096);
    let accounts = posthorn::domain::accounts::Accounts::new(store.clone());
    let created = accounts.create_account("acme").await.unwrap();
    assert_eq!(accounts.account("acme").await.unwrap().id, created.id);
}
