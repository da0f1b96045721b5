//! FaultSmtp: a fault-injecting SMTP server for the delivery tests (tokio,
//! loopback, port 0). It speaks enough ESMTP for a relay client (EHLO/HELO,
//! AUTH PLAIN and LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP,
//! QUIT), records every accepted message, every command and every
//! connection, and misbehaves on request.
//!
//! Per recipient, by the local part (as KumoMTA's sink does):
//! `tempfail@` 450 4.2.0 at RCPT, `nouser@` 550 5.1.1 at RCPT, `policy@`
//! 550 5.7.1 at RCPT, `full@` 452 4.2.2 at RCPT, `cutdata@` the connection
//! closed after the first line of DATA, `once451@` 451 4.3.0 at RCPT the first time it is seen
//! and 250 after, `datatemp@` 451 4.3.0 after the final dot, `dataperm@`
//! 554 5.6.0 after the final dot, `dropdot@` the connection closed after the
//! final dot without a reply, `drop250@` 250 after the final dot and then
//! the connection closed, `hang@` no reply to the final dot at all.
//! Per server: the greeting ([`Script::banner`]), required credentials
//! ([`Script::auth`]), a delay before the 250 to DATA ([`Script::data_delay`],
//! plus up to [`Script::data_jitter`] at random), a STARTTLS offer that
//! fails ([`Script::starttls`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server behaves beyond the magic local parts.
#[derive(Clone, Debug)]
pub struct Script {
    /// The greeting line, `220 …` unless a test wants a 421.
    pub banner: String,
    /// `(user, password)` that AUTH must present before MAIL.
    pub auth: Option<(String, String)>,
    /// How long the server thinks before answering the final dot.
    pub data_delay: std::time::Duration,
    /// Up to this much more, chosen at random for each message.
    pub data_jitter: std::time::Duration,
    /// When set, EHLO offers STARTTLS and the command gets this reply (the
    /// server never actually speaks TLS: a broken offer).
    pub starttls: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            banner: "220 faultsmtp.test ESMTP ready".into(),
            auth: None,
            data_delay: std::time::Duration::ZERO,
            data_jitter: std::time::Duration::ZERO,
            starttls: None,
        }
    }
}

/// One message the server accepted (answered 250 after the final dot).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub from: String,
    pub to: Vec<String>,
    /// The message as it arrived, dot-stuffing undone.
    pub data: Vec<u8>,
    /// When the server answered 250.
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct State {
    accepted: Vec<Accepted>,
    /// Every command verb received, in order (`MAIL`, `RCPT`, `RSET`, …).
    commands: Vec<String>,
    connections: usize,
    /// `once451@` recipients already refused once.
    refused_once: HashSet<String>,
}

/// A running FaultSmtp; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultSmtp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Bumped after every accepted message.
    accepted_count: Arc<tokio::sync::watch::Sender<usize>>,
    /// Bumped whenever a message's final dot arrived, before any reply.
    dots: Arc<tokio::sync::watch::Sender<usize>>,
}

