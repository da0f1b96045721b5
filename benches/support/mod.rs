//! What the benchmark commands share: numeric `--name N` options, medians,
//! Postfix's `smtp-source` as a peer, and the load generators' lean
//! connections: HTTP/1.1 keep-alive driven by hyper for REST, HTTP/2
//! driven by the `h2` crate for gRPC, so REST and gRPC legs differ by the
//! server's work and the generator takes as little of the machine's two
//! cores as it can.
//! Each benchmark uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// The `--name N` pairs of the command line; what is not such a pair
/// (cargo bench passes `--bench`) is ignored.
pub fn numeric_options() -> HashMap<String, u64> {
    let args: Vec<String> = std::env::args().collect();
    let mut options = HashMap::new();
    let mut i = 1;
    while i < args.len() {
        if let Some(name) = args[i].strip_prefix("--")
            && let Some(value) = args.get(i + 1).and_then(|v| v.parse::<u64>().ok())
        {
            options.insert(name.to_owned(), value);
            i += 2;
        } else {
            i += 1;
        }
    }
    options
}

/// Reads a started `posthorn serve`'s stdout up to its banner's end: the
/// bootstrap key on a first start (`first_run`), the transport line on a
/// later one; returns the address it listens on and the key (empty when
/// none was printed). The rest of stdout is drained so the server never
/// blocks on a full pipe.
pub async fn banner(stdout: tokio::process::ChildStdout, first_run: bool) -> (String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let (mut addr, mut key) = (String::new(), String::new());
    while let Some(line) = lines.next_line().await.expect("banner") {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        if let Some(word) = line.split_whitespace().find(|w| w.starts_with("ph_live_")) {
            key = word.to_owned();
        }
        if !key.is_empty() || (!first_run && line.starts_with("transport:")) {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (addr, key)
}

/// The median of some measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    values[values.len() / 2]
}

/// One HTTP/1.1 connection's request sender.
pub type Http1 = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

/// `n` keep-alive connections with `TCP_NODELAY`, one per client.
pub async fn http1_connections(
    addr: std::net::SocketAddr,
    n: usize,
) -> Arc<Vec<tokio::sync::Mutex<Http1>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (sender, connection) = hyper::client::conn::http1::handshake(
            hyper_util::rt::TokioIo::new(connect(addr).await),
        )
        .await
        .expect("handshake");
        tokio::spawn(connection);
        out.push(tokio::sync::Mutex::new(sender));
    }
    Arc::new(out)
}

