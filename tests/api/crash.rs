//! Crashes and restarts of the real `posthorn` process, relaying to
//! FaultSmtp.
//!
//! D1: SIGKILL three times while 1,000 messages are being accepted and
//! relayed. Every acknowledged message is delivered, nothing is stored
//! twice, and duplicates at the relay stay within what can have been in an
//! SMTP transaction at a kill (one stable Message-ID per message, so they
//! are recognisable). D12: scheduled messages survive restarts and fire
//! once, never early.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use posthorn::proto::v1;
use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
use posthorn::proto::v1::send_service_client::SendServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::binary::{serve_with, serve_with_stderr, terminate};
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, TestDatabase, with_key};

const MESSAGES: usize = 1000;
const KILLS: usize = 3;
const DELIVERY_CONCURRENCY: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sustained_sending_loses_nothing_d1_sqlite() {
    kill_9_during_sustained_sending(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sustained_sending_loses_nothing_d1_postgres() {
    kill_9_during_sustained_sending(Backend::Postgres).await;
}

/// The current server as clients see it: a generation number and its
/// channel (`None` while it is down).
type Current = (usize, Option<Channel>);

/// The Message-ID header of a raw message, as `<id@host>`.
pub(crate) fn message_id(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("a Message-ID header")
        .trim()
        .to_owned()
}

/// The environment of a server relaying to `sink` on `database`.
fn environment(database: &str, sink: &FaultSmtp) -> Vec<(&'static str, String)> {
    vec![
        ("POSTHORN_DATABASE_URL", database.to_owned()),
        ("POSTHORN_TRANSPORT", sink.url("?timeout=1")),
        (
            "POSTHORN_DELIVERY_CONCURRENCY",
            DELIVERY_CONCURRENCY.to_string(),
        ),
        ("POSTHORN_DELIVERY_LEASE_SECONDS", "2".into()),
        ("POSTHORN_RATE_LIMIT_PER_SECOND", "100000".into()),
        ("POSTHORN_RATE_LIMIT_BURST", "100000".into()),
        ("POSTHORN_DAILY_QUOTA", "0".into()),
    ]
}

async fn kill_9_during_sustained_sending(backend: Backend) {
    let Some((_database, url)) = TestDatabase::create(backend).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let sink = FaultSmtp::start(Script {
        data_delay: Duration::from_millis(20),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = environment(&url, &sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = serve_with(dir.path(), &env, &[]).await;
    let key = Arc::new(server.key());
    let (current, watcher) = watch::channel::<Current>((0, Some(server.channel().await)));

    // The load client: each message is sent until acknowledged, with the
    // same idempotency key on every retry.
    let acked: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let (acked_count, mut acked_seen) = watch::channel(0usize);
    let acked_count = Arc::new(acked_count);
    let client = tokio::spawn({
        let (acked, acked_count, key) = (acked.clone(), acked_count.clone(), key.clone());
        async move {
            futures::stream::iter(0..MESSAGES)
                .for_each_concurrent(32, |i| {
                    let (mut watcher, acked, acked_count, key) = (
                        watcher.clone(),
                        acked.clone(),
                        acked_count.clone(),
                        key.clone(),
                    );
                    async move {
                        loop {
                            let (generation, channel) = watcher
                                .wait_for(|(_, c)| c.is_some())
                                .await
                                .expect("the test runs")
                                .clone();
                            let request = v1::SendEmailRequest {
                                from_email: "hello@localhost".into(),
                                to: vec![format!("r{i}@example.com")],
                                subject: format!("Message {i}"),
                                text: "Sent while the server is being killed.".into(),
                                idempotency_key: format!("d1-{i}"),
                                ..Default::default()
                            };
                            let sent = SendServiceClient::new(channel.expect("up"))
                                .send_email(with_key(request, KeyHeader::Bearer, &key))
                                .await;
                            match sent {
                                Ok(response) => {
                                    acked.lock().unwrap().insert(i, response.into_inner().id);
                                    acked_count.send_modify(|n| *n += 1);
                                    return;
                                }
                                // The server went away: wait for the next one.
                                Err(_) => {
                                    watcher
                                        .wait_for(|(g, c)| *g > generation && c.is_some())
                                        .await
                                        .expect("the test runs");
                                }
                            }
                        }
                    }
                })
                .await;
        }
    });

    for kill in 1..=KILLS {
        acked_seen
            .wait_for(|n| *n >= kill * MESSAGES / (KILLS + 1))
            .await
            .unwrap();
        current.send_modify(|(_, channel)| *channel = None);
        eprintln!(
            "D1 {backend:?}: kill {kill} with {} acknowledged, {} at the relay",
            *acked_seen.borrow(),
            sink.accepted().len()
        );
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        server = serve_with(dir.path(), &env, &["--no-bootstrap"]).await;
        let channel = server.channel().await;
        current.send_modify(|(generation, c)| {
            *generation += 1;
            *c = Some(channel);
        });
    }
    tokio::time::timeout(Duration::from_secs(120), client)
        .await
        .expect("every message is acknowledged in time")
        .unwrap();
    let acked: HashMap<usize, String> = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), MESSAGES);

    // Every acknowledged message reaches the relay.
    let expected: HashSet<String> = acked
        .values()
        .map(|id| format!("<{id}@localhost>"))
        .collect();
    let delivered = tokio::time::timeout(Duration::from_secs(120), async {
        let mut n = MESSAGES;
        loop {
            sink.wait_for(n).await;
            let accepted = sink.accepted();
            let ids: HashSet<String> = accepted.iter().map(|a| message_id(&a.data)).collect();
            if ids.is_superset(&expected) {
                return accepted;
            }
            n = accepted.len() + 1;
        }
    })
    .await
    .expect("every acknowledged message is delivered");
    let ids: Vec<String> = delivered.iter().map(|a| message_id(&a.data)).collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), MESSAGES, "nothing unacknowledged was sent");
    let duplicates = ids.len() - MESSAGES;
    eprintln!(
        "D1 {backend:?}: {} accepted at the relay, {duplicates} duplicates",
        ids.len()
    );
    assert!(
        duplicates <= KILLS * DELIVERY_CONCURRENCY,
        "{duplicates} duplicates: more than could have been in an SMTP transaction at {KILLS} kills"
    );

    // The API shows each message once, and every one ends `sent`.
    let channel = server.channel().await;
    let mut sent = MessagesServiceClient::new(channel.clone())
        .watch_messages(with_key(
            v1::WatchMessagesRequest {
                after_cursor: 1,
                types: vec![v1::EventType::Sent as i32],
                ..Default::default()
            },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut sent_ids = HashSet::new();
    while sent_ids.len() < MESSAGES {
        let event = tokio::time::timeout(Duration::from_secs(60), sent.next())
            .await
            .expect("every message ends sent")
            .expect("the stream is open")
            .unwrap()
            .event
            .unwrap();
        sent_ids.insert(event.message_id);
    }
    let listed = MessagesServiceClient::new(channel)
        .list_messages(with_key(
            v1::ListMessagesRequest {
                page_size: 1000,
                ..Default::default()
            },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.messages.len(), MESSAGES);
    assert!(
        listed.next_page_token.is_empty(),
        "no more than {MESSAGES} stored"
    );
    let stored: HashSet<String> = listed.messages.into_iter().map(|m| m.id).collect();
    let acked_ids: HashSet<String> = acked.into_values().collect();
    assert_eq!(stored, acked_ids);
    assert_eq!(sent_ids, acked_ids);
    drop(sent);
    assert!(terminate(server.child).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_survive_restarts_and_fire_once_never_early_d12_sqlite() {
    scheduled_messages_survive_restarts(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_survive_restarts_and_fire_once_never_early_d12_postgres() {
    scheduled_messages_survive_restarts(Backend::Postgres).await;
}

async fn scheduled_messages_survive_restarts(backend: Backend) {
    const SCHEDULED: usize = 50;
    let Some((_database, url)) = TestDatabase::create(backend).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let sink = FaultSmtp::start(Script::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = environment(&url, &sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = serve_with(dir.path(), &env, &[]).await;
    let key = server.key();
    let send = |channel: Channel, i: usize, at: Option<prost_types::Timestamp>| {
        let key = key.clone();
        async move {
            let request = v1::SendEmailRequest {
                from_email: "hello@localhost".into(),
                to: vec![format!("r{i}@example.com")],
                subject: format!("Scheduled {i}"),
                text: "Not before its time.".into(),
                scheduled_at: at,
                ..Default::default()
            };
            SendServiceClient::new(channel)
                .send_email(with_key(request, KeyHeader::Bearer, &key))
                .await
                .expect("accepted")
                .into_inner()
        }
    };
    // Whole seconds, as the API stores them.
    let due = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 4, 0).unwrap();
    let at = prost_types::Timestamp {
        seconds: due.timestamp(),
        nanos: 0,
    };
    let channel = server.channel().await;
    for i in 0..SCHEDULED {
        let receipt = send(channel.clone(), i, Some(at)).await;
        assert_eq!(receipt.status, v1::MessageStatus::Scheduled as i32);
    }
    // Killed before they are due; the next process sends them.
    let mut server = server;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    assert!(
        chrono::Utc::now() < due,
        "the kill came before the due time"
    );
    let mut server = serve_with(dir.path(), &env, &["--no-bootstrap"]).await;
    tokio::time::timeout(Duration::from_secs(30), sink.wait_for(SCHEDULED))
        .await
        .expect("the scheduled messages are sent after the restart");
    // Killed again once they are sent; a message sent after the second
    // restart arrives, and the scheduled ones did not go out a second time.
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let server = serve_with(dir.path(), &env, &["--no-bootstrap"]).await;
    send(server.channel().await, SCHEDULED, None).await;
    tokio::time::timeout(Duration::from_secs(30), sink.wait_for(SCHEDULED + 1))
        .await
        .expect("the sentinel arrives");
    let accepted = sink.accepted();
    let ids: HashSet<String> = accepted.iter().map(|a| message_id(&a.data)).collect();
    assert_eq!(accepted.len(), SCHEDULED + 1, "each sent once");
    assert_eq!(ids.len(), SCHEDULED + 1);
    let early: Vec<_> = accepted[..SCHEDULED]
        .iter()
        .filter(|a| a.at < due)
        .map(|a| a.at)
        .collect();
    assert!(early.is_empty(), "sent before {due}: {early:?}");
    assert!(terminate(server.child).await.success());
}

/// Where D3 and D4 kill the process.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// The relay has the final dot and is still thinking about its 250
    /// (RFC 1047's window): whether the message went is unknown.
    AfterDotBefore250,
    /// The relay said 250 and the worker has not recorded it
    /// (`POSTHORN_TEST_FAILPOINT=after_reply_before_record`).
    After250BeforeRecord,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_final_dot_resends_once_with_the_same_message_id_d3_sqlite() {
    kill_mid_transaction(Backend::Sqlite, KillPoint::AfterDotBefore250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_final_dot_resends_once_with_the_same_message_id_d3_postgres() {
    kill_mid_transaction(Backend::Postgres, KillPoint::AfterDotBefore250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_250_before_recording_resends_once_and_records_one_sent_d4_sqlite() {
    kill_mid_transaction(Backend::Sqlite, KillPoint::After250BeforeRecord).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_250_before_recording_resends_once_and_records_one_sent_d4_postgres() {
    kill_mid_transaction(Backend::Postgres, KillPoint::After250BeforeRecord).await;
}

/// Kills the server at `point` while it relays one message, restarts it,
/// and checks that the message goes again once the lease has expired, with
/// the same Message-ID, that the timeline shows the ambiguous attempt, and
/// that it ends `sent` with exactly one `sent` event.
async fn kill_mid_transaction(backend: Backend, point: KillPoint) {
    let Some((_database, url)) = TestDatabase::create(backend).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let sink = FaultSmtp::start(Script {
        data_delay: match point {
            KillPoint::AfterDotBefore250 => Duration::from_millis(1500),
            KillPoint::After250BeforeRecord => Duration::ZERO,
        },
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(&url, &sink);
    env.retain(|(k, _)| *k != "POSTHORN_TRANSPORT" && *k != "POSTHORN_DELIVERY_LEASE_SECONDS");
    env.push(("POSTHORN_TRANSPORT", sink.url("?timeout=2")));
    env.push(("POSTHORN_DELIVERY_LEASE_SECONDS", "3".into()));
    let plain: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first_env = plain.clone();
    if let KillPoint::After250BeforeRecord = point {
        first_env.push(("POSTHORN_TEST_FAILPOINT", "after_reply_before_record"));
    }
    let (mut server, mut stderr) = serve_with_stderr(dir.path(), &first_env, &[]).await;
    let key = server.key();
    let request = v1::SendEmailRequest {
        from_email: "hello@localhost".into(),
        to: vec!["jane@example.com".into()],
        subject: "In the window".into(),
        text: "Was it sent or not?".into(),
        ..Default::default()
    };
    let id = SendServiceClient::new(server.channel().await)
        .send_email(with_key(request, KeyHeader::Bearer, &key))
        .await
        .expect("accepted")
        .into_inner()
        .id;
    match point {
        KillPoint::AfterDotBefore250 => sink.wait_for_dots(1).await,
        KillPoint::After250BeforeRecord => loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .expect("the failpoint is reached before stderr closes");
            if line.contains("failpoint after_reply_before_record") {
                assert_eq!(sink.accepted().len(), 1, "the relay said 250");
                break;
            }
        },
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    drop(stderr);

    let server = serve_with(dir.path(), &plain, &["--no-bootstrap"]).await;
    tokio::time::timeout(Duration::from_secs(30), sink.wait_for(2))
        .await
        .expect("sent again after the lease expired");
    let accepted = sink.accepted();
    assert_eq!(
        message_id(&accepted[0].data),
        message_id(&accepted[1].data),
        "the duplicate carries the same Message-ID"
    );
    assert_eq!(message_id(&accepted[1].data), format!("<{id}@localhost>"));

    // The timeline: queued, the ambiguous attempt, sent once.
    let mut stream = MessagesServiceClient::new(server.channel().await)
        .watch_messages(with_key(
            v1::WatchMessagesRequest {
                message_id: id.clone(),
                ..Default::default()
            },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while events
        .last()
        .is_none_or(|e: &v1::MessageEvent| e.r#type != v1::EventType::Sent as i32)
    {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the timeline reaches sent")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        events.push(event);
    }
    // An open stream would hold the graceful shutdown for its grace period.
    drop(stream);
    let kinds: Vec<i32> = events.iter().map(|e| e.r#type).collect();
    assert_eq!(
        kinds,
        [
            v1::EventType::Queued as i32,
            v1::EventType::Deferred as i32,
            v1::EventType::Sent as i32
        ],
        "{point:?}: {events:?}"
    );
    let ambiguous = events[1].details.clone().unwrap_or_default();
    assert_eq!(ambiguous.reason, "lease_expired", "{:?}", events[1]);
    assert!(
        ambiguous.smtp_reply.contains("may have arrived"),
        "{ambiguous:?}"
    );
    let message = MessagesServiceClient::new(server.channel().await)
        .get_message(with_key(
            v1::GetMessageRequest { id: id.clone() },
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(message.status, v1::MessageStatus::Sent as i32);
    let sent = message
        .events
        .iter()
        .filter(|e| e.r#type == v1::EventType::Sent as i32)
        .count();
    assert_eq!(sent, 1, "one sent event: {:?}", message.events);
    assert_eq!(message.recipients[0].attempts, 2);
    assert!(terminate(server.child).await.success());
}
