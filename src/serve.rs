//! The accept loop of both listeners. Each accepted connection gets
//! TCP_NODELAY and TCP keep-alive and is served HTTP/1.1 or HTTP/2 (prior
//! knowledge, as gRPC speaks it) by hyper, as axum's `serve` would, with
//! the time limits a server open to untrusted clients needs and that
//! `serve` does not set:
//!
//! - a connection must send its first request within the client timeout
//!   (`client_timeout_seconds`), or it is closed: a client that connects
//!   and sends nothing, or half a request, holds nothing for long;
//! - over HTTP/1.1 the headers of every later request must arrive within
//!   the same time, which also closes a keep-alive connection left idle
//!   that long (a response being streamed, such as a watch, is not idle);
//! - a request body may not pause for longer either (REST, gRPC-Web,
//!   MCP), so a body sent a byte a minute fails instead of holding its
//!   handler; a native gRPC request stream (`SendStream`) may, since
//!   its client sends when it has mail;
//! - an HTTP/2 connection quiet for [`HTTP2_PING_AFTER`] is pinged, and
//!   closed when the ping is not answered within [`HTTP2_PING_TIMEOUT`]
//!   (the defaults of [`Limits`]), so a gRPC stream whose client vanished
//!   ends within a minute, and proxies see traffic on a quiet stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// How long an HTTP/2 connection may be quiet before it is pinged.
pub const HTTP2_PING_AFTER: Duration = Duration::from_secs(30);

/// How long a ping may go unanswered before the connection is closed.
pub const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// TCP keep-alive on accepted connections: a probe once a connection has
/// been quiet for a minute, then every 15 s; after 4 unanswered the kernel
/// closes it (about two minutes in all).
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(60))
    .with_interval(Duration::from_secs(15))
    .with_retries(4);

/// How long a connection closed for sending no request may take to close
/// on its own before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long the loop waits after an accept failed for want of resources
/// (no file descriptor left, say) before it accepts again.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The time limits of a listener's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a connection may take to send its first request, an
    /// HTTP/1.1 client each request's headers, and a request body (but a
    /// gRPC one) its next bytes.
    pub client_timeout: Duration,
    /// How long an HTTP/2 connection may be quiet before it is pinged.
    pub http2_ping_after: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_ping_timeout: Duration,
}

impl Limits {
    /// The limits with this client timeout and the default pings.
    pub fn with_client_timeout(client_timeout: Duration) -> Limits {
        Limits {
            client_timeout,
            http2_ping_after: HTTP2_PING_AFTER,
            http2_ping_timeout: HTTP2_PING_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `stopping` turns true; then accepts
/// no more connections, lets each open one finish what it is doing
/// (HTTP/2 connections are told to go away) and returns once all are
/// closed. The peer's address is in each request as `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_ping_after)
        .keep_alive_timeout(limits.http2_ping_timeout)
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    // Each connection's task holds a receiver; once every one is dropped
    // (and the loop's own), every connection is closed.
    let (all_closed, open) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "cannot accept a connection; trying again in a second");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
        };
        configure(&tcp);
        tokio::spawn(connection(
            builder.clone(),
            tcp,
            peer,
            router.clone(),
            limits.client_timeout,
            stopping.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    drop(open);
    all_closed.closed().await;
}

/// Serves one connection; see the module's documentation for its limits.
async fn connection(
    builder: Arc<Builder<TokioExecutor>>,
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    client_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    let first_request = Arc::new(Notify::new());
    let seen = Arc::new(AtomicBool::new(false));
    let service = {
        let first_request = first_request.clone();
        router.map_request(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if !seen.load(Ordering::Relaxed) && !seen.swap(true, Ordering::Relaxed) {
                first_request.notify_one();
            }
            // A gRPC request stream may be quiet for as long as its
            // client has nothing to send; gRPC-Web has no request streams.
            let streams = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.starts_with("application/grpc") && !v.starts_with("application/grpc-web")
                });
            request.map(|body| {
                if streams {
                    axum::body::Body::new(body)
                } else {
                    axum::body::Body::new(TimeoutBody::new(client_timeout, body))
                }
            })
        })
    };
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let deadline = tokio::time::sleep(client_timeout);
    tokio::pin!(deadline);
    let mut waiting_for_first = true;
    let mut shutting_down = false;
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, error = %error, "connection ended with an error");
                }
                return;
            }
            () = first_request.notified(), if waiting_for_first => waiting_for_first = false,
            () = &mut deadline, if waiting_for_first => {
                if closing {
                    return;
                }
                // Politely first (an HTTP/2 client is told to go away and
                // connects again when it has a request), then for good.
                tracing::debug!(%peer, "no request within the client timeout; closing the connection");
                closing = true;
                connection.as_mut().graceful_shutdown();
                deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_WAIT);
            }
            _ = stopping.wait_for(|s| *s), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Replies and stream messages are small writes: without TCP_NODELAY each
/// waits for the peer's delayed ACK (Nagle). A peer that vanished without
/// closing (a machine gone, a NAT entry dropped) is found by the kernel's
/// keep-alive probes on a quiet connection.
fn configure(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
    }
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_keepalive(&KEEPALIVE) {
        tracing::debug!(%error, "cannot set TCP keep-alive on a connection");
    }
}

/// Errors of one connection that went away before it was accepted: the
/// next accept is unaffected.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Writes one HTTP/2 frame.
    async fn write_frame(tcp: &mut TcpStream, kind: u8, flags: u8, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        tcp.write_all(&frame)
            .await
            .expect("the connection takes a frame");
    }

    /// Reads one HTTP/2 frame as (type, flags, payload); `None` once the
    /// server has closed the connection.
    async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
        let mut head = [0; 9];
        tcp.read_exact(&mut head).await.ok()?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; length];
        tcp.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], payload))
    }

    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const ACK: u8 = 1;

    /// An HTTP/2 client that answers the server's pings keeps its quiet
    /// connection; once it stops answering, the connection is closed.
    #[tokio::test]
    async fn a_quiet_http2_connection_is_pinged_and_closed_once_pings_go_unanswered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stopping) = watch::channel(false);
        let limits = Limits {
            client_timeout: Duration::from_secs(600),
            http2_ping_after: Duration::from_millis(100),
            http2_ping_timeout: Duration::from_millis(300),
        };
        tokio::spawn(serve(listener, Router::new(), limits, stopping));

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        write_frame(&mut tcp, SETTINGS, 0, &[]).await;
        let bound = Duration::from_secs(20);
        let mut answered = 0;
        while answered < 3 {
            let frame = tokio::time::timeout(bound, read_frame(&mut tcp)).await;
            match frame
                .expect("the server sends a frame")
                .expect("still open")
            {
                (SETTINGS, flags, _) if flags & ACK == 0 => {
                    write_frame(&mut tcp, SETTINGS, ACK, &[]).await
                }
                (PING, flags, payload) if flags & ACK == 0 => {
                    write_frame(&mut tcp, PING, ACK, &payload).await;
                    answered += 1;
                }
                _ => {}
            }
        }
        // No more answers: the next ping goes unanswered and the server
        // closes the connection.
        let mut unanswered = 0;
        let mut frames = Vec::new();
        while let Some((kind, flags, _)) = tokio::time::timeout(bound, read_frame(&mut tcp))
            .await
            .expect("the server closes the connection")
        {
            frames.push(kind);
            if kind == PING && flags & ACK == 0 {
                unanswered += 1;
            }
        }
        assert!(unanswered >= 1, "closed without a ping: {frames:?}");
    }
}
