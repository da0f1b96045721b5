//! Migrations on both databases: applied on start, the whole schema present.

use crate::on_both_databases;

/// A SQLite database from before the idempotency records were keyed by
/// their primary key alone (`m20261201_000003_lean_indexes` rebuilds the
/// table): a record stored then is still there, and still found, after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_stored_before_the_table_was_rebuilt_are_kept() {
    use posthorn::domain::send::commit::AcceptStore;
    use posthorn_migrations::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/older.db", dir.path().display());
    let store = posthorn::storage::Store::connect(&url, 4).await.unwrap();
    Migrator::up(store.connection(), Some(2)).await.unwrap();
    let accounts = posthorn::domain::accounts::Accounts::new(store.clone());
    let account = accounts.create_account("acme").await.unwrap();
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::hours(24);
    let insert = format!(
        "INSERT INTO idempotency_keys (account_id, idempotency_key, method, fingerprint, state, \
         response, created_at, expires_at) VALUES ('{}', 'order-1001', 'SendEmail', 'f1', \
         'complete', x'0a03616263', {}, {})",
        account.id,
        now.timestamp_micros(),
        expires.timestamp_micros()
    );
    store
        .connection()
        .execute_unprepared(&insert)
        .await
        .unwrap();

    store.migrate().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    let record = store
        .idempotency_record(&account.id, "order-1001", now)
        .await
        .unwrap()
        .expect("the record survives the rebuild");
    assert_eq!(
        (record.method.as_str(), record.fingerprint.as_str()),
        ("SendEmail", "f1")
    );
    assert_eq!(record.response, [0x0a, 0x03, b'a', b'b', b'c']);
    assert_eq!(
        record.expires_at.timestamp_micros(),
        expires.timestamp_micros()
    );
    let rows = store
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE name = 'idempotency_keys'",
        ))
        .await
        .unwrap();
    let sql: String = rows[0].try_get_by_index(0).unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
}

const TABLES: [&str; 20] = [
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
            ["m20261122_000001_initial", "m20261122_000002_limits", "m20261201_000003_lean_indexes"]
        );
        assert!(app.store.pending_migrations().await.unwrap().is_empty());
        let tables = app.store.table_names().await.unwrap();
        for table in TABLES {
            assert!(tables.iter().any(|t| t == table), "{table} missing on {:?}: {tables:?}", app.backend);
        }
    }

    async fn migrating_again_is_a_no_op(app: TestApp) {
        app.store.migrate().await.unwrap();
        assert_eq!(app.store.applied_migrations().await.unwrap().len(), 3);
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
