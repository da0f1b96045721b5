//! The webhook outbox: every event an endpoint subscribes to gets a
//! `webhook_deliveries` row in the transaction that writes the event.
//!
//! A trigger on `events` writes the rows, so every writer of events (the
//! accept, the delivery records, tracking, unsubscribes, cancels, the
//! complaints) gets them without knowing about webhooks, and a crash can
//! neither leave an event without its deliveries nor deliveries without
//! their event. Each row is due at once (`next_attempt_at` is the event's
//! time). Scheduling events are not delivered: the contract's webhook
//! event types are `email.*` from `queued` on.
//!
//! On SQLite the trigger runs per row; on PostgreSQL per statement, over
//! the statement's new rows (a transition table), so a batch of accepts
//! probes the endpoints once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What an endpoint's stored `events` (a JSON array; `[]` for all) must
/// hold for an event type `T`: the quoted string `"email.T"`.
const SQLITE: &[&str] = &[
    "CREATE TRIGGER tr_events_webhook_outbox AFTER INSERT ON events \
     WHEN NEW.event_type NOT IN ('scheduled', 'rescheduled') \
     BEGIN \
       INSERT INTO webhook_deliveries (id, webhook_id, account_id, event_id, event_type, \
         payload, status, attempts, next_attempt_at, lease_owner, lease_until, \
         created_at, updated_at) \
       SELECT 'whd_' || lower(hex(randomblob(16))), w.id, w.account_id, NEW.id, \
         'email.' || NEW.event_type, '', 'pending', 0, NEW.occurred_at, NULL, NULL, \
         NEW.occurred_at, NEW.occurred_at \
       FROM webhooks w \
       WHERE w.account_id = NEW.account_id AND w.active \
         AND (w.events = '[]' OR instr(w.events, '\"email.' || NEW.event_type || '\"') > 0); \
     END",
];

const POSTGRES: &[&str] = &[
    "CREATE FUNCTION posthorn_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       INSERT INTO webhook_deliveries (id, webhook_id, account_id, event_id, event_type, \
         payload, status, attempts, next_attempt_at, lease_owner, lease_until, \
         created_at, updated_at) \
       SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), w.id, w.account_id, e.id, \
         'email.' || e.event_type, '', 'pending', 0, e.occurred_at, NULL, NULL, \
         e.occurred_at, e.occurred_at \
       FROM added e JOIN webhooks w ON w.account_id = e.account_id \
       WHERE w.active AND e.event_type NOT IN ('scheduled', 'rescheduled') \
         AND (w.events = '[]' OR strpos(w.events, '\"email.' || e.event_type || '\"') > 0); \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER tr_events_webhook_outbox AFTER INSERT ON events \
     REFERENCING NEW TABLE AS added FOR EACH STATEMENT \
     EXECUTE FUNCTION posthorn_webhook_outbox()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let trigger = match db.get_database_backend() {
            DatabaseBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        for sql in trigger {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
