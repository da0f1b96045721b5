//! Append-only log of SMTP attempts with their raw replies.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub recipient_id: i64,
    pub message_id: String,
    pub outcome: String,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub response: String,
    pub remote_mta: Option<String>,
    pub duration_us: i64,
    pub attempted_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
