//! Posthorn's integration tests: one binary, the real server on port 0, a
//! fresh database per test.

/// Runs a scenario on SQLite, and on PostgreSQL when it is configured.
macro_rules! on_both_databases_with {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

mod auth;
mod binary;
mod clients;
mod connections;
mod console;
mod contacts;
mod contract;
mod crash;
mod debugging;
mod delivery;
mod echo;
mod fault_smtp;
mod feedback;
mod gateway;
mod grpc_web;
mod health;
mod helpers;
mod limits;
mod mcp;
mod messages;
mod relay;
mod rest;
mod retries;
mod scale;
mod send;
mod shutdown;
mod storage;
mod storage_faults;
mod suppressions;
mod templates;
mod tracking;
mod unsubscribe;
mod webhook_deliveries;
mod webhooks;
