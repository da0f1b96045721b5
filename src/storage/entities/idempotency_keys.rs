//! Idempotency records, kept at least 24 hours.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub idempotency_key: String,
    pub method: String,
    pub fingerprint: String,
    pub state: String,
    #[sea_orm(column_type = "Blob")]
    pub response: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
