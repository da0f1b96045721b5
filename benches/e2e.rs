//! B3 and B7: messages accepted and delivered end to end, against Postfix
//! relaying the same number to the same sink, in the same run; and the
//! server's memory while it works and when idle.
//!
//! - Posthorn: the real `posthorn` binary (release, SQLite in WAL mode,
//!   every accept on disk before its answer) relaying to Postfix's `smtp-sink` over its own
//!   pool; 64 gRPC streams over 8 connections (`support::Http2`) send `--messages` 1 KB
//!   messages with one recipient each; the clock stops when a
//!   `WatchMessages` client has seen a `sent` event for every one.
//! - Postfix: a private instance (`scripts/postfix-peer.sh start … RELAY`)
//!   relaying to the same sink; `smtp-source` injects the same number over
//!   32 sessions; the clock stops when its queue is empty.
//! - B5: the same Posthorn run once more into a sink in the bench process
//!   that notes the instant of each 250; the latency is from there to the
//!   `sent` event on the watcher, on the same clock. The watcher (with a
//!   connection of its own) and the sink each run on a thread of their
//!   own, so neither reads the clock late because the senders kept this
//!   process's runtime busy.
//! - RSS of the server process (`/proc/PID/status`), sampled every 100 ms
//!   during its run, and after start-up before any load.
//!
//! Run: `cargo bench --bench e2e` (options `--messages N`, `--rounds N`
//! (0: only the B5 leg), `--clients N` (gRPC streams, 64)).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use posthorn_client::v1;
use support::{Postfix, Sink, median};
use tokio::io::AsyncBufReadExt;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gRPC streams sending at once, unless `--clients` says otherwise.
const CLIENTS: usize = 64;
const CONNECTIONS: usize = 8;

/// Resident memory of process `pid`, in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What one Posthorn leg measured.
struct Run {
    accepted: Duration,
    delivered: Duration,
    idle_rss: f64,
    peak_rss: f64,
    /// From the sink's 250 to the `sent` event on the watcher (B5), when
    /// the sink timed its replies.
    latencies: Vec<Duration>,
}

/// Runs `work` on a thread of its own with a runtime of its own; the
/// receiver gets its result.
fn on_own_thread<F>(work: F) -> tokio::sync::oneshot::Receiver<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = done.send(runtime.block_on(work));
    });
    result
}

/// When the timing sink answered 250 for each recipient.
type Replied = Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>;

/// A minimal SMTP sink in this process that notes the instant it sends
/// each 250 after DATA, per recipient, so B5 can compare it with the
/// instant the event reaches the watcher on the same clock.
async fn timing_sink() -> (u16, Replied) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let replied: Replied = Arc::default();
    let shared = replied.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let replied = shared.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read);
                if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut to: Vec<String> = Vec::new();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let verb = line
                        .get(..4)
                        .map(|v| v.to_ascii_uppercase())
                        .unwrap_or_default();
                    let reply: &[u8] = match &verb[..] {
                        b"EHLO" => b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        b"HELO" => b"250 sink\r\n",
                        b"MAIL" | b"RSET" => {
                            to.clear();
                            b"250 2.1.0 ok\r\n"
                        }
                        b"RCPT" => {
                            let text = String::from_utf8_lossy(&line);
                            if let Some((_, rest)) = text.split_once('<')
                                && let Some((address, _)) = rest.split_once('>')
                            {
                                to.push(address.to_owned());
                            }
                            b"250 2.1.5 ok\r\n"
                        }
                        b"DATA" => {
                            if write.write_all(b"354 go ahead\r\n").await.is_err() {
                                return;
                            }
                            loop {
                                line.clear();
                                match lines.read_until(b'\n', &mut line).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(_) if line == b".\r\n" => break,
                                    Ok(_) => {}
                                }
                            }
                            let now = Instant::now();
                            {
                                let mut replied = replied.lock().expect("lock");
                                for address in to.drain(..) {
                                    replied.insert(address, now);
                                }
                            }
                            b"250 2.0.0 queued\r\n"
                        }
                        b"QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, replied)
}