impl FaultSmtp {
    pub async fn start(script: Script) -> FaultSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State::default()));
        let accepted_count = Arc::new(tokio::sync::watch::Sender::new(0));
        let server = FaultSmtp {
            addr,
            state,
            accepted_count,
            dots: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepting.lock().connections += 1;
                let (session, script) = (accepting.clone(), script.clone());
                tokio::spawn(async move { session.serve(stream, script).await });
            }
        });
        server
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `smtp://127.0.0.1:PORT` plus `rest` (a query string, for example).
    pub fn url(&self, rest: &str) -> String {
        format!("smtp://{}{rest}", self.addr)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.lock().accepted.clone()
    }

    /// Waits until at least `n` messages were accepted.
    pub async fn wait_for(&self, n: usize) {
        let mut count = self.accepted_count.subscribe();
        count.wait_for(|c| *c >= n).await.expect("the server runs");
    }

    /// Waits, at most 30 s, until at least `n` messages were accepted.
    pub async fn delivered(&self, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.wait_for(n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{n} messages reach the relay; it has {}",
                    self.accepted().len()
                )
            });
    }

    /// A test server whose workers deliver through this one, as `configure`
    /// adds; `None` (said on stderr) when the backend is not configured.
    pub async fn app(
        &self,
        backend: crate::helpers::Backend,
        configure: impl FnOnce(&mut posthorn::config::Settings),
    ) -> Option<crate::helpers::TestApp> {
        let url = self.url("");
        let app = crate::helpers::try_spawn_app_with(backend, move |s| {
            s.deliver = true;
            s.transport = url;
            configure(s);
        })
        .await;
        if app.is_none() {
            eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        }
        app
    }

    /// Waits until the final dot of at least `n` messages arrived.
    pub async fn wait_for_dots(&self, n: usize) {
        let mut count = self.dots.subscribe();
        count.wait_for(|c| *c >= n).await.expect("the server runs");
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// How many times the command `verb` was received.
    pub fn count(&self, verb: &str) -> usize {
        self.lock().commands.iter().filter(|c| *c == verb).count()
    }

    async fn serve(self, stream: TcpStream, script: Script) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let say = |line: &str| format!("{line}\r\n");
        if write
            .write_all(say(&script.banner).as_bytes())
            .await
            .is_err()
            || !script.banner.starts_with("220")
        {
            return;
        }
        let mut authenticated = script.auth.is_none();
        let (mut from, mut to): (Option<String>, Vec<String>) = (None, Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let command = line.trim_end_matches(['\r', '\n']).to_owned();
            let verb = command
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            self.lock().commands.push(verb.clone());
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut lines = vec!["250-faultsmtp.test", "250-8BITMIME", "250-SIZE 52428800"];
                    if script.auth.is_some() {
                        lines.push("250-AUTH PLAIN LOGIN");
                    }
                    if script.starttls.is_some() {
                        lines.push("250-STARTTLS");
                    }
                    lines.push("250 ENHANCEDSTATUSCODES");
                    lines.iter().map(|l| say(l)).collect()
                }
                "HELO" => say("250 faultsmtp.test"),
                "NOOP" => say("250 2.0.0 ok"),
                "STARTTLS" => match &script.starttls {
                    Some(reply) => say(reply),
                    None => say("502 5.5.1 STARTTLS not offered"),
                },
                "QUIT" => {
                    let _ = write.write_all(say("221 2.0.0 bye").as_bytes()).await;
                    return;
                }
                "RSET" => {
                    (from, to) = (None, Vec::new());
                    say("250 2.0.0 reset")
                }
                "AUTH" => {
                    let mut words = command.split_whitespace().skip(1);
                    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
                    let initial = words.next().map(str::to_owned);
                    let presented = match mechanism.as_str() {
                        "PLAIN" => {
                            let encoded = match initial {
                                Some(encoded) => Some(encoded),
                                None => {
                                    let _ = write.write_all(say("334 ").as_bytes()).await;
                                    read_line(&mut lines).await
                                }
                            };
                            encoded.map(|e| {
                                let plain = decode(&e);
                                let mut parts = plain.split('\0').skip(1);
                                let user = parts.next().unwrap_or_default().to_owned();
                                (user, parts.next().unwrap_or_default().to_owned())
                            })
                        }
                        "LOGIN" => {
                            let _ = write.write_all(say("334 VXNlcm5hbWU6").as_bytes()).await;
                            let user = read_line(&mut lines).await.map(|l| decode(&l));
                            let _ = write.write_all(say("334 UGFzc3dvcmQ6").as_bytes()).await;
                            let password = read_line(&mut lines).await.map(|l| decode(&l));
                            user.zip(password)
                        }
                        _ => None,
                    };
                    match (&script.auth, presented) {
                        (Some(wanted), Some(given)) if *wanted == given => {
                            authenticated = true;
                            say("235 2.7.0 authentication successful")
                        }
                        _ => say("535 5.7.8 authentication credentials invalid"),
                    }
                }
                "MAIL" if !authenticated => say("530 5.7.0 authentication required"),
                "MAIL" => {
                    from = Some(angle(&command));
                    to.clear();
                    say("250 2.1.0 sender ok")
                }
                "RCPT" if from.is_none() => say("503 5.5.1 MAIL first"),
                "RCPT" => {
                    let rcpt = angle(&command);
                    let local = rcpt.split('@').next().unwrap_or_default().to_owned();
                    match local.as_str() {
                        "tempfail" => say("450 4.2.0 mailbox busy, try later"),
                        "nouser" => say("550 5.1.1 no such user here"),
                        "policy" => say("550 5.7.1 refused by local policy"),
                        "full" => say("452 4.2.2 mailbox full"),
                        "once451" if self.lock().refused_once.insert(rcpt.clone()) => {
                            say("451 4.3.0 temporary local problem, try again")
                        }
                        _ => {
                            to.push(rcpt);
                            say("250 2.1.5 recipient ok")
                        }
                    }
                }
                "DATA" if to.is_empty() => say("503 5.5.1 no valid recipients"),
                "DATA" => {
                    if write
                        .write_all(say("354 end data with <CR><LF>.<CR><LF>").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if to.iter().any(|r| r.split('@').next() == Some("cutdata")) {
                        // One line of the message, then the connection is
                        // gone, as a reset or a proxy's byte limit would.
                        let _ = read_line(&mut lines).await;
                        return;
                    }
                    let Some(data) = read_data(&mut lines).await else {
                        return;
                    };
                    self.dots.send_modify(|n| *n += 1);
                    let local = |name: &str| to.iter().any(|r| r.split('@').next() == Some(name));
                    if local("hang") {
                        // Never answers; the client's timeout must end it.
                        std::future::pending::<()>().await;
                    }
                    if local("dropdot") {
                        return;
                    }
                    let jitter = script.data_jitter.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(script.data_delay + jitter).await;
                    let reply = if local("datatemp") {
                        say("451 4.3.0 queue full, try later")
                    } else if local("dataperm") {
                        say("554 5.6.0 message content rejected")
                    } else {
                        self.lock().accepted.push(Accepted {
                            from: from.clone().unwrap_or_default(),
                            to: to.clone(),
                            data,
                            at: chrono::Utc::now(),
                        });
                        self.accepted_count.send_modify(|n| *n += 1);
                        say("250 2.0.0 queued as FAULT")
                    };
                    let drop_after = local("drop250");
                    (from, to) = (None, Vec::new());
                    if write.write_all(reply.as_bytes()).await.is_err() || drop_after {
                        return;
                    }
                    continue;
                }
                _ => say("502 5.5.2 command not recognised"),
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

fn decode(encoded: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

async fn read_line<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> Option<String> {
    let mut line = String::new();
    match lines.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn angle(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// Reads DATA up to the line holding a single dot; undoes dot-stuffing.
/// Lines must end in CRLF: a bare LF inside a line is kept as content.
async fn read_data<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == b".\r\n" {
            return Some(data);
        }
        let line = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(line);
    }
}
