//! The SMTP relay transport (`smtp://` and `smtps://`): Posthorn's own pool
//! of connections to one relay. lettre's default transport manages about 23
//! messages a second per connection here (Nagle left on, a NOOP before every
//! reuse); these connections are opened with `TCP_NODELAY`, reused as they
//! are after a completed transaction (RSET only after an aborted one),
//! bounded in number, dropped when idle too long or broken, and replaced.
//! One envelope per message carries all its recipients, and each RCPT reply
//! is kept for its recipient.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, TlsParameters, TlsParametersBuilder,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::sync::Semaphore;

use crate::domain::delivery::Reply;

/// When the relay's session is encrypted with STARTTLS (`?tls=` of an
/// `smtp://` URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS with a verified certificate, or no delivery.
    Required,
    /// STARTTLS when the relay offers it (certificate not verified, as
    /// opportunistic TLS between MTAs is), else plain text. The default.
    Opportunistic,
    /// Never.
    None,
}

/// A configured relay and its connection pool.
pub struct Relay {
    host: String,
    port: u16,
    /// For `smtps://` (TLS from the first byte): the verified client
    /// configuration.
    implicit_tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    tls: TlsPolicy,
    credentials: Option<Credentials>,
    /// PEM certificates trusted besides the public roots (`?ca_file=`).
    ca: Option<Vec<u8>>,
    helo: ClientId,
    timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
    /// Set when the relay refused the credentials: a configuration problem
    /// every message would hit, so sessions are not tried again until it
    /// runs out (the circuit is open).
    paused: Mutex<Option<Pause>>,
}

/// An open circuit: no sessions until `until`; messages meanwhile defer
/// with the refusal.
struct Pause {
    until: Instant,
    /// How long this pause is; the next refusal doubles it.
    length: Duration,
    reply: Reply,
}

/// The first pause after a refused login, doubled on each refusal in a row.
const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Relay")
            .field("remote", &self.remote())
            .field("tls", &self.tls)
            .field("implicit_tls", &self.implicit_tls_config.is_some())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Why a session could not carry a transaction.
enum Broken {
    /// The connection failed before its first reply on reuse: it had gone
    /// stale while idle, and a fresh one may work.
    Stale,
    /// Give every recipient this reply.
    All(Reply),
}

