//! Keys the server keeps for itself (`server_keys`), made at random the
//! first time one is asked for. Two processes asking at once agree: the
//! first insert wins and both read what it stored.

use sea_orm::{ConnectionTrait, Statement};

use super::delivery::placeholders;
use super::{Store, db_error};
use crate::domain::clock::to_micros;
use crate::domain::{Error, Result};

/// The bytes of a new key.
const KEY_BYTES: usize = 32;

impl Store {
    /// The key that signs the links in delivered mail.
    pub async fn link_key(&self) -> Result<Vec<u8>> {
        self.server_key("links").await
    }

    async fn server_key(&self, name: &str) -> Result<Vec<u8>> {
        let backend = self.db().get_database_backend();
        let fresh: [u8; KEY_BYTES] = rand::random();
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(
                    backend,
                    "INSERT INTO server_keys (name, secret, created_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO NOTHING",
                ),
                [
                    name.into(),
                    fresh.to_vec().into(),
                    to_micros(chrono::Utc::now()).into(),
                ],
            ))
            .await
            .map_err(db_error)?;
        let row = self
            .db()
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, "SELECT secret FROM server_keys WHERE name = ?"),
                [name.into()],
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("server key `{name}` missing")))?;
        row.try_get("", "secret").map_err(db_error)
    }
}
