//! The suppression list: addresses an account never sends to. Created by
//! hand through the API (and, later, by bounces, complaints and unsubscribe
//! links); read, listed and removed by the application.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::clock::{Clock, from_micros, to_micros};
use super::email::EmailAddress;
use super::error::{Error, FieldViolation, Result};

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuppressionReason {
    Unsubscribed,
    Bounced,
    Complained,
    Other,
}

impl SuppressionReason {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Bounced => "bounced",
            SuppressionReason::Complained => "complained",
            SuppressionReason::Other => "other",
        }
    }

    /// Reads the stored form.
    pub fn parse(stored: &str) -> Option<SuppressionReason> {
        Some(match stored {
            "unsubscribed" => SuppressionReason::Unsubscribed,
            "bounced" => SuppressionReason::Bounced,
            "complained" => SuppressionReason::Complained,
            "other" => SuppressionReason::Other,
            _ => return None,
        })
    }
}

/// What created a suppression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuppressionOrigin {
    Api,
    Bounce,
    Complaint,
    UnsubscribeLink,
}

impl SuppressionOrigin {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionOrigin::Api => "api",
            SuppressionOrigin::Bounce => "bounce",
            SuppressionOrigin::Complaint => "complaint",
            SuppressionOrigin::UnsubscribeLink => "unsubscribe_link",
        }
    }

    /// Reads the stored form.
    pub fn parse(stored: &str) -> Option<SuppressionOrigin> {
        Some(match stored {
            "api" => SuppressionOrigin::Api,
            "bounce" => SuppressionOrigin::Bounce,
            "complaint" => SuppressionOrigin::Complaint,
            "unsubscribe_link" => SuppressionOrigin::UnsubscribeLink,
            _ => return None,
        })
    }
}

/// One suppressed address of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub account_id: String,
    pub email: EmailAddress,
    pub reason: SuppressionReason,
    pub origin: SuppressionOrigin,
    pub message_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Suppression {
    /// Why a recipient at this address is not sent to, for its event and
    /// its last response.
    pub fn why_not_sent(&self) -> String {
        format!(
            "not sent: the address is on the suppression list (reason {}, added by {} at {})",
            self.reason.as_str(),
            self.origin.as_str(),
            self.created_at.to_rfc3339(),
        )
    }

    /// Whether it still suppresses at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Where a page of suppressions continues: after this (created_at, row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuppressionCursor {
    pub created_at: i64,
    pub id: i64,
}

/// A page of suppressions, newest first.
#[derive(Clone, Debug)]
pub struct SuppressionPage {
    pub suppressions: Vec<Suppression>,
    pub next: Option<SuppressionCursor>,
}

