//! B2: REST/JSON through the gateway against native gRPC, same RPC, same
//! process, 64 concurrent clients on loopback, legs alternated.
//!
//! Two targets:
//! - `echo`: the test-only contract's Create (body "*", a small JSON body)
//!   answered by an in-memory echo service: the transcoder's own cost.
//! - `server`: the real Posthorn server (SQLite) answering GetSuppression for
//!   a stored address: authentication, a database read, error-free result.
//!
//! Run: `cargo bench --bench gateway` (options: `--seconds N`, `--rounds N`,
//! `--clients N`). It prints each leg's requests/s per round, the medians
//! and the REST/gRPC ratio; BENCHMARKS.md records the figures.

#[path = "../tests/api/echo.rs"]
mod echo;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use posthorn::config::Settings;
use posthorn::domain::accounts::Accounts;
use posthorn::domain::keys::KeyMode;
use posthorn::domain::{Scopes, suppressions::SuppressionReason};
use posthorn::gateway::GatewayOptions;
use posthorn::startup::Application;
use posthorn::storage::Store;
use posthorn_client::v1;
use prost::Message as _;
use support::{Http1, http1_connections, median};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

struct Options {
    seconds: u64,
    rounds: usize,
    clients: usize,
}

fn options() -> Options {
    let given = support::numeric_options();
    let get = |name: &str, default: u64| given.get(name).copied().unwrap_or(default);
    Options {
        seconds: get("seconds", 5),
        rounds: get("rounds", 3) as usize,
        clients: get("clients", 64) as usize,
    }
}

/// Passes already-encoded messages through tonic untouched.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Runs `clients` loops of `call` for `seconds`; returns requests/s.
async fn measure<F, Fut>(clients: usize, seconds: u64, call: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (call, done, failed, stop) =
                (call.clone(), done.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if call(client).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} requests failed during the run");
    done.load(Ordering::Relaxed) as f64 / elapsed
}

