//! The suppression list in the send path: a suppressed address (matched
//! case-insensitively, per account) is recorded `suppressed` at accept and
//! never sent to, does not count against the daily quota, and a message
//! with nobody left to send to is `suppressed` itself. (Hard bounces that
//! suppress are in relay.rs.)

use posthorn::domain::accounts::AccountStore;
use posthorn::domain::email::EmailAddress;
use posthorn::domain::limits::Overrides;
use posthorn::domain::suppressions::{
    Suppression, SuppressionOrigin, SuppressionReason, SuppressionStore,
};
use posthorn::proto::v1;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{next_event, send, watch};
use crate::helpers::{KeyHeader, TestApp, reason, with_key};
use crate::send::{client, get, inline, post};

fn to(addresses: &[&str]) -> v1::SendEmailRequest {
    v1::SendEmailRequest {
        to: addresses.iter().map(|a| a.to_string()).collect(),
        ..inline()
    }
}

/// An address's suppression as GetSuppression shows it over REST, asserted
/// present: its reason, origin and message id.
pub async fn suppression_of(app: &TestApp, path_email: &str) -> (String, String, String) {
    let (status, body) = get(
        app,
        &app.account_a.key,
        &format!("/v1/suppressions/{path_email}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let field = |name: &str| {
        body["suppression"][name]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (field("reason"), field("origin"), field("message_id"))
}

/// The message as GetMessage shows it over REST.
async fn message(app: &TestApp, id: &str) -> Value {
    let (status, body) = get(app, &app.account_a.key, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["message"].clone()
}

crate::on_both_databases! {
    configure = |s| s.deliver = true;

    async fn a_suppressed_address_is_left_out_at_accept_and_never_sent_to(app: TestApp) {
        let key = app.account_a.key.clone();
        let (status, _, body) = post(&app, &key, "/v1/suppressions", &json!({"email": "Bob@Example.com", "reason": "complained"}), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.store
            .set_account_overrides(&app.account_a.id, Overrides { daily_quota: Some(1), ..Default::default() })
            .await
            .unwrap();

        // Every recipient suppressed: the answer says so, and nothing counts
        // against the quota of 1.
        let answer = client(&app)
            .send_email(with_key(to(&["bob@EXAMPLE.com"]), KeyHeader::Bearer, &key))
            .await
            .expect("accepted")
            .into_inner();
        assert_eq!(answer.status, v1::MessageStatus::Suppressed as i32, "{answer:?}");
        assert_eq!(answer.recipient_count, 1);
        let all_suppressed = answer.id;

        // One recipient of two suppressed: the other is delivered (to the
        // capture), and the quota's one recipient is used by it.
        let mixed = send(&app, &key, to(&["carol@example.com", "Bob <bob@example.com>"])).await;
        let mut stream = watch(&app, &key, v1::WatchMessagesRequest { message_id: mixed.clone(), ..Default::default() }).await;
        let mut seen = Vec::new();
        while !seen.iter().any(|(t, _): &(i32, String)| *t == v1::EventType::Delivered as i32) {
            let event = next_event(&mut stream).await;
            seen.push((event.r#type, event.recipient));
        }
        assert_eq!(
            seen,
            [
                (v1::EventType::Queued as i32, String::new()),
                (v1::EventType::Suppressed as i32, "bob@example.com".to_owned()),
                (v1::EventType::Delivered as i32, "carol@example.com".to_owned()),
            ]
        );
        let shown = message(&app, &mixed).await;
        assert_eq!(shown["status"], "delivered", "a suppressed recipient does not hold the message back: {shown}");
        let recipients: Vec<(&str, &str, i64)> = shown["recipients"].as_array().unwrap().iter()
            .map(|r| (r["email"].as_str().unwrap(), r["status"].as_str().unwrap(), r["attempts"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(recipients, [("carol@example.com", "delivered", 1), ("bob@example.com", "suppressed", 0)]);
        let refused = client(&app)
            .send_email(with_key(to(&["dave@example.com"]), KeyHeader::Bearer, &key))
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "DAILY_QUOTA_EXCEEDED", "carol used the quota, bob did not");

        // After the worker delivered the later message, the first one is
        // still untouched: never attempted, no MIME built.
        let shown = message(&app, &all_suppressed).await;
        assert_eq!(shown["status"], "suppressed", "{shown}");
        assert_eq!(shown["recipients"][0]["status"], "suppressed");
        assert!(shown["recipients"][0]["attempts"].as_i64().unwrap_or(0) == 0, "{shown}");
        let timeline: Vec<(&str, &str)> = shown["events"].as_array().unwrap().iter()
            .map(|e| (e["type"].as_str().unwrap(), e["recipient"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(timeline, [("suppressed", ""), ("suppressed", "bob@example.com")]);
        let why = shown["events"][1]["details"]["reason"].as_str().unwrap();
        assert!(why.contains("suppression list") && why.contains("complained") && why.contains("api"), "{why}");
        let (status, _) = get(&app, &key, &format!("/v1/messages/{all_suppressed}/content")).await;
        assert_ne!(status, StatusCode::OK, "no MIME was built for a message nobody is sent");
    }

    async fn an_idempotent_send_replays_the_suppressions_it_was_stored_with_and_a_lapsed_one_is_ignored(app: TestApp) {
        let key = app.account_a.key.clone();
        let (status, _, body) = post(&app, &key, "/v1/suppressions", &json!({"email": "bob@example.com", "reason": "complained"}), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // A suppression that lapsed an hour ago (the API only takes future
        // ones, so it is stored directly).
        let lapsed = chrono::Utc::now() - chrono::Duration::hours(1);
        app.store
            .put_suppression(&Suppression {
                account_id: app.account_a.id.clone(),
                email: EmailAddress::parse("erin@example.com").unwrap(),
                reason: SuppressionReason::Other,
                origin: SuppressionOrigin::Api,
                message_id: None,
                created_at: lapsed - chrono::Duration::days(1),
                expires_at: Some(lapsed),
            })
            .await
            .unwrap();

        // A batch with a key: the answer shows each item as stored, and the
        // replay is the same answer.
        let item = |to: &[&str]| json!({"from_email": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello"});
        let batch = json!({"messages": [item(&["bob@example.com"]), item(&["carol@example.com", "BOB@example.com"]), item(&["erin@example.com"])]});
        let (status, headers, first) = post(&app, &key, "/v1/send/batch", &batch, &[("idempotency-key", "suppressed-batch")]).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert!(headers.get("idempotent-replayed").is_none());
        let statuses: Vec<&str> = first["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["suppressed", "queued", "queued"], "{first}");
        let (_, headers, again) = post(&app, &key, "/v1/send/batch", &batch, &[("idempotency-key", "suppressed-batch")]).await;
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(again, first);
        let mixed = message(&app, first["results"][1]["id"].as_str().unwrap()).await;
        // (Delivery runs meanwhile: whoever is not suppressed may be
        // delivered by now.)
        let suppressed: Vec<(&str, bool)> = mixed["recipients"].as_array().unwrap().iter()
            .map(|r| (r["email"].as_str().unwrap(), r["status"] == "suppressed"))
            .collect();
        assert_eq!(suppressed, [("carol@example.com", false), ("BOB@example.com", true)], "{mixed}");
        let lapsed_one = message(&app, first["results"][2]["id"].as_str().unwrap()).await;
        assert_ne!(lapsed_one["recipients"][0]["status"], "suppressed", "a lapsed suppression holds nothing back: {lapsed_one}");

        // SendEmail with a key, over gRPC: replayed as suppressed, same id.
        let once = || {
            let mut request = with_key(to(&["bob@example.com"]), KeyHeader::Bearer, &key);
            request.metadata_mut().insert("idempotency-key", "suppressed-one".parse().unwrap());
            request
        };
        let answer = client(&app).send_email(once()).await.expect("accepted");
        assert!(answer.metadata().get("idempotent-replayed").is_none());
        let answer = answer.into_inner();
        assert_eq!(answer.status, v1::MessageStatus::Suppressed as i32, "{answer:?}");
        let replay = client(&app).send_email(once()).await.expect("replayed");
        assert_eq!(replay.metadata().get("idempotent-replayed").unwrap(), "true");
        assert_eq!(replay.into_inner(), answer);
        let shown = message(&app, &answer.id).await;
        let timeline: Vec<(&str, &str)> = shown["events"].as_array().unwrap().iter()
            .map(|e| (e["type"].as_str().unwrap(), e["recipient"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(timeline, [("suppressed", ""), ("suppressed", "bob@example.com")], "one timeline, not one per try");
    }

    async fn a_suppression_belongs_to_its_account_and_lifting_it_lets_mail_through(app: TestApp) {
        let a = app.account_a.key.clone();
        let (status, _, _) = post(&app, &a, "/v1/suppressions", &json!({"email": "erin@example.com", "reason": "other"}), &[]).await;
        assert_eq!(status, StatusCode::OK);

        // B can neither see, list nor lift A's suppression (A1): NOT_FOUND
        // as for an address nobody suppressed.
        let b = app.account_b.key.clone();
        for path in ["/v1/suppressions/erin%40example.com", "/v1/suppressions/nobody%40example.com"] {
            let (status, body) = get(&app, &b, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
        let (_, listed) = get(&app, &b, "/v1/suppressions?reason=other").await;
        assert!(listed["suppressions"].as_array().is_none_or(Vec::is_empty), "{listed}");
        let lifted = reqwest::Client::new()
            .delete(format!("{}/v1/suppressions/erin%40example.com", app.base_url))
            .header("x-api-key", &b)
            .send()
            .await
            .unwrap();
        assert_eq!(lifted.status(), StatusCode::NOT_FOUND);
        assert_eq!(suppression_of(&app, "erin%40example.com").await.0, "other", "A's is still there");

        // Account B never suppressed erin: its mail goes.
        let mut from_b = to(&["erin@example.com"]);
        from_b.from_email = "hello@globex.example".into();
        let answer = client(&app)
            .send_email(with_key(from_b, KeyHeader::Bearer, &app.account_b.key))
            .await
            .expect("accepted")
            .into_inner();
        assert_eq!(answer.status, v1::MessageStatus::Queued as i32);

        let first = client(&app).send_email(with_key(to(&["erin@example.com"]), KeyHeader::Bearer, &a)).await.unwrap().into_inner();
        assert_eq!(first.status, v1::MessageStatus::Suppressed as i32);
        let request = reqwest::Client::new()
            .delete(format!("{}/v1/suppressions/erin%40example.com", app.base_url))
            .header("x-api-key", &a)
            .send()
            .await
            .unwrap();
        assert_eq!(request.status(), StatusCode::OK);
        let second = client(&app).send_email(with_key(to(&["erin@example.com"]), KeyHeader::Bearer, &a)).await.unwrap().into_inner();
        assert_eq!(second.status, v1::MessageStatus::Queued as i32, "the suppression was lifted");
    }
}
