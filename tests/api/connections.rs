//! The time limits of both listeners (`src/serve.rs`): a connection that
//! sends no request, half a request head or half the HTTP/2 preface is
//! closed after `client_timeout_seconds`, and so is an HTTP/1.1
//! connection left idle that long; a request body that stops that long
//! fails; a quiet watch stream or gRPC request stream does not. And every
//! connection runs TCP keep-alive.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use posthorn::proto::v1;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::delivery::{next_sse, sse_event};
use crate::helpers::{Backend, KeyHeader, TestApp, try_spawn_app_with, with_key};
use crate::send::{inline_json, post};

/// The client timeout of these tests.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Longer than any of these tests waits for a close; a failing limit
/// fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(15);

async fn app() -> TestApp {
    try_spawn_app_with(Backend::Sqlite, |s| {
        s.client_timeout = TIMEOUT;
        s.public_listen = Some("127.0.0.1:0".parse().unwrap());
        s.stream_keepalive = Duration::from_millis(200);
    })
    .await
    .expect("SQLite is always available")
}

/// A gRPC connection of its own, to be used at once: the test app's shared
/// one may have been closed for sending no request within the timeout.
async fn fresh_channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(app.base_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Sends `bytes` on a new connection, then reads until the server closes
/// it; returns what was read and how long after connecting it closed.
async fn closed_after_sending(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut read = Vec::new();
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut read))
        .await
        .unwrap_or_else(|_| panic!("{addr} still holds a connection that sent {bytes:?}"))
        .ok();
    (read, started.elapsed())
}

