//! Webhook deliveries: one per event and subscribed endpoint, written with
//! the event (the outbox, see migration 6), sent by the dispatcher
//! (`delivery::webhooks`) until the endpoint answers 2xx or the retry
//! schedule runs out, and listed and replayed through the API.
//!
//! A delivery keeps its event's id as `webhook-id` on every attempt, so a
//! receiver can drop the duplicates at-least-once delivery brings; each
//! attempt is signed afresh with its own `webhook-timestamp`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::clock::to_micros;
use super::error::{Error, Result};
use super::paging::{Keyset, next_page, page_size};
use super::webhooks::{Attempt, WebhookStore, Webhooks, check_event_type, signed_headers};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// An attempt is due now or later.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Every attempt failed, or the endpoint answered 410 Gone.
    Abandoned,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(stored: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Abandoned,
        ]
        .into_iter()
        .find(|s| s.as_str() == stored)
    }
}

/// One recorded attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedAttempt {
    pub attempted_at: DateTime<Utc>,
    /// 0 when no response arrived.
    pub status_code: u16,
    pub latency: Duration,
    pub error: String,
    pub snippet: String,
}

/// A delivery as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: String,
    pub webhook_id: String,
    /// The `webhook-id` header: `evt_` and the event's cursor.
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Oldest first.
    pub attempts: Vec<LoggedAttempt>,
    /// Set while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A page of the log, newest first.
#[derive(Clone, Debug)]
pub struct DeliveryPage {
    pub deliveries: Vec<WebhookDelivery>,
    pub next_page_token: String,
}

/// Which deliveries the log lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
}

/// The `webhook-id` of the event at `cursor`.
pub fn event_id(cursor: i64) -> String {
    format!("evt_{cursor}")
}

/// The event a delivery carries, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPayload {
    pub cursor: i64,
    /// For example "email.delivered".
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub message_id: String,
    /// Empty for message-level events.
    pub recipient: String,
    /// The message's status after the event.
    pub status: String,
    /// JSON texts, as stored.
    pub details: String,
    pub tags: String,
    pub metadata: String,
}

impl EventPayload {
    /// The request body: the same bytes on every attempt, since everything
    /// in it is stored and never changes.
    pub fn body(&self) -> Vec<u8> {
        let parsed =
            |text: &str, empty: serde_json::Value| serde_json::from_str(text).unwrap_or(empty);
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "data": {
                "message_id": self.message_id,
                "recipient": self.recipient,
                "status": self.status,
                "cursor": self.cursor,
                "details": parsed(&self.details, serde_json::json!({})),
                "tags": parsed(&self.tags, serde_json::json!([])),
                "metadata": metadata(&self.metadata),
            },
        })
        .to_string()
        .into_bytes()
    }
}

/// A message's stored metadata (key-value pairs, in the order given) as a
/// JSON object.
fn metadata(stored: &str) -> serde_json::Value {
    let pairs: Vec<(String, String)> = serde_json::from_str(stored).unwrap_or_default();
    serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    )
}

/// A delivery the dispatcher claimed, with what sending it takes.
#[derive(Clone, Debug)]
pub struct Due {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    /// The secrets that sign at claim time (the current one first).
    pub secrets: Vec<String>,
    /// Failed attempts since the delivery was queued (or replayed).
    pub failures: i32,
    pub event: EventPayload,
}

impl Due {
    /// The signed request for an attempt at `now`.
    pub fn request(&self, now: DateTime<Utc>) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let body = self.event.body();
        let headers = signed_headers(
            &self.secrets,
            &event_id(self.event.cursor),
            now.timestamp(),
            &body,
        );
        (headers, body)
    }
}

