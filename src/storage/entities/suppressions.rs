//! Suppressed addresses of an account.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "suppressions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: String,
    pub email: String,
    pub email_key: String,
    pub reason: String,
    pub origin: String,
    pub message_id: Option<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
