//! Delivery as the domain sees it: what a worker claims, what an attempt
//! ended with, how a reply is classified, when a deferred recipient is
//! tried again, and the store port the worker pool needs.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::Result;
use super::messages::{EventDetails, Message};

/// One claimed recipient: a queue row leased to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The lease token it was claimed under: unique to one claim, so a
    /// result of an attempt whose lease was taken over (even by the same
    /// pool) never counts.
    pub lease: String,
    pub recipient_id: i64,
    pub message_id: String,
    pub account_id: String,
    pub email: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// What one attempt for one recipient ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to a relay (2xx).
    Sent,
    /// Stored by the capture transport: as far as mail goes.
    Delivered,
    /// A temporary failure: try again later.
    Deferred,
    /// A permanent refusal (5xx); `hard` for recipient faults (5.1.x, 5.5.0).
    Bounced { hard: bool },
    /// Given up: too old, or undeliverable as built.
    Failed,
    /// The worker holding the recipient stopped before recording a result
    /// (its lease expired): the message may have arrived; it is tried again.
    Ambiguous,
    /// Not tried: the address was suppressed after the message was
    /// accepted (a scheduled send, a retry).
    Suppressed,
}

/// The reply behind an outcome, kept with the attempt and the event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The SMTP reply code; 0 when there was none (connection failure,
    /// capture).
    pub code: u16,
    /// The enhanced status code (`5.1.1`), when the reply gave one.
    pub enhanced: String,
    /// The reply text, or what went wrong.
    pub text: String,
    /// The host that answered.
    pub remote: String,
    /// The reply came while setting up the session (greeting, STARTTLS,
    /// AUTH): a relay or configuration problem, not the message's, so it
    /// defers whatever its code (a 535 is no bounce).
    pub session: bool,
}

impl Reply {
    /// A reply parsed from an SMTP code and its text.
    pub fn smtp(code: u16, text: &str, remote: &str) -> Reply {
        Reply {
            code,
            enhanced: enhanced_code(text).unwrap_or_default(),
            text: text.trim().to_owned(),
            remote: remote.to_owned(),
            session: false,
        }
    }

    /// A failure without an SMTP reply (refused, dropped, timed out).
    pub fn failure(text: impl Into<String>, remote: &str) -> Reply {
        Reply {
            text: text.into(),
            remote: remote.to_owned(),
            ..Default::default()
        }
    }

    /// Event details for this reply.
    pub fn details(&self, reason: &str) -> EventDetails {
        EventDetails {
            smtp_code: i32::from(self.code),
            enhanced_code: self.enhanced.clone(),
            smtp_reply: self.text.clone(),
            remote_mta: self.remote.clone(),
            reason: reason.to_owned(),
            ..Default::default()
        }
    }
}

/// The enhanced status code at the start of an SMTP reply text (RFC 3463:
/// `class.subject.detail`, class 2, 4 or 5).
pub fn enhanced_code(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let numeric = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && numeric(subject, 3)
        && numeric(detail, 3))
    .then(|| word.to_owned())
}

/// Classifies an SMTP reply to a recipient (its RCPT, or the DATA of its
/// envelope) sent through a relay.
pub fn classify(reply: &Reply) -> Outcome {
    if reply.session {
        return Outcome::Deferred;
    }
    match reply.code {
        200..=299 => Outcome::Sent,
        500..=599 => Outcome::Bounced {
            hard: is_hard_bounce(&reply.enhanced),
        },
        // 4xx, no reply at all, or nonsense: try again.
        _ => Outcome::Deferred,
    }
}

/// 5.1.x (bad address) and 5.5.0 (mailbox unavailable) are the recipient's
/// fault: a hard bounce. 5.7.x (policy, reputation) and others are not.
pub fn is_hard_bounce(enhanced: &str) -> bool {
    enhanced.starts_with("5.1.") || enhanced == "5.5.0"
}

/// When deferred recipients are tried again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; each further failure doubles it.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// After this age a message is not tried again: `failed`, `expired`.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3 * 3600),
            max_age: Duration::from_secs(72 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `attempts + 1` after `attempts`
    /// failures, with ±20 % jitter from `jitter` (a number in 0..1).
    pub fn backoff(&self, attempts: i32, jitter: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let base = self
            .first
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max);
        base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }

    /// The next attempt time, or `None` when the message is too old to try
    /// again.
    pub fn next_attempt(
        &self,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        attempts: i32,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let next = now + chrono::Duration::from_std(self.backoff(attempts, jitter)).ok()?;
        let deadline = created_at + chrono::Duration::from_std(self.max_age).ok()?;
        (next <= deadline).then_some(next)
    }
}

