//! What each recipient did with the message: when the tracking pixel was
//! first loaded and how often, when a tracked link was first followed and
//! how often. The counts default to zero, so an accept writes nothing new.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            big_integer_null("first_opened_at"),
            integer("open_count").default(0).to_owned(),
            big_integer_null("first_clicked_at"),
            integer("click_count").default(0).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table("recipients")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