fn request(key: &str, i: u64) -> tonic::Request<v1::SendEmailRequest> {
    let mut request = tonic::Request::new(v1::SendEmailRequest {
        from_email: "bench@localhost".into(),
        to: vec![format!("r{i}@example.com")],
        subject: "End to end".into(),
        text: "x".repeat(1024),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii"));
    request
}

async fn posthorn(sink: u16, messages: u64, clients: u64, replied: Option<Replied>) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .arg("serve")
        .current_dir(dir.path())
        .env("POSTHORN_LISTEN", "127.0.0.1:0")
        .env(
            "POSTHORN_DATABASE_URL",
            format!("sqlite://{}/posthorn.db", dir.path().display()),
        )
        .env(
            "POSTHORN_TRANSPORT",
            format!("smtp://127.0.0.1:{sink}?tls=none&max_connections=16"),
        )
        .env("POSTHORN_RATE_LIMIT_PER_SECOND", "1000000")
        .env("POSTHORN_RATE_LIMIT_BURST", "1000000")
        .env("POSTHORN_DAILY_QUOTA", "0")
        .env("POSTHORN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start posthorn");
    let pid = child.id().expect("running");
    let (addr, key) = support::banner(child.stdout.take().expect("stdout"), true).await;
    // Settled after start-up, before any load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mb(pid);

    let url = format!("http://{addr}");
    let socket: std::net::SocketAddr = addr.parse().expect("address");
    let channels = support::Http2::connections(socket, CONNECTIONS).await;
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                peak.fetch_max(rss_mb(pid) as u64, Ordering::Relaxed);
            }
        }
    });
    // The watcher is an application of its own: its own connection, and
    // a thread of its own, so its clock reads when the event arrives, not
    // when this process's senders let it run.
    let (subscribed, ready) = tokio::sync::oneshot::channel();
    let counter = on_own_thread({
        let (url, key) = (url.clone(), key.clone());
        async move {
            let channel = Channel::from_shared(url)
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut watch = v1::messages_service_client::MessagesServiceClient::new(channel);
            let mut request = tonic::Request::new(v1::WatchMessagesRequest {
                types: vec![v1::EventType::Sent as i32],
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().expect("ascii"));
            let mut stream = watch
                .watch_messages(request)
                .await
                .expect("watch")
                .into_inner();
            let started = Instant::now();
            let _ = subscribed.send(started);
            let mut seen = 0u64;
            let mut latencies = Vec::new();
            while seen < messages {
                let event = stream
                    .next()
                    .await
                    .expect("the stream stays open")
                    .expect("an event");
                let arrived = Instant::now();
                if let Some(event) = event.event {
                    seen += 1;
                    if let Some(replied) = &replied
                        && let Some(at) = replied.lock().expect("lock").get(&event.recipient)
                    {
                        latencies.push(arrived.saturating_duration_since(*at));
                    }
                }
            }
            (started.elapsed(), latencies)
        }
    });
    let started = ready.await.expect("the watcher subscribed");
    let key = Arc::new(key);
    let senders: Vec<_> = (0..clients)
        .map(|client| {
            let mut grpc = channels[client as usize % CONNECTIONS].send_client();
            let key = key.clone();
            tokio::spawn(async move {
                let mut i = client;
                while i < messages {
                    grpc.send_email(request(&key, i)).await.expect("accepted");
                    i += clients;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    let accepted = started.elapsed();
    let (delivered, latencies) = counter.await.expect("counter");
    sampler.abort();
    let _ = child.start_kill();
    let _ = child.wait().await;
    Run {
        accepted,
        delivered,
        idle_rss,
        peak_rss: peak.load(Ordering::Relaxed) as f64,
        latencies,
    }
}

/// Seconds until Postfix has relayed `messages` injected over 32 sessions.
fn postfix(postfix: &Postfix, messages: u64) -> (Duration, Duration) {
    let started = Instant::now();
    postfix.accept_rate(messages, 32);
    let injected = started.elapsed();
    let deadline = started + Duration::from_secs(1800);
    while !postfix.queue_empty() {
        assert!(Instant::now() < deadline, "Postfix did not empty its queue");
        std::thread::sleep(Duration::from_millis(20));
    }
    (injected, started.elapsed())
}

fn main() {
    let given = support::numeric_options();
    let messages = given.get("messages").copied().unwrap_or(50_000);
    let rounds = given.get("rounds").copied().unwrap_or(3) as usize;
    let clients = given
        .get("clients")
        .copied()
        .unwrap_or(CLIENTS as u64)
        .max(1);
    println!(
        "B3/B7 end to end into smtp-sink: {messages} messages of 1 KB per leg, {rounds} rounds, {} build",
        if cfg!(debug_assertions) {
            "debug (smoke run only)"
        } else {
            "release"
        }
    );
    let sink = Sink::start();
    let relay = Postfix::start(Some(sink.port));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut ratios, mut walls, mut peaks, mut idles) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (injected, relayed) = postfix(&relay, messages);
        let run = runtime.block_on(posthorn(sink.port, messages, clients, None));
        let ratio = run.delivered.as_secs_f64() / relayed.as_secs_f64();
        println!(
            "round {round}: Postfix injected in {:.1} s, relayed all in {:.1} s | Posthorn accepted in {:.1} s, delivered all in {:.1} s ({:.0}/s) = {ratio:.3} of Postfix's time | Posthorn RSS idle {:.0} MB, peak {:.0} MB",
            injected.as_secs_f64(),
            relayed.as_secs_f64(),
            run.accepted.as_secs_f64(),
            run.delivered.as_secs_f64(),
            messages as f64 / run.delivered.as_secs_f64(),
            run.idle_rss,
            run.peak_rss,
        );
        ratios.push(ratio);
        walls.push(relayed.as_secs_f64() / run.delivered.as_secs_f64());
        peaks.push(run.peak_rss);
        idles.push(run.idle_rss);
    }
    if rounds > 0 {
        println!(
            "median: Posthorn's wall time = {:.3} of Postfix's (bar ≤ 0.167, i.e. {:.1}x faster; bar 6x); RSS peak {:.0} MB (bar ≤ 150), idle {:.0} MB (bar ≤ 40)",
            median(ratios),
            median(walls),
            median(peaks),
            median(idles)
        );
    }
    drop(relay);
    drop(sink);

    // B5: the same load into a sink in this process that notes when it
    // answers 250; the latency is from there to the watcher's event.
    let mut latencies = runtime.block_on(async {
        // The sink, too, runs on a thread of its own (for as long as this
        // process), so it notes each 250 when it sends it.
        let (listening, sink) = tokio::sync::oneshot::channel();
        drop(on_own_thread(async move {
            let _ = listening.send(timing_sink().await);
            std::future::pending::<()>().await;
        }));
        let (port, replied) = sink.await.expect("timing sink");
        let run = posthorn(port, messages, clients, Some(replied)).await;
        println!(
            "B5 leg: accepted in {:.1} s, delivered all in {:.1} s ({:.0}/s), {} latencies",
            run.accepted.as_secs_f64(),
            run.delivered.as_secs_f64(),
            messages as f64 / run.delivered.as_secs_f64(),
            run.latencies.len()
        );
        run.latencies
    });
    assert!(
        !latencies.is_empty(),
        "the watcher saw the sink's recipients"
    );
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "B5 sink 250 -> WatchMessages event: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (bar p99 ≤ 10 ms)",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
