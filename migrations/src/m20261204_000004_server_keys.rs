//! Keys the server keeps for itself, by name: the key that signs the links
//! in delivered mail (open pixel, clicks, unsubscribe). Made at random the
//! first time it is needed and shared by every process on the database, so
//! a link keeps working after a restart and on any process.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("server_keys")
                .col(string("name").primary_key())
                .col(blob("secret"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await
    }
}
