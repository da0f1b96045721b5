//! The event log; the id is the WatchMessages cursor.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: String,
    pub message_id: String,
    pub recipient: String,
    pub event_type: String,
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub details: String,
    pub occurred_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