/// A TCP connection to `addr` with `TCP_NODELAY` (as the server sets it).
async fn connect(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One HTTP/2 connection that tonic's generated clients send on directly
/// ([`Http2::send_client`]), driven by the `h2` crate; clones share it.
///
/// Two things a lean gRPC client does, which tonic's own client and hyper's
/// do not for a unary call here, and which cost the two cores the server
/// needs:
///
/// - **No task in between.** tonic's `Channel` hands every call to a task
///   of its own that owns the connection: one more task woken per call.
///   Paced at 4,000 calls a second (B1's paced leg), three alternated
///   pairs gave p50 1.39–1.58 ms and p99 6.2–7.0 ms without it against
///   1.65–1.82 ms and 7.1–8.0 ms through a `Channel` (BENCHMARKS.md).
/// - **The request in one write.** The encoded message is ready when the
///   call is made, so its HEADERS and its one DATA frame, which ends the
///   stream, are queued together and leave in one write. Through hyper
///   they left in three: the headers, the message, and an empty frame
///   ending the stream; each one more segment for the server to read.
#[derive(Clone)]
pub struct Http2 {
    sender: h2::client::SendRequest<Bytes>,
    /// `http://addr`, which the clients put in front of each method's path.
    origin: http::Uri,
}

impl Http2 {
    /// `n` connections to `addr`.
    pub async fn connections(addr: std::net::SocketAddr, n: usize) -> Vec<Http2> {
        let origin: http::Uri = format!("http://{addr}").parse().expect("origin");
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (sender, connection) = h2::client::handshake(connect(addr).await)
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            out.push(Http2 {
                sender,
                origin: origin.clone(),
            });
        }
        out
    }

    /// A `SendService` client on this connection.
    pub fn send_client(
        &self,
    ) -> posthorn_client::v1::send_service_client::SendServiceClient<Http2> {
        let origin = self.origin.clone();
        posthorn_client::v1::send_service_client::SendServiceClient::with_origin(
            self.clone(),
            origin,
        )
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for Http2 {
    type Response = http::Response<Http2Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.sender.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        use futures::FutureExt;
        use http_body_util::BodyExt;
        let (parts, body) = request.into_parts();
        // A unary call's body is its one encoded message, ready at once.
        let message = match body.collect().now_or_never() {
            Some(Ok(whole)) => whole.to_bytes(),
            Some(Err(status)) => return Box::pin(std::future::ready(Err(status.into()))),
            None => {
                let refused: BoxError = "a request body that is not ready at once".into();
                return Box::pin(std::future::ready(Err(refused)));
            }
        };
        let sent = self
            .sender
            .send_request(http::Request::from_parts(parts, ()), false)
            .and_then(|(response, mut stream)| {
                stream.send_data(message, true)?;
                Ok(response)
            });
        Box::pin(async move {
            let response = sent?.await?;
            Ok(response.map(|body| Http2Body { body, ended: false }))
        })
    }
}

/// A response's body as tonic reads it: its DATA frames, each handed back
/// to the connection's flow control as it is read, then its trailers.
pub struct Http2Body {
    body: h2::RecvStream,
    ended: bool,
}

impl hyper::body::Body for Http2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, h2::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.body.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = this.body.flow_control().release_capacity(data.len());
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
            }
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        let trailers = std::task::ready!(this.body.poll_trailers(cx));
        this.ended = true;
        Poll::Ready(
            trailers
                .transpose()
                .map(|t| t.map(hyper::body::Frame::trailers)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// Messages per second Postfix's `smtp-source` sends to `127.0.0.1:port`:
/// `messages` messages of 1 KB over `sessions` parallel SMTP sessions; with
/// `reuse` (`-d`) each session carries many messages, else one.
pub fn smtp_source(port: u16, sessions: u64, messages: u64, reuse: bool) -> f64 {
    let started = std::time::Instant::now();
    let output = std::process::Command::new("smtp-source")
        .args(reuse.then_some("-d"))
        .args(["-s", &sessions.to_string(), "-l", "1024", "-m"])
        .arg(messages.to_string())
        .args(["-f", "bench@bench.localhost", "-t", "sink@example.com"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("run smtp-source");
    assert!(
        output.status.success(),
        "smtp-source failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    messages as f64 / started.elapsed().as_secs_f64()
}

/// Postfix's `smtp-sink` on a free loopback port; stopped when dropped.
pub struct Sink {
    child: std::process::Child,
    pub port: u16,
}

impl Sink {
    pub fn start() -> Sink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postfix-peer.sh");
        let installed = std::process::Command::new("bash")
            .args([script, "install"])
            .status()
            .expect("run postfix-peer.sh");
        assert!(installed.success(), "postfix-peer.sh install failed");
        let port = free_port();
        let mut command = std::process::Command::new("smtp-sink");
        // smtp-sink refuses to run as root without a user to switch to.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .spawn()
            .expect("start smtp-sink");
        wait_listening(port, "smtp-sink", 10);
        Sink { child, port }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The private Postfix instance; stopped when dropped.
pub struct Postfix {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postfix {
    /// Starts Postfix; with `relay`, mail is relayed to
    /// `127.0.0.1:relay` instead of discarded.
    pub fn start(relay: Option<u16>) -> Postfix {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postfix-peer.sh");
        let status = std::process::Command::new("bash")
            .args([script, "start"])
            .arg(dir.path())
            .arg(port.to_string())
            .args(relay.map(|p| p.to_string()))
            .status()
            .expect("run postfix-peer.sh");
        assert!(status.success(), "postfix-peer.sh start failed");
        wait_listening(port, "Postfix", 30);
        Postfix { dir, port }
    }

    /// Accepted messages per second for `messages` 1 KB messages over
    /// `sessions` parallel SMTP sessions.
    pub fn accept_rate(&self, messages: u64, sessions: u64) -> f64 {
        smtp_source(self.port, sessions, messages, false)
    }

    /// Whether every queued message has left (relayed or discarded).
    pub fn queue_empty(&self) -> bool {
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .all(|q| count_files(&self.dir.path().join("queue").join(q)) == 0)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postfix-peer.sh");
        let _ = std::process::Command::new("bash")
            .args([script, "stop"])
            .arg(self.dir.path())
            .status();
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// A free loopback port, released just before a peer binds it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits up to `seconds` for `what` to accept connections on `port`.
fn wait_listening(port: u16, what: &str, seconds: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
