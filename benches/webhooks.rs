//! B6: signed webhook deliveries to a loopback receiver, against a plain
//! HTTP client posting the same signed requests to the same receiver in
//! the same run.
//!
//! - Posthorn: the real `posthorn` binary (release, SQLite). First as an
//!   accept-only node (`POSTHORN_DELIVER=false`): one endpoint subscribed
//!   to `email.cancelled`, then `--messages` sends scheduled for tomorrow
//!   (SendBatch, 100 each), each cancelled, so the outbox holds one
//!   delivery per message and no mail waits to be delivered (the worker
//!   pool would otherwise share the machine with the dispatcher). Then it is stopped and
//!   started again as a delivering node, and the clock runs from its start
//!   until the receiver has answered 2xx to every delivery: claimed from
//!   the table, signed, POSTed, recorded.
//! - Peer: this process posts the same number of requests, each signed
//!   (HMAC-SHA256 as Standard Webhooks has it), with reqwest keep-alive
//!   connections and as many at once as Posthorn's per-endpoint default
//!   (64): what the receiver and loopback allow a client that has no
//!   table to read and nothing to record.
//! - The receiver runs on a thread of its own and answers 204 to every
//!   POST, counting them.
//!
//! Run: `cargo bench --bench webhooks` (options `--messages N`, `--rounds N`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use posthorn_client::v1;
use support::median;
use tokio::sync::watch;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests at once: Posthorn's default per endpoint.
const IN_FLIGHT: usize = 64;

