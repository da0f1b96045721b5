//! Accepted messages and their content.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub status: String,
    pub from_email: String,
    pub from_name: String,
    #[sea_orm(column_type = "Text")]
    pub to_addrs: String,
    #[sea_orm(column_type = "Text")]
    pub cc_addrs: String,
    #[sea_orm(column_type = "Text")]
    pub bcc_addrs: String,
    #[sea_orm(column_type = "Text")]
    pub reply_to: String,
    #[sea_orm(column_type = "Text")]
    pub subject: String,
    #[sea_orm(column_type = "Text")]
    pub html: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub text_body: Option<String>,
    pub template_slug: Option<String>,
    pub template_version: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub variables: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    #[sea_orm(column_type = "Text")]
    pub metadata: String,
    pub message_id_header: String,
    pub track_opens: bool,
    pub track_clicks: bool,
    pub unsubscribe: bool,
    pub test_mode: bool,
    pub size_bytes: i64,
    #[sea_orm(column_type = "Blob")]
    pub raw_mime: Option<Vec<u8>>,
    pub resent_from: Option<String>,
    pub idempotency_key: Option<String>,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
