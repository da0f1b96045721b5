//! The accounts: owners of everything else.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub rate_limit_per_second: Option<f64>,
    pub rate_limit_burst: Option<i32>,
    pub daily_quota: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