/// What the suppression use cases need from storage.
pub trait SuppressionStore: Send + Sync + 'static {
    /// Returns the account's suppression of `email_key` (expired or not).
    fn suppression(
        &self,
        account_id: &str,
        email_key: &str,
    ) -> impl Future<Output = Result<Option<Suppression>>> + Send;
    /// Stores `suppression`, replacing any row of the same address.
    fn put_suppression(&self, suppression: &Suppression)
    -> impl Future<Output = Result<()>> + Send;
    /// Lists unexpired suppressions at `now`, newest first, after `after`.
    fn list_suppressions(
        &self,
        account_id: &str,
        reason: Option<SuppressionReason>,
        now: DateTime<Utc>,
        after: Option<SuppressionCursor>,
        limit: u64,
    ) -> impl Future<Output = Result<SuppressionPage>> + Send;
    /// The suppressions of `email_keys` that hold at `now`, by address key.
    fn suppressed_among(
        &self,
        account_id: &str,
        email_keys: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<std::collections::HashMap<String, Suppression>>> + Send;
    /// Removes the suppression of `email_key`; whether one was removed.
    fn delete_suppression(
        &self,
        account_id: &str,
        email_key: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The page size when none is asked for, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A validated page size: 0 means the default.
pub fn page_size(requested: i32) -> Result<u64> {
    super::paging::page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        .map_err(|violation| Error::Validation(vec![violation]))
}

impl SuppressionCursor {
    /// The opaque page token.
    pub fn token(self) -> String {
        hex::encode(format!("s1:{}:{}", self.created_at, self.id))
    }

    /// Reads a page token; INVALID_ARGUMENT when it is not one of ours.
    pub fn from_token(token: &str) -> Result<SuppressionCursor> {
        let bad = || {
            Error::invalid(
                "page_token",
                "not a page token returned by ListSuppressions",
            )
        };
        let text = hex::decode(token).map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("s1"), Some(created_at), Some(id), None) => Ok(SuppressionCursor {
                created_at: created_at.parse().map_err(|_| bad())?,
                id: id.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

/// The suppression use cases.
pub struct Suppressions<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: SuppressionStore> Suppressions<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Suppressions { store, clock }
    }

    /// Suppresses `email` for the account, or updates the reason and expiry
    /// of its unexpired suppression. Every invalid field is reported.
    pub async fn create(
        &self,
        account_id: &str,
        email: &str,
        reason: Option<SuppressionReason>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Suppression> {
        let now = self.clock.now();
        let mut violations = Vec::new();
        let email = EmailAddress::parse(email)
            .map_err(|e| violations.push(FieldViolation::new("email", e)))
            .ok();
        if reason.is_none() {
            violations.push(FieldViolation::new(
                "reason",
                "required: one of SUPPRESSION_REASON_UNSUBSCRIBED, _BOUNCED, _COMPLAINED or _OTHER",
            ));
        }
        if expires_at.is_some_and(|at| at <= now) {
            violations.push(FieldViolation::new("expires_at", "must be in the future"));
        }
        let (Some(email), Some(reason), true) = (email, reason, violations.is_empty()) else {
            return Err(Error::Validation(violations));
        };
        // Stored times have microsecond precision; return what is stored.
        let now = from_micros(to_micros(now));
        let expires_at = expires_at.map(|at| from_micros(to_micros(at)));
        let suppression = match self.store.suppression(account_id, email.key()).await? {
            Some(existing) if existing.active_at(now) => Suppression {
                reason,
                expires_at,
                email,
                ..existing
            },
            _ => Suppression {
                account_id: account_id.to_owned(),
                email,
                reason,
                origin: SuppressionOrigin::Api,
                message_id: None,
                created_at: now,
                expires_at,
            },
        };
        self.store.put_suppression(&suppression).await?;
        Ok(suppression)
    }

    /// Returns the unexpired suppression of `email`, else NOT_FOUND.
    pub async fn get(&self, account_id: &str, email: &str) -> Result<Suppression> {
        let address = EmailAddress::parse(email).map_err(|e| Error::invalid("email", e))?;
        match self.store.suppression(account_id, address.key()).await? {
            Some(found) if found.active_at(self.clock.now()) => Ok(found),
            _ => Err(Error::NotFound {
                kind: "suppression",
                id: address.as_str().to_owned(),
            }),
        }
    }

    /// Lists unexpired suppressions, newest first.
    pub async fn list(
        &self,
        account_id: &str,
        reason: Option<SuppressionReason>,
        page_size: i32,
        page_token: &str,
    ) -> Result<SuppressionPage> {
        let limit = self::page_size(page_size);
        let after = match page_token {
            "" => Ok(None),
            token => SuppressionCursor::from_token(token).map(Some),
        };
        let (limit, after) = match (limit, after) {
            (Ok(limit), Ok(after)) => (limit, after),
            (limit, after) => {
                let violations = [limit.err(), after.err()]
                    .into_iter()
                    .flatten()
                    .flat_map(|e| match e {
                        Error::Validation(v) => v,
                        _ => Vec::new(),
                    })
                    .collect();
                return Err(Error::Validation(violations));
            }
        };
        self.store
            .list_suppressions(account_id, reason, self.clock.now(), after, limit)
            .await
    }

    /// Removes the suppression of `email`; NOT_FOUND when there is none.
    pub async fn delete(&self, account_id: &str, email: &str) -> Result<()> {
        let address = EmailAddress::parse(email).map_err(|e| Error::invalid("email", e))?;
        if self
            .store
            .delete_suppression(account_id, address.key())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: "suppression",
                id: address.as_str().to_owned(),
            })
        }
    }
}
