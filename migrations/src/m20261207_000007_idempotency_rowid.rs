//! On SQLite the idempotency records go back to a table of their own with
//! a key index beside it, as migration 1 made them.
//!
//! Migration 3 keyed the records by their primary key alone (`WITHOUT
//! ROWID`), one B-tree instead of two. But the keys are the clients' own
//! and land anywhere in that tree, and each of its entries was a whole
//! record (fingerprint, stored response, times): a few hundred bytes, so
//! under ten to a 2 KB page, and a page split every few accepts into the
//! same page. In a table of its own a record is appended where the last
//! one went, a page every commit shares, and the key index that takes
//! the random inserts holds the account and the key only, three or four
//! times as many to a page. Measured with the accept benchmark: about 25
//! KB written to disk per accept instead of 30 (BENCHMARKS.md, B1).
//!
//! PostgreSQL keeps its table: a heap with a separate key index already.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "CREATE TABLE idempotency_keys_appended ( \
       account_id varchar NOT NULL, idempotency_key varchar NOT NULL, \
       method varchar NOT NULL, fingerprint varchar NOT NULL, state varchar NOT NULL, \
       response blob NULL, created_at integer NOT NULL, expires_at integer NOT NULL, \
       PRIMARY KEY (account_id, idempotency_key), \
       FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE \
     )",
    // In the order they were stored, so the new table is laid out as if it
    // had been appended to all along.
    "INSERT INTO idempotency_keys_appended (account_id, idempotency_key, method, fingerprint, \
       state, response, created_at, expires_at) \
     SELECT account_id, idempotency_key, method, fingerprint, state, response, created_at, \
       expires_at FROM idempotency_keys ORDER BY created_at",
    "DROP TABLE idempotency_keys",
    "ALTER TABLE idempotency_keys_appended RENAME TO idempotency_keys",
    "CREATE INDEX ix_idempotency_expires ON idempotency_keys (expires_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction, on one connection, so a failure leaves the records
    /// where they were (as in migration 3).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        for sql in SQLITE {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