/// Reads one HTTP/1.1 answer with a `content-length` off `tcp`.
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
        let mut buffer = [0; 4096];
        let n = tokio::time::timeout(BOUND, tcp.read(&mut buffer))
            .await
            .expect("the answer arrives")
            .unwrap();
        assert!(n > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_no_whole_request_are_closed_after_the_client_timeout() {
    let app = app().await;
    let public = app.public_url.as_ref().unwrap();
    let public: SocketAddr = public.strip_prefix("http://").unwrap().parse().unwrap();
    // Six connections at once: each listener, each way of stalling.
    let stalled = [app.addr, public].into_iter().flat_map(|addr| {
        [
            &b""[..],
            b"GET /healthz HTTP/1.1\r\nhost: posthorn\r\n",
            b"PRI * HTTP/2.0\r\n",
        ]
        .map(move |bytes| async move { (addr, bytes, closed_after_sending(addr, bytes).await) })
    });
    for (addr, bytes, (read, after)) in futures::future::join_all(stalled).await {
        assert!(
            after >= TIMEOUT - Duration::from_millis(100),
            "{addr} closed a connection that sent {bytes:?} after {after:?}, before the timeout"
        );
        assert!(
            read.is_empty() || String::from_utf8_lossy(&read).starts_with("HTTP/1.1 408"),
            "{read:?}"
        );
    }
    // The server still answers whole requests.
    let (status, _) = crate::send::get(&app, &app.account_a.key, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_connection_is_closed_after_the_client_timeout_and_a_busy_one_is_not() {
    let app = app().await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    // Three requests on one connection, the last more than the timeout
    // after the first: each answered in time keeps it open.
    let started = Instant::now();
    let mut answered = 0;
    while answered < 3 || started.elapsed() < TIMEOUT * 2 {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: posthorn\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answered += 1;
    }
    // Then left idle, it is closed.
    let idle = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .ok();
    assert!(
        idle.elapsed() >= TIMEOUT - Duration::from_millis(100),
        "{:?}",
        idle.elapsed()
    );
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_watch_streams_outlive_the_client_timeout_over_sse_and_grpc() {
    let app = app().await;
    let key = &app.account_a.key;

    // A Server-Sent Events watch over HTTP/1.1, quiet for three timeouts:
    // only keep-alive comments arrive, and the stream stays open.
    let response = app
        .http
        .get(format!("{}/v1/messages:watch", app.base_url))
        .header("x-api-key", key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (mut sse, mut buffer) = (response.bytes_stream(), Vec::new());

    // A gRPC watch over HTTP/2.
    let channel = fresh_channel(&app).await;
    let mut grpc = v1::messages_service_client::MessagesServiceClient::new(channel)
        .watch_messages(with_key(
            v1::WatchMessagesRequest::default(),
            KeyHeader::Bearer,
            key,
        ))
        .await
        .expect("the watch starts")
        .into_inner();

    let quiet = Instant::now();
    while quiet.elapsed() < TIMEOUT * 3 {
        assert_eq!(next_sse(&mut sse, &mut buffer).await, ": keep-alive");
    }
    // Both streams are still open: a send's event reaches each.
    let (status, _, sent) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let id = sent["id"].as_str().unwrap();
    let event = loop {
        let block = next_sse(&mut sse, &mut buffer).await;
        if !block.starts_with(':') {
            break sse_event(&block).1;
        }
    };
    assert_eq!(event["event"]["message_id"], id);
    let event = tokio::time::timeout(BOUND, grpc.next())
        .await
        .expect("an event arrives")
        .expect("the gRPC stream is open")
        .expect("no error")
        .event
        .expect("an event");
    assert_eq!(event.message_id, id);
}

/// Half of a JSON request body.
const HALF_JSON: &[u8] = br#"{"from_email": "hello@acme.example", "to": ["jane@example.com"]"#;

/// Sends a request whose body stops half way, and reads what comes back
/// until the server closes the connection; returns it and how long that
/// took.
async fn answer_to_half_a_body(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (String, Duration) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: posthorn\r\nx-api-key: {key}\r\ncontent-type: {content_type}\r\naccept: application/json, text/event-stream\r\ncontent-length: {length}\r\n\r\n",
        key = app.account_a.key,
        length = body.len() * 2,
    )
    .into_bytes();
    request.extend_from_slice(body);
    let (answer, after) = closed_after_sending(app.addr, &request).await;
    (String::from_utf8_lossy(&answer).into_owned(), after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_fails_after_the_client_timeout() {
    let app = app().await;
    // REST: 408 with a google.rpc.Status naming the setting.
    let (answer, after) =
        answer_to_half_a_body(&app, "/v1/send", "application/json", HALF_JSON).await;
    assert!(after >= TIMEOUT - Duration::from_millis(100), "{after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (_, json) = answer.split_once("\r\n\r\n").expect("a body");
    let json: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(crate::helpers::json_reason(&json), "REQUEST_TIMEOUT");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("client_timeout_seconds"),
        "{json}"
    );
    // MCP: answered (or closed) too, not held.
    let (answer, after) = answer_to_half_a_body(&app, "/mcp", "application/json", HALF_JSON).await;
    assert!(after >= TIMEOUT - Duration::from_millis(100), "{after:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    // gRPC-Web: answered (or closed) too.
    let (answer, after) = answer_to_half_a_body(
        &app,
        "/posthorn.v1.SendService/SendEmail",
        "application/grpc-web+proto",
        // A frame announcing 64 bytes of message, and 10 of them.
        &[
            0, 0, 0, 0, 64, 0x0a, 8, b'h', b'e', b'l', b'l', b'o', b'@', b'a', b'c',
        ],
    )
    .await;
    assert!(after >= TIMEOUT - Duration::from_millis(100), "{after:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 "),
        "{answer}"
    );
    // Nothing was sent.
    assert_eq!(
        crate::send::message_count(&app, &app.account_a.key).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_send_stream_may_be_quiet_for_longer_than_the_client_timeout() {
    let app = app().await;
    let key = &app.account_a.key;
    let (requests, rx) = tokio::sync::mpsc::channel::<v1::SendStreamRequest>(1);
    let channel = fresh_channel(&app).await;
    let mut answers = v1::send_service_client::SendServiceClient::new(channel)
        .send_stream(with_key(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            KeyHeader::Bearer,
            key,
        ))
        .await
        .expect("the stream opens")
        .into_inner();
    for correlation_id in ["before", "after"] {
        requests
            .send(v1::SendStreamRequest {
                correlation_id: correlation_id.into(),
                message: Some(crate::send::inline()),
            })
            .await
            .unwrap();
        let answer = tokio::time::timeout(BOUND, answers.next())
            .await
            .expect("an answer")
            .expect("the stream is open")
            .expect("no error");
        assert_eq!(answer.correlation_id, correlation_id);
        assert!(answer.id.starts_with("msg_"), "{answer:?}");
        if correlation_id == "before" {
            // The stream is quiet for two timeouts: nothing arrives and
            // it stays open.
            assert!(
                tokio::time::timeout(TIMEOUT * 2, answers.next())
                    .await
                    .is_err(),
                "the quiet stream ended"
            );
        }
    }
}

/// A watcher that vanished without closing its connection (its machine
/// gone, a NAT entry dropped) leaves nothing to read; the kernel's
/// keep-alive probes on every API connection find it. Read from the
/// kernel's table of TCP sockets: the server's end of a fresh connection
/// runs the keep-alive timer.
#[tokio::test]
async fn every_api_connection_is_probed_by_tcp_keep_alive() {
    let app = crate::helpers::spawn_app().await;
    let mut client = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let ours = client.local_addr().unwrap().port();
    // An answered request: the server has taken the connection and set it
    // up.
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: posthorn\r\n\r\n")
        .await
        .unwrap();
    read_answer(&mut client).await;
    // The timer of the server's end: `tr` is 2 for keep-alive.
    let table = std::fs::read_to_string("/proc/net/tcp").expect("Linux's table of TCP sockets");
    let timer = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
        (port(fields[1])? == app.addr.port() && port(fields[2])? == ours)
            .then(|| fields[5].split(':').next().unwrap_or_default().to_owned())
    });
    assert_eq!(
        timer.as_deref(),
        Some("02"),
        "the server's end runs no keep-alive timer"
    );
}