/// The result of one attempt for one claimed recipient.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub claimed: Claimed,
    pub outcome: Outcome,
    pub reply: Reply,
    /// For deferred outcomes: when to try again (`None` turns the deferral
    /// into `failed`/`expired`).
    pub retry_at: Option<DateTime<Utc>>,
    pub transport: String,
    pub duration: Duration,
    pub attempted_at: DateTime<Utc>,
}

/// What the worker pool needs from storage.
pub trait DeliveryStore: Send + Sync + 'static {
    /// Leases up to `limit` due recipients (queued or deferred, next attempt
    /// due, no lease at all: an expired one is the rescuer's) under the token
    /// `lease` until `lease_until`.
    fn claim_due(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;

    /// Extends the leases of `recipient_ids` still held under `lease`.
    fn renew_leases(
        &self,
        lease: &str,
        recipient_ids: &[i64],
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Takes over the recipients whose lease expired before `now` (their
    /// worker died or hung mid-attempt), leasing them under `lease` until
    /// `lease_until`, so that the ambiguous attempt can be recorded and
    /// the recipient tried again. Expired leases on recipients no longer
    /// claimable are simply freed.
    fn claim_expired(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;

    /// Returns `claimed` recipients still held under their lease to the
    /// queue untried (graceful shutdown); returns how many.
    fn release_leases(&self, claimed: &[Claimed]) -> impl Future<Output = Result<u64>> + Send;

    /// The messages to build, with recipients and attachment contents;
    /// missing ids are left out.
    fn messages_for_delivery(
        &self,
        message_ids: &[String],
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// Records the attempts of several deliveries in one transaction: each
    /// recipient's new state, its `delivery_attempts` row, its event, the
    /// message's aggregate status and its built MIME (stored the first
    /// time). Only recipients still held under the lease they were claimed
    /// with change. Returns once the transaction has committed; the
    /// workers are answered once the returned [`Durable`] resolves.
    fn record_attempts(
        &self,
        records: Vec<DeliveryRecord>,
    ) -> impl Future<Output = Result<crate::domain::Durable>> + Send;
}

/// One delivery of one message to its claimed recipients, as recorded.
#[derive(Clone, Debug)]
pub struct DeliveryRecord {
    pub message_id: String,
    /// The MIME as built for this attempt (none when it could not be built).
    pub raw_mime: Option<Vec<u8>>,
    /// One result per claimed recipient.
    pub results: Vec<AttemptResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_read_from_the_start_of_the_reply() {
        assert_eq!(
            enhanced_code("5.1.1 <x@y>: no such user"),
            Some("5.1.1".into())
        );
        assert_eq!(enhanced_code("4.7.0 try later"), Some("4.7.0".into()));
        assert_eq!(enhanced_code("Requested action taken"), None);
        assert_eq!(enhanced_code("1.2.3 nope"), None);
        assert_eq!(enhanced_code("5.1 short"), None);
    }

    #[test]
    fn replies_classify_by_code_and_enhanced_code() {
        let r = |code, text| Reply::smtp(code, text, "mx");
        assert_eq!(classify(&r(250, "2.0.0 Ok")), Outcome::Sent);
        let auth = Reply {
            session: true,
            ..r(535, "5.7.8 authentication failed")
        };
        assert_eq!(
            classify(&auth),
            Outcome::Deferred,
            "a session failure defers"
        );
        assert_eq!(classify(&r(451, "4.3.0 try later")), Outcome::Deferred);
        assert_eq!(
            classify(&Reply::failure("connection refused", "mx")),
            Outcome::Deferred
        );
        assert_eq!(
            classify(&r(550, "5.1.1 no such user")),
            Outcome::Bounced { hard: true }
        );
        assert_eq!(
            classify(&r(550, "5.5.0 mailbox unavailable")),
            Outcome::Bounced { hard: true }
        );
        assert_eq!(
            classify(&r(554, "5.7.1 rejected by policy")),
            Outcome::Bounced { hard: false }
        );
        assert_eq!(
            classify(&r(552, "message too big")),
            Outcome::Bounced { hard: false }
        );
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(60));
        assert_eq!(policy.backoff(2, 0.5), Duration::from_secs(120));
        assert_eq!(policy.backoff(20, 0.5), Duration::from_secs(3 * 3600));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(48));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(72));
    }

    #[test]
    fn a_message_past_its_max_age_gets_no_next_attempt() {
        let policy = RetryPolicy::default();
        let created = Utc::now();
        assert!(policy.next_attempt(created, created, 1, 0.5).is_some());
        let late = created + chrono::Duration::hours(71) + chrono::Duration::minutes(30);
        assert_eq!(policy.next_attempt(created, late, 10, 0.5), None);
    }
}
