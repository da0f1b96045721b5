//! Delivery through an SMTP relay (`smtp://`): FaultSmtp for scripted
//! replies and failures, aiosmtpd as an independent server, and Python's
//! email package as an independent parser of what arrived.

use std::path::PathBuf;
use std::time::Duration;

use posthorn::proto::v1;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::delivery::{messages, next_event, send, watch};
use crate::fault_smtp::{FaultSmtp, Script};
use crate::helpers::{Backend, KeyHeader, TestApp, try_spawn_app_with, with_key};
use crate::send::{get, inline};

on_both_databases_with!(
    a_relayed_message_arrives_intact_and_the_stream_shows_queued_then_sent,
    a_451_then_250_is_deferred_then_sent_with_both_attempts_in_the_timeline,
    each_recipient_keeps_its_own_rcpt_reply,
    a_reply_to_data_applies_to_every_recipient_of_the_envelope,
    an_address_suppressed_while_its_message_waits_for_a_retry_is_not_tried_again,
);

/// A server delivering to `url` (retries after `retry` seconds);
/// `None` when the backend is not configured.
async fn relay_app(backend: Backend, url: String, retry: u64) -> Option<TestApp> {
    let app = try_spawn_app_with(backend, move |s| {
        s.deliver = true;
        s.transport = url;
        s.retry.first = Duration::from_secs(retry);
    })
    .await;
    if app.is_none() {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
    }
    app
}

fn to(addresses: &[&str]) -> v1::SendEmailRequest {
    v1::SendEmailRequest {
        to: addresses.iter().map(|a| a.to_string()).collect(),
        ..inline()
    }
}

/// Events of message `id` after its `queued`, until `n` have arrived.
async fn events_after_queued(app: &TestApp, id: &str, n: usize) -> Vec<v1::MessageEvent> {
    let key = &app.account_a.key;
    let request = v1::WatchMessagesRequest {
        message_id: id.to_owned(),
        ..Default::default()
    };
    let mut stream = watch(app, key, request).await;
    let queued = next_event(&mut stream).await;
    assert_eq!(queued.r#type, v1::EventType::Queued as i32, "{queued:?}");
    let mut events = Vec::new();
    while events.len() < n {
        events.push(next_event(&mut stream).await);
    }
    events
}

fn kind(event: &v1::MessageEvent) -> v1::EventType {
    v1::EventType::try_from(event.r#type).expect("a known type")
}

async fn message_json(app: &TestApp, id: &str) -> Value {
    let (status, body) = get(app, &app.account_a.key, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["message"].clone()
}

async fn raw_content(app: &TestApp, id: &str) -> Vec<u8> {
    let request = v1::GetMessageContentRequest { id: id.to_owned() };
    messages(app)
        .get_message_content(with_key(request, KeyHeader::Bearer, &app.account_a.key))
        .await
        .expect("content")
        .into_inner()
        .raw
}

async fn a_relayed_message_arrives_intact_and_the_stream_shows_queued_then_sent(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = relay_app(backend, sink.url(""), 60).await else {
        return;
    };
    let mut request = to(&["Jane Doe <jane@example.com>"]);
    request.cc = vec!["Zoë Ünicode <zoe@example.com>".into()];
    request.bcc = vec!["audit@example.com".into()];
    request.text = "Thanks.\n.\n..two dots\nThe end.".into();
    let id = send(&app, &app.account_a.key, request).await;

    let events = events_after_queued(&app, &id, 3).await;
    let mut recipients: Vec<&str> = events.iter().map(|e| e.recipient.as_str()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["audit@example.com", "jane@example.com", "zoe@example.com"]
    );
    for event in &events {
        assert_eq!(kind(event), v1::EventType::Sent, "{event:?}");
        let details = event.details.as_ref().expect("details");
        assert_eq!(details.smtp_code, 250);
        assert_eq!(details.enhanced_code, "2.0.0");
        assert_eq!(details.remote_mta, sink.addr.to_string());
    }

    // One envelope for all three; the bytes are the stored MIME exactly, so
    // the dot lines survived stuffing and Bcc is only in the envelope.
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].from, "hello@acme.example");
    assert_eq!(
        accepted[0].to,
        ["jane@example.com", "zoe@example.com", "audit@example.com"]
    );
    assert_eq!(accepted[0].data, raw_content(&app, &id).await);
    let text = String::from_utf8_lossy(&accepted[0].data).to_ascii_lowercase();
    assert!(!text.contains("audit@"), "bcc stays out of the message");

    let message = message_json(&app, &id).await;
    assert_eq!(message["status"], "sent", "{message}");
    assert_eq!(sink.connections(), 1);
}

async fn a_451_then_250_is_deferred_then_sent_with_both_attempts_in_the_timeline(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = relay_app(backend, sink.url(""), 1).await else {
        return;
    };
    let id = send(&app, &app.account_a.key, to(&["once451@example.com"])).await;
    let events = events_after_queued(&app, &id, 2).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    let first = events[0].details.as_ref().expect("details");
    assert_eq!(
        (first.smtp_code, first.enhanced_code.as_str()),
        (451, "4.3.0")
    );
    assert!(
        first.smtp_reply.contains("temporary local problem"),
        "{first:?}"
    );
    assert_eq!(kind(&events[1]), v1::EventType::Sent, "{events:?}");
    assert_eq!(events[1].details.as_ref().unwrap().smtp_code, 250);

    let message = message_json(&app, &id).await;
    assert_eq!(message["status"], "sent");
    let types: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["queued", "deferred", "sent"]);
    assert_eq!(message["recipients"][0]["attempts"], 2, "{message}");
    assert_eq!(sink.accepted().len(), 1);
}

