//! Webhook endpoints: where an account wants its message events POSTed,
//! which events, and the secret that signs them (Standard Webhooks).
//!
//! An endpoint's URL is checked when it is registered: http(s) with a host,
//! https unless plain http is allowed, and never a literal address inside
//! the network (loopback, private, link-local, CGNAT, multicast,
//! unspecified, IPv4-mapped forms of those) unless private targets are
//! allowed — and the cloud metadata address (169.254.169.254) never.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::clock::{Clock, from_micros, to_micros};
use super::error::{Error, FieldViolation, Result};
use super::ids::new_id;
use super::net::is_internal;
use super::paging::{Keyset, next_page, page_size};

/// The event types an endpoint can ask for.
pub const EVENT_TYPES: [&str; 12] = [
    "email.queued",
    "email.sent",
    "email.delivered",
    "email.deferred",
    "email.bounced",
    "email.complained",
    "email.opened",
    "email.clicked",
    "email.failed",
    "email.suppressed",
    "email.unsubscribed",
    "email.cancelled",
];

const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 256;
/// Random bytes in a secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;
/// How long a rotated-out secret still signs.
const ROTATION_OVERLAP_HOURS: i64 = 24;
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;
/// Names ListWebhooks' page tokens.
const PAGE_TAG: &str = "w1";

/// Which targets this server may deliver to (`webhooks_allow_http`,
/// `webhooks_allow_private`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Why a delivery to `ip` is refused, if it is.
    pub fn refuses(&self, ip: IpAddr) -> Option<String> {
        let metadata = IpAddr::from([169, 254, 169, 254]);
        let ip4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if ip4 == metadata {
            return Some(format!(
                "{ip} is the cloud metadata address, which webhooks never reach"
            ));
        }
        (is_internal(ip) && !self.allow_private).then(|| {
            format!(
                "{ip} is a loopback, private, link-local or other internal address \
                 (allowed only with webhooks_allow_private)"
            )
        })
    }

    /// The rule `url` breaks as an endpoint, if any.
    pub fn check_url(&self, url: &str) -> Option<String> {
        if url.is_empty() {
            return Some("required".into());
        }
        if url.len() > MAX_URL {
            return Some(format!("must be at most {MAX_URL} characters"));
        }
        let Ok(parsed) = url::Url::parse(url) else {
            return Some("must be an absolute http(s) URL".into());
        };
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Some("must be https (plain http only with webhooks_allow_http)".into());
            }
            _ => return Some("must be an https URL".into()),
        }
        let ip = match parsed.host() {
            None => return Some("must name a host".into()),
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(domain)) => {
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_private && (domain == "localhost" || domain.ends_with(".localhost"))
                {
                    return Some(
                        "must not be localhost (allowed only with webhooks_allow_private)".into(),
                    );
                }
                return None;
            }
        };
        self.refuses(ip)
            .map(|why| format!("must not point inside the network: {why}"))
    }
}

/// An endpoint as the API shows it (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// Event types; empty means all.
    pub events: Vec<String>,
    pub active: bool,
    pub description: String,
    /// Why it was disabled automatically.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of endpoints, oldest first, and the token of the next page
/// (empty on the last).
#[derive(Clone, Debug)]
pub struct WebhookPage {
    pub webhooks: Vec<Webhook>,
    pub next_page_token: String,
}

/// A change to an endpoint: the fields to set.
#[derive(Clone, Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
    pub description: Option<String>,
}

