//! Contacts of an account.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: String,
    pub email: String,
    pub email_key: String,
    pub first_name: String,
    pub last_name: String,
    #[sea_orm(column_type = "Text")]
    pub fields: String,
    #[sea_orm(column_type = "Text")]
    pub lists: String,
    pub subscribed: bool,
    pub unsubscribed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