async fn an_address_suppressed_while_its_message_waits_for_a_retry_is_not_tried_again(
    backend: Backend,
) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = relay_app(backend, sink.url(""), 2).await else {
        return;
    };
    let key = &app.account_a.key;
    let id = send(&app, key, to(&["once451@example.com"])).await;
    let request = v1::WatchMessagesRequest {
        message_id: id.clone(),
        ..Default::default()
    };
    let mut stream = watch(&app, key, request).await;
    assert_eq!(kind(&next_event(&mut stream).await), v1::EventType::Queued);
    assert_eq!(
        kind(&next_event(&mut stream).await),
        v1::EventType::Deferred
    );
    // Suppressed during the retry's wait (two seconds).
    let response = app
        .http
        .post(format!("{}/v1/suppressions", app.base_url))
        .header("x-api-key", key)
        .json(&serde_json::json!({"email": "once451@example.com", "reason": "complained"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let left_out = next_event(&mut stream).await;
    assert_eq!(kind(&left_out), v1::EventType::Suppressed, "{left_out:?}");
    let reason = &left_out.details.as_ref().expect("details").reason;
    assert!(
        reason.contains("suppression list") && reason.contains("after the message was accepted"),
        "{reason}"
    );
    let message = message_json(&app, &id).await;
    assert_eq!(message["status"], "suppressed", "{message}");
    assert_eq!(message["recipients"][0]["status"], "suppressed");
    assert_eq!(
        message["recipients"][0]["attempts"], 1,
        "one attempt (the 451), no second: {message}"
    );
    assert_eq!(
        sink.accepted().len(),
        0,
        "nothing reached the relay after the 451"
    );
}

async fn each_recipient_keeps_its_own_rcpt_reply(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = relay_app(backend, sink.url(""), 600).await else {
        return;
    };
    let addresses = [
        "jane@example.com",
        "nouser@example.com",
        "policy@example.com",
        "tempfail@example.com",
    ];
    let id = send(&app, &app.account_a.key, to(&addresses)).await;
    let events = events_after_queued(&app, &id, 4).await;
    let of = |recipient: &str| {
        let event = events
            .iter()
            .find(|e| e.recipient == recipient)
            .expect("an event per recipient");
        let details = event.details.clone().expect("details");
        (
            kind(event),
            details.smtp_code,
            details.enhanced_code,
            details.reason,
        )
    };
    assert_eq!(
        of("jane@example.com"),
        (v1::EventType::Sent, 250, "2.0.0".into(), "".into())
    );
    assert_eq!(
        of("nouser@example.com"),
        (
            v1::EventType::Bounced,
            550,
            "5.1.1".into(),
            "hard_bounce".into()
        )
    );
    assert_eq!(
        of("policy@example.com"),
        (
            v1::EventType::Bounced,
            550,
            "5.7.1".into(),
            "soft_bounce".into()
        )
    );
    assert_eq!(
        of("tempfail@example.com"),
        (v1::EventType::Deferred, 450, "4.2.0".into(), "".into())
    );
    // Only the accepted recipient is in the delivered envelope.
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].to, ["jane@example.com"]);
    let message = message_json(&app, &id).await;
    let states: Vec<(&str, &str)> = message["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("jane@example.com", "sent"),
            ("nouser@example.com", "bounced"),
            ("policy@example.com", "bounced"),
            ("tempfail@example.com", "deferred"),
        ]
    );

    // The hard bounce suppressed its address, in the bounce's transaction;
    // the policy refusal and the deferral suppressed nothing.
    let key = &app.account_a.key;
    assert_eq!(
        crate::suppressions::suppression_of(&app, "NoUser%40example.com").await,
        ("bounced".into(), "bounce".into(), id.clone())
    );
    for other in ["policy", "tempfail", "jane"] {
        let (status, body) = get(
            &app,
            key,
            &format!("/v1/suppressions/{other}%40example.com"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other}: {body}");
    }

    // The next send leaves it out at accept: recorded suppressed, with an
    // event, while the other recipient is sent to.
    let again = send(&app, key, to(&["jane@example.com", "nouser@example.com"])).await;
    let events = events_after_queued(&app, &again, 2).await;
    let suppressed = events
        .iter()
        .find(|e| e.recipient == "nouser@example.com")
        .expect("an event for the suppressed recipient");
    assert_eq!(kind(suppressed), v1::EventType::Suppressed, "{events:?}");
    let reason = &suppressed.details.as_ref().expect("details").reason;
    assert!(
        reason.contains("suppression list") && reason.contains("bounced"),
        "{reason}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.recipient == "jane@example.com" && kind(e) == v1::EventType::Sent),
        "{events:?}"
    );
    let message = message_json(&app, &again).await;
    assert_eq!(message["status"], "sent", "{message}");
    assert_eq!(
        message["recipients"][1]["status"], "suppressed",
        "{message}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        accepted[1].to,
        ["jane@example.com"],
        "the suppressed address is not in the envelope"
    );
}

