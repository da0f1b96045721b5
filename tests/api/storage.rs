//! Migrations on both databases: applied on start, the whole schema present.

use crate::on_both_databases;

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
            ["m20261122_000001_initial", "m20261122_000002_limits"]
        );
        assert!(app.store.pending_migrations().await.unwrap().is_empty());
        let tables = app.store.table_names().await.unwrap();
        for table in TABLES {
            assert!(tables.iter().any(|t| t == table), "{table} missing on {:?}: {tables:?}", app.backend);
        }
    }

    async fn migrating_again_is_a_no_op(app: TestApp) {
        app.store.migrate().await.unwrap();
        assert_eq!(app.store.applied_migrations().await.unwrap().len(), 2);
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
