//! Accepting mail through the real server, over gRPC and REST: validation
//! (V1 header injection, V3 addresses), sender identity, template sends,
//! idempotency (I1–I5), SendBatch, SendStream, and the group commit's
//! all-or-nothing failure.

use std::sync::Arc;

use futures::StreamExt;
use posthorn::proto::v1::{self, SendEmailRequest, send_service_client::SendServiceClient};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::helpers::{
    KeyHeader, TestApp, json_reason, json_violations, reason, spawn_app, with_key,
};

pub fn client(app: &TestApp) -> SendServiceClient<Channel> {
    SendServiceClient::new(app.channel.clone())
}

/// A valid inline send from account A's verified domain.
pub fn inline() -> SendEmailRequest {
    SendEmailRequest {
        from_email: "hello@acme.example".into(),
        to: vec!["Jane Doe <jane@example.com>".into()],
        subject: "Your receipt".into(),
        html: "<p>Thanks for your order.</p>".into(),
        ..Default::default()
    }
}

/// The same send as REST JSON.
pub fn inline_json() -> Value {
    json!({
        "from_email": "hello@acme.example",
        "to": ["Jane Doe <jane@example.com>"],
        "subject": "Your receipt",
        "html": "<p>Thanks for your order.</p>"
    })
}

/// POSTs JSON with a key and optional extra headers.
pub async fn post(
    app: &TestApp,
    key: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = app
        .http
        .post(format!("{}{path}", app.base_url))
        .header("x-api-key", key)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

/// GETs JSON with a key.
pub async fn get(app: &TestApp, key: &str, path: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .get(format!("{}{path}", app.base_url))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The violated fields of a gRPC status.
fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// How many messages account `key` has (pages through the list).
pub async fn message_count(app: &TestApp, key: &str) -> usize {
    let (status, json) = get(app, key, "/v1/messages?page_size=1000").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["messages"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_inline_send_over_rest_is_queued_and_readable_with_its_timeline() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let (status, _, sent) = post(&app, key, "/v1/send", &inline_json(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let id = sent["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["recipient_count"], 1);
    assert!(sent["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, got) = get(&app, key, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let m = &got["message"];
    assert_eq!(m["id"], id);
    assert_eq!(m["status"], "queued");
    assert_eq!(m["subject"], "Your receipt");
    assert_eq!(m["to"], json!(["Jane Doe <jane@example.com>"]));
    assert_eq!(m["message_id_header"], format!("<{id}@localhost>"));
    assert_eq!(m["created_at"], sent["created_at"]);
    let recipients = m["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0]["email"], "jane@example.com");
    assert_eq!(recipients[0]["name"], "Jane Doe");
    assert_eq!(recipients[0]["kind"], "to");
    assert_eq!(recipients[0]["status"], "queued");
    let events = m["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "queued");
    assert_eq!(events[0]["message_id"], id);
    assert_eq!(events[0]["occurred_at"], sent["created_at"]);
}

#[tokio::test]
async fn every_violation_of_a_request_is_reported_together_over_grpc_and_rest() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let mut bad = inline();
    bad.to = (0..51).map(|i| format!("r{i}@example.com")).collect();
    bad.subject = "Hi\r\nBcc: attacker@evil.example".into();
    bad.headers.insert("Bcc".into(), "x@evil.example".into());
    bad.headers
        .insert("X-Campaign".into(), "spring\r\nX-Evil: 1".into());
    bad.reply_to = vec!["<a@x.example>".into()];
    bad.tags = vec![String::new()];
    bad.template = "welcome".into();
    bad.attachments = vec![v1::Attachment {
        filename: "a.pdf".into(),
        content_type: "not a type".into(),
        content: vec![1],
        content_id: String::new(),
    }];
    let status = client(&app)
        .send_email(with_key(bad, KeyHeader::Bearer, key))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&status), "VALIDATION_FAILED");
    let mut got = fields(&status);
    got.sort();
    assert_eq!(
        got,
        [
            "attachments[0].content_type",
            "headers[Bcc]",
            "headers[X-Campaign]",
            "reply_to[0]",
            "subject",
            "tags[0]",
            "template",
            "to",
        ]
    );
    assert!(
        status.message().contains("51 recipients"),
        "{}",
        status.message()
    );

    // The same over REST: 400, the same fields, and nothing stored.
    let mut body = inline_json();
    body["to"] = json!(
        (0..51)
            .map(|i| format!("r{i}@example.com"))
            .collect::<Vec<_>>()
    );
    body["subject"] = json!("Hi\r\nBcc: attacker@evil.example");
    let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json_reason(&json), "VALIDATION_FAILED");
    assert_eq!(json_violations(&json), ["to", "subject"]);
    assert_eq!(message_count(&app, key).await, 0);

    // A body is required; html-only and text-only are both fine.
    let (status, _, json) = post(
        &app,
        key,
        "/v1/send",
        &json!({"from_email": "hello@acme.example", "to": ["a@example.com"]}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["subject", "html"]);
}

#[tokio::test]
async fn header_injection_is_refused_in_every_header_bound_field_v1() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let vectors = [
        "Hi\r\nBcc: attacker@evil.example",
        "Hi\nBcc: attacker@evil.example",
        "Hi\rBcc: attacker@evil.example",
        "Hi\r\n\r\n<body>",
        "Hi\0there",
        "Hi\u{2028}Bcc: x@evil.example",
        "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=",
    ];
    for vector in vectors {
        let cases: Vec<(&str, Value)> = vec![
            ("subject", json!({"subject": vector})),
            ("from_name", json!({"from_name": vector})),
            (
                "reply_to[0]",
                json!({"reply_to": [format!("{vector} <r@acme.example>")]}),
            ),
            (
                "to[0]",
                json!({"to": [format!("{vector} <j@example.com>")]}),
            ),
            ("headers[X-Note]", json!({"headers": {"X-Note": vector}})),
            ("tags[0]", json!({"tags": [vector]})),
            (
                "attachments[0].filename",
                json!({"attachments": [{"filename": format!("{vector}.pdf"), "content": "JVBERg=="}]}),
            ),
        ];
        for (field, patch) in cases {
            let mut body = inline_json();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{field} {vector:?}: {json}"
            );
            assert_eq!(
                json_violations(&json),
                [field],
                "{field} {vector:?}: {json}"
            );
        }
    }
    // A header name that is not an RFC 5322 field name.
    let mut body = inline_json();
    body["headers"] = json!({"X Bad:Name": "v"});
    let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["headers[X Bad:Name]"]);

    assert_eq!(message_count(&app, key).await, 0, "nothing was stored");

    // Template variables end up in the rendered subject: line breaks are
    // folded into spaces (one Subject line, no Bcc header), other controls
    // are refused naming the variables.
    let (status, _, json) = post(
        &app,
        key,
        "/v1/templates",
        &json!({"slug": "hello-name", "name": "Hello", "subject": "Hello {{ name }}", "text": "Hi", "publish": true}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let templated = |name: &str| {
        json!({"from_email": "hello@acme.example", "to": ["j@example.com"],
        "template": "hello-name", "variables": {"name": name}})
    };
    let (status, _, sent) = post(
        &app,
        key,
        "/v1/send",
        &templated("Kim\r\nBcc: attacker@evil.example"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, got) = get(
        &app,
        key,
        &format!("/v1/messages/{}", sent["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        got["message"]["subject"],
        "Hello Kim Bcc: attacker@evil.example"
    );
    let (status, _, json) = post(&app, key, "/v1/send", &templated("Kim\0"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json_violations(&json), ["variables"]);
    assert!(json["message"].as_str().unwrap().contains("NUL"), "{json}");
    assert_eq!(message_count(&app, key).await, 1);
}

#[tokio::test]
async fn addresses_are_parsed_strictly_and_recipients_counted_once_v3() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    for raw in [
        "a@x.example>\r\nRCPT TO:<victim@y.example",
        "<a@x.example>",
        "\"a\r\nb\"@x.example",
        "a@[127.0.0.1]",
        "jörg@x.example",
        &format!("{}@example.com", "a".repeat(320)),
        "",
    ] {
        let mut body = inline_json();
        body["to"] = json!([raw]);
        let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {json}");
        assert_eq!(json_violations(&json), ["to[0]"], "{raw:?}: {json}");
    }
    // An empty list, and 1,000 recipients.
    let mut body = inline_json();
    body["to"] = json!([]);
    let (_, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
    assert_eq!(json_violations(&json), ["to"]);
    body["to"] = json!(
        (0..1000)
            .map(|i| format!("r{i}@example.com"))
            .collect::<Vec<_>>()
    );
    let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["to"]);

    // Duplicates across to, cc and bcc collapse (case-insensitively) before
    // counting: 51 entries, 50 distinct, are fine. IDN domains become punycode.
    let mut body = inline_json();
    body["to"] = json!(["Jane@Example.com", "info@bücher.example"]);
    body["cc"] = json!(["jane@example.com"]);
    body["bcc"] = json!(
        (0..48)
            .map(|i| format!("b{i}@example.com"))
            .collect::<Vec<_>>()
    );
    let (status, _, sent) = post(&app, key, "/v1/send", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["recipient_count"], 50);
    let (_, got) = get(
        &app,
        key,
        &format!("/v1/messages/{}", sent["id"].as_str().unwrap()),
    )
    .await;
    let emails: Vec<&str> = got["message"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        &emails[..2],
        ["Jane@example.com", "info@xn--bcher-kva.example"]
    );
    assert_eq!(
        got["message"]["cc"],
        json!([]),
        "the duplicate cc was dropped"
    );
    assert_eq!(got["message"]["bcc"].as_array().unwrap().len(), 48);
}

crate::on_both_databases! {
    async fn only_verified_identities_of_the_account_may_send(app: TestApp) {
        let key = &app.account_a.key;
        // Any address at a verified domain.
        let mut request = inline();
        request.from_email = "billing@ACME.example".into();
        let sent = client(&app)
            .send_email(with_key(request, KeyHeader::XApiKey, key))
            .await
            .unwrap();
        assert_eq!(sent.get_ref().status, v1::MessageStatus::Queued as i32);
        // An unverified domain, and account B's verified domain.
        for from in ["hello@unverified.example", "hello@globex.example", "hello@mail.acme.example"] {
            let mut request = inline();
            request.from_email = from.into();
            let status = client(&app)
                .send_email(with_key(request, KeyHeader::XApiKey, key))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{from}");
            assert_eq!(reason(&status), "SENDER_NOT_VERIFIED", "{from}");
            assert!(status.message().contains(&from.to_ascii_lowercase()) || status.message().contains(from), "{}", status.message());
            let mut body = inline_json();
            body["from_email"] = json!(from);
            let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{from}: {json}");
            assert_eq!(json_reason(&json), "SENDER_NOT_VERIFIED");
        }
        assert_eq!(message_count(&app, key).await, 1);
    }

    async fn template_sends_render_at_accept_and_store_slug_and_version(app: TestApp) {
        let key = &app.account_a.key;
        let (status, _, sent) = post(&app, key, "/v1/send", &json!({
            "from_email": "hello@acme.example", "to": ["kim@example.com"],
            "template": "password-reset",
            "variables": {"user": {"first_name": "Kim"}, "reset_url": "https://acme.example/reset?t=1", "expires_in_minutes": 30}
        }), &[]).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        let (_, got) = get(&app, key, &format!("/v1/messages/{}", sent["id"].as_str().unwrap())).await;
        let m = &got["message"];
        assert_eq!(m["template"], "password-reset");
        assert_eq!(m["template_version"], 1);
        assert_eq!(m["variables"]["user"]["first_name"], "Kim");
        assert!(!m["subject"].as_str().unwrap().contains("{{"), "rendered: {m}");

        // Unknown slug: 404 TEMPLATE_NOT_FOUND; missing variables: 400 naming each.
        let (status, _, json) = post(&app, key, "/v1/send", &json!({
            "from_email": "hello@acme.example", "to": ["kim@example.com"], "template": "no-such-template"
        }), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
        assert_eq!(json_reason(&json), "TEMPLATE_NOT_FOUND");
        assert!(json["message"].as_str().unwrap().contains("no-such-template"));
        let (status, _, json) = post(&app, key, "/v1/send", &json!({
            "from_email": "hello@acme.example", "to": ["kim@example.com"], "template": "password-reset"
        }), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert!(json_violations(&json).contains(&"variables.reset_url".to_owned()), "{json}");
        // Inline content and a template together are refused.
        let (status, _, json) = post(&app, key, "/v1/send", &json!({
            "from_email": "hello@acme.example", "to": ["kim@example.com"], "template": "password-reset", "subject": "x"
        }), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_violations(&json), ["template"]);
    }

    async fn scheduled_sends_are_scheduled_within_thirty_days(app: TestApp) {
        let key = &app.account_a.key;
        let at = chrono::Utc::now() + chrono::Duration::hours(2);
        let mut body = inline_json();
        body["scheduled_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let (status, _, sent) = post(&app, key, "/v1/send", &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(sent["status"], "scheduled");
        assert_eq!(sent["scheduled_at"], body["scheduled_at"]);
        let (_, got) = get(&app, key, &format!("/v1/messages/{}", sent["id"].as_str().unwrap())).await;
        assert_eq!(got["message"]["events"][0]["type"], "scheduled");
        assert_eq!(got["message"]["recipients"][0]["next_attempt_at"], body["scheduled_at"]);
        for (when, rule) in [
            (chrono::Utc::now() - chrono::Duration::minutes(1), "in the future"),
            (chrono::Utc::now() + chrono::Duration::days(31), "30 days"),
        ] {
            body["scheduled_at"] = json!(when.to_rfc3339());
            let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json_violations(&json), ["scheduled_at"]);
            assert!(json["message"].as_str().unwrap().contains(rule), "{json}");
        }
    }

    async fn the_same_key_and_request_replays_the_stored_response_i1(app: TestApp) {
        let key = &app.account_a.key;
        let mut first: Option<Value> = None;
        for attempt in 0..10 {
            let (status, headers, json) =
                post(&app, key, "/v1/send", &inline_json(), &[("idempotency-key", "order-1042")]).await;
            assert_eq!(status, StatusCode::OK, "{json}");
            let replayed = headers.get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
            match &first {
                None => {
                    assert_eq!(replayed, None, "the first answer is not a replay");
                    first = Some(json);
                }
                Some(first) => {
                    assert_eq!(&json, first, "attempt {attempt} answers identically");
                    assert_eq!(replayed.as_deref(), Some("true"));
                }
            }
        }
        // The same request over gRPC, with the key as metadata or as the
        // field, is the same request: replayed.
        let mut request = with_key(inline(), KeyHeader::Bearer, key);
        request.metadata_mut().insert("idempotency-key", "order-1042".parse().unwrap());
        let replay = client(&app).send_email(request).await.unwrap();
        assert_eq!(replay.metadata().get("idempotent-replayed").unwrap(), "true");
        assert_eq!(replay.get_ref().id, first.as_ref().unwrap()["id"].as_str().unwrap());
        let mut field = inline();
        field.idempotency_key = "order-1042".into();
        let replay = client(&app).send_email(with_key(field, KeyHeader::Bearer, key)).await.unwrap();
        assert_eq!(replay.get_ref().id, first.as_ref().unwrap()["id"].as_str().unwrap());
        // JSON key order and whitespace do not change the request.
        let reordered = r#"{ "html": "<p>Thanks for your order.</p>", "subject": "Your receipt",
            "to": ["Jane Doe <jane@example.com>"], "from_email": "hello@acme.example" }"#;
        let response = app.http.post(format!("{}/v1/send", app.base_url))
            .header("x-api-key", key).header("idempotency-key", "order-1042")
            .header("content-type", "application/json").body(reordered).send().await.unwrap();
        assert_eq!(response.headers()["idempotent-replayed"], "true");
        assert_eq!(message_count(&app, key).await, 1, "one message in all");
    }

    async fn the_same_key_with_a_different_request_is_refused_i2(app: TestApp) {
        let key = &app.account_a.key;
        let (status, _, original) =
            post(&app, key, "/v1/send", &inline_json(), &[("idempotency-key", "k-2")]).await;
        assert_eq!(status, StatusCode::OK);
        for (field, value) in [
            ("to", json!(["john@example.com"])),
            ("subject", json!("Your receipt!")),
            ("attachments", json!([{"filename": "a.txt", "content": "YQ=="}])),
        ] {
            let mut body = inline_json();
            body[field] = value;
            let (status, _, json) =
                post(&app, key, "/v1/send", &body, &[("idempotency-key", "k-2")]).await;
            assert_eq!(status, StatusCode::CONFLICT, "{field}: {json}");
            assert_eq!(json_reason(&json), "IDEMPOTENCY_KEY_REUSED");
            assert!(json["message"].as_str().unwrap().contains("k-2"));
        }
        let mut different = inline();
        different.subject = "Other".into();
        different.idempotency_key = "k-2".into();
        let status = client(&app)
            .send_email(with_key(different, KeyHeader::Bearer, key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert_eq!(reason(&status), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(message_count(&app, key).await, 1);
        let (_, got) = get(&app, key, &format!("/v1/messages/{}", original["id"].as_str().unwrap())).await;
        assert_eq!(got["message"]["subject"], "Your receipt", "the original is untouched");
    }

    async fn concurrent_duplicates_execute_once_i3(app: TestApp) {
        let key = app.account_a.key.clone();
        for round in 0..5 {
            let idempotency = format!("burst-{round}");
            let barrier = Arc::new(tokio::sync::Barrier::new(50));
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let (barrier, channel, key, idempotency) =
                    (barrier.clone(), app.channel.clone(), key.clone(), idempotency.clone());
                tasks.push(tokio::spawn(async move {
                    let mut request = inline();
                    request.idempotency_key = idempotency;
                    barrier.wait().await;
                    SendServiceClient::new(channel)
                        .send_email(with_key(request, KeyHeader::Bearer, &key))
                        .await
                }));
            }
            let mut ids = std::collections::HashSet::new();
            let (mut fresh, mut in_use) = (0, 0);
            for task in tasks {
                match task.await.unwrap() {
                    Ok(response) => {
                        if response.metadata().get("idempotent-replayed").is_none() {
                            fresh += 1;
                        }
                        ids.insert(response.into_inner().id);
                    }
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
                        assert_eq!(reason(&status), "IDEMPOTENCY_KEY_IN_USE");
                        in_use += 1;
                    }
                }
            }
            assert_eq!(fresh, 1, "round {round}: exactly one request executed ({in_use} in use)");
            assert_eq!(ids.len(), 1, "round {round}: every success names the same message");
        }
        assert_eq!(message_count(&app, &key).await, 5);
    }

    async fn keys_are_scoped_per_account_and_expire_i4(app: TestApp) {
        let (a, b) = (&app.account_a.key, &app.account_b.key);
        let (_, _, first) = post(&app, a, "/v1/send", &inline_json(), &[("idempotency-key", "shared")]).await;
        let mut body = inline_json();
        body["from_email"] = json!("hello@globex.example");
        let (status, headers, other) = post(&app, b, "/v1/send", &body, &[("idempotency-key", "shared")]).await;
        assert_eq!(status, StatusCode::OK, "{other}");
        assert!(headers.get("idempotent-replayed").is_none());
        assert_ne!(first["id"], other["id"], "account B's key is its own");

        // The same key on another RPC is a different request.
        let (status, _, json) = post(&app, a, &format!("/v1/messages/{}:resend", first["id"].as_str().unwrap()), &json!({}), &[("idempotency-key", "shared")]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{json}");
        assert_eq!(json_reason(&json), "IDEMPOTENCY_KEY_REUSED");

        // After the retention the key starts afresh.
        use sea_orm::ConnectionTrait;
        let past = chrono::Utc::now().timestamp_micros() - 1;
        app.store_connection()
            .execute_unprepared(&format!("UPDATE idempotency_keys SET expires_at = {past} WHERE idempotency_key = 'shared'"))
            .await
            .unwrap();
        let (status, headers, again) = post(&app, a, "/v1/send", &inline_json(), &[("idempotency-key", "shared")]).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert!(headers.get("idempotent-replayed").is_none());
        assert_ne!(again["id"], first["id"], "an expired key creates a new message");
        let (status, headers, replay) = post(&app, a, "/v1/send", &inline_json(), &[("idempotency-key", "shared")]).await;
        assert_eq!((status, replay["id"].clone()), (StatusCode::OK, again["id"].clone()));
        assert_eq!(headers["idempotent-replayed"], "true");
    }
}

#[tokio::test]
async fn refused_requests_do_not_consume_their_key_and_keys_are_checked_i5() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let mut body = inline_json();
    body["to"] = json!(["not an address"]);
    let (status, _, _) = post(&app, key, "/v1/send", &body, &[("idempotency-key", "k-5")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut unverified = inline_json();
    unverified["from_email"] = json!("x@unverified.example");
    let (status, _, _) = post(
        &app,
        key,
        "/v1/send",
        &unverified,
        &[("idempotency-key", "k-5")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, json) = post(
        &app,
        key,
        "/v1/send",
        &inline_json(),
        &[("idempotency-key", "k-5")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the fixed retry runs: {json}");
    assert!(headers.get("idempotent-replayed").is_none());

    for bad in ["x".repeat(256), "tab\there".into(), "ключ".into()] {
        let mut body = inline_json();
        body["idempotency_key"] = json!(bad);
        let (status, _, json) = post(&app, key, "/v1/send", &body, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(json_violations(&json), ["idempotency_key"]);
    }
    let (status, _, json) = post(
        &app,
        key,
        "/v1/send",
        &inline_json(),
        &[("idempotency-key", "")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json_violations(&json), ["idempotency_key"]);
    // The field and the header must agree when both are given.
    let mut body = inline_json();
    body["idempotency_key"] = json!("one");
    let (status, _, json) = post(&app, key, "/v1/send", &body, &[("idempotency-key", "two")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["idempotency_key"]);
}

#[tokio::test]
async fn a_batch_succeeds_item_by_item_and_replays_as_a_whole() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let mut bad = inline_json();
    bad["from_email"] = json!("x@unverified.example");
    let mut invalid = inline_json();
    invalid["subject"] = json!("");
    let body = json!({"messages": [inline_json(), bad, invalid, inline_json()]});
    let (status, _, json) = post(&app, key, "/v1/send/batch", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (
            json["accepted_count"].as_i64(),
            json["failed_count"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let results = json["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| r["index"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(results[0]["status"], "queued");
    assert!(results[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(results[1]["id"], "");
    assert_eq!(results[1]["error"]["code"], 7);
    assert_eq!(json_reason(&results[1]["error"]), "SENDER_NOT_VERIFIED");
    assert_eq!(results[2]["error"]["code"], 3);
    assert_eq!(json_violations(&results[2]["error"]), ["subject"]);
    assert_eq!(message_count(&app, key).await, 2);

    // With a batch key: one transaction, replayed whole, errors included.
    let (status, headers, first) = post(
        &app,
        key,
        "/v1/send/batch",
        &body,
        &[("idempotency-key", "batch-1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("idempotent-replayed").is_none());
    let (_, headers, again) = post(
        &app,
        key,
        "/v1/send/batch",
        &body,
        &[("idempotency-key", "batch-1")],
    )
    .await;
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first);
    assert_eq!(message_count(&app, key).await, 4);

    // Empty and oversized batches are refused whole.
    let (status, _, json) = post(&app, key, "/v1/send/batch", &json!({"messages": []}), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["messages"]);
    let many = json!({"messages": vec![inline_json(); 101]});
    let (status, _, json) = post(&app, key, "/v1/send/batch", &many, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["message"].as_str().unwrap().contains("1 to 100"),
        "{json}"
    );
}

#[tokio::test]
async fn a_stream_answers_each_request_with_its_correlation_id_and_goes_on_after_a_bad_one() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let requests: Vec<v1::SendStreamRequest> = (0..200)
        .map(|i| {
            let mut message = inline();
            if i % 50 == 7 {
                message.to = vec!["not-an-address".into()];
            }
            v1::SendStreamRequest {
                correlation_id: format!("c-{i}"),
                message: Some(message),
            }
        })
        .chain([v1::SendStreamRequest {
            correlation_id: "no-message".into(),
            message: None,
        }])
        .collect();
    let response = client(&app)
        .send_stream(with_key(
            futures::stream::iter(requests),
            KeyHeader::Bearer,
            key,
        ))
        .await
        .unwrap();
    let answers: Vec<v1::SendStreamResponse> =
        response.into_inner().map(|r| r.unwrap()).collect().await;
    assert_eq!(answers.len(), 201);
    let mut seen = std::collections::HashSet::new();
    for answer in &answers {
        assert!(
            seen.insert(answer.correlation_id.clone()),
            "one answer per request"
        );
        let i: Option<usize> = answer
            .correlation_id
            .strip_prefix("c-")
            .map(|n| n.parse().unwrap());
        match i {
            Some(i) if i % 50 != 7 => {
                assert!(answer.error.is_none(), "{answer:?}");
                assert!(answer.id.starts_with("msg_"));
                assert_eq!(answer.status, v1::MessageStatus::Queued as i32);
            }
            _ => {
                let error = answer.error.as_ref().expect("an error for the bad item");
                assert_eq!(
                    error.code,
                    tonic::Code::InvalidArgument as i32,
                    "{answer:?}"
                );
                assert!(answer.id.is_empty());
            }
        }
    }
    assert_eq!(message_count(&app, key).await, 196);
}

/// A send as a client built from another version of the contract might
/// encode it: `from_email` as raw bytes, so that it can carry bytes that
/// are not UTF-8, which a `string` field refuses.
#[derive(Clone, PartialEq, prost::Message)]
struct LooseSend {
    #[prost(bytes = "vec", tag = "1")]
    from_email: Vec<u8>,
    #[prost(string, repeated, tag = "3")]
    to: Vec<String>,
    #[prost(string, tag = "7")]
    subject: String,
    #[prost(string, tag = "8")]
    html: String,
}

impl LooseSend {
    fn from(from_email: &[u8]) -> Self {
        LooseSend {
            from_email: from_email.to_vec(),
            to: vec!["jane@example.com".into()],
            subject: "Your receipt".into(),
            html: "<p>Thanks.</p>".into(),
        }
    }
}

/// `SendEmailRequest` with `from_email` (field 1) as a number.
#[derive(Clone, PartialEq, prost::Message)]
struct NumberedSender {
    #[prost(uint64, tag = "1")]
    from_email: u64,
}

/// A `SendStreamRequest` carrying a [`LooseSend`].
#[derive(Clone, PartialEq, prost::Message)]
struct LooseStreamRequest {
    #[prost(string, tag = "1")]
    correlation_id: String,
    #[prost(message, optional, tag = "2")]
    message: Option<LooseSend>,
}

/// The one field violation of a status, as (field, description).
fn only_violation(status: &tonic::Status) -> (String, String) {
    let details = status.get_error_details();
    let violations = &details
        .bad_request()
        .expect("a BadRequest")
        .field_violations;
    assert_eq!(violations.len(), 1, "{status:?}");
    (
        violations[0].field.clone(),
        violations[0].description.clone(),
    )
}

/// Calls SendEmail with `message` encoded as it is, whatever its type.
async fn send_encoded<M: prost::Message + Send + Sync + 'static>(
    app: &TestApp,
    key: &str,
    message: M,
) -> Result<v1::SendEmailResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        with_key(message, KeyHeader::Bearer, key),
        tonic::codegen::http::uri::PathAndQuery::from_static("/posthorn.v1.SendService/SendEmail"),
        tonic_prost::ProstCodec::<M, v1::SendEmailResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let key = &app.account_a.key;

    // A field of the wrong wire type.
    let status = send_encoded(&app, key, NumberedSender { from_email: 7 })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(&status), "VALIDATION_FAILED");
    let (field, description) = only_violation(&status);
    assert_eq!(field, "from_email");
    assert!(
        description.contains("not a valid protobuf message")
            && description.contains("invalid wire type"),
        "{description}"
    );

    // A string field holding bytes that are not UTF-8.
    let status = send_encoded(&app, key, LooseSend::from(b"hello\xff@acme.example"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let (field, description) = only_violation(&status);
    assert_eq!(field, "from_email");
    assert!(description.contains("not UTF-8"), "{description}");

    // The same over gRPC-Web, as a browser would send it.
    let reply = crate::grpc_web::call(
        &app.http,
        &app.base_url,
        "/posthorn.v1.SendService/SendEmail",
        &NumberedSender { from_email: 7 },
        &[("x-api-key", key.clone())],
    )
    .await;
    assert_eq!(
        reply.grpc_status,
        tonic::Code::InvalidArgument as i32,
        "{reply:?}"
    );
    assert_eq!(reply.reason(), "VALIDATION_FAILED");
    let (field, _) = only_violation(reply.status_details.as_ref().expect("details"));
    assert_eq!(field, "from_email");

    // Nothing was stored, and the same bytes in valid UTF-8 are accepted
    // through the same encoding.
    assert_eq!(message_count(&app, key).await, 0);
    let sent = send_encoded(&app, key, LooseSend::from(b"hello@acme.example"))
        .await
        .expect("a valid send");
    assert!(sent.id.starts_with("msg_"));
}

#[tokio::test]
async fn a_stream_request_that_is_not_valid_protobuf_ends_the_stream_naming_the_field() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let requests = futures::stream::iter([
        LooseStreamRequest {
            correlation_id: "good".into(),
            message: Some(LooseSend::from(b"hello@acme.example")),
        },
        LooseStreamRequest {
            correlation_id: "bad".into(),
            message: Some(LooseSend::from(b"hello\xff@acme.example")),
        },
    ]);
    let response = grpc
        .streaming(
            with_key(requests, KeyHeader::Bearer, key),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/posthorn.v1.SendService/SendStream",
            ),
            tonic_prost::ProstCodec::<LooseStreamRequest, v1::SendStreamResponse>::default(),
        )
        .await
        .expect("the stream opens");
    let mut answers = response.into_inner();
    let first = answers
        .next()
        .await
        .expect("an answer")
        .expect("not an error");
    assert_eq!(first.correlation_id, "good");
    assert!(first.id.starts_with("msg_"), "{first:?}");
    // The undecodable request has no correlation id to answer under: the
    // stream ends with the error, naming the field.
    let status = answers
        .next()
        .await
        .expect("the stream ends with a status")
        .expect_err("an error");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let (field, description) = only_violation(&status);
    assert_eq!(field, "message.from_email");
    assert!(description.contains("not UTF-8"), "{description}");
    assert!(answers.next().await.is_none());
    assert_eq!(message_count(&app, key).await, 1);
}

#[tokio::test]
async fn a_stream_stops_accepting_while_its_client_stops_reading() {
    let app = spawn_app().await;
    let key = app.account_a.key.clone();
    const TOTAL: usize = 1000;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::SendStreamRequest>(1);
    // A client with a small receive window, as one that reads slowly has.
    let channel = tonic::transport::Channel::from_shared(app.base_url.clone())
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let response = SendServiceClient::new(channel)
        .send_stream(with_key(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap();
    let big = "x".repeat(16 * 1024);
    let mut pushed = 0;
    let mut blocked = false;
    // The client reads nothing: the server must stop pulling requests once
    // its answers and the stream's windows are full.
    while pushed < TOTAL {
        let mut message = inline();
        message.text = big.clone();
        let request = v1::SendStreamRequest {
            correlation_id: format!("c-{pushed}"),
            message: Some(message),
        };
        match tokio::time::timeout(std::time::Duration::from_secs(3), tx.send(request)).await {
            Ok(sent) => {
                sent.unwrap();
                pushed += 1;
            }
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(
        blocked,
        "the server accepted all {TOTAL} requests without anyone reading"
    );
    let stored = message_count(&app, &key).await;
    assert!(stored < TOTAL, "{stored} stored of {TOTAL}");
    // Reading resumes the flow; everything pushed is answered.
    let mut answers = response.into_inner();
    let feeder = tokio::spawn(async move {
        for i in pushed..TOTAL {
            let mut message = inline();
            message.text = "small".into();
            tx.send(v1::SendStreamRequest {
                correlation_id: format!("c-{i}"),
                message: Some(message),
            })
            .await
            .unwrap();
        }
    });
    let mut count = 0;
    while let Some(answer) = answers.next().await {
        assert!(answer.unwrap().error.is_none());
        count += 1;
        if count == TOTAL {
            break;
        }
    }
    feeder.await.unwrap();
    assert_eq!(count, TOTAL);
}

#[tokio::test]
async fn a_failed_group_commit_answers_unavailable_and_stores_nothing_of_its_batch() {
    let app = spawn_app().await;
    let key = app.account_a.key.clone();
    use sea_orm::ConnectionTrait;
    app.store_connection()
        .execute_unprepared(
            "CREATE TRIGGER poison BEFORE INSERT ON recipients WHEN NEW.email LIKE 'poison%' \
             BEGIN SELECT RAISE(ABORT, 'poisoned recipient'); END",
        )
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (barrier, channel, key) = (barrier.clone(), app.channel.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = inline();
            request.subject = format!("s-{i}");
            if i == 0 {
                request.to = vec!["poison@example.com".into()];
            }
            barrier.wait().await;
            let result = SendServiceClient::new(channel)
                .send_email(with_key(request, KeyHeader::Bearer, &key))
                .await;
            (i, result)
        }));
    }
    let mut accepted = std::collections::HashSet::new();
    let mut refused = 0;
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(_) => {
                assert_ne!(i, 0);
                accepted.insert(format!("s-{i}"));
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert_eq!(reason(&status), "STORAGE_UNAVAILABLE");
                // Retryable, and it says when.
                assert!(status.get_error_details().retry_info().is_some());
                assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
                refused += 1;
            }
        }
    }
    assert!(refused >= 1, "the poisoned send failed");
    // Exactly the acknowledged messages exist, each whole.
    let (_, list) = get(&app, &key, "/v1/messages?page_size=100").await;
    let stored: std::collections::HashSet<String> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["recipients"].as_array().unwrap().len(), 1);
            m["subject"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(stored, accepted);
    let orphans = app
        .store_connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT (SELECT COUNT(*) FROM recipients) + (SELECT COUNT(*) FROM events) - 2 * (SELECT COUNT(*) FROM messages) AS n",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(orphans, 0, "no recipient or event without its message");
}
