//! Webhook requests over HTTP. The endpoint's host is resolved here and
//! every address it has is checked before any connection: one address
//! inside the network (unless allowed) refuses the request. The request
//! then goes to a checked address — the client is told which, so it does
//! not resolve again and DNS rebinding cannot slip another address in.
//! Redirects are not followed (a 3xx is an answer, and not a success), the
//! whole request has 10 seconds, and at most 64 KB of the answer is read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::domain::webhooks::{Attempt, TargetPolicy, WebhookSender};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_READ: usize = 64 * 1024;
const SNIPPET: usize = 1024;

/// Sends webhook requests under a target policy.
#[derive(Clone, Debug, Default)]
pub struct HttpSender {
    policy: TargetPolicy,
    /// Fixed answers for host names, consulted before DNS (tests).
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl HttpSender {
    pub fn new(policy: TargetPolicy, hosts: HashMap<String, Vec<IpAddr>>) -> HttpSender {
        HttpSender { policy, hosts }
    }

    /// The addresses of `host`, or why there are none.
    async fn resolve(&self, host: &url::Host<&str>, port: u16) -> Result<Vec<IpAddr>, String> {
        match host {
            url::Host::Ipv4(v4) => Ok(vec![IpAddr::V4(*v4)]),
            url::Host::Ipv6(v6) => Ok(vec![IpAddr::V6(*v6)]),
            url::Host::Domain(name) => {
                if let Some(fixed) = self.hosts.get(*name) {
                    return Ok(fixed.clone());
                }
                let found: Vec<IpAddr> = tokio::net::lookup_host((*name, port))
                    .await
                    .map_err(|e| format!("cannot resolve {name}: {e}"))?
                    .map(|a| a.ip())
                    .collect();
                if found.is_empty() {
                    return Err(format!("{name} has no address"));
                }
                Ok(found)
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, String), String> {
        if let Some(rule) = self.policy.check_url(url) {
            return Err(format!("refused before connecting: the URL {rule}"));
        }
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed.host().ok_or("the URL has no host")?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses = self.resolve(&host, port).await?;
        if let Some(why) = addresses.iter().find_map(|ip| self.policy.refuses(*ip)) {
            return Err(format!(
                "refused before connecting: {host} resolves to {why}"
            ));
        }
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("posthorn-webhooks/", env!("CARGO_PKG_VERSION")));
        if let url::Host::Domain(name) = host {
            client = client.resolve(name, SocketAddr::new(addresses[0], port));
        }
        let client = client.build().map_err(|e| e.to_string())?;
        let mut request = client.post(parsed).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
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
        Ok((status, snippet))
    }
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
    match std::error::Error::source(error) {
        Some(source) => format!("{what}: {source}"),
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
            Ok((status_code, snippet)) => Attempt {
                status_code,
                latency,
                error: String::new(),
                snippet,
            },
            Err(error) => Attempt {
                latency,
                error,
                ..Attempt::default()
            },
        }
    }
}