impl Relay {
    /// How long each step of a session may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads `smtp://[user:pass@]host[:port][?tls=…&max_connections=N&timeout=S&idle_timeout=S&ca_file=PATH]`
    /// or `smtps://…` (TLS from the first byte). Errors never contain the
    /// credentials.
    pub fn parse(url: &str, hostname: &str) -> Result<Relay, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "the SMTP relay URL is not a URL ({e}); expected smtp://[user:pass@]host[:port]"
            )
        })?;
        let implicit_tls = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(format!(
                    "`{other}` is not an SMTP scheme: smtp:// or smtps://"
                ));
            }
        };
        let host = match parsed.host_str() {
            Some(host) if !host.is_empty() => host.trim_matches(['[', ']']).to_owned(),
            _ => return Err("the SMTP relay URL names no host: smtp://host:port".to_owned()),
        };
        let port = parsed.port().unwrap_or(if implicit_tls { 465 } else { 25 });
        let shown = format!("{}://{host}:{port}", parsed.scheme());
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("{shown}: the user name and password must be UTF-8"))
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            (user, Some(password)) => Some(Credentials::new(decode(user)?, decode(password)?)),
            (_, None) => {
                return Err(format!(
                    "{shown}: a user name needs a password (smtp://user:password@host)"
                ));
            }
        };
        let mut relay = Relay {
            host,
            port,
            implicit_tls_config: None,
            tls: if implicit_tls {
                TlsPolicy::Required
            } else {
                TlsPolicy::Opportunistic
            },
            credentials,
            ca: None,
            helo: ClientId::Domain(hostname.to_owned()),
            timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(0),
            paused: Mutex::new(None),
        };
        let seconds = |name: &str, value: &str| -> Result<Duration, String> {
            match value.parse::<u64>() {
                Ok(n @ 1..=3600) => Ok(Duration::from_secs(n)),
                _ => Err(format!(
                    "{shown}: `{name}` must be 1 to 3600 seconds (got `{value}`)"
                )),
            }
        };
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "tls" if !implicit_tls => {
                    relay.tls = match value.as_ref() {
                        "required" => TlsPolicy::Required,
                        "opportunistic" => TlsPolicy::Opportunistic,
                        "none" => TlsPolicy::None,
                        other => {
                            return Err(format!(
                                "{shown}: `tls` must be required, opportunistic or none (got `{other}`)"
                            ));
                        }
                    }
                }
                "max_connections" => {
                    relay.max_connections = match value.parse::<usize>() {
                        Ok(n @ 1..=1000) => n,
                        _ => {
                            return Err(format!(
                                "{shown}: `max_connections` must be 1 to 1000 (got `{value}`)"
                            ));
                        }
                    }
                }
                "timeout" => relay.timeout = seconds("timeout", &value)?,
                "idle_timeout" => relay.idle_timeout = seconds("idle_timeout", &value)?,
                "ca_file" => {
                    let pem = std::fs::read(value.as_ref())
                        .map_err(|e| format!("{shown}: cannot read `ca_file` {value}: {e}"))?;
                    Certificate::from_pem(&pem).map_err(|e| {
                        format!("{shown}: `ca_file` {value} holds no PEM certificate: {e}")
                    })?;
                    relay.ca = Some(pem);
                }
                other => {
                    return Err(format!(
                        "{shown}: unknown parameter `{other}` (known: tls, max_connections, timeout, idle_timeout, ca_file)"
                    ));
                }
            }
        }
        if implicit_tls {
            let config = super::tls::client_config(relay.ca.as_deref())
                .map_err(|e| format!("{shown}: {e}"))?;
            relay.implicit_tls_config = Some(config);
        }
        relay.slots = Semaphore::new(relay.max_connections);
        Ok(relay)
    }

    /// `host:port`, as recorded with each attempt.
    pub fn remote(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `smtp` or `smtps`, recorded with each attempt beside the relay's
    /// `host:port`: never the credentials.
    pub fn name(&self) -> String {
        if self.implicit_tls_config.is_some() {
            "smtps"
        } else {
            "smtp"
        }
        .to_owned()
    }

    /// Sends `raw` from `from` to `recipients` in one envelope; one reply
    /// per recipient, in order.
    pub async fn send(&self, from: &str, recipients: &[String], raw: &[u8]) -> Vec<Reply> {
        let Ok(_slot) = self.slots.acquire().await else {
            return vec![
                Reply::failure("the relay pool is closed", &self.remote());
                recipients.len()
            ];
        };
        if let Some(reply) = self.pause_in_force() {
            return session_failure(reply, recipients.len());
        }
        // A pooled connection may have been closed by the relay while it was
        // idle; then the transaction runs once more on a fresh one.
        loop {
            let (mut connection, reused) = match self.take_idle() {
                Some(connection) => (connection, true),
                None => match self.open().await {
                    Ok(connection) => (connection, false),
                    Err(reply) => return session_failure(reply, recipients.len()),
                },
            };
            match self
                .transaction(&mut connection, reused, from, recipients, raw)
                .await
            {
                Ok((replies, clean)) => {
                    // A session that cannot be reused is dropped, which
                    // closes it: no QUIT, whose reply a broken or hung relay
                    // would never send.
                    if clean {
                        self.put_idle(connection);
                    }
                    return replies;
                }
                Err(Broken::Stale) => continue,
                Err(Broken::All(reply)) => return vec![reply; recipients.len()],
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Newest last; connections idle too long are dropped (closed).
        idle.retain(|(_, since)| since.elapsed() < self.idle_timeout);
        idle.pop().map(|(connection, _)| connection)
    }

    fn put_idle(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((connection, Instant::now()));
    }

    fn tls_parameters(&self, verify: bool) -> Result<TlsParameters, String> {
        let mut builder = TlsParametersBuilder::new(self.host.clone());
        if let Some(pem) = &self.ca {
            let certificate = Certificate::from_pem(pem).map_err(|e| e.to_string())?;
            builder = builder.add_root_certificate(certificate);
        }
        if !verify {
            builder = builder
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        builder.build_rustls().map_err(|e| e.to_string())
    }

    /// The refusal to defer with while the circuit is open.
    fn pause_in_force(&self) -> Option<Reply> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused
            .as_ref()
            .filter(|p| Instant::now() < p.until)
            .map(|p| p.reply.clone())
    }

    /// Opens the circuit after the relay refused the credentials with
    /// `reply`: for 30 s, doubling with each refusal in a row up to 10 min.
    fn pause(&self, reply: &Reply) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let length = match paused.as_ref() {
            Some(p) => (p.length * 2).min(MAX_PAUSE),
            None => FIRST_PAUSE,
        };
        tracing::error!(
            relay = %self.remote(),
            code = reply.code,
            reply = %reply.text,
            pause_seconds = length.as_secs(),
            "the relay refused the configured credentials; deliveries through it pause (check POSTHORN_TRANSPORT)"
        );
        let mut shown = reply.clone();
        shown.text = format!(
            "{} (the relay refused the credentials; deliveries through it are paused for {} s)",
            reply.text,
            length.as_secs()
        );
        *paused = Some(Pause {
            until: Instant::now() + length,
            length,
            reply: shown,
        });
    }

    /// Opens a session by the TLS policy; with `opportunistic`, a relay that
    /// offers STARTTLS but fails it is tried again in plain text, as
    /// opportunistic TLS between MTAs does.
    async fn open(&self) -> Result<AsyncSmtpConnection, Reply> {
        match self.open_with(self.tls).await {
            Err((reply, true)) if self.tls == TlsPolicy::Opportunistic => {
                tracing::warn!(
                    relay = %self.remote(),
                    reply = %reply.text,
                    "STARTTLS failed; opportunistic TLS falls back to plain text"
                );
                self.open_with(TlsPolicy::None).await.map_err(|(r, _)| r)
            }
            other => other.map_err(|(reply, _)| reply),
        }
    }

    /// Opens a session: TCP with `TCP_NODELAY`, the greeting and EHLO, TLS
    /// by `tls`, AUTH when credentials are configured. The flag of an error
    /// says STARTTLS was what failed.
    async fn open_with(&self, tls: TlsPolicy) -> Result<AsyncSmtpConnection, (Reply, bool)> {
        let remote = self.remote();
        let failure = |what: String| Reply::failure(what, &remote);
        let plain = |reply: Reply| (reply, false);
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| plain(failure(format!("connecting to {remote} timed out"))))?
        .map_err(|e| plain(failure(format!("cannot connect to {remote}: {e}"))))?;
        tcp.set_nodelay(true)
            .map_err(|e| plain(failure(format!("cannot set TCP_NODELAY: {e}"))))?;
        let mut connection = if let Some(config) = &self.implicit_tls_config {
            let handshake = super::tls::connect(tcp, &self.host, config.clone());
            let stream = tokio::time::timeout(self.timeout, handshake)
                .await
                .map_err(|_| {
                    plain(failure(format!(
                        "the TLS handshake with {remote} timed out"
                    )))
                })?
                .map_err(|e| {
                    plain(failure(format!(
                        "the TLS handshake with {remote} failed: {e}"
                    )))
                })?;
            self.step(
                "the greeting",
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.helo),
            )
            .await
            .map_err(plain)?
        } else {
            self.step(
                "the greeting",
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.helo),
            )
            .await
            .map_err(plain)?
        };
        if self.implicit_tls_config.is_none() {
            let offered = connection.can_starttls();
            match (tls, offered) {
                (TlsPolicy::None, _) | (TlsPolicy::Opportunistic, false) => {}
                (TlsPolicy::Required, false) => {
                    return Err(plain(failure(format!(
                        "{remote} does not offer STARTTLS and the relay URL says tls=required"
                    ))));
                }
                (policy, true) => {
                    let parameters = self
                        .tls_parameters(policy == TlsPolicy::Required)
                        .map_err(|e| plain(failure(e)))?;
                    self.step("STARTTLS", connection.starttls(parameters, &self.helo))
                        .await
                        .map_err(|reply| (reply, true))?;
                }
            }
        }
        if let Some(credentials) = &self.credentials {
            let authenticated = self
                .step(
                    "AUTH",
                    connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
                )
                .await;
            match authenticated {
                Ok(_) => *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = None,
                Err(reply) => {
                    if (500..600).contains(&reply.code) {
                        self.pause(&reply);
                    }
                    return Err(plain(reply));
                }
            }
        }
        Ok(connection)
    }

    /// Runs one session step with the timeout; a negative reply keeps its
    /// code and text.
    async fn step<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, Reply> {
        match tokio::time::timeout(self.timeout, step).await {
            Err(_) => Err(Reply::failure(
                format!("no reply to {what} within {} s", self.timeout.as_secs()),
                &self.remote(),
            )),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error_reply(what, &error)),
        }
    }

    fn error_reply(&self, what: &str, error: &lettre::transport::smtp::Error) -> Reply {
        match error.status() {
            Some(code) => {
                let text = std::error::Error::source(error)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Reply::smtp(u16::from(code), &text, &self.remote())
            }
            None => Reply::failure(format!("{what} failed: {error}"), &self.remote()),
        }
    }

    /// One mail transaction on an open session: MAIL, one RCPT per
    /// recipient, DATA. Returns the replies and whether the session can be
    /// reused.
    async fn transaction(
        &self,
        connection: &mut AsyncSmtpConnection,
        reused: bool,
        from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<(Vec<Reply>, bool), Broken> {
        let remote = self.remote();
        let sender: Address = from.parse().map_err(|e| {
            Broken::All(Reply::failure(
                format!("the sender {from} is not an SMTP address: {e}"),
                &remote,
            ))
        })?;
        let mut parameters = Vec::new();
        if !raw.is_ascii()
            && connection
                .server_info()
                .supports_feature(Extension::EightBitMime)
        {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        match self
            .command(connection, "MAIL FROM", Mail::new(Some(sender), parameters))
            .await
        {
            Ok(reply) if reply.code < 400 => {}
            // A relay refusing the sender (530 authentication required,
            // 550 relaying denied) is refusing this configuration, not the
            // recipients: defer, like a failed session.
            Ok(reply) => {
                let clean = self.reset(connection).await;
                return Ok((session_failure(reply, recipients.len()), clean));
            }
            Err(_) if reused => return Err(Broken::Stale),
            Err(reply) => return Err(Broken::All(reply)),
        }
        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let address: Address = match recipient.parse() {
                Ok(address) => address,
                Err(e) => {
                    replies.push(Some(Reply::failure(
                        format!("{recipient} is not an SMTP address: {e}"),
                        &remote,
                    )));
                    continue;
                }
            };
            match self
                .command(connection, "RCPT TO", Rcpt::new(address, Vec::new()))
                .await
            {
                Ok(reply) if reply.code < 400 => replies.push(None),
                Ok(reply) => replies.push(Some(reply)),
                Err(reply) => return Err(Broken::All(reply)),
            }
        }
        if replies.iter().all(Option::is_some) {
            // Nobody to send to: the transaction is abandoned.
            let clean = self.reset(connection).await;
            return Ok((replies.into_iter().flatten().collect(), clean));
        }
        let data = match self.command(connection, "DATA", Data).await {
            Ok(reply) if reply.code < 400 => None,
            Ok(reply) => Some(reply),
            Err(reply) => return Err(Broken::All(reply)),
        };
        let (last, clean) = match data {
            Some(refused) => (refused, self.reset(connection).await),
            // lettre ends DATA with CRLF.CRLF itself; a message that already
            // ends in CRLF would otherwise arrive with a blank line added.
            None => match self
                .step(
                    "the message",
                    connection.message(raw.strip_suffix(b"\r\n").unwrap_or(raw)),
                )
                .await
            {
                Ok(response) => (self.reply(&response), true),
                Err(reply) if reply.code != 0 => (reply, true),
                Err(reply) => return Err(Broken::All(reply)),
            },
        };
        Ok((
            replies
                .into_iter()
                .map(|r| r.unwrap_or_else(|| last.clone()))
                .collect(),
            clean,
        ))
    }

    /// Sends one command; a negative reply is `Ok` (it belongs to the
    /// recipient or message), a broken session is `Err`.
    async fn command(
        &self,
        connection: &mut AsyncSmtpConnection,
        what: &str,
        command: impl std::fmt::Display,
    ) -> Result<Reply, Reply> {
        match self.step(what, connection.command(command)).await {
            Ok(response) => Ok(self.reply(&response)),
            Err(reply) if reply.code != 0 => Ok(reply),
            Err(reply) => Err(reply),
        }
    }

    /// RSET after an abandoned transaction; false when the session is no
    /// longer usable.
    async fn reset(&self, connection: &mut AsyncSmtpConnection) -> bool {
        matches!(self.command(connection, "RSET", Rset).await, Ok(r) if r.code < 400)
    }

    fn reply(&self, response: &Response) -> Reply {
        Reply::smtp(
            u16::from(response.code()),
            &response.message().collect::<Vec<_>>().join("\n"),
            &self.remote(),
        )
    }
}

