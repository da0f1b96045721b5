//! Sending limits: per-account overrides of the request rate and the daily
//! recipient quota, and the quota's counter per account and UTC day.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            double_null("rate_limit_per_second"),
            integer_null("rate_limit_burst"),
            big_integer_null("daily_quota"),
        ] {
            m.alter_table(
                Table::alter()
                    .table("accounts")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        // Recipients accepted per account and UTC day (days since the Unix
        // epoch); updated in the accept transaction under a row lock.
        m.create_table(
            Table::create()
                .table("daily_usage")
                .col(string("account_id"))
                .col(big_integer("day"))
                .col(big_integer("recipients"))
                .primary_key(Index::create().col("account_id").col("day"))
                .foreign_key(
                    ForeignKey::create()
                        .from("daily_usage", "account_id")
                        .to("accounts", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }
}
