//! The read and control side of messages through the real server: lists
//! with filters and keyset pages, cancel and reschedule state rules, resend,
//! and two-account isolation of every RPC here (A1).

use posthorn::proto::v1::{self, messages_service_client::MessagesServiceClient};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{KeyHeader, TestApp, json_reason, json_violations, reason, with_key};
use crate::send::{get, inline_json, message_count, post};

async fn send(app: &TestApp, key: &str, body: Value) -> String {
    let (status, _, json) = post(app, key, "/v1/send", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

fn later(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ids(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

crate::on_both_databases! {
    async fn lists_filter_and_page_newest_first(app: TestApp) {
        let key = &app.account_a.key;
        let mut sent = Vec::new();
        for i in 0..5 {
            let mut body = inline_json();
            body["to"] = json!([format!("user{i}@example.com")]);
            body["tags"] = json!(if i % 2 == 0 { vec!["even"] } else { vec!["odd"] });
            if i == 4 {
                body["from_email"] = json!("billing@acme.example");
                body["scheduled_at"] = json!(later(5));
            }
            sent.push(send(&app, key, body).await);
        }
        let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

        // Pages of two, newest first, until the token runs out.
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (status, page) = get(&app, key, &format!("/v1/messages?page_size=2&page_token={token}")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(ids(&page));
            assert!(page["messages"][0]["events"].as_array().is_none_or(|e| e.is_empty()), "lists carry no events");
            token = page["next_page_token"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen, newest_first);

        for (query, expected) in [
            ("tag=even", vec![&sent[4], &sent[2], &sent[0]]),
            ("to=USER3@example.com", vec![&sent[3]]),
            ("from=billing@acme.example", vec![&sent[4]]),
            ("status=MESSAGE_STATUS_SCHEDULED", vec![&sent[4]]),
            ("status=queued&tag=odd", vec![&sent[3], &sent[1]]),
        ] {
            let (status, page) = get(&app, key, &format!("/v1/messages?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            assert_eq!(ids(&page), expected.into_iter().cloned().collect::<Vec<_>>(), "{query}");
        }
        // Time window: everything is after an hour ago and before an hour ahead.
        let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (_, page) = get(&app, key, &format!("/v1/messages?created_after={hour_ago}&created_before={}", later(1))).await;
        assert_eq!(ids(&page).len(), 5);
        let (_, page) = get(&app, key, &format!("/v1/messages?created_before={hour_ago}")).await;
        assert!(ids(&page).is_empty());

        // A token is bound to its filters; sizes are checked.
        let (_, page) = get(&app, key, "/v1/messages?page_size=1&tag=even").await;
        let token = page["next_page_token"].as_str().unwrap();
        let (status, json) = get(&app, key, &format!("/v1/messages?page_size=1&tag=odd&page_token={token}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_violations(&json), ["page_token"]);
        for size in ["-1", "1001"] {
            let (status, json) = get(&app, key, &format!("/v1/messages?page_size={size}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{size}");
            assert_eq!(json_violations(&json), ["page_size"]);
        }
        let (status, json) = get(&app, key, "/v1/messages?to=not-an-address").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_violations(&json), ["to"]);
    }

    async fn cancel_and_reschedule_follow_the_state_rules(app: TestApp) {
        let key = &app.account_a.key;
        // Queued and not yet claimed: cancellable, once.
        let queued = send(&app, key, inline_json()).await;
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{queued}:cancel"), &json!({}), &[]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["message"]["status"], "cancelled");
        assert_eq!(json["message"]["recipients"][0]["status"], "cancelled");
        let types: Vec<&str> = json["message"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["queued", "cancelled"]);
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{queued}:cancel"), &json!({}), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION maps to 400: {json}");
        assert_eq!(json["code"], 9);
        assert!(json["message"].as_str().unwrap().contains("cancelled"), "{json}");
        // Rescheduling is for scheduled messages only.
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{queued}:reschedule"), &json!({"scheduled_at": later(3)}), &[]).await;
        assert_eq!((status, json["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(9)), "{json}");

        // A message a worker has claimed can no longer be cancelled.
        let claimed = send(&app, key, inline_json()).await;
        use sea_orm::ConnectionTrait;
        app.store_connection()
            .execute_unprepared(&format!("UPDATE recipients SET lease_owner = 'worker-1' WHERE message_id = '{claimed}'"))
            .await
            .unwrap();
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{claimed}:cancel"), &json!({}), &[]).await;
        assert_eq!(json["code"], 9, "{json}");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, got) = get(&app, key, &format!("/v1/messages/{claimed}")).await;
        assert_eq!(got["message"]["status"], "queued", "unchanged");
        assert_eq!(got["message"]["events"].as_array().unwrap().len(), 1, "no event");

        // Scheduled: rescheduled (with an event), then cancelled.
        let mut body = inline_json();
        body["scheduled_at"] = json!(later(2));
        let scheduled = send(&app, key, body).await;
        let new_time = later(48);
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{scheduled}:reschedule"), &json!({"scheduled_at": new_time}), &[]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["message"]["scheduled_at"], new_time);
        assert_eq!(json["message"]["status"], "scheduled");
        assert_eq!(json["message"]["recipients"][0]["next_attempt_at"], new_time);
        assert_eq!(json["message"]["events"][1]["type"], "rescheduled");
        for (when, field) in [(json!((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()), "scheduled_at"), (json!(later(24 * 31)), "scheduled_at")] {
            let (status, _, json) = post(&app, key, &format!("/v1/messages/{scheduled}:reschedule"), &json!({"scheduled_at": when}), &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json_violations(&json), [field]);
        }
        let mut grpc = MessagesServiceClient::new(app.channel.clone());
        let cancelled = grpc
            .cancel_message(with_key(v1::CancelMessageRequest { id: scheduled.clone() }, KeyHeader::Bearer, key))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        assert_eq!(cancelled.status, v1::MessageStatus::Cancelled as i32);
        let status = grpc
            .reschedule_message(with_key(v1::RescheduleMessageRequest { id: scheduled, scheduled_at: None }, KeyHeader::Bearer, key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "scheduled_at is required");
    }

    async fn a_resend_is_a_new_message_with_the_same_content(app: TestApp) {
        let key = &app.account_a.key;
        let mut body = inline_json();
        body["cc"] = json!(["cc@example.com"]);
        body["tags"] = json!(["receipt"]);
        body["metadata"] = json!({"order": "1042"});
        body["attachments"] = json!([{"filename": "receipt.txt", "content": "dGhhbmtz"}]);
        let original = send(&app, key, body).await;
        let (status, headers, json) = post(&app, key, &format!("/v1/messages/{original}:resend"), &json!({}), &[("idempotency-key", "resend-1")]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert!(headers.get("idempotent-replayed").is_none());
        let copy = json["id"].as_str().unwrap().to_owned();
        assert_ne!(copy, original);
        assert_eq!(json["resent_from"], original);
        assert_eq!(json["status"], "queued");
        let (_, a) = get(&app, key, &format!("/v1/messages/{original}")).await;
        let (_, b) = get(&app, key, &format!("/v1/messages/{copy}")).await;
        let (a, b) = (&a["message"], &b["message"]);
        for field in ["subject", "to", "cc", "tags", "metadata", "from_email", "attachments"] {
            assert_eq!(a[field], b[field], "{field}");
        }
        assert_eq!(b["attachments"][0]["size_bytes"], "6");
        assert_eq!(b["resent_from"], original);
        assert_ne!(a["message_id_header"], b["message_id_header"]);
        assert_eq!(b["message_id_header"], format!("<{copy}@localhost>"));
        // The same key replays the resend.
        let (_, headers, again) = post(&app, key, &format!("/v1/messages/{original}:resend"), &json!({}), &[("idempotency-key", "resend-1")]).await;
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(again["id"], copy);
        assert_eq!(message_count(&app, key).await, 2);
    }

    async fn another_accounts_messages_are_not_found_a1(app: TestApp) {
        let (a, b) = (&app.account_a.key, &app.account_b.key);
        let mut body = inline_json();
        body["scheduled_at"] = json!(later(2));
        body["tags"] = json!(["private"]);
        let secret = send(&app, a, body).await;
        let (_, _, other) = post(&app, a, "/v1/send", &inline_json(), &[]).await;
        let _ = other;
        let missing = "msg_0000000000000000000000000000000f";

        // Every ID-taking RPC answers B exactly as for an id that does not exist.
        let calls: Vec<(reqwest::Method, String, Option<Value>)> = vec![
            (reqwest::Method::GET, "/v1/messages/{id}".into(), None),
            (reqwest::Method::POST, "/v1/messages/{id}:cancel".into(), Some(json!({}))),
            (reqwest::Method::POST, "/v1/messages/{id}:reschedule".into(), Some(json!({"scheduled_at": later(3)}))),
            (reqwest::Method::POST, "/v1/messages/{id}:resend".into(), Some(json!({}))),
        ];
        for (method, path, body) in calls {
            let mut answers = Vec::new();
            for id in [&secret, &missing.to_owned()] {
                let mut request = app.http.request(method.clone(), format!("{}{}", app.base_url, path.replace("{id}", id))).header("x-api-key", b);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let mut json: Value = response.json().await.unwrap();
                json["message"] = json!(json["message"].as_str().unwrap().replace(id.as_str(), "ID"));
                answers.push((status, json));
            }
            assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{path}: {:?}", answers[0]);
            assert_eq!(json_reason(&answers[0].1), "NOT_FOUND");
            assert_eq!(answers[0], answers[1], "{path}: indistinguishable from a missing id");
        }
        // Over gRPC too.
        let status = MessagesServiceClient::new(app.channel.clone())
            .get_message(with_key(v1::GetMessageRequest { id: secret.clone() }, KeyHeader::Bearer, b))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::NotFound, "NOT_FOUND"));

        // Lists never show A's messages, whatever the filter or token.
        for query in ["", "?tag=private", "?status=scheduled", "?to=jane@example.com", "?from=hello@acme.example"] {
            let (status, page) = get(&app, b, &format!("/v1/messages{query}")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(ids(&page).is_empty(), "{query}: {page}");
        }
        let (_, page) = get(&app, a, "/v1/messages?page_size=1").await;
        let token = page["next_page_token"].as_str().unwrap();
        assert!(!token.is_empty());
        let (status, page) = get(&app, b, &format!("/v1/messages?page_size=1&page_token={token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(ids(&page).is_empty(), "A's cursor shows B nothing of A's");

        // A is untouched: still scheduled, one event.
        let (_, got) = get(&app, a, &format!("/v1/messages/{secret}")).await;
        assert_eq!(got["message"]["status"], "scheduled");
        assert_eq!(got["message"]["events"].as_array().unwrap().len(), 1);
        assert_eq!(message_count(&app, b).await, 0, "B's failed resend created nothing");
    }
}
