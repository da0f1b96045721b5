//! What the benchmark commands share: numeric `--name N` options, medians,
//! Postfix's `smtp-source` as a peer, and lean HTTP/1.1 keep-alive
//! connections driven by hyper directly (as lean a client as tonic's, so
//! REST and gRPC legs differ by the server's work). Each benchmark uses a
//! part of it.
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
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        out.push(tokio::sync::Mutex::new(sender));
    }
    Arc::new(out)
}

/// Messages per second Postfix's `smtp-source` sends to `127.0.0.1:port`:
/// `messages` messages of 1 KB over `sessions` parallel SMTP sessions.
pub fn smtp_source(port: u16, sessions: u64, messages: u64) -> f64 {
    let started = std::time::Instant::now();
    let output = std::process::Command::new("smtp-source")
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
