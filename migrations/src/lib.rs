//! Posthorn's schema, as sea-orm-migration migrations that run unchanged on
//! SQLite and PostgreSQL.
//!
//! Conventions: every time is a `BIGINT` of UTC microseconds since the Unix
//! epoch (the same ordering and index behaviour on both backends, which the
//! delivery queue's claim relies on); public ids are prefixed text
//! (`acc_…`, `msg_…`); structured values (address lists, tags, maps) are JSON
//! text.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_limits;
mod m20261201_000003_lean_indexes;
mod m20261204_000004_server_keys;
mod m20261204_000005_engagement;
mod m20261205_000006_webhook_outbox;
mod m20261207_000007_idempotency_rowid;

/// Applies Posthorn's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_limits::Migration),
            Box::new(m20261201_000003_lean_indexes::Migration),
            Box::new(m20261204_000004_server_keys::Migration),
            Box::new(m20261204_000005_engagement::Migration),
            Box::new(m20261205_000006_webhook_outbox::Migration),
            Box::new(m20261207_000007_idempotency_rowid::Migration),
        ]
    }
}
