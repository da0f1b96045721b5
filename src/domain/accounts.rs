//! Accounts, their API keys and their sender identities: the use cases
//! behind the CLI, first-run bootstrap and authentication.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::error::{Error, FieldViolation, Result};
use super::ids::new_id;
use super::keys::{self, KeyMode};
use super::scope::Scopes;

/// An account: the owner of everything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A stored API key (never the plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: Scopes,
    pub test_mode: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Whether an identity is a whole domain or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    Domain,
    Address,
}

impl IdentityKind {
    /// Returns the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Domain => "domain",
            IdentityKind::Address => "address",
        }
    }
}

/// A sender identity: a domain or an address the account may send from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub account_id: String,
    pub kind: IdentityKind,
    pub value: String,
    pub verified: bool,
    pub created_at: DateTime<Utc>,
}

/// What the account use cases need from storage.
pub trait AccountStore: Send + Sync + 'static {
    fn insert_account(&self, account: &Account) -> impl Future<Output = Result<()>> + Send;
    fn account_by_name(&self, name: &str) -> impl Future<Output = Result<Option<Account>>> + Send;
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<Account>>> + Send;
    fn count_accounts(&self) -> impl Future<Output = Result<u64>> + Send;
    fn insert_key(&self, key: &ApiKey) -> impl Future<Output = Result<()>> + Send;
    fn key_by_prefix(&self, prefix: &str) -> impl Future<Output = Result<Option<ApiKey>>> + Send;
    fn list_keys(&self, account_id: &str) -> impl Future<Output = Result<Vec<ApiKey>>> + Send;
    /// Sets `revoked_at` on the account's key with this id or prefix; returns whether one changed.
    fn revoke_key(
        &self,
        account_id: &str,
        id_or_prefix: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The account's own limits (all `None` when it has none).
    fn account_overrides(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<super::limits::Overrides>> + Send;
    /// Replaces the account's own limits.
    fn set_account_overrides(
        &self,
        account_id: &str,
        overrides: super::limits::Overrides,
    ) -> impl Future<Output = Result<()>> + Send;
    fn touch_key(&self, key_id: &str, at: DateTime<Utc>)
    -> impl Future<Output = Result<()>> + Send;
    fn insert_identity(&self, identity: &Identity) -> impl Future<Output = Result<()>> + Send;
    fn list_identities(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<Identity>>> + Send;
    /// Deletes the account's identity with this value; returns whether one existed.
    fn delete_identity(
        &self,
        account_id: &str,
        value: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A key as created: the stored record and the plaintext to show once.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub plaintext: String,
}

/// Checks an account name: 1–64 characters of lowercase letters, digits, `-` and `_`.
pub fn parse_account_name(name: &str) -> Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(Error::invalid(
            "name",
            "must be 1-64 characters of lowercase letters, digits, '-' and '_'",
        ))
    }
}

/// Parses an identity: a domain ("example.com", "localhost") or an address
/// ("billing@example.com"). The domain part is lowercased.
pub fn parse_identity(value: &str) -> Result<(IdentityKind, String)> {
    let value = value.trim();
    let (kind, local, domain) = match value.rsplit_once('@') {
        Some((local, domain)) => (IdentityKind::Address, Some(local), domain),
        None => (IdentityKind::Domain, None, value),
    };
    let domain = domain.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(Error::invalid(
            "identity",
            "must be a domain such as example.com or an address such as billing@example.com",
        ));
    }
    match local {
        None => Ok((kind, domain)),
        Some(local)
            if !local.is_empty()
                && local.len() <= 64
                && local
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"@<>()[]\\,;:\"".contains(&b)) =>
        {
            Ok((kind, format!("{local}@{domain}")))
        }
        Some(_) => Err(Error::invalid(
            "identity",
            "the local part must be 1-64 printable characters without spaces, quotes or brackets",
        )),
    }
}

/// The account use cases.
pub struct Accounts<S> {
    store: S,
}