async fn a_reply_to_data_applies_to_every_recipient_of_the_envelope(backend: Backend) {
    let sink = FaultSmtp::start(Script::default()).await;
    let Some(app) = relay_app(backend, sink.url(""), 600).await else {
        return;
    };
    let key = &app.account_a.key;
    let rejected = send(&app, key, to(&["dataperm@example.com", "jane@example.com"])).await;
    let deferred = send(&app, key, to(&["datatemp@example.com", "jim@example.com"])).await;
    for event in events_after_queued(&app, &rejected, 2).await {
        assert_eq!(kind(&event), v1::EventType::Bounced, "{event:?}");
        let details = event.details.unwrap();
        assert_eq!(
            (details.smtp_code, details.enhanced_code.as_str()),
            (554, "5.6.0")
        );
    }
    for event in events_after_queued(&app, &deferred, 2).await {
        assert_eq!(kind(&event), v1::EventType::Deferred, "{event:?}");
        assert_eq!(event.details.unwrap().smtp_code, 451);
    }
    assert!(sink.accepted().is_empty());
    assert_eq!(message_json(&app, &rejected).await["status"], "bounced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_without_noop_and_one_the_relay_dropped_is_replaced() {
    let sink = FaultSmtp::start(Script::default()).await;
    let app = relay_app(Backend::Sqlite, sink.url("?max_connections=1"), 600)
        .await
        .expect("SQLite");
    let key = &app.account_a.key;
    // One after another, so the pool's single connection carries them in
    // order; the relay closes the connection after the second.
    for (n, address) in [
        "a@example.com",
        "drop250@example.com",
        "b@example.com",
        "c@example.com",
    ]
    .iter()
    .enumerate()
    {
        let id = send(&app, key, to(&[address])).await;
        let events = events_after_queued(&app, &id, 1).await;
        assert_eq!(
            kind(&events[0]),
            v1::EventType::Sent,
            "message {n}: {events:?}"
        );
    }
    assert_eq!(sink.accepted().len(), 4);
    assert_eq!(
        sink.connections(),
        2,
        "one reused connection, one replacement"
    );
    assert_eq!(sink.count("EHLO"), 2);
    assert_eq!(sink.count("NOOP"), 0, "no NOOP before a reuse");
    assert_eq!(sink.count("RSET"), 0, "completed transactions need no RSET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_uses_the_configured_credentials_and_a_535_defers_without_showing_them() {
    let script = Script {
        auth: Some(("relay-user".into(), "s3cret pass".into())),
        ..Script::default()
    };
    let sink = FaultSmtp::start(script).await;
    let good = format!("smtp://relay-user:s3cret%20pass@{}?tls=none", sink.addr);
    let app = relay_app(Backend::Sqlite, good, 600).await.expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Sent, "{events:?}");
    assert_eq!(sink.count("AUTH"), 1);

    let bad = format!("smtp://relay-user:wrong-s3cret@{}?tls=none", sink.addr);
    let app = relay_app(Backend::Sqlite, bad, 600).await.expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(
        kind(&events[0]),
        v1::EventType::Deferred,
        "a refused login is the relay's configuration, not a bounce: {events:?}"
    );
    assert_eq!(events[0].details.as_ref().unwrap().smtp_code, 535);
    let message = message_json(&app, &id).await.to_string();
    assert!(!message.contains("s3cret"), "{message}");

    // No credentials where the relay wants them: 530 to MAIL defers too.
    let app = relay_app(Backend::Sqlite, sink.url("?tls=none"), 600)
        .await
        .expect("SQLite");
    let event = first_event(&app).await;
    assert_eq!(kind(&event), v1::EventType::Deferred, "{event:?}");
    assert_eq!(event.details.unwrap().smtp_code, 530);
    assert_eq!(sink.accepted().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_greeting_a_drop_after_the_dot_and_a_hung_relay_all_defer() {
    let busy = FaultSmtp::start(Script {
        banner: "421 4.3.2 too busy, come back later".into(),
        ..Script::default()
    })
    .await;
    let app = relay_app(Backend::Sqlite, busy.url(""), 600)
        .await
        .expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    assert_eq!(events[0].details.as_ref().unwrap().smtp_code, 421);

    let sink = FaultSmtp::start(Script::default()).await;
    let app = relay_app(Backend::Sqlite, sink.url("?timeout=1"), 600)
        .await
        .expect("SQLite");
    for address in ["dropdot@example.com", "hang@example.com"] {
        let id = send(&app, &app.account_a.key, to(&[address])).await;
        let events = events_after_queued(&app, &id, 1).await;
        assert_eq!(
            kind(&events[0]),
            v1::EventType::Deferred,
            "{address}: {events:?}"
        );
        let details = events[0].details.as_ref().unwrap();
        assert_eq!(details.smtp_code, 0, "no reply: {details:?}");
        assert!(
            !details.smtp_reply.is_empty(),
            "says what happened: {details:?}"
        );
    }
    // The hung connection was given up; the next message gets a fresh one.
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Sent, "{events:?}");
}

/// More of D6: a full mailbox (452 4.2.2), a connection cut in the middle
/// of DATA, and a relay that is not there at all all defer, each with what
/// happened; the next message on a healthy relay still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_a_cut_in_data_and_a_refused_connection_all_defer_d6() {
    let sink = FaultSmtp::start(Script::default()).await;
    let app = relay_app(Backend::Sqlite, sink.url("?timeout=2"), 600)
        .await
        .expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["full@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    let details = events[0].details.clone().unwrap();
    assert_eq!(
        (details.smtp_code, details.enhanced_code.as_str()),
        (452, "4.2.2")
    );

    let id = send(&app, &app.account_a.key, to(&["cutdata@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    let details = events[0].details.clone().unwrap();
    assert_eq!(details.smtp_code, 0, "no reply: {details:?}");
    assert!(!details.smtp_reply.is_empty(), "{details:?}");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Sent, "{events:?}");
    assert!(sink.accepted().iter().all(|a| a.to == ["jane@example.com"]));

    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = relay_app(Backend::Sqlite, format!("smtp://127.0.0.1:{port}"), 600)
        .await
        .expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    let details = events[0].details.clone().unwrap();
    assert!(details.smtp_reply.contains("cannot connect"), "{details:?}");
}

/// The Python of the test tools (scripts/test-tools.sh installs aiosmtpd
/// into it).
pub(crate) fn python() -> PathBuf {
    let python = std::env::var_os("POSTHORN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv/bin/python")
        });
    let ready = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ready,
        "{} cannot import aiosmtpd: run scripts/test.sh, which installs the test tools",
        python.display()
    );
    python
}

/// What Python's email package reads in the message file `path`
/// (`tests/peers/parse_mime.py`).
pub(crate) fn parse_mime(path: &std::path::Path) -> Value {
    let parsed = std::process::Command::new(python())
        .arg(peer_script("parse_mime.py"))
        .arg(path)
        .output()
        .expect("parse");
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    serde_json::from_slice(&parsed.stdout).expect("json")
}

/// Runs the peer script `name` with the test tools' Python, `args` and
/// `input` on its stdin; its stdout is one JSON object.
pub(crate) async fn python_json(name: &str, args: &[&str], input: &[u8]) -> Value {
    use tokio::io::AsyncWriteExt;

    let mut child = tokio::process::Command::new(python())
        .arg(peer_script(name))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input)
        .await
        .expect("write the script's input");
    drop(stdin);
    let output = child.wait_with_output().await.expect("run the script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {stderr}"))
}

