//! One row per tag of a message, for the tag filter.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_tags")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag: String,
    pub account_id: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
