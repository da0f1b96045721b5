//! Storage that refuses writes, with the real server.
//!
//! D9: another process holds SQLite's write lock, or a PostgreSQL session
//! a lock on the messages table. Sends, and writes through the connection
//! pool, wait out the lock timeout (5 s) and are then refused as retryable
//! instead of waiting as long as the lock; none is acknowledged while the
//! lock is held, and writing resumes by itself once it is let go.
//!
//! D10: the disk under the SQLite database fills up. The real `posthorn`
//! binary runs with its database on a small tmpfs of its own (in a user
//! and mount namespace of its own made by `unshare`, so the test needs no
//! root and leaves no mount behind), delivering
//! through the file transport to a directory elsewhere. Sends with
//! attachments go on until the disk is full; every refusal must be
//! retryable and leave nothing of its message behind, everything
//! acknowledged must stay readable, and once space is freed sending and
//! delivering go on without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::binary::{clean_environment, start_command};
use crate::helpers::{Backend, TestApp, json_reason, spawn_app, try_spawn_app};
use crate::send::{get, inline_json, post};

/// The tmpfs, and the file taking most of it until the test frees it.
const DISK: &str = "32m";
const FILLER_BYTES: usize = 16 << 20;
const ATTACHMENT_BYTES: usize = 1 << 20;

/// Mounts a tmpfs of `$3` on `$1`, takes `$4` bytes of it with the filler,
/// and runs `$2 serve` there.
const IN_A_SMALL_DISK: &str = r#"mount -t tmpfs -o size="$3" posthorn-d10 "$1" && cd "$1" && head -c "$4" /dev/zero > filler && exec "$2" serve"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_as_retryable_keeps_what_was_acknowledged_and_recovers_d10() {
    let mount = tempfile::tempdir().unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(IN_A_SMALL_DISK)
        .arg("sh")
        .arg(mount.path())
        .arg(env!("CARGO_BIN_EXE_posthorn"))
        .arg(DISK)
        .arg(FILLER_BYTES.to_string())
        .kill_on_drop(true);
    clean_environment(&mut command);
    command
        .env("POSTHORN_LISTEN", "127.0.0.1:0")
        .env("POSTHORN_DATABASE_URL", "sqlite://posthorn.db")
        .env("POSTHORN_SQLITE_LOG_MB", "16")
        .env(
            "POSTHORN_TRANSPORT",
            format!("file://{}", outbox.path().display()),
        )
        // A delivery whose record the full disk refused runs again once
        // its lease expires; a failed write to the outbox retries soon.
        .env("POSTHORN_DELIVERY_LEASE_SECONDS", "2")
        .env("POSTHORN_RETRY_INITIAL_SECONDS", "1")
        .stderr(std::process::Stdio::null());
    let server = start_command(command, false).await;
    assert!(
        !server.addr.is_empty(),
        "the server did not start in its own tmpfs (`unshare --user --map-root-user --mount` must work here)"
    );
    let key = server.key();
    let pid = server.child.id().expect("running");
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let attachment = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; ATTACHMENT_BYTES]);
    let send = |subject: String| {
        let request = http
            .post(format!("{base}/v1/send"))
            .header("x-api-key", &key)
            .json(&json!({
                "from_email": "reports@localhost", "to": ["ops@example.com"],
                "subject": subject, "text": "The report is attached.",
                "attachments": [{"filename": "report.bin", "content": attachment}],
            }));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, response.json::<Value>().await.unwrap())
        }
    };

    // Every delivery from here on, live.
    let watch = http
        .get(format!("{base}/v1/messages:watch?types=delivered"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);

    // Send until the disk refuses, then a few more: each answer is an
    // acknowledgement or a retryable refusal, never anything else.
    let mut acknowledged = BTreeMap::new();
    let mut refused = 0;
    for n in 0..64 {
        let subject = format!("report {n}");
        let (status, retry_after, body) = send(subject.clone()).await;
        match status {
            StatusCode::OK => {
                acknowledged.insert(subject, body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(json_reason(&body), "STORAGE_UNAVAILABLE", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("{subject}: {other} {body}"),
        }
    }
    assert_eq!(refused, 3, "the disk never filled");
    assert!(
        !acknowledged.is_empty(),
        "nothing fitted before the disk filled"
    );

    // Full as it is, every acknowledged message reads back whole.
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).header("x-api-key", &key);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    for id in acknowledged.values() {
        let (status, message) = get(format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        assert_eq!(
            message["message"]["attachments"][0]["size_bytes"],
            ATTACHMENT_BYTES.to_string()
        );
    }

    // Space comes back (the filler is reached through the server's own
    // view of the file system); the next send is taken without a restart.
    let filler = Path::new(&format!("/proc/{pid}/root"))
        .join(mount.path().strip_prefix("/").unwrap())
        .join("filler");
    std::fs::remove_file(&filler).expect("the filler is in the server's tmpfs");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = send("after the disk was freed".to_owned()).await;
        if status == StatusCode::OK {
            acknowledged.insert(
                "after the disk was freed".to_owned(),
                body["id"].as_str().unwrap().to_owned(),
            );
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "sending did not resume: {body}");
    }

    // Exactly the acknowledged messages exist: a refused send left nothing.
    let (_, listed) = get("/v1/messages?page_size=1000".to_owned()).await;
    let stored: BTreeSet<String> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, acknowledged.keys().cloned().collect());

    // And each is delivered, the file transport writing one file per
    // message: the watch opened before the first send shows a `delivered`
    // event for every one.
    let mut waiting: BTreeSet<&String> = acknowledged.values().collect();
    let mut events = watch.bytes_stream();
    let mut buffer = Vec::new();
    while !waiting.is_empty() {
        let Ok(chunk) = tokio::time::timeout(Duration::from_secs(60), events.next()).await else {
            let mut stuck = Vec::new();
            for id in &waiting {
                stuck.push(get(format!("/v1/messages/{id}")).await.1);
            }
            panic!("not delivered after the disk was freed: {stuck:#?}");
        };
        let chunk = chunk.expect("the stream stays open").unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Value = serde_json::from_slice(&buffer[..end]).unwrap();
            buffer.drain(..=end);
            let id = line["event"]["message_id"].as_str().unwrap().to_owned();
            waiting.remove(&id);
        }
    }
    for (subject, id) in &acknowledged {
        assert!(
            outbox.path().join(format!("{id}.eml")).exists(),
            "{subject}"
        );
    }
}

