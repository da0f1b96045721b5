//! Authentication: from a presented key to the caller's account and scopes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::accounts::AccountStore;
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
    policies: Mutex<HashMap<String, (Policy, Instant)>>,
}

impl<S: AccountStore + Clone> Authenticator<S> {
    /// Wraps a store.
    pub fn new(store: S, defaults: Policy) -> Self {
        Authenticator {
            store,
            touched: Mutex::new(HashMap::new()),
            defaults,
            policies: Mutex::new(HashMap::new()),
        }
    }

    /// The account's policy: its overrides over the defaults, cached briefly.
    async fn policy(&self, account_id: &str) -> Result<Policy> {
        let now = Instant::now();
        if let Some((policy, at)) = self
            .policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(account_id)
            && now.duration_since(*at) < POLICY_TTL
        {
            return Ok(*policy);
        }
        let overrides: Overrides = self.store.account_overrides(account_id).await?;
        let policy = overrides.apply(self.defaults);
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account_id.to_owned(), (policy, now));
        Ok(policy)
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
            .store
            .key_by_prefix(&parsed.prefix)
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
