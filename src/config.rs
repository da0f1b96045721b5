//! Typed, layered configuration: built-in defaults, then an optional
//! `posthorn.toml`, then `POSTHORN_*` environment variables. Every value is
//! validated at start-up; an invalid or unknown setting is an error that
//! names the setting and what it accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::domain::limits::Policy;

/// One setting: its key, default and meaning. The README's configuration
/// reference lists the same table.
pub struct SettingInfo {
    pub key: &'static str,
    pub default: &'static str,
    pub accepts: &'static str,
}

/// Every setting. A key `foo_bar` is `foo_bar` in `posthorn.toml` and
/// `POSTHORN_FOO_BAR` in the environment.
pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        key: "listen",
        default: "127.0.0.1:7070",
        accepts: "a socket address host:port; port 0 picks a free port",
    },
    SettingInfo {
        key: "database_url",
        default: "sqlite://posthorn.db",
        accepts: "sqlite://PATH or postgres://USER@HOST:PORT/DB",
    },
    SettingInfo {
        key: "database_max_connections",
        default: "10",
        accepts: "an integer from 1 to 1000",
    },
    SettingInfo {
        key: "sqlite_log_mb",
        default: "256",
        accepts: "an integer from 16 to 65536: megabytes of SQLite write-ahead log before it starts over (its file stays under twice this)",
    },
    SettingInfo {
        key: "public_url",
        default: "http://<listen>",
        accepts: "an http:// or https:// URL where recipients reach tracking and unsubscribe links",
    },
    SettingInfo {
        key: "public_listen",
        default: "",
        accepts: "empty, or a socket address host:port for a second listener that serves only the links in delivered mail (unsubscribe, open pixel, clicks), so the API can stay private",
    },
    SettingInfo {
        key: "unsubscribe_mailto",
        default: "",
        accepts: "empty, or an email address that takes unsubscribe requests by mail: List-Unsubscribe then also names mailto:ADDRESS?subject=unsubscribe%20TOKEN",
    },
    SettingInfo {
        key: "hostname",
        default: "localhost",
        accepts: "a host name, used in HELO and Message-ID",
    },
    SettingInfo {
        key: "transport",
        default: "capture://",
        accepts: "capture://, smtp://[USER:PASS@]HOST[:PORT][?tls=…], smtps://… or file:///DIR",
    },
    SettingInfo {
        key: "log",
        default: "info",
        accepts: "a tracing filter such as info or posthorn=debug,tower=warn",
    },
    SettingInfo {
        key: "log_format",
        default: "human",
        accepts: "human or json",
    },
    SettingInfo {
        key: "bootstrap",
        default: "true",
        accepts: "true or false: on an empty database, create account default and print a key",
    },
    SettingInfo {
        key: "webhooks_allow_http",
        default: "false",
        accepts: "true or false: whether webhook endpoints may be plain http:// (https is required otherwise)",
    },
    SettingInfo {
        key: "webhooks_allow_private",
        default: "false",
        accepts: "true or false: whether webhook endpoints may be loopback, private or link-local addresses (for local development; the metadata address 169.254.169.254 stays refused)",
    },
    SettingInfo {
        key: "webhook_concurrency",
        default: "512",
        accepts: "an integer from 1 to 4096: webhook requests in flight at once, over all endpoints",
    },
    SettingInfo {
        key: "webhook_endpoint_concurrency",
        default: "64",
        accepts: "an integer from 1 to 1024: webhook requests in flight at once to one endpoint (a slow endpoint holds no more than this)",
    },
    SettingInfo {
        key: "webhook_lease_seconds",
        default: "60",
        accepts: "an integer from 11 to 3600: how long the dispatcher's claim on a webhook delivery holds (a request takes at most 10 s); a delivery of a process that died is sent again after this",
    },
    SettingInfo {
        key: "webhook_retry_schedule",
        default: "30s,5m,30m,2h,6h",
        accepts: "1 to 20 comma-separated waits (each a number and s, m, h or d, at most 7d): the wait after a webhook delivery's first failure, its second, …; after the last failure the delivery is abandoned. Each wait gets up to 10 % jitter; a longer Retry-After (up to a day) is honoured",
    },
    SettingInfo {
        key: "webhook_disable_after_hours",
        default: "120",
        accepts: "an integer from 1 to 8760: a webhook endpoint that has not answered 2xx for this long, while failing, is disabled",
    },
    SettingInfo {
        key: "mcp_read_only",
        default: "false",
        accepts: "true or false: whether the MCP endpoint (/mcp) offers only the tools that read (no send_email, no cancel_message)",
    },
    SettingInfo {
        key: "cors_origins",
        default: "*",
        accepts: "* or a comma-separated list of origins allowed to call from browsers",
    },
    SettingInfo {
        key: "shutdown_grace_seconds",
        default: "30",
        accepts: "an integer from 0 to 3600: how long shutdown waits for in-flight requests",
    },
    SettingInfo {
        key: "rest_max_body_bytes",
        default: "37748736",
        accepts: "an integer from 1024 to 1073741824: the largest REST request body in bytes, after gzip is inflated, and the largest MCP request body (36 MiB fits 25 MB of base64 attachments)",
    },
    SettingInfo {
        key: "stream_keepalive_seconds",
        default: "15",
        accepts: "an integer from 1 to 3600: how long a REST stream sent as Server-Sent Events (GET /v1/messages:watch) may be quiet before a keep-alive comment is written, so proxies keep it open and a vanished client is noticed",
    },
    SettingInfo {
        key: "client_timeout_seconds",
        default: "60",
        accepts: "an integer from 1 to 3600: how long a client may leave a request unfinished: a new connection to send its first request, an HTTP/1.1 client the headers of a request, any request body but a gRPC stream its next bytes; an idle HTTP/1.1 keep-alive connection is closed after the same time",
    },
    SettingInfo {
        key: "rate_limit_per_second",
        default: "100",
        accepts: "a number from 0.01 to 1000000: requests per second each API key may make, sustained (accounts may override)",
    },
    SettingInfo {
        key: "rate_limit_burst",
        default: "200",
        accepts: "an integer from 1 to 1000000: requests a key may make at once after being idle (accounts may override)",
    },
    SettingInfo {
        key: "daily_quota",
        default: "100000",
        accepts: "an integer from 0 to 1000000000: recipients each account may send to per UTC day; 0 is unlimited (accounts may override)",
    },
    SettingInfo {
        key: "deliver",
        default: "true",
        accepts: "true or false: whether this process runs the delivery worker pool and the webhook dispatcher (false: an accept-only node; another process sharing the database delivers)",
    },
    SettingInfo {
        key: "delivery_concurrency",
        default: "64",
        accepts: "an integer from 1 to 1024: messages the worker pool delivers at once",
    },
    SettingInfo {
        key: "delivery_lease_seconds",
        default: "120",
        accepts: "an integer from 2 to 3600: how long a worker's claim on a recipient holds without renewal; a claim of a process that died returns to the queue after this (the worker renews it every third of it while it delivers)",
    },
    SettingInfo {
        key: "retry_initial_seconds",
        default: "60",
        accepts: "an integer from 1 to 86400: the wait after a recipient's first temporary failure; each further failure doubles it (±20 % jitter)",
    },
    SettingInfo {
        key: "retry_max_seconds",
        default: "10800",
        accepts: "an integer from 1 to 604800: the longest wait between attempts",
    },
    SettingInfo {
        key: "message_max_age_hours",
        default: "72",
        accepts: "an integer from 1 to 720: after this long a message is not tried again and its waiting recipients end `failed` (reason `expired`)",
    },
    SettingInfo {
        key: "auth_cache_seconds",
        default: "5",
        accepts: "a number from 0 to 5: how long an API key lookup and an account's verified senders are reused; a revoked key or removed sender stops working within this time (0 reads them on every request)",
    },
    SettingInfo {
        key: "max_attachments",
        default: "10",
        accepts: "an integer from 0 to 100: attachments per message",
    },
];

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    /// On SQLite, the write-ahead log is started over past this many
    /// megabytes of frames; each restart pauses the writer for a few
    /// milliseconds, and the log's file stays under twice this.
    pub sqlite_log_mb: u64,
    pub public_url: String,
    /// A second listener for the links in delivered mail only.
    pub public_listen: Option<SocketAddr>,
    /// An address that takes unsubscribe requests by mail, named in
    /// `List-Unsubscribe` beside the one-click link.
    pub unsubscribe_mailto: Option<String>,
    pub hostname: String,
    pub transport: String,
    pub log: String,
    pub log_format: LogFormat,
    pub bootstrap: bool,
    /// Which webhook endpoints are accepted and delivered to.
    pub webhook_targets: crate::domain::webhooks::TargetPolicy,
    /// Fixed addresses for host names, consulted before DNS when webhooks
    /// are sent. Not a setting: tests use it to resolve a name to an
    /// address without a DNS server.
    pub webhook_hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// Webhook requests in flight at once, in all and per endpoint.
    pub webhook_concurrency: usize,
    pub webhook_endpoint_concurrency: usize,
    /// How long the dispatcher's claim holds.
    pub webhook_lease: Duration,
    pub webhook_policy: crate::domain::webhook_deliveries::DispatchPolicy,
    /// The clock the webhook dispatcher and the delivery log read. Not a
    /// setting: tests move it to walk through the retry schedule.
    pub webhook_clock: Option<std::sync::Arc<crate::domain::clock::ManualClock>>,
    pub cors_origins: Vec<String>,
    /// Whether the MCP endpoint offers only the tools that read.
    pub mcp_read_only: bool,
    pub shutdown_grace: Duration,
    pub rest_max_body_bytes: usize,
    /// How long an SSE stream may be quiet before a keep-alive comment.
    pub stream_keepalive: Duration,
    /// How long a client may leave a request unfinished (its first request,
    /// headers, the next bytes of a body), and an idle HTTP/1.1 connection
    /// may stay open.
    pub client_timeout: Duration,
    /// Default limits of every account.
    pub policy: Policy,
    pub max_attachments: usize,
    /// How long key lookups and verified senders are reused.
    pub auth_cache: Duration,
    /// Whether this process runs the worker pool.
    pub deliver: bool,
    pub delivery_concurrency: usize,
    /// How long a claim holds without renewal.
    pub delivery_lease: Duration,
    pub retry: crate::domain::delivery::RetryPolicy,
}