/// What the endpoints need from storage.
pub trait WebhookStore: Send + Sync + 'static {
    fn insert_webhook(
        &self,
        webhook: &Webhook,
        secret: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn webhook(
        &self,
        account_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Webhook>>> + Send;
    /// The account's endpoints after `after`, oldest first.
    fn list_webhooks(
        &self,
        account_id: &str,
        after: Option<Keyset>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Webhook>>> + Send;
    /// Stores the endpoint's url, events, active flag, description and
    /// disabled reason; `false` when it is gone.
    fn update_webhook(&self, webhook: &Webhook) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes the endpoint with its deliveries; `false` when there is none.
    fn delete_webhook(
        &self,
        account_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The endpoint's url with the secrets that sign for it at `now` (the
    /// current one first, then a rotated-out one still in its overlap).
    fn signing(
        &self,
        account_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(String, Vec<String>)>>> + Send;
    /// Makes `secret` the endpoint's secret, keeping the one it replaces
    /// until `previous_until`; `false` when there is no such endpoint.
    fn rotate_secret(
        &self,
        account_id: &str,
        id: &str,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A new signing secret: `whsec_` and base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` value (Standard Webhooks): `v1,` and the base64
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` under each secret's decoded
/// bytes, space-separated (several while a secret rotates).
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    secrets
        .iter()
        .filter_map(|secret| STANDARD.decode(secret.strip_prefix("whsec_")?).ok())
        .map(|key| {
            let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key)
                .expect("HMAC takes any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The headers of a signed request: the content type and the three
/// Standard Webhooks headers.
pub fn signed_headers(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature(secrets, id, timestamp, body)),
    ]
}

/// How one HTTP attempt went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    /// 0 when no response arrived.
    pub status_code: u16,
    pub latency: std::time::Duration,
    /// Why no response arrived, or why none was asked for (a refused
    /// address); empty otherwise.
    pub error: String,
    /// The first 1 KB of the response body.
    pub snippet: String,
    /// How long the endpoint asked to be left alone (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// Sends one signed request to an endpoint (the HTTP adapter).
pub trait WebhookSender: Send + Sync + 'static {
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Attempt> + Send;
}

/// The endpoint use cases.
pub struct Webhooks<S> {
    store: S,
    clock: Arc<dyn Clock>,
    policy: TargetPolicy,
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        kind: "webhook",
        id: id.to_owned(),
    }
}

/// The violation of `field` when `event` is not an event type endpoints
/// can ask for.
pub(super) fn check_event_type(field: String, event: &str) -> Option<FieldViolation> {
    (!EVENT_TYPES.contains(&event)).then(|| {
        FieldViolation::new(
            field,
            format!(
                "unknown event type `{event}`; one of {}",
                EVENT_TYPES.join(", ")
            ),
        )
    })
}

/// The event types of a request, checked and without repeats.
fn events(requested: &[String], violations: &mut Vec<FieldViolation>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for (i, event) in requested.iter().enumerate() {
        if let Some(violation) = check_event_type(format!("events[{i}]"), event) {
            violations.push(violation);
        } else if !kept.contains(event) {
            kept.push(event.clone());
        }
    }
    kept
}

fn check_description(description: &str, violations: &mut Vec<FieldViolation>) {
    if description.chars().count() > MAX_DESCRIPTION {
        violations.push(FieldViolation::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
}

impl<S: WebhookStore> Webhooks<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, policy: TargetPolicy) -> Self {
        Webhooks {
            store,
            clock,
            policy,
        }
    }

    /// The clock's time, to the microsecond the store keeps.
    pub(super) fn now(&self) -> DateTime<Utc> {
        from_micros(to_micros(self.clock.now()))
    }

    pub(super) fn store(&self) -> &S {
        &self.store
    }

    /// Registers an endpoint; returns it with its secret.
    pub async fn create(
        &self,
        account_id: &str,
        url: &str,
        requested_events: &[String],
        description: &str,
    ) -> Result<(Webhook, String)> {
        let mut violations = Vec::new();
        if let Some(rule) = self.policy.check_url(url) {
            violations.push(FieldViolation::new("url", rule));
        }
        let events = events(requested_events, &mut violations);
        check_description(description, &mut violations);
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let now = self.now();
        let webhook = Webhook {
            id: new_id("wh"),
            account_id: account_id.to_owned(),
            url: url.to_owned(),
            events,
            active: true,
            description: description.to_owned(),
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        let secret = new_secret();
        self.store.insert_webhook(&webhook, &secret).await?;
        Ok((webhook, secret))
    }

    pub async fn get(&self, account_id: &str, id: &str) -> Result<Webhook> {
        self.store
            .webhook(account_id, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// The account's endpoints, oldest first.
    pub async fn list(
        &self,
        account_id: &str,
        requested_size: i32,
        page_token: &str,
    ) -> Result<WebhookPage> {
        let mut violations = Vec::new();
        let limit = page_size(requested_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|v| violations.push(v))
            .ok();
        let after = Keyset::from_request(page_token, PAGE_TAG, "ListWebhooks")
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let (Some(limit), true) = (limit, violations.is_empty()) else {
            return Err(Error::Validation(violations));
        };
        let mut webhooks = self
            .store
            .list_webhooks(account_id, after, limit + 1)
            .await?;
        let next_page_token = next_page(&mut webhooks, limit, PAGE_TAG, |last| Keyset {
            at: to_micros(last.created_at),
            id: last.id.clone(),
        });
        Ok(WebhookPage {
            webhooks,
            next_page_token,
        })
    }

    /// Changes what `change` sets. Turning an endpoint back on clears why
    /// it was disabled.
    pub async fn update(
        &self,
        account_id: &str,
        id: &str,
        change: WebhookChange,
    ) -> Result<Webhook> {
        let mut violations = Vec::new();
        if let Some(rule) = change.url.as_deref().and_then(|u| self.policy.check_url(u)) {
            violations.push(FieldViolation::new("url", rule));
        }
        let events = change.events.as_deref().map(|e| events(e, &mut violations));
        if let Some(description) = &change.description {
            check_description(description, &mut violations);
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let mut webhook = self.get(account_id, id).await?;
        if let Some(url) = change.url {
            webhook.url = url;
        }
        if let Some(events) = events {
            webhook.events = events;
        }
        if let Some(description) = change.description {
            webhook.description = description;
        }
        if let Some(active) = change.active {
            if active {
                webhook.disabled_reason = None;
            }
            webhook.active = active;
        }
        webhook.updated_at = self.now();
        if !self.store.update_webhook(&webhook).await? {
            return Err(not_found(id));
        }
        Ok(webhook)
    }

    pub async fn delete(&self, account_id: &str, id: &str) -> Result<()> {
        if self.store.delete_webhook(account_id, id).await? {
            Ok(())
        } else {
            Err(not_found(id))
        }
    }

    /// Sends a signed `webhook.test` event to the endpoint now and reports
    /// how it answered.
    pub async fn test(
        &self,
        account_id: &str,
        id: &str,
        sender: &impl WebhookSender,
    ) -> Result<Attempt> {
        let now = self.clock.now();
        let (url, secrets) = self
            .store
            .signing(account_id, id, now)
            .await?
            .ok_or_else(|| not_found(id))?;
        let event_id = new_id("evt");
        let body = serde_json::json!({
            "type": "webhook.test",
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": { "webhook_id": id },
        })
        .to_string()
        .into_bytes();
        let headers = signed_headers(&secrets, &event_id, now.timestamp(), &body);
        Ok(sender.post(&url, headers, body).await)
    }

    /// A new secret for the endpoint; the old one signs beside it for 24
    /// hours. Returns the new secret and when the old one stops.
    pub async fn rotate_secret(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<(String, DateTime<Utc>)> {
        let secret = new_secret();
        let until = self.now() + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
        if self
            .store
            .rotate_secret(account_id, id, &secret, until)
            .await?
        {
            Ok((secret, until))
        } else {
            Err(not_found(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(policy: TargetPolicy, url: &str) -> Option<String> {
        policy.check_url(url)
    }

    #[test]
    fn endpoints_inside_the_network_are_refused_unless_allowed() {
        let strict = TargetPolicy::default();
        assert_eq!(rule(strict, "https://hooks.example.com/posthorn"), None);
        for url in [
            "https://127.0.0.1/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://localhost:8080/",
        ] {
            assert!(rule(strict, url).is_some(), "{url}");
        }
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert_eq!(rule(open, "http://127.0.0.1:9000/hook"), None);
        assert!(
            rule(open, "http://169.254.169.254/")
                .unwrap()
                .contains("metadata"),
            "the metadata address stays refused"
        );
        assert!(
            rule(open, "http://[::ffff:169.254.169.254]/")
                .unwrap()
                .contains("metadata")
        );
    }

    #[test]
    fn an_endpoint_is_an_https_url_with_a_host() {
        let strict = TargetPolicy::default();
        assert!(
            rule(strict, "http://hooks.example.com/")
                .unwrap()
                .contains("https")
        );
        assert!(rule(strict, "ftp://hooks.example.com/").is_some());
        assert!(rule(strict, "hooks.example.com/x").is_some());
        assert!(rule(strict, "").unwrap().contains("required"));
        assert!(rule(strict, &format!("https://a.example/{}", "x".repeat(2048))).is_some());
    }

    #[test]
    fn a_secret_carries_32_random_bytes() {
        let secret = new_secret();
        let bytes = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_ne!(secret, new_secret());
    }
}