/// The file of a test app's SQLite database, as its pool opened it.
fn sqlite_file(app: &TestApp) -> PathBuf {
    app.store_connection()
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_refuses_sends_as_retryable_until_it_is_let_go_d9_sqlite() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let path = sqlite_file(&app);
    // Another process's connection, as an operator's `sqlite3` would hold it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let mut subject = 0;
    let mut send = async || {
        subject += 1;
        let mut body = inline_json();
        body["subject"] = json!(format!("send {subject}"));
        post(&app, key, "/v1/send", &body, &[]).await
    };
    for _ in 0..2 {
        let (status, headers, body) = send().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(json_reason(&body), "STORAGE_UNAVAILABLE", "{body}");
        assert_eq!(headers["retry-after"], "1");
    }

    // Writes that go through the connection pool, not the writer thread,
    // are refused the same way, not as internal errors.
    let template =
        json!({"slug": "locked-out", "name": "Locked out", "subject": "s", "html": "<p>x</p>"});
    let (status, headers, body) = post(&app, key, "/v1/templates", &template, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(json_reason(&body), "STORAGE_UNAVAILABLE", "{body}");
    assert_eq!(headers["retry-after"], "1");

    other.execute_batch("COMMIT").unwrap();
    let (status, _, body) = post(&app, key, "/v1/templates", &template, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Only the send made after the lock was let go is stored.
    let (_, listed) = get(&app, key, "/v1/messages?page_size=10").await;
    let subjects: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["send 3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lock_held_elsewhere_refuses_sends_as_retryable_until_it_is_let_go_d9_postgres() {
    let Some(app) = try_spawn_app(Backend::Postgres).await else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let key = &app.account_a.key;
    use sea_orm::{ConnectionTrait, TransactionTrait};
    // Another session, as an operator's `psql` would hold it.
    let other = sea_orm::Database::connect(app.database_url.as_str())
        .await
        .unwrap();
    let held = other.begin().await.unwrap();
    held.execute_unprepared("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // Refused once the lock timeout passes, not after the lock is let go
    // (which here would be never).
    let (status, headers, body) = tokio::time::timeout(
        Duration::from_secs(30),
        post(&app, key, "/v1/send", &inline_json(), &[]),
    )
    .await
    .expect("the send is answered while the lock is still held");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(json_reason(&body), "STORAGE_UNAVAILABLE", "{body}");
    assert_eq!(headers["retry-after"], "1");

    held.commit().await.unwrap();
    let (status, _, body) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = get(&app, key, "/v1/messages?page_size=10").await;
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_can_no_longer_be_flushed_breaks_the_store_and_every_health_check_says_so() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let app = spawn_app().await;
    let key = &app.account_a.key;
    let (status, _, body) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // The database's directory goes away under the server (an unmounted
    // volume, say): its open files still take commits, but no flush can
    // make them durable, so nothing may be acknowledged.
    let file = sqlite_file(&app);
    let dir = file.parent().unwrap().to_owned();
    let moved = dir.with_extension("moved");
    std::fs::rename(&dir, &moved).unwrap();
    let (status, headers, body) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(json_reason(&body), "STORAGE_UNAVAILABLE", "{body}");
    assert_eq!(headers["retry-after"], "1");

    // Even with the directory back, only a restart recovers, and every
    // check says so: liveness, readiness and gRPC health.
    std::fs::rename(&moved, &dir).unwrap();
    let (status, _, body) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for path in ["/healthz", "/readyz"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("until the server restarts"),
            "{path}: {body}"
        );
    }
    assert_eq!((get(&app, key, "/healthz").await.1)["status"], "broken");
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("gRPC health reports the change")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
}