impl<S: AccountStore> Accounts<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        Accounts { store }
    }

    /// Creates an account; ALREADY_EXISTS when the name is taken.
    pub async fn create_account(&self, name: &str) -> Result<Account> {
        let name = parse_account_name(name)?;
        if self.store.account_by_name(name).await?.is_some() {
            return Err(Error::AlreadyExists {
                kind: "account",
                id: name.to_owned(),
            });
        }
        let account = Account {
            id: new_id("acc"),
            name: name.to_owned(),
            created_at: Utc::now(),
        };
        self.store.insert_account(&account).await?;
        Ok(account)
    }

    /// Returns the account with this name; NOT_FOUND otherwise.
    pub async fn account(&self, name: &str) -> Result<Account> {
        self.store
            .account_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "account",
                id: name.to_owned(),
            })
    }

    /// Changes an account's own limits (`reset` forgets the current ones
    /// first) and returns them; a request with nothing to change shows them.
    pub async fn set_limits(
        &self,
        name: &str,
        reset: bool,
        rate_per_second: Option<f64>,
        burst: Option<u32>,
        daily_quota: Option<u64>,
    ) -> Result<super::limits::Overrides> {
        let account = self.account(name).await?;
        let mut violations = Vec::new();
        if rate_per_second.is_some_and(|r| !(0.01..=1_000_000.0).contains(&r)) {
            violations.push(FieldViolation::new(
                "rate_per_second",
                "must be from 0.01 to 1000000",
            ));
        }
        if burst.is_some_and(|b| !(1..=1_000_000).contains(&b)) {
            violations.push(FieldViolation::new("burst", "must be from 1 to 1000000"));
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let mut overrides = if reset {
            super::limits::Overrides::default()
        } else {
            self.store.account_overrides(&account.id).await?
        };
        overrides.rate_per_second = rate_per_second.or(overrides.rate_per_second);
        overrides.burst = burst.or(overrides.burst);
        overrides.daily_quota = daily_quota.or(overrides.daily_quota);
        self.store
            .set_account_overrides(&account.id, overrides)
            .await?;
        Ok(overrides)
    }

    /// Lists every account, oldest first.
    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.store.list_accounts().await
    }

    /// Creates a key for the named account.
    pub async fn create_key(
        &self,
        account: &str,
        name: &str,
        scopes: Scopes,
        mode: KeyMode,
    ) -> Result<CreatedKey> {
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "at least one scope is required"));
        }
        let account = self.account(account).await?;
        let generated = keys::generate(mode);
        let key = ApiKey {
            id: new_id("key"),
            account_id: account.id,
            name: name.to_owned(),
            prefix: generated.prefix,
            secret_hash: generated.secret_hash,
            scopes,
            test_mode: mode == KeyMode::Test,
            created_at: Utc::now(),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.insert_key(&key).await?;
        Ok(CreatedKey {
            key,
            plaintext: generated.plaintext,
        })
    }

    /// Lists the named account's keys, oldest first.
    pub async fn list_keys(&self, account: &str) -> Result<Vec<ApiKey>> {
        let account = self.account(account).await?;
        self.store.list_keys(&account.id).await
    }

    /// Revokes a key by id or prefix; NOT_FOUND when the account has no such key.
    pub async fn revoke_key(&self, account: &str, id_or_prefix: &str) -> Result<()> {
        let account = self.account(account).await?;
        if self
            .store
            .revoke_key(&account.id, id_or_prefix, Utc::now())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: "api key",
                id: id_or_prefix.to_owned(),
            })
        }
    }

    /// Adds a sender identity, verified or not.
    pub async fn add_identity(
        &self,
        account: &str,
        value: &str,
        verified: bool,
    ) -> Result<Identity> {
        let account = self.account(account).await?;
        let (kind, value) = parse_identity(value)?;
        let existing = self.store.list_identities(&account.id).await?;
        if existing.iter().any(|i| i.value == value) {
            return Err(Error::AlreadyExists {
                kind: "identity",
                id: value,
            });
        }
        let identity = Identity {
            id: new_id("idn"),
            account_id: account.id,
            kind,
            value,
            verified,
            created_at: Utc::now(),
        };
        self.store.insert_identity(&identity).await?;
        Ok(identity)
    }

    /// Lists the named account's identities.
    pub async fn list_identities(&self, account: &str) -> Result<Vec<Identity>> {
        let account = self.account(account).await?;
        self.store.list_identities(&account.id).await
    }

    /// Removes an identity; NOT_FOUND when the account has none with this value.
    pub async fn remove_identity(&self, account: &str, value: &str) -> Result<()> {
        let account = self.account(account).await?;
        let (_, value) = parse_identity(value)?;
        if self.store.delete_identity(&account.id, &value).await? {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: "identity",
                id: value,
            })
        }
    }

    /// On an empty database, creates account `default` with the verified
    /// identity `localhost` and one key with every scope. Returns `None` when
    /// any account exists already.
    pub async fn bootstrap(&self) -> Result<Option<CreatedKey>> {
        if self.store.count_accounts().await? > 0 {
            return Ok(None);
        }
        self.create_account("default").await?;
        self.add_identity("default", "localhost", true).await?;
        let key = self
            .create_key("default", "bootstrap", Scopes::all(), KeyMode::Live)
            .await?;
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_as_domains_or_addresses() {
        assert_eq!(
            parse_identity("Example.COM").unwrap(),
            (IdentityKind::Domain, "example.com".into())
        );
        assert_eq!(
            parse_identity("localhost").unwrap(),
            (IdentityKind::Domain, "localhost".into())
        );
        assert_eq!(
            parse_identity("Billing@Example.com").unwrap(),
            (IdentityKind::Address, "Billing@example.com".into())
        );
        for bad in [
            "",
            "exa mple.com",
            "-a.com",
            "a@",
            "@a.com",
            "a<b>@c.com",
            "a@b@",
            "a..b",
        ] {
            assert!(parse_identity(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn account_names_are_slugs() {
        assert!(parse_account_name("acme-prod_2").is_ok());
        for bad in ["", "Acme", "a b", &"a".repeat(65)] {
            assert!(
                parse_account_name(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
