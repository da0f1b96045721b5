//! Every HTTP attempt of a webhook delivery.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub delivery_id: String,
    pub status_code: i32,
    pub latency_us: i64,
    #[sea_orm(column_type = "Text")]
    pub error: String,
    #[sea_orm(column_type = "Text")]
    pub response_snippet: String,
    pub attempted_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
