//! B4: Posthorn's SMTP client pool against Postfix's `smtp-sink`, beside
//! Postfix's own C client `smtp-source`, measured in the same run.
//!
//! smtp-source runs with `-d`: each session carries many messages, as the
//! pool's connections do.
//!
//! - `smtp-source -s 1` and Posthorn's relay pool with one connection
//!   (`max_connections=1`), each sending the same number of 1 KB messages
//!   one after another: the bar is ≥ 1,000 messages/s for Posthorn.
//! - `smtp-source -s 10` and the pool with ten connections and ten
//!   concurrent senders: the bar is ≥ 50 % of smtp-source's rate.
//!
//! Legs alternate within each round; medians of the rounds. Run:
//! `cargo bench --bench smtp` (options `--messages N`, `--rounds N`).

mod support;

use std::sync::Arc;
use std::time::Instant;

use posthorn::delivery::smtp::Relay;
use support::{Sink, median, smtp_source};

// The allocator of the `posthorn` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A 1 KB message as the worker pool hands it to a transport.
fn message() -> Vec<u8> {
    let mut raw = String::from(
        "From: bench@bench.example\r\nTo: sink@example.com\r\nSubject: B4\r\n\
         Message-ID: <b4@bench.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    while raw.len() < 1024 {
        raw.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    raw.into_bytes()
}

/// Messages per second through Posthorn's pool with `connections`
/// connections and as many concurrent senders; every reply must be 250.
async fn posthorn(port: u16, connections: usize, messages: usize) -> f64 {
    let url = format!("smtp://127.0.0.1:{port}?tls=none&max_connections={connections}");
    let relay = Arc::new(Relay::parse(&url, "bench.example").expect("relay"));
    let raw = Arc::new(message());
    let recipients = Arc::new(vec!["sink@example.com".to_owned()]);
    let started = Instant::now();
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            let (relay, raw, recipients) = (relay.clone(), raw.clone(), recipients.clone());
            tokio::spawn(async move {
                for _ in 0..messages / connections {
                    let replies = relay.send("bench@bench.example", &recipients, &raw).await;
                    assert_eq!(replies[0].code, 250, "{:?}", replies[0]);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    (messages / connections * connections) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let given = support::numeric_options();
    let messages = given.get("messages").copied().unwrap_or(20_000) as usize;
    let rounds = given.get("rounds").copied().unwrap_or(3) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "B4 SMTP client vs smtp-source, both into smtp-sink: {messages} messages of 1 KB per leg, {rounds} rounds, {} build",
        if cfg!(debug_assertions) {
            "debug (smoke run only)"
        } else {
            "release"
        }
    );
    let sink = Sink::start();
    runtime.block_on(async {
        // Warm-up: the sink, the connections, the caches.
        posthorn(sink.port, 10, messages.min(1000)).await;
        smtp_source(sink.port, 10, messages.min(1000) as u64, true);
        let (mut s1, mut p1, mut s10, mut p10) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let source_1 = smtp_source(sink.port, 1, messages as u64 / 4, true);
            let posthorn_1 = posthorn(sink.port, 1, messages / 4).await;
            let source_10 = smtp_source(sink.port, 10, messages as u64, true);
            let posthorn_10 = posthorn(sink.port, 10, messages).await;
            println!(
                "round {round}: 1 connection: smtp-source {source_1:>7.0}/s Posthorn {posthorn_1:>7.0}/s | 10 connections: smtp-source {source_10:>7.0}/s Posthorn {posthorn_10:>7.0}/s ({:.2} of smtp-source)",
                posthorn_10 / source_10
            );
            s1.push(source_1);
            p1.push(posthorn_1);
            s10.push(source_10);
            p10.push(posthorn_10);
        }
        let (s1, p1, s10, p10) = (median(s1), median(p1), median(s10), median(p10));
        println!(
            "median: 1 connection: Posthorn {p1:.0}/s (bar 1000/s), smtp-source {s1:.0}/s; 10 connections: Posthorn {p10:.0}/s = {:.2} of smtp-source {s10:.0}/s (bar 0.50)",
            p10 / s10
        );
    });
    drop(sink);
}
