//! Several Posthorn processes on one PostgreSQL database, and the pool's
//! graceful shutdown.
//!
//! D13: three `posthorn serve` processes, each relaying to its own
//! FaultSmtp, share one queue: every message arrives exactly once, every
//! process delivers its share, and the queue ends empty. Events committed
//! by one process wake the others through `LISTEN/NOTIFY`. On SIGTERM the
//! pool finishes what it is sending and returns what it claimed but had not
//! started, so a restart sends everything once without waiting for leases.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use posthorn::domain::watch::EventStore;
use posthorn::proto::v1;
use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
use posthorn::proto::v1::send_service_client::SendServiceClient;
use posthorn::storage::Store;
use sea_orm::{ConnectionTrait, Statement};
use tonic::transport::Channel;

use crate::binary::{serve_with, terminate};
use crate::crash::message_id;
use crate::delivery::send;
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, TestDatabase, try_spawn_app, with_key};
use crate::send::inline;

/// The environment of a process on `database` relaying to `sink`.
fn environment(database: &str, sink: &FaultSmtp, lease: u64) -> Vec<(&'static str, String)> {
    vec![
        ("POSTHORN_DATABASE_URL", database.to_owned()),
        ("POSTHORN_TRANSPORT", sink.url("?timeout=5")),
        ("POSTHORN_DELIVERY_CONCURRENCY", "8".into()),
        ("POSTHORN_DELIVERY_LEASE_SECONDS", lease.to_string()),
        ("POSTHORN_RATE_LIMIT_PER_SECOND", "100000".into()),
        ("POSTHORN_RATE_LIMIT_BURST", "100000".into()),
        ("POSTHORN_DAILY_QUOTA", "0".into()),
    ]
}

/// Sends message `i` through `channel` until it is accepted.
async fn send_numbered(channel: Channel, key: &str, i: usize) -> String {
    let request = v1::SendEmailRequest {
        from_email: "hello@localhost".into(),
        to: vec![format!("r{i}@example.com")],
        subject: format!("Message {i}"),
        text: "One of many.".into(),
        ..Default::default()
    };
    SendServiceClient::new(channel)
        .send_email(with_key(request, KeyHeader::Bearer, key))
        .await
        .expect("accepted")
        .into_inner()
        .id
}

/// Waits until `n` distinct messages have a `sent` event, watching through
/// `channel`.
async fn wait_until_sent(channel: Channel, key: &str, n: usize) {
    let mut stream = MessagesServiceClient::new(channel)
        .watch_messages(with_key(
            v1::WatchMessagesRequest {
                after_cursor: 1,
                types: vec![v1::EventType::Sent as i32],
                ..Default::default()
            },
            KeyHeader::Bearer,
            key,
        ))
        .await
        .expect("watching")
        .into_inner();
    let mut sent = HashSet::new();
    while sent.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} sent in time", sent.len()))
            .expect("the stream is open")
            .expect("no error")
            .event
            .expect("an event");
        sent.insert(event.message_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_postgres_send_every_message_exactly_once_d13() {
    const MESSAGES: usize = 1500;
    const PROCESSES: usize = 3;
    let Some((_database, url)) = TestDatabase::create(Backend::Postgres).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let mut sinks = Vec::new();
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for p in 0..PROCESSES {
        let sink = FaultSmtp::start(Script {
            data_jitter: Duration::from_millis(40),
            ..Script::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let env = environment(&url, &sink, 30);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: &[&str] = if p == 0 { &[] } else { &["--no-bootstrap"] };
        servers.push(serve_with(dir.path(), &env, args).await);
        sinks.push(sink);
        dirs.push(dir);
    }
    let key = servers[0].key();
    let mut channels = Vec::new();
    for server in &servers {
        channels.push(server.channel().await);
    }

    // Accepted round-robin by all three.
    futures::stream::iter(0..MESSAGES)
        .for_each_concurrent(32, |i| {
            let (channel, key) = (channels[i % PROCESSES].clone(), key.clone());
            async move {
                send_numbered(channel, &key, i).await;
            }
        })
        .await;
    wait_until_sent(channels[1].clone(), &key, MESSAGES).await;

    let per_process: Vec<usize> = sinks.iter().map(|s| s.accepted().len()).collect();
    let ids: Vec<String> = sinks
        .iter()
        .flat_map(|s| s.accepted())
        .map(|a| message_id(&a.data))
        .collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    eprintln!("D13: messages relayed by each process: {per_process:?}");
    assert_eq!(distinct.len(), MESSAGES, "every message arrived");
    assert_eq!(ids.len(), MESSAGES, "none arrived twice");
    for (p, n) in per_process.iter().enumerate() {
        assert!(
            *n >= MESSAGES / (PROCESSES * 4),
            "process {p} relayed only {n} of {MESSAGES}: {per_process:?}"
        );
    }
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let left = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM recipients WHERE state <> 'sent' OR lease_owner IS NOT NULL",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        left.try_get::<i64>("", "n").unwrap(),
        0,
        "the queue is empty"
    );
    db.close().await.unwrap();
    for server in servers {
        assert!(terminate(server.child).await.success());
    }
}

#[tokio::test]
async fn events_committed_through_one_process_wake_another_process_on_postgres() {
    let Some(app) = try_spawn_app(Backend::Postgres).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    // Another process's store: it writes nothing, so only a notification
    // from the database can move its signal.
    let other = Store::connect(&app.database_url, 2).await.unwrap();
    let mut signal = other.event_signal();
    signal.borrow_and_update();
    send(&app, &app.account_a.key, inline()).await;
    tokio::time::timeout(Duration::from_secs(10), signal.changed())
        .await
        .expect("the other process is notified of the committed event")
        .unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_being_sent_and_returns_the_rest_to_the_queue_sqlite() {
    sigterm_finishes_and_releases(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_being_sent_and_returns_the_rest_to_the_queue_postgres() {
    sigterm_finishes_and_releases(Backend::Postgres).await;
}

async fn sigterm_finishes_and_releases(backend: Backend) {
    const MESSAGES: usize = 40;
    let Some((_database, url)) = TestDatabase::create(backend).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let sink = FaultSmtp::start(Script {
        data_delay: Duration::from_millis(300),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // An hour's lease: a claim left behind would hold its recipient far
    // longer than this test waits.
    let env = environment(&url, &sink, 3600);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("POSTHORN_DELIVERY_CONCURRENCY", "2"));
    let server = serve_with(dir.path(), &env, &[]).await;
    let key = server.key();
    let channel = server.channel().await;
    for i in 0..MESSAGES {
        send_numbered(channel.clone(), &key, i).await;
    }
    sink.wait_for(2).await;
    assert!(
        terminate(server.child).await.success(),
        "a clean exit after SIGTERM"
    );
    let before_restart = sink.accepted().len();
    assert!(before_restart < MESSAGES, "the shutdown came mid-run");

    let server = serve_with(dir.path(), &env, &["--no-bootstrap"]).await;
    wait_until_sent(server.channel().await, &key, MESSAGES).await;
    let ids: Vec<String> = sink
        .accepted()
        .iter()
        .map(|a| message_id(&a.data))
        .collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), MESSAGES);
    assert_eq!(
        ids.len(),
        MESSAGES,
        "what was being sent at SIGTERM finished and was recorded: nothing went twice"
    );
    assert!(terminate(server.child).await.success());
}