/// How deliveries are retried and endpoints given up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchPolicy {
    /// The wait after the first failure, the second, …; after the last
    /// failure the delivery is abandoned.
    pub schedule: Vec<Duration>,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Default for DispatchPolicy {
    fn default() -> Self {
        DispatchPolicy {
            schedule: [30, 300, 1800, 7200, 21_600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// How many deliveries a claim may take: in all, and per endpoint given
/// what is in flight to it already.
#[derive(Clone, Debug, Default)]
pub struct Room {
    pub total: usize,
    pub per_endpoint: usize,
    /// Requests in flight, by endpoint.
    pub in_flight: std::collections::HashMap<String, usize>,
}

impl Room {
    /// How many due deliveries a claim reads, oldest first: up to two
    /// endpoints' shares (endpoints with no room are not read), at most
    /// the total. Fewer found means the table has no more for now.
    pub fn candidates(&self) -> usize {
        self.total.min(self.per_endpoint.saturating_mul(2)).max(1)
    }

    /// Endpoints with no room left.
    pub fn full(&self) -> Vec<String> {
        self.in_flight
            .iter()
            .filter(|(_, n)| **n >= self.per_endpoint)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The deliveries to take from `candidates` (`(delivery, endpoint)`,
    /// oldest due first): in order, while the endpoint and the total have
    /// room.
    pub fn pick(&self, candidates: Vec<(String, String)>) -> Vec<String> {
        let mut taken: std::collections::HashMap<String, usize> = self.in_flight.clone();
        let mut picked = Vec::new();
        for (delivery, endpoint) in candidates {
            if picked.len() >= self.total {
                break;
            }
            let n = taken.entry(endpoint).or_default();
            if *n < self.per_endpoint {
                *n += 1;
                picked.push(delivery);
            }
        }
        picked
    }
}

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Abandoned,
}

impl DispatchPolicy {
    /// What follows `attempt`, the delivery's failure number `failures + 1`
    /// if it failed, finished at `at`; `jitter` in [0, 1) adds up to a tenth
    /// of the wait, so deliveries that failed together do not return
    /// together. A longer `Retry-After` (up to a day) is honoured.
    pub fn next(&self, failures: i32, attempt: &Attempt, at: DateTime<Utc>, jitter: f64) -> Next {
        if attempt.succeeded() {
            return Next::Succeeded;
        }
        if attempt.status_code == 410 {
            return Next::Abandoned;
        }
        let Some(wait) = usize::try_from(failures)
            .ok()
            .and_then(|n| self.schedule.get(n))
        else {
            return Next::Abandoned;
        };
        let mut wait = wait.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 10.0);
        if let Some(asked) = attempt.retry_after {
            wait = wait.max(asked.min(MAX_RETRY_AFTER));
        }
        Next::RetryAt(at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
    }
}

/// An attempt to store, with what follows it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub delivery_id: String,
    pub webhook_id: String,
    /// The claim the delivery was made under: a delivery claimed again
    /// meanwhile (an expired lease) keeps the newer claim's state.
    pub lease: String,
    /// Failed attempts before this one.
    pub failures: i32,
    pub attempted_at: DateTime<Utc>,
    pub attempt: Attempt,
    pub next: Next,
}

impl Recorded {
    /// Why the endpoint is disabled by this attempt at once (410 Gone).
    pub fn gone(&self) -> Option<String> {
        (self.attempt.status_code == 410).then(|| {
            format!(
                "the endpoint answered 410 Gone at {}",
                self.attempted_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
    }
}

/// An endpoint the dispatcher disabled, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disabled {
    pub webhook_id: String,
    pub account_id: String,
    pub reason: String,
}

/// What the dispatcher and the delivery log need from storage.
pub trait WebhookDeliveryStore: Send + Sync + 'static {
    /// Leases due deliveries of active endpoints, oldest due first, whose
    /// lease (if any) ran out by `now`: as many as `room` leaves.
    fn claim_webhook_deliveries(
        &self,
        lease: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        room: &Room,
    ) -> impl Future<Output = Result<Vec<Due>>> + Send;
    /// Stores the attempts and their deliveries' new state, counts the
    /// endpoints' failures (a success clears them) and disables those that
    /// answered 410 or have failed for `disable_after`; returns those.
    fn record_webhook_attempts(
        &self,
        records: Vec<Recorded>,
        disable_after: Duration,
    ) -> impl Future<Output = Result<Vec<Disabled>>> + Send;
    /// The endpoint's deliveries before `before`, newest first.
    fn list_webhook_deliveries(
        &self,
        account_id: &str,
        webhook_id: &str,
        filter: &DeliveryFilter,
        before: Option<Keyset>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<WebhookDelivery>>> + Send;
    /// Makes the delivery pending again, due at `now`, with the retry
    /// schedule afresh; `None` when the endpoint has no such delivery.
    fn replay_webhook_delivery(
        &self,
        account_id: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<WebhookDelivery>>> + Send;
}

/// The tag of a delivery page token: the filter it was issued for.
fn page_tag(filter: &DeliveryFilter) -> String {
    format!(
        "d1/{}/{}",
        filter.status.map_or("", DeliveryStatus::as_str),
        filter.event_type.as_deref().unwrap_or("")
    )
}

impl<S: WebhookStore + WebhookDeliveryStore> Webhooks<S> {
    /// The endpoint's deliveries, newest first, with every attempt.
    pub async fn list_deliveries(
        &self,
        account_id: &str,
        webhook_id: &str,
        filter: DeliveryFilter,
        requested_size: i32,
        page_token: &str,
    ) -> Result<DeliveryPage> {
        let mut violations = Vec::new();
        let limit = page_size(requested_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|v| violations.push(v))
            .ok();
        if let Some(violation) = filter
            .event_type
            .as_deref()
            .and_then(|event| check_event_type("event_type".into(), event))
        {
            violations.push(violation);
        }
        let tag = page_tag(&filter);
        let before = Keyset::from_request(page_token, &tag, "ListWebhookDeliveries")
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let (Some(limit), true) = (limit, violations.is_empty()) else {
            return Err(Error::Validation(violations));
        };
        // The endpoint must be the account's: another's answers NOT_FOUND.
        self.get(account_id, webhook_id).await?;
        let mut deliveries = self
            .store()
            .list_webhook_deliveries(account_id, webhook_id, &filter, before, limit + 1)
            .await?;
        let next_page_token = next_page(&mut deliveries, limit, &tag, |last| Keyset {
            at: to_micros(last.created_at),
            id: last.id.clone(),
        });
        Ok(DeliveryPage {
            deliveries,
            next_page_token,
        })
    }

    /// Sends the delivery again: pending, due now, with the same
    /// `webhook-id` and the retry schedule afresh.
    pub async fn retry_delivery(
        &self,
        account_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<WebhookDelivery> {
        let webhook = self.get(account_id, webhook_id).await?;
        if !webhook.active {
            return Err(Error::FailedPrecondition(format!(
                "webhook {webhook_id} is disabled; enable it (UpdateWebhook with active: true) before replaying its deliveries"
            )));
        }
        self.store()
            .replay_webhook_delivery(account_id, webhook_id, delivery_id, self.now())
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "webhook delivery",
                id: delivery_id.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status_code: u16) -> Attempt {
        Attempt {
            status_code,
            ..Attempt::default()
        }
    }

    #[test]
    fn failures_wait_by_the_schedule_then_the_delivery_is_abandoned() {
        let policy = DispatchPolicy::default();
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let waits: Vec<Next> = (0..6)
            .map(|n| policy.next(n, &failed(500), at, 0.0))
            .collect();
        let seconds = |s: i64| Next::RetryAt(at + chrono::Duration::seconds(s));
        assert_eq!(
            waits,
            [
                seconds(30),
                seconds(300),
                seconds(1800),
                seconds(7200),
                seconds(21_600),
                Next::Abandoned
            ]
        );
        // Jitter adds at most a tenth.
        let Next::RetryAt(late) = policy.next(0, &failed(0), at, 0.999) else {
            panic!("a retry")
        };
        assert!(
            late > at + chrono::Duration::seconds(32) && late <= at + chrono::Duration::seconds(33)
        );
    }

    #[test]
    fn a_longer_retry_after_is_honoured_a_shorter_one_is_not() {
        let policy = DispatchPolicy::default();
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let asking = |secs| Attempt {
            status_code: 429,
            retry_after: Some(Duration::from_secs(secs)),
            ..Attempt::default()
        };
        assert_eq!(
            policy.next(0, &asking(120), at, 0.0),
            Next::RetryAt(at + chrono::Duration::seconds(120))
        );
        assert_eq!(
            policy.next(0, &asking(5), at, 0.0),
            Next::RetryAt(at + chrono::Duration::seconds(30))
        );
        assert_eq!(
            policy.next(0, &asking(10 * 24 * 3600), at, 0.0),
            Next::RetryAt(at + chrono::Duration::hours(24)),
            "at most a day"
        );
    }

    #[test]
    fn a_claim_leaves_each_endpoint_within_its_share() {
        let room = Room {
            total: 4,
            per_endpoint: 2,
            in_flight: [("slow".to_owned(), 1)].into(),
        };
        let candidates = [
            ("d1", "slow"),
            ("d2", "slow"),
            ("d3", "fast"),
            ("d4", "fast"),
            ("d5", "fast"),
            ("d6", "other"),
            ("d7", "other"),
        ]
        .map(|(d, e)| (d.to_owned(), e.to_owned()))
        .to_vec();
        assert_eq!(room.pick(candidates), ["d1", "d3", "d4", "d6"]);
        assert_eq!(room.full(), Vec::<String>::new());
    }

    #[test]
    fn a_2xx_succeeds_a_410_abandons_a_3xx_is_a_failure() {
        let policy = DispatchPolicy::default();
        let at = Utc::now();
        assert_eq!(policy.next(3, &failed(204), at, 0.0), Next::Succeeded);
        assert_eq!(policy.next(0, &failed(410), at, 0.0), Next::Abandoned);
        assert!(matches!(
            policy.next(0, &failed(302), at, 0.0),
            Next::RetryAt(_)
        ));
    }

    #[test]
    fn the_body_carries_the_event_and_is_the_same_every_time() {
        let event = EventPayload {
            cursor: 42,
            event_type: "email.delivered".into(),
            occurred_at: DateTime::<Utc>::from_timestamp(1_800_000_000, 5_000).unwrap(),
            message_id: "msg_1".into(),
            recipient: "jane@example.com".into(),
            status: "delivered".into(),
            details: r#"{"smtp_code":250}"#.into(),
            tags: r#"["welcome"]"#.into(),
            metadata: r#"[["user","7"]]"#.into(),
        };
        let body: serde_json::Value = serde_json::from_slice(&event.body()).unwrap();
        assert_eq!(body["type"], "email.delivered");
        assert_eq!(body["timestamp"], "2027-01-15T08:00:00.000005Z");
        assert_eq!(body["data"]["recipient"], "jane@example.com");
        assert_eq!(body["data"]["details"]["smtp_code"], 250);
        assert_eq!(body["data"]["tags"][0], "welcome");
        assert_eq!(body["data"]["metadata"]["user"], "7");
        assert_eq!(event.body(), event.body());
        assert_eq!(event_id(42), "evt_42");
    }
}
