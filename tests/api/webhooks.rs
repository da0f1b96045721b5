//! Webhook endpoints over REST and gRPC: registering one shows its secret
//! once, reading never does; list pages oldest first; updates follow the
//! mask; rotating the secret keeps the old one for 24 hours; URLs inside
//! the network are refused at registration (S1) with the field and the
//! rule named; another account sees none of it (W5).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use posthorn::proto::v1;
use posthorn::proto::v1::webhooks_service_client::WebhooksServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, KeyHeader, TestApp, json_reason, reason, with_key};

/// A REST call with `key`.
pub(crate) async fn rest(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    crate::templates::rest(app, method, path, key, body).await
}

async fn create(app: &TestApp, body: Value) -> (StatusCode, Value) {
    rest(
        app,
        &app.account_a.key,
        Method::POST,
        "/v1/webhooks",
        Some(body),
    )
    .await
}

fn violations(error: &Value) -> Vec<(String, String)> {
    error["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["@type"].as_str().unwrap().ends_with("BadRequest"))
        .flat_map(|d| d["field_violations"].as_array().unwrap().clone())
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_owned(),
                v["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

crate::on_both_databases! {
    async fn an_endpoint_is_created_read_listed_updated_rotated_and_deleted(app: TestApp) {
        let key = app.account_a.key.clone();
        let (status, created) = create(&app, json!({
            "url": "https://hooks.acme.example/posthorn",
            "events": ["email.delivered", "email.bounced", "email.delivered"],
            "description": "order service",
        })).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let secret = created["secret"].as_str().unwrap();
        let bytes = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
        assert!(bytes.len() >= 24, "{} random bytes", bytes.len());
        let webhook = &created["webhook"];
        let id = webhook["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("wh_") && id.len() == 35, "{id}");
        assert_eq!(webhook["events"], json!(["email.delivered", "email.bounced"]), "repeats dropped");
        assert_eq!(webhook["active"], true);

        // Reading never shows the secret.
        let (status, got) = rest(&app, &key, Method::GET, &format!("/v1/webhooks/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["webhook"], *webhook);
        assert!(!got.to_string().contains(secret));

        // Oldest first, in pages.
        for n in 2..=3 {
            let (status, _) = create(&app, json!({"url": format!("https://hooks.acme.example/{n}")})).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (_, first) = rest(&app, &key, Method::GET, "/v1/webhooks?page_size=2", None).await;
        let urls = |page: &Value| -> Vec<String> {
            page["webhooks"].as_array().unwrap().iter().map(|w| w["url"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(urls(&first), ["https://hooks.acme.example/posthorn", "https://hooks.acme.example/2"]);
        let token = first["next_page_token"].as_str().unwrap();
        let (_, second) = rest(&app, &key, Method::GET, &format!("/v1/webhooks?page_size=2&page_token={token}"), None).await;
        assert_eq!(urls(&second), ["https://hooks.acme.example/3"]);
        assert!(second["next_page_token"].as_str().unwrap_or_default().is_empty());
        let (status, bad) = rest(&app, &key, Method::GET, "/v1/webhooks?page_token=nonsense", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(violations(&bad)[0].0, "page_token");

        // Without a mask, what is set changes; with one, what it names.
        let path = format!("/v1/webhooks/{id}");
        let (status, updated) = rest(&app, &key, Method::PATCH, &path, Some(json!({"active": false}))).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["webhook"]["active"], false);
        assert_eq!(updated["webhook"]["events"], json!(["email.delivered", "email.bounced"]));
        assert_eq!(updated["webhook"]["url"], "https://hooks.acme.example/posthorn");
        let (_, updated) = rest(&app, &key, Method::PATCH, &path,
            Some(json!({"events": [], "active": true, "update_mask": "events,active"}))).await;
        assert_eq!(updated["webhook"]["events"], json!([]), "empty: every event");
        assert_eq!(updated["webhook"]["active"], true);
        assert_eq!(updated["webhook"]["description"], "order service");
        let (status, refused) = rest(&app, &key, Method::PATCH, &path, Some(json!({"update_mask": "secret"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(violations(&refused)[0].0, "update_mask");

        // Rotation over gRPC: a new secret, the old one for 24 hours more.
        let mut grpc = WebhooksServiceClient::new(app.channel.clone());
        let before = Utc::now();
        let rotated = grpc
            .rotate_webhook_secret(with_key(v1::RotateWebhookSecretRequest { id: id.clone() }, KeyHeader::Bearer, &key))
            .await
            .unwrap()
            .into_inner();
        assert!(rotated.secret.starts_with("whsec_") && rotated.secret != secret);
        let until = rotated.previous_secret_expires_at.unwrap();
        let until = DateTime::from_timestamp(until.seconds, until.nanos as u32).unwrap();
        let overlap = until - before;
        assert!(overlap > chrono::Duration::hours(24) - chrono::Duration::minutes(1)
            && overlap <= chrono::Duration::hours(24) + chrono::Duration::minutes(1), "{overlap}");

        // Deleted: gone for every call.
        let (status, _) = rest(&app, &key, Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        for (method, path) in [(Method::GET, path.clone()), (Method::DELETE, path.clone()), (Method::POST, format!("{path}:rotateSecret"))] {
            let body = (method == Method::POST).then(|| json!({}));
            let (status, error) = rest(&app, &key, method, &path, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {error}");
        }
    }

    async fn endpoints_inside_the_network_or_not_https_are_refused_naming_the_rule_s1(app: TestApp) {
        for (url, rule) in [
            ("http://hooks.acme.example/", "https"),
            ("https://169.254.169.254/latest/meta-data/", "metadata"),
            ("https://10.0.0.1/hook", "internal"),
            ("https://[::ffff:127.0.0.1]/hook", "internal"),
            ("https://localhost:9000/hook", "localhost"),
            ("javascript:alert(1)", "https"),
            ("", "required"),
        ] {
            let (status, error) = create(&app, json!({"url": url})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {error}");
            assert_eq!(json_reason(&error), "VALIDATION_FAILED");
            let found = violations(&error);
            assert_eq!(found[0].0, "url", "{url}");
            assert!(found[0].1.contains(rule), "{url}: {}", found[0].1);
        }
        // Every problem at once.
        let (_, error) = create(&app, json!({
            "url": "ftp://x", "events": ["email.sent", "email.exploded"], "description": "d".repeat(257),
        })).await;
        let fields: Vec<String> = violations(&error).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["url", "events[1]", "description"]);
        let (_, listed) = rest(&app, &app.account_a.key, Method::GET, "/v1/webhooks", None).await;
        assert!(listed["webhooks"].as_array().is_none_or(Vec::is_empty), "nothing was stored: {listed}");
    }

    async fn another_account_neither_sees_nor_changes_an_endpoint_w5(app: TestApp) {
        let (_, created) = create(&app, json!({"url": "https://hooks.acme.example/a"})).await;
        let id = created["webhook"]["id"].as_str().unwrap().to_owned();
        let b = app.account_b.key.clone();
        let missing = "wh_0000000000000000000000000000000f";
        for (method, template, body) in [
            (Method::GET, "/v1/webhooks/{id}", None),
            (Method::PATCH, "/v1/webhooks/{id}", Some(json!({"active": false}))),
            (Method::POST, "/v1/webhooks/{id}:rotateSecret", Some(json!({}))),
            (Method::DELETE, "/v1/webhooks/{id}", None),
        ] {
            let mut answers = Vec::new();
            for target in [&id, &missing.to_owned()] {
                let (status, mut error) = rest(&app, &b, method.clone(), &template.replace("{id}", target), body.clone()).await;
                error["message"] = json!(error["message"].as_str().unwrap_or_default().replace(target.as_str(), "ID"));
                answers.push((status, error));
            }
            assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{template}");
            assert_eq!(answers[0], answers[1], "{template}: as for an id that does not exist");
        }
        let (_, listed) = rest(&app, &b, Method::GET, "/v1/webhooks", None).await;
        assert!(listed["webhooks"].as_array().is_none_or(Vec::is_empty), "{listed}");
        let status = WebhooksServiceClient::new(app.channel.clone())
            .get_webhook(with_key(v1::GetWebhookRequest { id: id.clone() }, KeyHeader::Bearer, &b))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::NotFound, "NOT_FOUND"));
        // A's endpoint is as it was.
        let (_, mine) = rest(&app, &app.account_a.key, Method::GET, &format!("/v1/webhooks/{id}"), None).await;
        assert_eq!(mine["webhook"]["active"], true);
    }
}

/// What a receiver got: each request's headers and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(http::HeaderMap, Vec<u8>)>>>;

/// An endpoint on loopback answering every POST with `status` (a 3xx with a
/// Location elsewhere); its URL and what it received.
async fn receiver(status: u16) -> (String, Received) {
    let got: Received = Default::default();
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push((headers, body.to_vec()));
                (
                    http::StatusCode::from_u16(status).unwrap(),
                    [("location", "https://elsewhere.example/")],
                    format!("answered {status}: {}", "x".repeat(2000)),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// Whether the reference verifier accepts the request under `secret`.
pub(crate) fn verified(secret: &str, headers: &http::HeaderMap, body: &[u8]) -> bool {
    use std::io::Write;
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| (name.to_string(), json!(headers[*name].to_str().unwrap())))
            .collect();
    let input = json!({"secret": secret, "body": String::from_utf8(body.to_vec()).unwrap(), "headers": headers});
    let mut child = std::process::Command::new(crate::relay::python())
        .arg(crate::relay::peer_script("verify_webhook.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(said == "verified" || said.starts_with("refused"), "{said}");
    output.status.success()
}

async fn test_call(app: &TestApp, id: &str) -> v1::TestWebhookResponse {
    WebhooksServiceClient::new(app.channel.clone())
        .test_webhook(with_key(
            v1::TestWebhookRequest { id: id.to_owned() },
            KeyHeader::Bearer,
            &app.account_a.key,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn spawn_for_webhooks(
    backend: Backend,
    private: bool,
    hosts: &[(&str, &str)],
) -> Option<TestApp> {
    let hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>> = hosts
        .iter()
        .map(|(name, ip)| (name.to_string(), vec![ip.parse().unwrap()]))
        .collect();
    let app = crate::helpers::try_spawn_app_with(backend, move |s| {
        s.webhook_targets.allow_http = true;
        s.webhook_targets.allow_private = private;
        s.webhook_hosts = hosts;
    })
    .await;
    if app.is_none() {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
    }
    app
}

on_both_databases_with!(
    a_test_call_is_signed_so_the_reference_verifier_accepts_it_even_while_rotating_w1,
    a_host_that_resolves_inside_the_network_is_refused_before_any_connection_s2
);

async fn a_test_call_is_signed_so_the_reference_verifier_accepts_it_even_while_rotating_w1(
    backend: Backend,
) {
    let Some(app) = spawn_for_webhooks(backend, true, &[]).await else {
        return;
    };
    let (url, got) = receiver(200).await;
    let (status, created) = create(&app, json!({"url": url})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    let answer = test_call(&app, &id).await;
    assert!(answer.succeeded, "{answer:?}");
    assert_eq!(answer.status_code, 200);
    assert_eq!(answer.error, "");
    assert!(answer.response_snippet.starts_with("answered 200: xxx"));
    assert_eq!(answer.response_snippet.len(), 1024, "the first 1 KB");
    let (headers, body) = got.lock().unwrap()[0].clone();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["type"], "webhook.test");
    assert_eq!(sent["data"]["webhook_id"], id);
    assert!(
        verified(&secret, &headers, &body),
        "the reference verifier accepts it"
    );
    assert!(
        !verified(&crate::webhooks::other_secret(), &headers, &body),
        "and refuses another secret"
    );

    // While the secret rotates, both sign: either one verifies.
    let (_, rotated) = rest(
        &app,
        &app.account_a.key,
        Method::POST,
        &format!("/v1/webhooks/{id}:rotateSecret"),
        Some(json!({})),
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(test_call(&app, &id).await.succeeded);
    let (headers, body) = got.lock().unwrap()[1].clone();
    assert_eq!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(verified(&new_secret, &headers, &body));
    assert!(verified(&secret, &headers, &body));

    // A failing or redirecting endpoint is reported, never followed.
    for status in [500, 302] {
        let (url, got) = receiver(status).await;
        let (_, created) = create(&app, json!({"url": url})).await;
        let answer = test_call(&app, created["webhook"]["id"].as_str().unwrap()).await;
        assert!(!answer.succeeded, "{answer:?}");
        assert_eq!(answer.status_code, i32::from(status));
        assert_eq!(
            got.lock().unwrap().len(),
            1,
            "one request, no redirect followed"
        );
    }
    // Nobody listening: an error, no status.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_, created) = create(
        &app,
        json!({"url": format!("http://127.0.0.1:{port}/hook")}),
    )
    .await;
    let answer = test_call(&app, created["webhook"]["id"].as_str().unwrap()).await;
    assert_eq!((answer.succeeded, answer.status_code), (false, 0));
    assert!(answer.error.contains("cannot connect"), "{}", answer.error);
}

async fn a_host_that_resolves_inside_the_network_is_refused_before_any_connection_s2(
    backend: Backend,
) {
    let (url, got) = receiver(200).await;
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let Some(app) = spawn_for_webhooks(
        backend,
        false,
        &[
            ("hooks.rebound.example", "127.0.0.1"),
            ("hooks.office.example", "10.0.0.1"),
            ("hooks.cloud.example", "169.254.169.254"),
        ],
    )
    .await
    else {
        return;
    };
    for (host, address) in [
        ("hooks.rebound.example", "127.0.0.1"),
        ("hooks.office.example", "10.0.0.1"),
        ("hooks.cloud.example", "169.254.169.254"),
    ] {
        // A name is accepted at registration; its addresses are checked at sending.
        let (status, created) =
            create(&app, json!({"url": format!("http://{host}:{port}/hook")})).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let answer = test_call(&app, created["webhook"]["id"].as_str().unwrap()).await;
        assert_eq!((answer.succeeded, answer.status_code), (false, 0), "{host}");
        assert!(
            answer.error.starts_with("refused before connecting") && answer.error.contains(address),
            "{host}: {}",
            answer.error
        );
    }
    assert!(
        got.lock().unwrap().is_empty(),
        "the receiver behind 127.0.0.1 was never reached"
    );
}

/// A well-formed secret that signed nothing here.
pub fn other_secret() -> String {
    format!("whsec_{}", STANDARD.encode([7u8; 32]))
}
