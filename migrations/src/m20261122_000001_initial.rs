//! The initial schema: tenancy, the message store and its delivery queue,
//! the event log, contacts, suppressions, templates, branding, webhooks and
//! idempotency records.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            m.create_table(table).await?;
        }
        for index in indexes() {
            m.create_index(index).await?;
        }
        Ok(())
    }
}

/// A `BIGINT` time column: UTC microseconds since the Unix epoch.
fn time(name: impl IntoIden) -> ColumnDef {
    big_integer(name)
}

fn time_null(name: impl IntoIden) -> ColumnDef {
    big_integer_null(name)
}

fn fk(
    from_table: impl IntoIden,
    column: impl IntoIden,
    to: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, column)
        .to(to, to_col)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn tables() -> Vec<TableCreateStatement> {
    vec![
        Table::create()
            .table("accounts")
            .col(string("id").primary_key())
            .col(string_uniq("name"))
            .col(time("created_at"))
            .to_owned(),
        Table::create()
            .table("api_keys")
            .col(string("id").primary_key())
            .col(string("account_id"))
            .col(string("name"))
            .col(string_uniq("prefix"))
            .col(string("secret_hash"))
            .col(string("scopes"))
            .col(boolean("test_mode"))
            .col(time("created_at"))
            .col(time_null("last_used_at"))
            .col(time_null("revoked_at"))
            .foreign_key(&mut fk("api_keys", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("identities")
            .col(string("id").primary_key())
            .col(string("account_id"))
            .col(string("kind"))
            .col(string("value"))
            .col(boolean("verified"))
            .col(time_null("verified_at"))
            .col(time("created_at"))
            .foreign_key(&mut fk("identities", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("messages")
            .col(string("id").primary_key())
            .col(string("account_id"))
            .col(string("status"))
            .col(string("from_email"))
            .col(string("from_name"))
            .col(text("to_addrs"))
            .col(text("cc_addrs"))
            .col(text("bcc_addrs"))
            .col(text("reply_to"))
            .col(text("subject"))
            .col(text_null("html"))
            .col(text_null("text_body"))
            .col(string_null("template_slug"))
            .col(integer_null("template_version"))
            .col(text_null("variables"))
            .col(text("headers"))
            .col(text("tags"))
            .col(text("metadata"))
            .col(string("message_id_header"))
            .col(boolean("track_opens"))
            .col(boolean("track_clicks"))
            .col(boolean("unsubscribe"))
            .col(boolean("test_mode"))
            .col(big_integer("size_bytes"))
            .col(blob_null("raw_mime"))
            .col(string_null("resent_from"))
            .col(string_null("idempotency_key"))
            .col(time_null("scheduled_at"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("messages", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("message_tags")
            .col(string("message_id"))
            .col(string("account_id"))
            .col(string("tag"))
            .col(time("created_at"))
            .primary_key(Index::create().col("message_id").col("tag"))
            .foreign_key(&mut fk("message_tags", "message_id", "messages", "id"))
            .to_owned(),
        // One row per recipient: the delivery queue. A worker claims due rows
        // by setting lease_owner/lease_until; a rescuer frees expired leases.
        Table::create()
            .table("recipients")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("message_id"))
            .col(string("account_id"))
            .col(string("email"))
            .col(string("name"))
            .col(string("kind"))
            .col(string("state"))
            .col(time_null("next_attempt_at"))
            .col(string_null("lease_owner"))
            .col(time_null("lease_until"))
            .col(integer("attempts"))
            .col(text_null("last_response"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("recipients", "message_id", "messages", "id"))
            .to_owned(),
        Table::create()
            .table("attachments")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("message_id"))
            .col(string("filename"))
            .col(string("content_type"))
            .col(string_null("content_id"))
            .col(big_integer("size_bytes"))
            .col(blob("content"))
            .foreign_key(&mut fk("attachments", "message_id", "messages", "id"))
            .to_owned(),
        // Append-only: one row per SMTP attempt with the raw reply.
        Table::create()
            .table("delivery_attempts")
            .col(big_integer("id").primary_key().auto_increment())
            .col(big_integer("recipient_id"))
            .col(string("message_id"))
            .col(string("outcome"))
            .col(integer_null("smtp_code"))
            .col(string_null("enhanced_code"))
            .col(text("response"))
            .col(string_null("remote_mta"))
            .col(big_integer("duration_us"))
            .col(time("attempted_at"))
            .foreign_key(&mut fk(
                "delivery_attempts",
                "recipient_id",
                "recipients",
                "id",
            ))
            .to_owned(),
        // The event log. The auto-increment id is the WatchMessages cursor.
        Table::create()
            .table("events")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("account_id"))
            .col(string("message_id"))
            .col(string("recipient"))
            .col(string("event_type"))
            .col(string("status"))
            .col(text("details"))
            .col(time("occurred_at"))
            .foreign_key(&mut fk("events", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("contacts")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("account_id"))
            .col(string("email"))
            .col(string("email_key"))
            .col(string("first_name"))
            .col(string("last_name"))
            .col(text("fields"))
            .col(text("lists"))
            .col(boolean("subscribed"))
            .col(time_null("unsubscribed_at"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("contacts", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("suppressions")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("account_id"))
            .col(string("email"))
            .col(string("email_key"))
            .col(string("reason"))
            .col(string("origin"))
            .col(string_null("message_id"))
            .col(time_null("expires_at"))
            .col(time("created_at"))
            .foreign_key(&mut fk("suppressions", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("templates")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("account_id"))
            .col(string("slug"))
            .col(string("name"))
            .col(string("category"))
            .col(text("description"))
            .col(integer_null("published_version"))
            .col(integer("latest_version"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("templates", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("template_versions")
            .col(big_integer("id").primary_key().auto_increment())
            .col(big_integer("template_id"))
            .col(integer("version"))
            .col(text("subject"))
            .col(text("html"))
            .col(text("text_body"))
            .col(text("variables"))
            .col(time("created_at"))
            .col(time_null("published_at"))
            .foreign_key(&mut fk(
                "template_versions",
                "template_id",
                "templates",
                "id",
            ))
            .to_owned(),
        Table::create()
            .table("branding")
            .col(string("account_id").primary_key())
            .col(string("brand_name"))
            .col(string("logo_url"))
            .col(string("primary_color"))
            .col(string("accent_color"))
            .col(string("support_email"))
            .col(string("support_url"))
            .col(text("footer_html"))
            .col(integer("button_radius"))
            .col(string("privacy_policy_url"))
            .col(string("terms_url"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("branding", "account_id", "accounts", "id"))
            .to_owned(),
        Table::create()
            .table("webhooks")
            .col(string("id").primary_key())
            .col(string("account_id"))
            .col(text("url"))
            .col(text("events"))
            .col(boolean("active"))
            .col(string("description"))
            .col(string("secret"))
            .col(string_null("previous_secret"))
            .col(time_null("previous_secret_expires_at"))
            .col(string_null("disabled_reason"))
            .col(time_null("failing_since"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk("webhooks", "account_id", "accounts", "id"))
            .to_owned(),
        // The webhook outbox: written in the same transaction as its event.
        Table::create()
            .table("webhook_deliveries")
            .col(string("id").primary_key())
            .col(string("webhook_id"))
            .col(string("account_id"))
            .col(big_integer("event_id"))
            .col(string("event_type"))
            .col(text("payload"))
            .col(string("status"))
            .col(integer("attempts"))
            .col(time_null("next_attempt_at"))
            .col(string_null("lease_owner"))
            .col(time_null("lease_until"))
            .col(time("created_at"))
            .col(time("updated_at"))
            .foreign_key(&mut fk(
                "webhook_deliveries",
                "webhook_id",
                "webhooks",
                "id",
            ))
            .to_owned(),
        Table::create()
            .table("webhook_attempts")
            .col(big_integer("id").primary_key().auto_increment())
            .col(string("delivery_id"))
            .col(integer("status_code"))
            .col(big_integer("latency_us"))
            .col(text("error"))
            .col(text("response_snippet"))
            .col(time("attempted_at"))
            .foreign_key(&mut fk(
                "webhook_attempts",
                "delivery_id",
                "webhook_deliveries",
                "id",
            ))
            .to_owned(),
        // Idempotency records: claimed by a unique insert inside the send's
        // transaction, kept at least 24 hours.
        Table::create()
            .table("idempotency_keys")
            .col(string("account_id"))
            .col(string("idempotency_key"))
            .col(string("method"))
            .col(string("fingerprint"))
            .col(string("state"))
            .col(blob_null("response"))
            .col(time("created_at"))
            .col(time("expires_at"))
            .primary_key(Index::create().col("account_id").col("idempotency_key"))
            .foreign_key(&mut fk("idempotency_keys", "account_id", "accounts", "id"))
            .to_owned(),
    ]
}

fn index(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for col in cols {
        index.col(Alias::new(*col));
    }
    index.to_owned()
}

fn unique(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    index(name, table, cols).unique().to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index("ix_api_keys_account", "api_keys", &["account_id"]),
        unique(
            "ux_identities_account_value",
            "identities",
            &["account_id", "value"],
        ),
        // ListMessages: newest first within an account, keyset on (created_at, id).
        index(
            "ix_messages_account_created",
            "messages",
            &["account_id", "created_at", "id"],
        ),
        index(
            "ix_messages_account_status",
            "messages",
            &["account_id", "status", "created_at"],
        ),
        index(
            "ix_messages_account_from",
            "messages",
            &["account_id", "from_email"],
        ),
        index(
            "ix_message_tags_lookup",
            "message_tags",
            &["account_id", "tag", "created_at"],
        ),
        // The queue claim: due rows by state and time.
        index(
            "ix_recipients_due",
            "recipients",
            &["state", "next_attempt_at"],
        ),
        // The rescuer: expired leases.
        index("ix_recipients_lease", "recipients", &["lease_until"]),
        index("ix_recipients_message", "recipients", &["message_id"]),
        index(
            "ix_recipients_account_email",
            "recipients",
            &["account_id", "email"],
        ),
        index("ix_attachments_message", "attachments", &["message_id"]),
        index(
            "ix_delivery_attempts_recipient",
            "delivery_attempts",
            &["recipient_id"],
        ),
        // WatchMessages replay per account and per message.
        index("ix_events_account", "events", &["account_id", "id"]),
        index("ix_events_message", "events", &["message_id", "id"]),
        unique(
            "ux_contacts_account_email",
            "contacts",
            &["account_id", "email_key"],
        ),
        unique(
            "ux_suppressions_account_email",
            "suppressions",
            &["account_id", "email_key"],
        ),
        index(
            "ix_suppressions_account_reason",
            "suppressions",
            &["account_id", "reason", "created_at"],
        ),
        unique(
            "ux_templates_account_slug",
            "templates",
            &["account_id", "slug"],
        ),
        unique(
            "ux_template_versions",
            "template_versions",
            &["template_id", "version"],
        ),
        index("ix_webhooks_account", "webhooks", &["account_id"]),
        index(
            "ix_webhook_deliveries_due",
            "webhook_deliveries",
            &["status", "next_attempt_at"],
        ),
        index(
            "ix_webhook_deliveries_webhook",
            "webhook_deliveries",
            &["webhook_id", "created_at"],
        ),
        index(
            "ix_webhook_attempts_delivery",
            "webhook_attempts",
            &["delivery_id"],
        ),
        index(
            "ix_idempotency_expires",
            "idempotency_keys",
            &["expires_at"],
        ),
    ]
}
