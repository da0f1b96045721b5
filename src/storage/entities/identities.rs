//! Sender identities: domains and addresses an account may send from.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub value: String,
    pub verified: bool,
    pub verified_at: Option<i64>,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
