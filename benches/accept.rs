//! B1 and B2: durable accepts against Postfix, measured in the same run.
//!
//! - Posthorn: `SendEmail` with 1 recipient and a 2 KB body, 64 concurrent
//!   clients (gRPC over HTTP/2 connections driven by the `h2` crate, each
//!   request in one write, see `support::Http2`), a unique idempotency key
//!   per request, the real server on SQLite (WAL; every accept on disk
//!   before its answer) on loopback: over gRPC (B1) and over REST/JSON
//!   (B2). Throughput and p50/p99 latency; then, in each round, gRPC paced
//!   for the latency bar ("p99 < 5 ms at half that load", read both ways):
//!   at half that round's B1 rate, then at half the load of the throughput
//!   bar (4x that round's Postfix rate), each after a second at that pace
//!   that is not counted. With `--paced-rate N`, one paced leg at N/s.
//!   Each leg also prints, per accept, the CPU time of this process
//!   (server and load generator) and what the database's disk took.
//! - Postfix: a private instance (`scripts/postfix-peer.sh`: its own config
//!   and queue under a temporary directory, loopback only, mail discarded
//!   after queueing) accepting 1 KB messages from `smtp-source`.
//!
//! Legs alternate within each round. Run: `cargo bench --bench accept`
//! (options `--seconds N`, `--rounds N`, `--clients N`,
//! `--postfix-messages N`, `--postfix-sessions N`, `--paced-rate N`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use posthorn::config::Settings;
use posthorn::domain::Scopes;
use posthorn::domain::accounts::Accounts;
use posthorn::domain::keys::KeyMode;
use posthorn::startup::Application;
use posthorn::storage::Store;
use posthorn_client::v1;
use support::{Http2, Postfix, http1_connections, median};

// The allocator of the `posthorn` binary, so the server measured here is
// the one users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    seconds: u64,
    rounds: usize,
    clients: usize,
    connections: usize,
    postfix_messages: u64,
    postfix_sessions: u64,
    /// Accepts per second offered in the paced leg; half of B1's if not given.
    paced_rate: Option<u64>,
}

fn options() -> Options {
    let given = support::numeric_options();
    let get = |name: &str, default: u64| given.get(name).copied().unwrap_or(default);
    Options {
        seconds: get("seconds", 5),
        rounds: get("rounds", 3) as usize,
        clients: get("clients", 64) as usize,
        connections: get("connections", 8) as usize,
        postfix_messages: get("postfix-messages", 5000),
        postfix_sessions: get("postfix-sessions", 32),
        paced_rate: given.get("paced-rate").copied(),
    }
}

/// Throughput and latency of one leg.
struct Leg {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of this process (server and load generator) per call.
    cpu: Duration,
    /// Context switches of this process's threads per call.
    switches: f64,
    /// Kilobytes written to the database's disk per call, when its
    /// counters can be read.
    disk: Option<f64>,
}

impl Leg {
    /// ", N KB to disk" when the disk's counters were read, else nothing.
    fn disk(&self) -> String {
        self.disk
            .map_or_else(String::new, |kb| format!(", {kb:.1} KB to disk"))
    }
}

/// The block device the bench's database lives on, as (major, minor).
static DISK: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();

/// The device of `dir`, from its metadata.
fn device_of(dir: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    Some((libc::major(dev), libc::minor(dev)))
}

/// Sectors (512 bytes each, whatever the device's own) written to the
/// database's device since boot, from `/proc/diskstats`: a figure the
/// machine's hour moves far less than latency, so it tells storage
/// changes apart (BENCHMARKS.md, B1). Everything written to that device
/// counts; nothing else writes much during a Posthorn leg.
fn sectors_written() -> Option<u64> {
    let (major, minor) = (*DISK.get()?)?;
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ours = fields.first()?.parse::<u32>().ok()? == major
            && fields.get(1)?.parse::<u32>().ok()? == minor;
        if ours {
            fields.get(9)?.parse().ok()
        } else {
            None
        }
    })
}

