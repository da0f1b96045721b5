//! Fewer B-trees written per accepted message, and indexes that serve the
//! queries they were made for.
//!
//! Every B-tree an accept touches costs at least one page in the commit's
//! write-ahead log frames (18 per commit before this, most of a small
//! commit's log), and the log's size is what the checkpoints copy and what
//! a log restart waits for. So:
//! - `ix_messages_account_from` goes: ListMessages matches the sender
//!   case-insensitively, so the index only ever served its account prefix,
//!   which `ix_messages_account_created` serves in the order the list needs.
//! - `ix_recipients_account_email` becomes an index on `lower(email)`, the
//!   expression ListMessages' `to` filter compares, so it serves that filter.
//! - `ix_recipients_lease` holds only leased rows, and `ix_recipients_due`
//!   only claimable ones, in the order the claim takes them: a new message
//!   no longer touches the lease index, and a finished recipient leaves the
//!   queue's index instead of moving within it.
//! - On SQLite the idempotency records are keyed by their primary key alone
//!   (`WITHOUT ROWID`): one B-tree instead of a table and its key index.
//!   Migration 7 undoes this, measured: see there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[&str] = &[
    "DROP INDEX ix_messages_account_from",
    "DROP INDEX ix_recipients_account_email",
    "CREATE INDEX ix_recipients_account_email ON recipients (account_id, lower(email))",
    "DROP INDEX ix_recipients_lease",
    "CREATE INDEX ix_recipients_lease ON recipients (lease_until) \
     WHERE lease_until IS NOT NULL",
    // The claim's own terms (`storage/delivery.rs`, CLAIMABLE), word for
    // word: SQLite uses a partial index only for a query that repeats its
    // condition.
    "DROP INDEX ix_recipients_due",
    "CREATE INDEX ix_recipients_due ON recipients (next_attempt_at, id) \
     WHERE state IN ('queued', 'scheduled', 'deferred')",
];

const SQLITE_IDEMPOTENCY: &[&str] = &[
    "CREATE TABLE idempotency_keys_keyed ( \
       account_id varchar NOT NULL, idempotency_key varchar NOT NULL, \
       method varchar NOT NULL, fingerprint varchar NOT NULL, state varchar NOT NULL, \
       response blob NULL, created_at integer NOT NULL, expires_at integer NOT NULL, \
       PRIMARY KEY (account_id, idempotency_key), \
       FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE \
     ) WITHOUT ROWID",
    "INSERT INTO idempotency_keys_keyed (account_id, idempotency_key, method, fingerprint, \
       state, response, created_at, expires_at) \
     SELECT account_id, idempotency_key, method, fingerprint, state, response, created_at, \
       expires_at FROM idempotency_keys",
    "DROP TABLE idempotency_keys",
    "ALTER TABLE idempotency_keys_keyed RENAME TO idempotency_keys",
    "CREATE INDEX ix_idempotency_expires ON idempotency_keys (expires_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both backends, so it runs on one connection (a
    /// pooled SQLite connection that did not drop an index still has it in
    /// its cached schema and refuses to create one of the same name) and a
    /// failure leaves the idempotency records where they were.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let mut statements = INDEXES.to_vec();
        if db.get_database_backend() == DatabaseBackend::Sqlite {
            statements.extend_from_slice(SQLITE_IDEMPOTENCY);
        }
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
