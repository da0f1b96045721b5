//! Per-account branding.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "branding")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    pub brand_name: String,
    pub logo_url: String,
    pub primary_color: String,
    pub accent_color: String,
    pub support_email: String,
    pub support_url: String,
    #[sea_orm(column_type = "Text")]
    pub footer_html: String,
    pub button_radius: i32,
    pub privacy_policy_url: String,
    pub terms_url: String,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