/// A receiver on its own thread answering 204 to every POST; its port and
/// the count of requests it answered.
fn receiver() -> (u16, watch::Receiver<u64>) {
    let (counter, count) = watch::channel(0u64);
    let counter = Arc::new(counter);
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let counted = counter;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |_body: axum::body::Bytes| {
                    let counted = counted.clone();
                    async move {
                        counted.send_modify(|n| *n += 1);
                        http::StatusCode::NO_CONTENT
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            port_tx
                .send(listener.local_addr().expect("address").port())
                .expect("port");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (port_rx.recv().expect("the receiver starts"), count)
}

/// Waits until `count` reaches `target`; says where it stands every 10 s
/// (a failed delivery waits 30 s for its retry).
async fn reached(count: &watch::Receiver<u64>, target: u64) {
    let mut count = count.clone();
    let started = Instant::now();
    while tokio::time::timeout(Duration::from_secs(10), count.wait_for(|n| *n >= target))
        .await
        .is_err()
    {
        eprintln!(
            "  after {} s: {} of {target} answered",
            started.elapsed().as_secs(),
            *count.borrow()
        );
    }
}

/// A running `posthorn serve`: the child, its address and key.
struct Server {
    child: tokio::process::Child,
    url: String,
    key: String,
}

/// Starts the server on the database in `dir`: the first time an
/// accept-only node that creates the account, then a delivering one.
async fn serve(dir: &std::path::Path, deliver: bool) -> Server {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .arg("serve")
        .current_dir(dir)
        .env("POSTHORN_LISTEN", "127.0.0.1:0")
        .env(
            "POSTHORN_DATABASE_URL",
            format!("sqlite://{}/posthorn.db", dir.display()),
        )
        .env("POSTHORN_DELIVER", deliver.to_string())
        .env("POSTHORN_WEBHOOKS_ALLOW_HTTP", "true")
        .env("POSTHORN_WEBHOOKS_ALLOW_PRIVATE", "true")
        .env("POSTHORN_RATE_LIMIT_PER_SECOND", "1000000")
        .env("POSTHORN_RATE_LIMIT_BURST", "1000000")
        .env("POSTHORN_DAILY_QUOTA", "0")
        .env("POSTHORN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start posthorn");
    // The first start (accept-only) creates the account and prints its key.
    let (addr, key) = support::banner(child.stdout.take().expect("stdout"), !deliver).await;
    Server {
        child,
        url: format!("http://{addr}"),
        key,
    }
}

fn authorized<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii"));
    request
}

/// Fills the outbox with `messages` deliveries to the receiver at `port`
/// on an accept-only node; returns the key for the next start.
async fn fill(dir: &std::path::Path, port: u16, messages: u64) -> String {
    let mut server = serve(dir, false).await;
    let channel = Channel::from_shared(server.url.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    v1::webhooks_service_client::WebhooksServiceClient::new(channel.clone())
        .create_webhook(authorized(
            v1::CreateWebhookRequest {
                url: format!("http://127.0.0.1:{port}/hook"),
                events: vec!["email.cancelled".into()],
                ..Default::default()
            },
            &server.key,
        ))
        .await
        .expect("endpoint created");
    let batches = messages.div_ceil(100);
    let key = server.key.clone();
    futures::future::join_all((0..8).map(|worker| {
        let (channel, key) = (channel.clone(), key.clone());
        async move {
            let mut client = v1::send_service_client::SendServiceClient::new(channel.clone());
            for batch in (worker..batches).step_by(8) {
                let emails = (0..100)
                    .map(|i| batch * 100 + i)
                    .filter(|n| *n < messages)
                    .map(|n| v1::SendEmailRequest {
                        from_email: "bench@localhost".into(),
                        to: vec![format!("r{n}@example.com")],
                        subject: "Webhook bench".into(),
                        text: "x".repeat(256),
                        scheduled_at: Some(prost_types::Timestamp {
                            seconds: chrono::Utc::now().timestamp() + 86_400,
                            nanos: 0,
                        }),
                        ..Default::default()
                    })
                    .collect();
                let accepted = client
                    .send_batch(authorized(
                        v1::SendBatchRequest {
                            messages: emails,
                            ..Default::default()
                        },
                        &key,
                    ))
                    .await
                    .expect("batch accepted")
                    .into_inner();
                let mut messages =
                    v1::messages_service_client::MessagesServiceClient::new(channel.clone());
                for result in accepted.results {
                    assert!(result.error.is_none(), "{result:?}");
                    messages
                        .cancel_message(authorized(
                            v1::CancelMessageRequest { id: result.id },
                            &key,
                        ))
                        .await
                        .expect("cancelled");
                }
            }
        }
    }))
    .await;
    let pid = server.child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    server.child.wait().await.expect("stopped");
    key
}

/// Posthorn's deliveries per second: from its start as a delivering node
/// until the receiver has answered every delivery.
async fn posthorn(messages: u64) -> f64 {
    let (port, count) = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    fill(dir.path(), port, messages).await;
    assert_eq!(*count.borrow(), 0, "nothing sent while filling");
    let started = Instant::now();
    let server = serve(dir.path(), true).await;
    reached(&count, messages).await;
    let elapsed = started.elapsed();
    drop(server);
    messages as f64 / elapsed.as_secs_f64()
}

/// A plain client's signed POSTs per second to a receiver like Posthorn's.
async fn peer(messages: u64) -> f64 {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let (port, count) = receiver();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(32)
        .build()
        .expect("client");
    let url = format!("http://127.0.0.1:{port}/hook");
    let key = [7u8; 32];
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    futures::future::join_all((0..IN_FLIGHT).map(|_| {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    return;
                }
                let body = format!(
                    r#"{{"type":"email.cancelled","timestamp":"2026-12-05T00:00:00.000000Z","data":{{"message_id":"msg_{n:032x}","recipient":"","status":"cancelled","cursor":{n},"details":{{}},"tags":[],"metadata":{{}}}}}}"#
                );
                let id = format!("evt_{n}");
                let timestamp = chrono::Utc::now().timestamp();
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key)
                    .expect("any key length");
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body.as_bytes());
                let signature = format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
                );
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .expect("answered");
                assert!(answer.status().is_success());
            }
        }
    }))
    .await;
    let elapsed = started.elapsed();
    assert_eq!(*count.borrow(), messages);
    messages as f64 / elapsed.as_secs_f64()
}

fn main() {
    let given = support::numeric_options();
    let messages = given.get("messages").copied().unwrap_or(20_000);
    let rounds = given.get("rounds").copied().unwrap_or(3) as usize;
    println!(
        "B6 signed webhook deliveries to a loopback receiver: {messages} per leg, {rounds} rounds, {} build",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let own = runtime.block_on(posthorn(messages));
        let plain = runtime.block_on(peer(messages));
        println!(
            "round {round}: Posthorn {own:.0} deliveries/s (claim, sign, POST, record), plain client {plain:.0} signed POSTs/s, ratio {:.2}",
            own / plain
        );
        ours.push(own);
        theirs.push(plain);
    }
    let (own, plain) = (median(ours), median(theirs));
    println!(
        "median: Posthorn {own:.0}/s, plain client {plain:.0}/s, ratio {:.2} (bar: ≥ 5,000/s)",
        own / plain
    );
}
