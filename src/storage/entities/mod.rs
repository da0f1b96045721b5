//! SeaORM entities, one module per table of `migrations/`.

pub mod accounts;
pub mod api_keys;
pub mod attachments;
pub mod branding;
pub mod contacts;
pub mod daily_usage;
pub mod delivery_attempts;
pub mod events;
pub mod idempotency_keys;
pub mod identities;
pub mod message_tags;
pub mod messages;
pub mod recipients;
pub mod suppressions;
pub mod template_versions;
pub mod templates;
pub mod webhook_attempts;
pub mod webhook_deliveries;
pub mod webhooks;