/// A configuration error, naming the setting and its source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads settings from defaults, the optional file and `env` (the process
    /// environment in production; a map in tests).
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut values: BTreeMap<&'static str, (String, String)> = SETTINGS
            .iter()
            .map(|s| (s.key, (s.default.to_owned(), "default".to_owned())))
            .collect();
        if let Some(path) = file {
            for (key, value) in read_file(path)? {
                let info = lookup(&key).ok_or_else(|| {
                    ConfigError(format!(
                        "{}: unknown setting `{key}`; known settings: {}",
                        path.display(),
                        known()
                    ))
                })?;
                values.insert(info.key, (value, format!("`{key}` in {}", path.display())));
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("POSTHORN_") else {
                continue;
            };
            // POSTHORN_TEST_* belong to the test suite, not to the server.
            if key.starts_with("TEST_") {
                continue;
            }
            let info = lookup(&key.to_ascii_lowercase()).ok_or_else(|| {
                ConfigError(format!(
                    "unknown environment variable {name}; known settings: {}",
                    SETTINGS
                        .iter()
                        .map(|s| format!("POSTHORN_{}", s.key.to_ascii_uppercase()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            values.insert(info.key, (value.clone(), name.clone()));
        }
        Settings::from_values(&values)
    }

    fn from_values(
        values: &BTreeMap<&'static str, (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let get = |key: &'static str| -> (&str, &str) {
            let (v, source) = &values[key];
            (v.as_str(), source.as_str())
        };
        let bad = |key: &'static str| -> ConfigError {
            let (value, source) = get(key);
            let info = lookup(key).expect("every key read here is in SETTINGS");
            // A refused relay or database URL may still carry a password.
            let value = redact_password(value);
            ConfigError(format!(
                "invalid value {value:?} for setting `{key}` (from {source}): expected {}",
                info.accepts
            ))
        };

        let listen: SocketAddr = get("listen").0.parse().map_err(|_| bad("listen"))?;
        let database_url = get("database_url").0.to_owned();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad("database_url"));
        }
        let database_max_connections: u32 = get("database_max_connections")
            .0
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("database_max_connections"))?;
        let sqlite_log_mb: u64 = get("sqlite_log_mb")
            .0
            .parse()
            .ok()
            .filter(|n| (16..=65536).contains(n))
            .ok_or_else(|| bad("sqlite_log_mb"))?;
        let public_url = match get("public_url").0 {
            "http://<listen>" => format!("http://{listen}"),
            url if (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len()
                && !url.contains(char::is_whitespace) =>
            {
                url.trim_end_matches('/').to_owned()
            }
            _ => return Err(bad("public_url")),
        };
        let public_listen = match get("public_listen").0 {
            "" => None,
            address => Some(address.parse().map_err(|_| bad("public_listen"))?),
        };
        let unsubscribe_mailto = match get("unsubscribe_mailto").0 {
            "" => None,
            address => Some(
                crate::domain::email::EmailAddress::parse(address)
                    .map_err(|_| bad("unsubscribe_mailto"))?
                    .as_str()
                    .to_owned(),
            ),
        };
        let hostname = get("hostname").0.to_owned();
        if hostname.is_empty()
            || hostname.len() > 253
            || !hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(bad("hostname"));
        }
        let transport = get("transport").0.to_owned();
        if !["capture://", "smtp://", "smtps://", "file://"]
            .iter()
            .any(|p| transport.starts_with(p))
        {
            return Err(bad("transport"));
        }
        let log = get("log").0.to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(bad("log"));
        }
        let log_format = match get("log_format").0 {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            _ => return Err(bad("log_format")),
        };
        let bootstrap = parse_bool(get("bootstrap").0).ok_or_else(|| bad("bootstrap"))?;
        let webhook_targets = crate::domain::webhooks::TargetPolicy {
            allow_http: parse_bool(get("webhooks_allow_http").0)
                .ok_or_else(|| bad("webhooks_allow_http"))?,
            allow_private: parse_bool(get("webhooks_allow_private").0)
                .ok_or_else(|| bad("webhooks_allow_private"))?,
        };
        let cors_origins: Vec<String> = get("cors_origins")
            .0
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let origins_ok = !cors_origins.is_empty()
            && (cors_origins == ["*"]
                || cors_origins.iter().all(|o| {
                    (o.starts_with("http://") || o.starts_with("https://"))
                        && http::HeaderValue::from_str(o).is_ok()
                }));
        if !origins_ok {
            return Err(bad("cors_origins"));
        }
        let shutdown_grace = get("shutdown_grace_seconds")
            .0
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 3600)
            .map(Duration::from_secs)
            .ok_or_else(|| bad("shutdown_grace_seconds"))?;
        let rest_max_body_bytes = get("rest_max_body_bytes")
            .0
            .parse::<usize>()
            .ok()
            .filter(|n| (1024..=1 << 30).contains(n))
            .ok_or_else(|| bad("rest_max_body_bytes"))?;
        let stream_keepalive = get("stream_keepalive_seconds")
            .0
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=3600).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| bad("stream_keepalive_seconds"))?;
        let rate_per_second = get("rate_limit_per_second")
            .0
            .parse::<f64>()
            .ok()
            .filter(|n| (0.01..=1_000_000.0).contains(n))
            .ok_or_else(|| bad("rate_limit_per_second"))?;
        let burst = get("rate_limit_burst")
            .0
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| bad("rate_limit_burst"))?;
        let daily_quota = get("daily_quota")
            .0
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 1_000_000_000)
            .ok_or_else(|| bad("daily_quota"))?;
        let max_attachments = get("max_attachments")
            .0
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 100)
            .ok_or_else(|| bad("max_attachments"))?;
        let integer = |key: &'static str, range: std::ops::RangeInclusive<u64>| {
            get(key)
                .0
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| bad(key))
        };
        let deliver = match get("deliver").0 {
            "true" => true,
            "false" => false,
            _ => return Err(bad("deliver")),
        };
        let delivery_concurrency = integer("delivery_concurrency", 1..=1024)? as usize;
        let delivery_lease = Duration::from_secs(integer("delivery_lease_seconds", 2..=3600)?);
        let retry = crate::domain::delivery::RetryPolicy {
            first: Duration::from_secs(integer("retry_initial_seconds", 1..=86_400)?),
            max: Duration::from_secs(integer("retry_max_seconds", 1..=604_800)?),
            max_age: Duration::from_secs(integer("message_max_age_hours", 1..=720)? * 3600),
        };
        let webhook_policy = crate::domain::webhook_deliveries::DispatchPolicy {
            schedule: parse_waits(get("webhook_retry_schedule").0)
                .ok_or_else(|| bad("webhook_retry_schedule"))?,
            disable_after: Duration::from_secs(
                integer("webhook_disable_after_hours", 1..=8760)? * 3600,
            ),
        };
        let auth_cache = get("auth_cache_seconds")
            .0
            .parse::<f64>()
            .ok()
            .filter(|n| (0.0..=5.0).contains(n))
            .map(Duration::from_secs_f64)
            .ok_or_else(|| bad("auth_cache_seconds"))?;

        Ok(Settings {
            listen,
            database_url,
            database_max_connections,
            sqlite_log_mb,
            public_url,
            public_listen,
            unsubscribe_mailto,
            hostname,
            transport,
            log,
            log_format,
            bootstrap,
            webhook_targets,
            webhook_hosts: Default::default(),
            webhook_concurrency: integer("webhook_concurrency", 1..=4096)? as usize,
            webhook_endpoint_concurrency: integer("webhook_endpoint_concurrency", 1..=1024)?
                as usize,
            webhook_lease: Duration::from_secs(integer("webhook_lease_seconds", 11..=3600)?),
            webhook_policy,
            webhook_clock: None,
            cors_origins,
            mcp_read_only: parse_bool(get("mcp_read_only").0)
                .ok_or_else(|| bad("mcp_read_only"))?,
            shutdown_grace,
            rest_max_body_bytes,
            stream_keepalive,
            client_timeout: Duration::from_secs(integer("client_timeout_seconds", 1..=3600)?),
            policy: Policy {
                rate_per_second,
                burst,
                daily_quota: (daily_quota > 0).then_some(daily_quota),
            },
            max_attachments,
            auth_cache,
            deliver,
            delivery_concurrency,
            delivery_lease,
            retry,
        })
    }

    /// The clock of the webhook dispatcher and delivery log: the system's
    /// unless a test set one.
    pub fn webhook_clock(&self) -> std::sync::Arc<dyn crate::domain::clock::Clock> {
        match &self.webhook_clock {
            Some(manual) => manual.clone(),
            None => std::sync::Arc::new(crate::domain::clock::SystemClock),
        }
    }

    /// Returns the settings with nothing but the defaults.
    pub fn defaults() -> Settings {
        Settings::load(None, &BTreeMap::new()).expect("the built-in defaults are valid")
    }
}

