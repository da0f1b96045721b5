//! The generated clients against a real server, used as their users use
//! them: the Python package installed with pip (tests/peers/python_client.py).

use serde_json::Value;

use crate::helpers::{Backend, TestApp, try_spawn_app_with};

async fn python(script: &str, args: &[&str]) -> Value {
    crate::relay::python_json(script, args, b"").await
}

/// The strings of a JSON array.
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

fn target(app: &TestApp) -> String {
    app.addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_sends_follows_pages_and_raises_the_apis_errors() {
    let app = try_spawn_app_with(Backend::Sqlite, |s| s.deliver = true)
        .await
        .unwrap();
    let seen = python(
        "python_client.py",
        &[&target(&app), &app.account_a.key, "tour"],
    )
    .await;

    let sent = strings(&seen["sent"]);
    assert_eq!(sent.len(), 3);
    assert_eq!(
        seen["watched"],
        serde_json::json!(["EVENT_TYPE_QUEUED", "EVENT_TYPE_DELIVERED"])
    );
    assert_eq!(seen["status"], "MESSAGE_STATUS_DELIVERED");
    assert_eq!(seen["template"], "password-reset");
    assert_eq!(
        seen["timeline"],
        serde_json::json!(["EVENT_TYPE_QUEUED", "EVENT_TYPE_DELIVERED"])
    );
    // Three messages over pages of two, newest first.
    let mut listed = strings(&seen["listed"]);
    assert_eq!(listed.len(), 3, "{listed:?}");
    listed.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(listed, expected);
    // Nine auth templates over pages of three.
    let auth = seen["auth_templates"].as_array().unwrap();
    assert_eq!(auth.len(), 9, "{auth:?}");
    assert!(auth.contains(&Value::from("password-reset")));

    let unverified = &seen["unverified"];
    assert_eq!(unverified["code"], "PERMISSION_DENIED");
    assert_eq!(unverified["reason"], "SENDER_NOT_VERIFIED");
    let invalid = &seen["invalid"];
    assert_eq!(invalid["code"], "INVALID_ARGUMENT");
    assert_eq!(invalid["reason"], "VALIDATION_FAILED");
    assert_eq!(invalid["fields"], serde_json::json!(["to", "subject"]));
    assert!(
        invalid["text"]
            .as_str()
            .unwrap()
            .contains("\n- subject: must not contain a carriage return"),
        "{invalid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_reports_how_long_to_wait_when_rate_limited() {
    let app = try_spawn_app_with(Backend::Sqlite, |s| {
        s.policy.burst = 1;
        s.policy.rate_per_second = 0.05;
    })
    .await
    .unwrap();
    let seen = python(
        "python_client.py",
        &[&target(&app), &app.account_a.key, "rate"],
    )
    .await;
    let outcomes = seen["outcomes"].as_array().unwrap();
    assert!(outcomes[0].is_null(), "the first send fits: {seen}");
    let limited = &outcomes[1];
    assert_eq!(limited["code"], "RESOURCE_EXHAUSTED");
    let retry_after = limited["retry_after"].as_f64().unwrap();
    assert!(
        retry_after > 0.0 && retry_after <= 20.0,
        "one token every 20 s: {retry_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_sends_watches_and_pages_from_node_over_grpc_web() {
    let app = try_spawn_app_with(Backend::Sqlite, |s| s.deliver = true)
        .await
        .unwrap();
    let output = tokio::process::Command::new("node")
        .arg(crate::relay::peer_script("ts_client.mjs"))
        .args([&app.base_url, &app.account_a.key])
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (the TypeScript client's tests need Node.js)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ts_client.mjs failed: {stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    let sent = strings(&seen["sent"]);
    assert_eq!(seen["watched"], serde_json::json!(["QUEUED", "DELIVERED"]));
    assert_eq!(seen["status"], "DELIVERED");
    assert_eq!(seen["timeline"], serde_json::json!(["QUEUED", "DELIVERED"]));
    let listed = strings(&seen["listed"]);
    let newest_first: Vec<&str> = sent.iter().rev().copied().collect();
    assert_eq!(listed, newest_first, "three messages over pages of two");
    assert_eq!(seen["auth"].as_array().unwrap().len(), 9);

    assert_eq!(seen["unverified"]["code"], 7);
    assert_eq!(seen["unverified"]["reason"], "SENDER_NOT_VERIFIED");
    assert_eq!(seen["invalid"]["reason"], "VALIDATION_FAILED");
    assert_eq!(
        seen["invalid"]["fields"],
        serde_json::json!(["to", "subject"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_sets_the_key_pages_and_watches() {
    use futures::TryStreamExt;
    use posthorn_client::{Posthorn, v1};

    let app = try_spawn_app_with(Backend::Sqlite, |s| s.deliver = true)
        .await
        .unwrap();
    let posthorn = Posthorn::connect(app.base_url.clone(), &app.account_a.key)
        .await
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        let response = posthorn
            .send()
            .send_email(v1::SendEmailRequest {
                from_email: "app@acme.example".into(),
                to: vec![format!("r{i}@example.com")],
                subject: "Hi".into(),
                text: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sent.push(response.id);
    }
    let listed: Vec<String> = posthorn
        .list_messages(v1::ListMessagesRequest {
            page_size: 2,
            ..Default::default()
        })
        .map_ok(|m| m.id)
        .try_collect()
        .await
        .unwrap();
    sent.reverse();
    assert_eq!(listed, sent, "five messages over three pages, newest first");

    let mut events = posthorn
        .watch(v1::WatchMessagesRequest {
            message_id: sent[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let delivered = loop {
        let event = events
            .try_next()
            .await
            .unwrap()
            .expect("the stream reaches the delivery");
        if event.r#type == v1::EventType::Delivered as i32 {
            break event;
        }
    };
    assert_eq!(delivered.message_id, sent[0]);

    // A wrong key is refused as any caller's would be.
    let stranger = Posthorn::connect(app.base_url.clone(), "ph_live_unknown")
        .await
        .unwrap();
    let refused = stranger
        .list_messages(v1::ListMessagesRequest::default())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

/// The README's Python example, as printed but for the port: it sends,
/// then prints the message's events as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_python_example_sends_and_watches() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let example: String = crate::debugging::readme_block("## Client libraries", "python")
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");

    let dir = tempfile::tempdir().unwrap();
    let started = crate::binary::serve_with(dir.path(), &[], &[]).await;
    let example = example.replace("localhost:7070", &started.addr);
    let mut child = tokio::process::Command::new(crate::relay::python())
        .args(["-c", &example])
        .env("KEY", started.key())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // It runs until stopped: read until the delivery shows (or 30 s pass),
    // then stop it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let delivered = line == format!("{} you@example.com", v1_delivered());
            printed.push(line);
            if delivered {
                break;
            }
        }
    })
    .await;
    child.kill().await.ok();
    assert_eq!(
        printed,
        ["1 ", &format!("{} you@example.com", v1_delivered())],
        "the queued event, then the delivery"
    );
}

fn v1_delivered() -> i32 {
    posthorn_client::v1::EventType::Delivered as i32
}
