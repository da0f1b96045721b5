//! The generated clients against a real server, used as their users use
//! them: the Python package installed with pip (tests/peers/python_client.py).

use serde_json::Value;

use crate::helpers::{Backend, TestApp, try_spawn_app_with};

/// Runs a Python peer script with `args`; its stdout is one JSON object.
async fn python(script: &str, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(crate::relay::python())
        .arg(crate::relay::peer_script(script))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the Python client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stderr}"))
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

    let sent: Vec<&str> = seen["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
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
    let mut listed: Vec<&str> = seen["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
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

    let sent: Vec<&str> = seen["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(seen["watched"], serde_json::json!(["QUEUED", "DELIVERED"]));
    assert_eq!(seen["status"], "DELIVERED");
    assert_eq!(seen["timeline"], serde_json::json!(["QUEUED", "DELIVERED"]));
    let listed: Vec<&str> = seen["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
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
