//! Account templates.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: String,
    pub slug: String,
    pub name: String,
    pub category: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub published_version: Option<i32>,
    pub latest_version: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
