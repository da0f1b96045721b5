//! Authentication: from a presented key to the caller's account and scopes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::accounts::{AccountStore, ApiKey};
use super::cache::TtlCache;
use super::clock::Clock;
use super::error::{Error, Result};
use super::keys;
use super::limits::{Overrides, Policy};
use super::scope::{Scope, Scopes};

/// Who is calling: attached to every authenticated request.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthContext {
    pub account_id: String,
    pub key_id: String,
    pub scopes: Scopes,
    /// Test-mode keys always capture instead of delivering.
    pub test_mode: bool,
    /// The account's rate limit and daily quota.
    pub policy: Policy,
}

impl AuthContext {
    /// Fails with SCOPE_MISSING unless the key grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.grants(scope) {
            Ok(())
        } else {
            Err(Error::ScopeMissing(scope.as_str().to_owned()))
        }
    }
}

/// How often a key's `last_used_at` is written at most: once a minute keeps
/// authentication read-only on the hot path.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long an account's limit overrides are reused before being read
/// again: a changed limit applies within this time.
const POLICY_TTL: Duration = Duration::from_secs(10);

/// Checks presented keys against the store.
pub struct Authenticator<S> {
    store: S,
    touched: Mutex<HashMap<String, Instant>>,
    defaults: Policy,
    policies: TtlCache<String, Policy>,
    /// Stored keys by prefix: a revoked key stops working within this
    /// cache's TTL (`auth_cache_seconds`).
    keys: TtlCache<String, ApiKey>,
}

impl<S: AccountStore + Clone> Authenticator<S> {
    /// Wraps a store; key lookups are reused for `key_ttl` (zero: every
    /// request reads its key) by the time of `clock`.
    pub fn new(store: S, defaults: Policy, key_ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Authenticator {
            store,
            touched: Mutex::new(HashMap::new()),
            defaults,
            policies: TtlCache::new(POLICY_TTL, clock.clone()),
            keys: TtlCache::new(key_ttl, clock),
        }
    }

    /// The account's policy: its overrides over the defaults, cached briefly.
    async fn policy(&self, account_id: &str) -> Result<Policy> {
        if let Some(policy) = self.policies.get(account_id) {
            return Ok(policy);
        }
        let overrides: Overrides = self.store.account_overrides(account_id).await?;
        let policy = overrides.apply(self.defaults);
        self.policies.insert(account_id.to_owned(), policy);
        Ok(policy)
    }

    /// The stored key with this prefix, from the cache when fresh.
    async fn key(&self, prefix: &str) -> Result<Option<ApiKey>> {
        if let Some(key) = self.keys.get(prefix) {
            return Ok(Some(key));
        }
        let key = self.store.key_by_prefix(prefix).await?;
        if let Some(key) = &key {
            self.keys.insert(prefix.to_owned(), key.clone());
        }
        Ok(key)
    }

    /// Authenticates a presented key. A malformed, unknown or revoked key all
    /// fail alike with API_KEY_INVALID.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<AuthContext> {
        let presented = presented
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Error::ApiKeyMissing)?;
        let parsed = keys::parse(presented).ok_or(Error::ApiKeyInvalid)?;
        let key = self
            .key(&parsed.prefix)
            .await?
            .ok_or(Error::ApiKeyInvalid)?;
        if !keys::matches(presented, &key.secret_hash) || key.revoked_at.is_some() {
            return Err(Error::ApiKeyInvalid);
        }
        self.touch(&key.id);
        let policy = self.policy(&key.account_id).await?;
        Ok(AuthContext {
            policy,
            account_id: key.account_id,
            key_id: key.id,
            scopes: key.scopes,
            test_mode: key.test_mode,
        })
    }

    /// Records the key's use in the background, at most once per interval.
    fn touch(&self, key_id: &str) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            match touched.get(key_id) {
                Some(last) if now.duration_since(*last) < TOUCH_INTERVAL => return,
                _ => touched.insert(key_id.to_owned(), now),
            };
        }
        let store = self.store.clone();
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = store.touch_key(&key_id, Utc::now()).await {
                tracing::warn!(%key_id, error = %error, "could not record api key use");
            }
        });
    }
}
