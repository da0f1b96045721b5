//! Webhook requests over HTTP. The endpoint's host is resolved here and
//! every address it has is checked before any connection: one address
//! inside the network (unless allowed) refuses the request. The client
//! connects only to the addresses this resolver answered, so it does not
//! resolve again and DNS rebinding cannot slip another address in; a URL
//! with a literal address is checked before the request. One client serves
//! every endpoint, so connections are kept and reused between deliveries.
//! Redirects are not followed (a 3xx is an answer, and not a success), the
//! whole request has 10 seconds, and at most 64 KB of the answer is read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::domain::webhooks::{Attempt, TargetPolicy, WebhookSender};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_READ: usize = 64 * 1024;
const SNIPPET: usize = 1024;
/// Idle connections kept per endpoint host.
const IDLE_PER_HOST: usize = 32;

/// Sends webhook requests under a target policy.
#[derive(Clone, Debug)]
pub struct HttpSender {
    policy: TargetPolicy,
    client: reqwest::Client,
}

/// Resolves endpoint hosts for the client, refusing any answer with an
/// address the policy refuses.
#[derive(Clone, Debug)]
struct CheckedResolver {
    policy: TargetPolicy,
    /// Fixed answers for host names, consulted before DNS (tests).
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

/// A resolution the policy refused; its text is what the attempt records.
#[derive(Debug, thiserror::Error)]
#[error("refused before connecting: {0}")]
struct Refused(String);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl CheckedResolver {
    /// The host's addresses, every one allowed; a refusal is [`Refused`].
    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, BoxError> {
        let found: Vec<IpAddr> = match self.hosts.get(name) {
            Some(fixed) => fixed.clone(),
            None => tokio::net::lookup_host((name, 0))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if found.is_empty() {
            return Err(format!("{name} has no address").into());
        }
        if let Some(why) = found.iter().find_map(|ip| self.policy.refuses(*ip)) {
            return Err(Box::new(Refused(format!("{name} resolves to {why}"))));
        }
        Ok(found)
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let found = this.addresses(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(found.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

impl Default for HttpSender {
    fn default() -> Self {
        HttpSender::new(TargetPolicy::default(), HashMap::new())
    }
}

impl HttpSender {
    pub fn new(policy: TargetPolicy, hosts: HashMap<String, Vec<IpAddr>>) -> HttpSender {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("posthorn-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver {
                policy,
                hosts: Arc::new(hosts),
            }))
            .build()
            .expect("a client without custom TLS roots builds");
        HttpSender { policy, client }
    }

    async fn attempt(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, Option<Duration>, String), String> {
        if let Some(rule) = self.policy.check_url(url) {
            return Err(format!("refused before connecting: the URL {rule}"));
        }
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut request = self.client.post(parsed).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let mut read = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| describe(&e))?;
            read.extend_from_slice(&chunk[..chunk.len().min(MAX_READ - read.len())]);
            if read.len() >= MAX_READ {
                break;
            }
        }
        let snippet = String::from_utf8_lossy(&read[..read.len().min(SNIPPET)]).into_owned();
        Ok((status, retry_after, snippet))
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (the wait until then).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A request error without the URL (it may carry credentials).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    // A refusal by the resolver is the whole story.
    let mut source = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        innermost = Some(cause);
        source = cause.source();
    }
    match innermost {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_owned(),
    }
}

impl WebhookSender for HttpSender {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Attempt {
        let started = Instant::now();
        let result = self.attempt(url, headers, body).await;
        let latency = started.elapsed();
        match result {
            Ok((status_code, retry_after, snippet)) => Attempt {
                status_code,
                latency,
                error: String::new(),
                snippet,
                retry_after,
            },
            Err(error) => Attempt {
                latency,
                error,
                ..Attempt::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            None,
            "in the past"
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(600)).to_rfc2822();
        let wait = retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600));
        assert_eq!(retry_after("soon"), None);
    }
}
