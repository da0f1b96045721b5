//! The browser console at /console: its assets as served, and a person's
//! session in headless Chromium (tests/browser/console.mjs): the key, a
//! template send, its events arriving live, its timeline, a preview.

use std::path::PathBuf;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sends_from_a_template_and_shows_its_events_live_in_chromium() {
    // The real binary on its first run: the console's defaults (sender
    // hello@localhost) and the capture transport are a new user's.
    let dir = tempfile::tempdir().unwrap();
    let started = crate::binary::serve_with(dir.path(), &[], &[]).await;
    let base = format!("http://{}", started.addr);
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args([base.as_str(), &started.key(), screenshot.to_str().unwrap()])
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs the browser script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser session failed: {stderr}"
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert!(seen["id"].as_str().unwrap().starts_with("msg_"), "{seen}");
    assert_eq!(
        seen["variables"],
        serde_json::json!(["user.first_name", "reset_url", "expires_in"]),
        "the form is made from the template's variables"
    );
    assert_eq!(seen["live"], serde_json::json!(["queued", "delivered"]));
    assert_eq!(seen["timeline"], serde_json::json!(["queued", "delivered"]));
    assert!(
        seen["caption"].as_str().unwrap().starts_with("Welcome"),
        "{seen}"
    );
    assert_eq!(
        seen["problems"],
        serde_json::json!([]),
        "no errors in the page"
    );
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "the screenshot is saved"
    );
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let app = crate::helpers::spawn_app().await;
    let page = app
        .http
        .get(format!("{}/console", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    for asset in ["/console/console.js", "/console/console.css"] {
        assert!(html.contains(asset), "the page loads {asset}");
        let response = app
            .http
            .get(format!("{}{asset}", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.text().await.unwrap().len() > 1000, "{asset}");
    }
    // Nothing from elsewhere: no other origin in the page.
    assert!(!html.contains("http://") && !html.contains("https://"));
}