/// A list of waits like `30s,5m,2h`: 1 to 20, each from 1 s to 7 days.
fn parse_waits(value: &str) -> Option<Vec<Duration>> {
    let waits = value
        .split(',')
        .map(|wait| {
            let wait = wait.trim();
            let unit = match wait.chars().last()? {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return None,
            };
            let n: u64 = wait[..wait.len() - 1].parse().ok()?;
            Some(Duration::from_secs(n.checked_mul(unit)?))
                .filter(|d| (1..=7 * 86_400).contains(&d.as_secs()))
        })
        .collect::<Option<Vec<_>>>()?;
    (1..=20).contains(&waits.len()).then_some(waits)
}

fn lookup(key: &str) -> Option<&'static SettingInfo> {
    SETTINGS.iter().find(|s| s.key == key)
}

fn known() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Reads a TOML file into key → string value.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("{} is not valid TOML: {e}", path.display())))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s),
                        other => Ok(other.to_string()),
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?
                    .join(","),
                _ => {
                    return Err(ConfigError(format!(
                        "{}: setting `{key}` must be a string, integer, boolean or list",
                        path.display()
                    )));
                }
            };
            Ok((key, text))
        })
        .collect()
}

/// `value` with the password of its user part hidden (`smtp://user:***@relay`),
/// for printing; a value with no password comes back as it is.
pub fn redact_password(value: &str) -> String {
    let start = value.find("://").map_or(0, |scheme| scheme + 3);
    match value.rfind('@') {
        Some(at) if at > start => match value[start..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &value[..start], &value[at..]),
            None => value.to_owned(),
        },
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The error loading the settings with `variable` set to `value` gives.
    fn refused(variable: &str, value: &str) -> String {
        Settings::load(None, &env(&[(variable, value)]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_listen_on_loopback_7070_with_sqlite_and_capture() {
        let s = Settings::defaults();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(s.database_url, "sqlite://posthorn.db");
        assert_eq!(s.transport, "capture://");
        assert_eq!(s.public_url, "http://127.0.0.1:7070");
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posthorn.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nhostname = \"mail.example.com\"\nshutdown_grace_seconds = 5\n").unwrap();
        let s =
            Settings::load(Some(&path), &env(&[("POSTHORN_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(s.hostname, "mail.example.com");
        assert_eq!(s.shutdown_grace, Duration::from_secs(5));
    }

    #[test]
    fn a_refused_url_is_shown_without_its_password() {
        for (variable, value, shown) in [
            (
                "POSTHORN_TRANSPORT",
                "ftp://mailer:s3cret@relay.example",
                "ftp://mailer:***@relay.example",
            ),
            (
                "POSTHORN_TRANSPORT",
                "mailer:s3cret@relay.example:587",
                "mailer:***@relay.example:587",
            ),
            (
                "POSTHORN_DATABASE_URL",
                "mysql://root:s3cret@127.0.0.1/mail",
                "mysql://root:***@127.0.0.1/mail",
            ),
        ] {
            let err = refused(variable, value);
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains(shown), "{err}");
        }
        assert_eq!(
            redact_password("smtp://user:secret@relay:587"),
            "smtp://user:***@relay:587"
        );
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_password("sqlite://posthorn.db"),
            "sqlite://posthorn.db"
        );
    }

    #[test]
    fn an_invalid_value_names_the_setting_its_source_and_what_it_accepts() {
        let err = refused("POSTHORN_LISTEN", "not-an-address");
        assert!(
            err.contains("`listen`")
                && err.contains("POSTHORN_LISTEN")
                && err.contains("host:port"),
            "{err}"
        );
        let err = refused("POSTHORN_LOG_FORMAT", "xml");
        assert!(err.contains("human or json"), "{err}");
        let err = refused("POSTHORN_SQLITE_LOG_MB", "8");
        assert!(
            err.contains("`sqlite_log_mb`") && err.contains("16 to 65536"),
            "{err}"
        );
    }

    #[test]
    fn the_sqlite_log_setting_defaults_to_the_stores_default_and_can_be_set() {
        let defaults = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(
            defaults.sqlite_log_mb,
            crate::storage::DEFAULT_SQLITE_LOG_MB
        );
        let set = Settings::load(None, &env(&[("POSTHORN_SQLITE_LOG_MB", "64")])).unwrap();
        assert_eq!(set.sqlite_log_mb, 64);
    }

    #[test]
    fn an_unknown_setting_is_refused_in_the_environment_and_in_the_file() {
        let err = refused("POSTHORN_LISTN", "x");
        assert!(
            err.contains("POSTHORN_LISTN") && err.contains("POSTHORN_LISTEN"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posthorn.toml");
        std::fs::write(&path, "databse_url = \"sqlite://x.db\"\n").unwrap();
        let err = Settings::load(Some(&path), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`databse_url`") && err.contains("database_url"),
            "{err}"
        );
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../README.md");
        for setting in SETTINGS {
            let env = format!("`POSTHORN_{}`", setting.key.to_ascii_uppercase());
            assert!(
                readme.contains(&format!("| `{}` | {env} |", setting.key)),
                "README lacks {}",
                setting.key
            );
        }
    }

    #[test]
    fn test_suite_variables_are_not_settings() {
        assert!(
            Settings::load(
                None,
                &env(&[("POSTHORN_TEST_DATABASE_URL", "postgres://x")])
            )
            .is_ok()
        );
    }

    #[test]
    fn the_webhook_retry_schedule_is_a_list_of_waits() {
        let s = Settings::defaults();
        assert_eq!(
            s.webhook_policy.schedule,
            [30, 300, 1800, 7200, 21_600].map(Duration::from_secs)
        );
        let s = Settings::load(
            None,
            &env(&[("POSTHORN_WEBHOOK_RETRY_SCHEDULE", "1s, 2m,1d")]),
        )
        .unwrap();
        assert_eq!(
            s.webhook_policy.schedule,
            [1, 120, 86_400].map(Duration::from_secs)
        );
        for bad in ["", "30", "5x", "0s", "8d", "1s,,2s"] {
            let error = refused("POSTHORN_WEBHOOK_RETRY_SCHEDULE", bad);
            assert!(error.contains("webhook_retry_schedule"), "{bad}: {error}");
        }
    }
}
