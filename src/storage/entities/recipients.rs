//! One row per recipient: the delivery queue.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "recipients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: String,
    pub account_id: String,
    pub email: String,
    pub name: String,
    pub kind: String,
    pub state: String,
    pub next_attempt_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub attempts: i32,
    #[sea_orm(column_type = "Text")]
    pub last_response: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub first_opened_at: Option<i64>,
    pub open_count: i32,
    pub first_clicked_at: Option<i64>,
    pub click_count: i32,
}

impl ActiveModelBehavior for ActiveModel {}