pub(crate) fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// aiosmtpd on a free port (`mode`: nothing, or `starttls`/`smtps` with a
/// certificate and key), its spool directory, and its port.
struct Aiosmtpd {
    _process: tokio::process::Child,
    spool: tempfile::TempDir,
    port: u16,
}

async fn aiosmtpd(mode: &[&str]) -> Aiosmtpd {
    let spool = tempfile::tempdir().expect("temp dir");
    let mut process = tokio::process::Command::new(python())
        .arg(peer_script("aiosmtpd_peer.py"))
        .arg(spool.path())
        .args(mode)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start aiosmtpd");
    let mut lines = tokio::io::BufReader::new(process.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("aiosmtpd starts")
        .expect("reads")
        .expect("a line");
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .expect("listening PORT");
    Aiosmtpd {
        _process: process,
        spool,
        port,
    }
}

/// A test CA and a certificate it signed for 127.0.0.1 (openssl):
/// `(directory, ca.pem, cert.pem, key.pem)`.
fn certificates() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Posthorn test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "cert.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    (dir, ca, cert, key)
}

async fn first_event(app: &TestApp) -> v1::MessageEvent {
    let id = send(app, &app.account_a.key, to(&["jane@example.com"])).await;
    events_after_queued(app, &id, 1).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_smtps_verify_the_relay_certificate_by_the_policy() {
    let (_dir, ca, cert, key) = certificates();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // This server refuses mail until STARTTLS: a `sent` proves encryption.
    let starttls = aiosmtpd(&["starttls", cert, key]).await;
    let ca = ca.display();
    for (query, expected) in [
        (format!("?tls=required&ca_file={ca}"), v1::EventType::Sent),
        // Opportunistic TLS encrypts without verifying, as MTAs do.
        (String::new(), v1::EventType::Sent),
        // Required without trusting the test CA: no delivery, no bounce.
        ("?tls=required".to_owned(), v1::EventType::Deferred),
    ] {
        let url = format!("smtp://127.0.0.1:{}{query}", starttls.port);
        let app = relay_app(Backend::Sqlite, url, 600).await.expect("SQLite");
        let event = first_event(&app).await;
        assert_eq!(kind(&event), expected, "{query}: {event:?}");
        if expected == v1::EventType::Deferred {
            let details = event.details.unwrap();
            assert!(
                details.smtp_reply.contains("STARTTLS failed"),
                "{details:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(starttls.spool.path()).unwrap().count(),
        4,
        "two messages, each with its envelope"
    );

    let smtps = aiosmtpd(&["smtps", cert, key]).await;
    let url = format!("smtps://127.0.0.1:{}?ca_file={ca}", smtps.port);
    let app = relay_app(Backend::Sqlite, url, 600).await.expect("SQLite");
    let event = first_event(&app).await;
    assert_eq!(kind(&event), v1::EventType::Sent, "{event:?}");
    assert_eq!(
        event.details.unwrap().remote_mta,
        format!("127.0.0.1:{}", smtps.port)
    );

    // A relay that offers no STARTTLS gets nothing when TLS is required.
    let plain = FaultSmtp::start(Script::default()).await;
    let app = relay_app(Backend::Sqlite, plain.url("?tls=required"), 600)
        .await
        .expect("SQLite");
    let event = first_event(&app).await;
    assert_eq!(kind(&event), v1::EventType::Deferred, "{event:?}");
    assert!(
        event
            .details
            .unwrap()
            .smtp_reply
            .contains("does not offer STARTTLS")
    );
    assert_eq!(plain.count("MAIL"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_receives_the_message_intact_and_python_parses_it_cleanly() {
    let peer = aiosmtpd(&[]).await;
    let (spool, port) = (peer.spool.path(), peer.port);
    let url = format!("smtp://127.0.0.1:{port}");
    let app = relay_app(Backend::Sqlite, url, 600).await.expect("SQLite");
    let mut request = to(&["Jane Doe <jane@example.com>"]);
    request.cc = vec!["Zoë Ünicode <zoe@example.com>".into()];
    request.bcc = vec!["audit@example.com".into()];
    request.reply_to = vec!["support@acme.example".into()];
    request.subject = "Grüße — your receipt №42".into();
    request.text = "Thanks.\n.\nA line that is a single dot stays.".into();
    request.html = "<p>Thanks, <b>Zoë</b>.</p><img src=\"cid:logo\">".into();
    request.headers.insert("X-Order".into(), "1042".into());
    request.attachments = vec![
        v1::Attachment {
            filename: "receipt.pdf".into(),
            content_type: "application/pdf".into(),
            content: b"%PDF-1.4 not really".to_vec(),
            ..Default::default()
        },
        v1::Attachment {
            filename: "logo.png".into(),
            content_type: "image/png".into(),
            content: vec![0x89, b'P', b'N', b'G'],
            content_id: "logo".into(),
        },
    ];
    let id = send(&app, &app.account_a.key, request).await;
    let events = events_after_queued(&app, &id, 3).await;
    assert!(
        events.iter().all(|e| kind(e) == v1::EventType::Sent),
        "{events:?}"
    );
    assert_eq!(
        events[0].details.as_ref().unwrap().smtp_reply,
        "2.0.0 stored by aiosmtpd"
    );

    let envelope: Value =
        serde_json::from_slice(&std::fs::read(spool.join("1.json")).expect("envelope"))
            .expect("json");
    assert_eq!(envelope["from"], "hello@acme.example");
    assert_eq!(
        envelope["to"],
        serde_json::json!(["jane@example.com", "zoe@example.com", "audit@example.com"])
    );
    let arrived = std::fs::read(spool.join("1.eml")).expect("message");
    assert_eq!(
        arrived,
        raw_content(&app, &id).await,
        "arrived byte for byte"
    );

    let parsed = parse_mime(&spool.join("1.eml"));
    assert_eq!(parsed["defects"], serde_json::json!([]), "{parsed}");
    assert_eq!(parsed["subject"], "Grüße — your receipt №42");
    assert_eq!(parsed["to"], "Jane Doe <jane@example.com>");
    assert_eq!(parsed["cc"], "Zoë Ünicode <zoe@example.com>");
    assert_eq!(parsed["bcc"], Value::Null);
    assert_eq!(parsed["reply_to"], "support@acme.example");
    assert_eq!(parsed["x_order"], "1042");
    let header = message_json(&app, &id).await["message_id_header"].clone();
    assert_eq!(parsed["message_id"], header);
    let parts = parsed["parts"].as_array().expect("parts");
    let find = |content_type: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == content_type)
            .unwrap_or_else(|| panic!("a {content_type} part in {parsed}"))
    };
    // Python keeps a 7-bit part's CRLF line ends.
    let text = find("text/plain")["content"]
        .as_str()
        .unwrap()
        .replace("\r\n", "\n");
    assert!(
        text.contains("Thanks.\n.\nA line that is a single dot stays."),
        "{text:?}"
    );
    assert!(
        find("text/html")["content"]
            .as_str()
            .unwrap()
            .contains("<b>Zoë</b>")
    );
    assert_eq!(find("application/pdf")["filename"], "receipt.pdf");
    assert_eq!(
        find("application/pdf")["content"],
        hex::encode(b"%PDF-1.4 not really")
    );
    assert_eq!(find("image/png")["content_id"], "<logo>");
    find("multipart/related");
    find("multipart/alternative");
}

/// D7's 535: a refused login is the relay's configuration, the same for
/// every message. The first refusal opens the circuit: the messages behind
/// it defer with that refusal without another login, instead of each one
/// hammering the relay with bad credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_535_pauses_the_relay_instead_of_logging_in_for_every_message_d7() {
    let sink = FaultSmtp::start(Script {
        auth: Some(("relay-user".into(), "right".into())),
        ..Script::default()
    })
    .await;
    let bad = format!(
        "smtp://relay-user:wrong@{}?tls=none&max_connections=2",
        sink.addr
    );
    let app = relay_app(Backend::Sqlite, bad, 600).await.expect("SQLite");
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            send(
                &app,
                &app.account_a.key,
                to(&[&format!("r{i}@example.com")]),
            )
            .await,
        );
    }
    for id in &ids {
        let events = events_after_queued(&app, id, 1).await;
        assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
        let details = events[0].details.clone().unwrap();
        assert_eq!(details.smtp_code, 535, "{details:?}");
    }
    assert!(
        sink.count("AUTH") <= 2,
        "{} logins for 6 messages: at most one per connection before the circuit opened",
        sink.count("AUTH")
    );
    assert!(sink.accepted().is_empty());
}

/// tls=opportunistic against a relay that offers STARTTLS and then fails
/// it: the session is opened again in plain text and the message goes;
/// tls=required defers instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_tls_falls_back_to_plain_text_when_starttls_fails() {
    let sink = FaultSmtp::start(Script {
        starttls: Some("454 4.7.0 TLS not available due to temporary reason".into()),
        ..Script::default()
    })
    .await;
    let app = relay_app(Backend::Sqlite, sink.url("?tls=opportunistic"), 600)
        .await
        .expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Sent, "{events:?}");
    assert_eq!(sink.count("STARTTLS"), 1);
    assert_eq!(
        sink.connections(),
        2,
        "one for the failed STARTTLS, one plain"
    );

    let app = relay_app(Backend::Sqlite, sink.url("?tls=required"), 600)
        .await
        .expect("SQLite");
    let id = send(&app, &app.account_a.key, to(&["jane@example.com"])).await;
    let events = events_after_queued(&app, &id, 1).await;
    assert_eq!(kind(&events[0]), v1::EventType::Deferred, "{events:?}");
    assert_eq!(events[0].details.as_ref().unwrap().smtp_code, 454);
    assert_eq!(sink.accepted().len(), 1, "nothing went in plain text");
}