/// CPU time this process has used (user and system) and how often its
/// threads were switched out (waiting or pre-empted).
fn usage() -> (Duration, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (
        Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime)),
        (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs `clients` loops of `call` for `seconds` (each loop waiting `pace`
/// between starts when given); every call must succeed.
async fn measure<F, Fut>(clients: usize, seconds: u64, pace: Option<Duration>, call: F) -> Leg
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let before = usage();
    let sectors_before = sectors_written();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (call, stop) = (call.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut ticker = pace.map(|p| {
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + p.mul_f64(client as f64 / clients as f64),
                        p,
                    );
                    // A call that overran its slot skips the slots it
                    // missed and keeps its phase: with `Delay` every client
                    // held up by one slow commit starts again at the same
                    // instant, and they stay in step, arriving 64 at a time.
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    t
                });
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(t) = ticker.as_mut() {
                        t.tick().await;
                    }
                    let at = Instant::now();
                    if let Err(e) = call(client, n).await {
                        panic!("a request failed during the run: {e}");
                    }
                    latencies.push(at.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = usage();
    let sectors = sectors_before
        .zip(sectors_written())
        .map(|(b, a)| a.saturating_sub(b));
    let calls = all.len().max(1);
    all.sort();
    Leg {
        cpu: (after.0 - before.0) / calls as u32,
        switches: (after.1 - before.1) as f64 / calls as f64,
        disk: sectors.map(|s| s as f64 * 512.0 / 1024.0 / calls as f64),
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const BODY_BYTES: usize = 2048;

/// B1's throughput bar: this many times Postfix's accept rate.
const BAR_TIMES_POSTFIX: f64 = 8.0;

/// The paced legs at one load, round by round.
#[derive(Default)]
struct Paced {
    offered: Vec<f64>,
    done: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Paced {
    fn push(&mut self, offered: f64, leg: &Leg) {
        self.offered.push(offered);
        self.done.push(leg.rate);
        self.p50.push(ms(leg.p50));
        self.p99.push(ms(leg.p99));
    }

    fn print(self, what: &str) {
        println!(
            "{what} ({:.0}/s offered, {:.0}/s done; medians of the rounds): p50 {:.2} ms, p99 {:.2} ms (bar < 5 ms)",
            median(self.offered),
            median(self.done),
            median(self.p50),
            median(self.p99)
        );
    }
}

async fn start_posthorn() -> (std::net::SocketAddr, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let _ = DISK.set(device_of(dir.path()));
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().expect("address");
    settings.database_url = format!("sqlite://{}/bench.db", dir.path().display());
    settings.log = "error".into();
    // The load generator is one key; lift the limits it would hit.
    settings.policy.rate_per_second = 1_000_000.0;
    settings.policy.burst = 1_000_000;
    settings.policy.daily_quota = None;
    // B1 measures accepting; delivering what was accepted is B3's business.
    settings.deliver = false;
    let store = Store::connect(&settings.database_url, settings.database_max_connections)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let accounts = Accounts::new(store.clone());
    accounts.create_account("bench").await.expect("account");
    accounts
        .add_identity("bench", "bench.example", true)
        .await
        .expect("identity");
    let key = accounts
        .create_key("bench", "bench", Scopes::all(), KeyMode::Live)
        .await
        .expect("key")
        .plaintext;
    let app = Application::build(&settings, store)
        .await
        .expect("application");
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    (addr, key, dir)
}

fn grpc_request(
    key: &str,
    client: usize,
    n: u64,
    round: &str,
) -> tonic::Request<v1::SendEmailRequest> {
    let mut request = tonic::Request::new(v1::SendEmailRequest {
        from_email: "receipts@bench.example".into(),
        to: vec![format!("customer{client}@example.com")],
        subject: "Your receipt".into(),
        text: "x".repeat(BODY_BYTES),
        idempotency_key: format!("g-{round}-{client}-{n}"),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii"));
    request
}

fn main() {
    // As the `posthorn` binary does, before anything opens a database.
    posthorn::storage::prepare_sqlite();
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        println!(
            "B1/B2 durable accepts vs Postfix: {} clients (gRPC over {} connections), {} rounds of {} s per Posthorn leg, Postfix {} messages over {} sessions per round, {} build",
            o.clients,
            o.connections.min(o.clients),
            o.rounds,
            o.seconds,
            o.postfix_messages,
            o.postfix_sessions,
            if cfg!(debug_assertions) { "debug (smoke run only)" } else { "release" }
        );
        let postfix = Postfix::start(None);
        let (addr, key, _dir) = start_posthorn().await;
        let channels = Arc::new(Http2::connections(addr, o.connections.min(o.clients)).await);
        let connections = http1_connections(addr, o.clients).await;
        let key = Arc::new(key);

        let grpc = |round: String| {
            let (channels, key) = (channels.clone(), key.clone());
            move |client: usize, n: u64| {
                let mut grpc = channels[client % channels.len()].send_client();
                let request = grpc_request(&key, client, n, &round);
                async move { grpc.send_email(request).await.map(|_| ()).map_err(|s| format!("{s:?}")) }
            }
        };
        let rest = |round: String| {
            let (connections, key) = (connections.clone(), key.clone());
            move |client: usize, n: u64| {
                let connections = connections.clone();
                let body = serde_json::json!({
                    "from_email": "receipts@bench.example",
                    "to": [format!("customer{client}@example.com")],
                    "subject": "Your receipt",
                    "text": "x".repeat(BODY_BYTES),
                })
                .to_string();
                let request = http::Request::post("/v1/send")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("x-api-key", key.as_str())
                    .header("idempotency-key", format!("r-{round}-{client}-{n}"))
                    .body(http_body_util::Full::new(Bytes::from(body)))
                    .expect("request");
                async move {
                    use http_body_util::BodyExt as _;
                    let mut sender = connections[client].lock().await;
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                    }
                }
            }
        };

        // A leg paced at `rate` accepts a second, after a second at that
        // pace that is not counted: what the leg measures is the server at
        // that load, not the first moments after the legs before it (whose
        // log is still being copied back and flushed then).
        let (clients, seconds) = (o.clients, o.seconds);
        let paced_leg = |rate: f64, label: String| {
            let pace = Duration::from_secs_f64(clients as f64 / rate);
            let (warm, measured) = (grpc(format!("warm-{label}")), grpc(label));
            async move {
                measure(clients, 1, Some(pace), warm).await;
                measure(clients, seconds, Some(pace), measured).await
            }
        };

        // Warm-up: connections, caches, the database file.
        measure(o.clients, 1, None, grpc("warm".into())).await;
        measure(o.clients, 1, None, rest("warm".into())).await;
        postfix.accept_rate(o.postfix_messages.min(500), o.postfix_sessions);

        let (mut pf, mut g, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let (mut g_p50, mut g_p99, mut r_p99) = (Vec::new(), Vec::new(), Vec::new());
        let (mut own_half, mut bar_half) = (Paced::default(), Paced::default());
        // Half the load the throughput bar names, as a multiple of Postfix.
        let times = BAR_TIMES_POSTFIX / 2.0;
        for round in 1..=o.rounds {
            let postfix_rate = postfix.accept_rate(o.postfix_messages, o.postfix_sessions);
            let b1 = measure(o.clients, o.seconds, None, grpc(format!("{round}"))).await;
            let b2 = measure(o.clients, o.seconds, None, rest(format!("{round}"))).await;
            // The latency bar, "p99 < 5 ms at half that load", read both
            // ways: gRPC paced at half this round's B1 rate (or at a given
            // rate, to compare two builds at the same load), then at half
            // the load the throughput bar names, 4x Postfix's rate.
            let half = o.paced_rate.map_or(b1.rate / 2.0, |rate| rate as f64);
            let paced = paced_leg(half, format!("paced-{round}")).await;
            let mut line = format!(
                "round {round}: Postfix {postfix_rate:>7.0}/s | B1 gRPC {:>7.0}/s p50 {:.2} ms p99 {:.2} ms ({:.1}x Postfix, CPU {} us{} each) | B2 REST {:>7.0}/s p50 {:.2} ms p99 {:.2} ms ({:.2} of gRPC, CPU {} us{} each) | B1 paced at {half:.0}/s ({:.0}/s done): p50 {:.2} ms p99 {:.2} ms (CPU {} us, {:.1} switches{} each)",
                b1.rate, ms(b1.p50), ms(b1.p99), b1.rate / postfix_rate, b1.cpu.as_micros(), b1.disk(),
                b2.rate, ms(b2.p50), ms(b2.p99), b2.rate / b1.rate, b2.cpu.as_micros(), b2.disk(),
                paced.rate, ms(paced.p50), ms(paced.p99), paced.cpu.as_micros(), paced.switches, paced.disk()
            );
            own_half.push(half, &paced);
            if o.paced_rate.is_none() {
                let rate = times * postfix_rate;
                let paced = paced_leg(rate, format!("bar-{round}")).await;
                line.push_str(&format!(
                    " | paced at {times}x Postfix {rate:.0}/s ({:.0}/s done): p50 {:.2} ms p99 {:.2} ms{}",
                    paced.rate, ms(paced.p50), ms(paced.p99),
                    paced.disk.map_or_else(String::new, |kb| format!(" ({kb:.1} KB to disk each)"))
                ));
                bar_half.push(rate, &paced);
            }
            println!("{line}");
            pf.push(postfix_rate);
            g.push(b1.rate);
            r.push(b2.rate);
            g_p50.push(ms(b1.p50));
            g_p99.push(ms(b1.p99));
            r_p99.push(ms(b2.p99));
        }
        let (pf, g, r) = (median(pf), median(g), median(r));
        println!(
            "median: Postfix {pf:.0} accepts/s; B1 gRPC {g:.0}/s = {:.1}x Postfix (bar {BAR_TIMES_POSTFIX}x), p50 {:.2} ms, p99 {:.2} ms; B2 REST {r:.0}/s = {:.2} of B1 (bar 0.70), p99 {:.2} ms",
            g / pf,
            median(g_p50),
            median(g_p99),
            r / g,
            median(r_p99),
        );
        own_half.print("B1 paced at half its rate");
        if o.paced_rate.is_none() {
            bar_half.print(&format!("B1 paced at half the bar's load ({times}x Postfix)"));
        }
        drop(postfix);
    });
}