/// A failure to set up the session (connect, greeting, TLS, AUTH, MAIL) says
/// nothing about the message or its recipients: every recipient is deferred,
/// whatever the code (a 535 is a configuration problem, not a bounce).
fn session_failure(mut reply: Reply, recipients: usize) -> Vec<Reply> {
    reply.session = true;
    vec![reply; recipients]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Relay, String> {
        Relay::parse(url, "mail.example")
    }

    #[test]
    fn relay_urls_give_defaults_by_scheme_and_read_their_parameters() {
        let relay = parse("smtp://relay.example").unwrap();
        assert_eq!(
            (relay.remote(), relay.tls, relay.max_connections),
            ("relay.example:25".into(), TlsPolicy::Opportunistic, 10)
        );
        assert!(relay.credentials.is_none());
        let relay = parse("smtps://user:p%40ss@relay.example").unwrap();
        assert_eq!(
            (relay.remote(), relay.tls),
            ("relay.example:465".into(), TlsPolicy::Required)
        );
        assert_eq!(relay.name(), "smtps");
        assert!(relay.credentials.is_some());
        let relay =
            parse("smtp://relay.example:2525?tls=none&max_connections=3&timeout=5&idle_timeout=9")
                .unwrap();
        assert_eq!(relay.tls, TlsPolicy::None);
        assert_eq!(relay.max_connections, 3);
        assert_eq!(relay.timeout, Duration::from_secs(5));
        assert_eq!(relay.idle_timeout, Duration::from_secs(9));
        assert_eq!(parse("smtp://[::1]:2525").unwrap().remote(), "::1:2525");
    }

    #[test]
    fn bad_relay_urls_name_the_problem_and_never_the_password() {
        for (url, problem) in [
            ("smtp://", "names no host"),
            ("smtp://u:hunter2@relay.example?tls=maybe", "`tls` must be"),
            (
                "smtp://u:hunter2@relay.example?max_connections=0",
                "`max_connections` must be 1 to 1000",
            ),
            (
                "smtp://u:hunter2@relay.example?timeout=forever",
                "`timeout` must be",
            ),
            (
                "smtp://u:hunter2@relay.example?colour=red",
                "unknown parameter `colour`",
            ),
            (
                "smtp://u:hunter2@relay.example?ca_file=/nonexistent/ca.pem",
                "cannot read `ca_file`",
            ),
            ("smtp://onlyuser@relay.example", "needs a password"),
        ] {
            let error = parse(url)
                .err()
                .unwrap_or_else(|| panic!("{url} is refused"));
            assert!(error.contains(problem), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
        let debug = format!("{:?}", parse("smtp://u:hunter2@relay.example").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