async fn channels(url: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            Channel::from_shared(url.to_owned())
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

/// Sends one request on the client's connection; true on a 2xx with its
/// whole body read.
async fn http1_call(
    connections: &[tokio::sync::Mutex<Http1>],
    client: usize,
    request: http::Request<http_body_util::Full<Bytes>>,
) -> bool {
    use http_body_util::BodyExt as _;
    let mut sender = connections[client].lock().await;
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(request).await {
        Ok(response) => {
            response.status().is_success() && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn compare<G, GF, R, RF>(name: &str, o: &Options, grpc: G, rest: R)
where
    G: Fn(usize) -> GF + Send + Sync + Clone + 'static,
    GF: std::future::Future<Output = bool> + Send,
    R: Fn(usize) -> RF + Send + Sync + Clone + 'static,
    RF: std::future::Future<Output = bool> + Send,
{
    // Warm both paths (connections, caches) before measuring.
    measure(o.clients, 1, grpc.clone()).await;
    measure(o.clients, 1, rest.clone()).await;
    let (mut g, mut r) = (Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        let grpc_rate = measure(o.clients, o.seconds, grpc.clone()).await;
        let rest_rate = measure(o.clients, o.seconds, rest.clone()).await;
        println!(
            "{name} round {round}: gRPC {grpc_rate:>9.0} req/s   REST {rest_rate:>9.0} req/s   ratio {:.2}",
            rest_rate / grpc_rate
        );
        g.push(grpc_rate);
        r.push(rest_rate);
    }
    let (g, r) = (median(g), median(r));
    println!(
        "{name} median: gRPC {g:.0} req/s, REST {r:.0} req/s, REST/gRPC = {:.2} ({} clients, {} s legs, {} rounds)",
        r / g,
        o.clients,
        o.seconds,
        o.rounds
    );
}

async fn bench_echo(o: &Options) {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let pool = echo::pool();
    let json = r#"{"id":"bench","name":"shelves/1/things/2","tags":["a","b"],"small":5,"big":"1234567890123","nested":{"label":"x","count":1},"color":"COLOR_RED"}"#;
    let descriptor = pool
        .get_message_by_name("gatewaytest.v1.Echo")
        .expect("Echo");
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = prost_reflect::DynamicMessage::deserialize(descriptor, &mut deserializer)
        .expect("the JSON is an Echo");
    let encoded = Bytes::from(message.encode_to_vec());

    let grpc_channels = Arc::new(channels(&format!("http://{addr}"), o.clients).await);
    let grpc = move |client: usize| {
        let mut grpc = tonic::client::Grpc::new(grpc_channels[client].clone());
        let body = encoded.clone();
        async move {
            if grpc.ready().await.is_err() {
                return false;
            }
            let path = http::uri::PathAndQuery::from_static("/gatewaytest.v1.EchoService/Create");
            grpc.unary(tonic::Request::new(body), path, RawCodec)
                .await
                .is_ok()
        }
    };
    let connections = http1_connections(addr, o.clients).await;
    let rest = move |client: usize| {
        let connections = connections.clone();
        let request = http::Request::post("/v1/things")
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                json.as_bytes(),
            )))
            .expect("request");
        async move { http1_call(&connections, client, request).await }
    };
    compare("echo   (Create, body \"*\")", o, grpc, rest).await;
}

async fn bench_server(o: &Options) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().expect("address");
    settings.database_url = format!("sqlite://{}/bench.db", dir.path().display());
    settings.log = "error".into();
    // One key drives the load; lift the per-key rate limit it would hit.
    settings.policy.rate_per_second = 1_000_000.0;
    settings.policy.burst = 1_000_000;
    let store = Store::connect(&settings.database_url, settings.database_max_connections)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let accounts = Accounts::new(store.clone());
    let account = accounts.create_account("bench").await.expect("account").id;
    let key = accounts
        .create_key("bench", "bench", Scopes::all(), KeyMode::Live)
        .await
        .expect("key")
        .plaintext;
    let suppressions = posthorn::domain::suppressions::Suppressions::new(
        store.clone(),
        Arc::new(posthorn::domain::clock::SystemClock),
    );
    suppressions
        .create(
            &account,
            "bench@example.com",
            Some(SuppressionReason::Other),
            None,
        )
        .await
        .expect("suppression");
    let app = Application::build(&settings, store)
        .await
        .expect("application");
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));

    let grpc_channels = Arc::new(channels(&format!("http://{addr}"), o.clients).await);
    let grpc_key: tonic::metadata::MetadataValue<_> = key.parse().expect("ascii");
    let grpc = move |client: usize| {
        let mut grpc = v1::suppressions_service_client::SuppressionsServiceClient::new(
            grpc_channels[client].clone(),
        );
        let mut request = tonic::Request::new(v1::GetSuppressionRequest {
            email: "bench@example.com".into(),
        });
        request.metadata_mut().insert("x-api-key", grpc_key.clone());
        async move { grpc.get_suppression(request).await.is_ok() }
    };
    let connections = http1_connections(addr, o.clients).await;
    let rest_key = Arc::new(key);
    let rest = move |client: usize| {
        let connections = connections.clone();
        let request = http::Request::get("/v1/suppressions/bench%40example.com")
            .header("host", "bench")
            .header("x-api-key", rest_key.as_str())
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request");
        async move { http1_call(&connections, client, request).await }
    };
    compare("server (GetSuppression)", o, grpc, rest).await;
}

fn main() {
    // As the `posthorn` binary does, before anything opens a database.
    posthorn::storage::prepare_sqlite();
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "B2 REST vs gRPC: {} clients, {} rounds of {} s per leg, legs alternated, {} build, one process on loopback",
            o.clients,
            o.rounds,
            o.seconds,
            if cfg!(debug_assertions) { "debug (smoke run only)" } else { "release" }
        );
        bench_echo(&o).await;
        bench_server(&o).await;
    });
}
