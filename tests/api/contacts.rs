//! ContactsService through the real server, over REST and gRPC: upserts
//! that keep what they should, unsubscription with its suppression,
//! filtered listing with bound page tokens, and accounts kept apart.

use posthorn::proto::v1;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{KeyHeader, TestApp, json_reason, json_violations, with_key};

/// A REST call with `key` (the argument order of this file's calls).
async fn rest(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    crate::templates::rest(app, method, path, key, body).await
}

async fn upsert(app: &TestApp, body: Value) -> (StatusCode, Value) {
    rest(
        app,
        &app.account_a.key,
        reqwest::Method::POST,
        "/v1/contacts",
        Some(body),
    )
    .await
}

fn client(
    app: &TestApp,
) -> v1::contacts_service_client::ContactsServiceClient<tonic::transport::Channel> {
    v1::contacts_service_client::ContactsServiceClient::new(app.channel.clone())
}

crate::on_both_databases! {
    async fn an_upsert_creates_then_updates_and_keeps_the_subscription_unless_told(app: TestApp) {
        let (status, created) = upsert(&app, json!({
            "email": "Ada@Example.COM",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "fields": {"plan": "pro", "seats": 3, "beta": true},
            "lists": ["news", "product", "news"],
        })).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        assert_eq!(created["created"], true);
        let contact = &created["contact"];
        assert_eq!(contact["email"], "Ada@example.com", "the domain lower-cased, the local part kept");
        assert_eq!(contact["first_name"], "Ada");
        assert_eq!(contact["fields"], json!({"plan": "pro", "seats": 3.0, "beta": true}));
        assert_eq!(contact["lists"], json!(["news", "product"]), "a repeated list is kept once");
        assert_eq!(contact["subscribed"], true, "a new contact is subscribed");
        assert!(contact.get("unsubscribed_at").is_none_or(Value::is_null), "{contact}");

        // Read back over gRPC, matched case-insensitively.
        let got = client(&app)
            .get_contact(with_key(v1::GetContactRequest { email: "ADA@example.com".into() }, KeyHeader::Bearer, &app.account_a.key))
            .await
            .unwrap()
            .into_inner()
            .contact
            .unwrap();
        assert_eq!((got.email.as_str(), got.last_name.as_str()), ("Ada@example.com", "Lovelace"));
        assert_eq!(got.lists, ["news", "product"]);

        // An update replaces names, fields and lists, and keeps the state.
        let (status, unsubscribed) = upsert(&app, json!({"email": "ada@example.com", "subscribed": false})).await;
        assert_eq!(status, StatusCode::OK, "{unsubscribed}");
        assert_eq!(unsubscribed["created"], false);
        assert_eq!(unsubscribed["contact"]["subscribed"], false);
        let since = unsubscribed["contact"]["unsubscribed_at"].clone();
        assert!(since.as_str().is_some_and(|t| t.ends_with('Z')), "{since}");
        let (_, updated) = upsert(&app, json!({"email": "ada@example.com", "first_name": "Augusta", "lists": ["events"]})).await;
        let contact = &updated["contact"];
        assert_eq!(contact["email"], "ada@example.com", "the address as last written");
        assert_eq!(contact["first_name"], "Augusta");
        assert_eq!(contact["last_name"], "", "replaced, not merged");
        assert_eq!(contact["fields"], json!({}));
        assert_eq!(contact["lists"], json!(["events"]));
        assert_eq!(contact["subscribed"], false, "kept: subscribed was not given");
        assert_eq!(contact["unsubscribed_at"], since);
        let (_, again) = upsert(&app, json!({"email": "ada@example.com", "subscribed": true})).await;
        assert_eq!(again["contact"]["subscribed"], true);
        assert!(again["contact"].get("unsubscribed_at").is_none_or(Value::is_null), "{again}");

        // Bad input: every violation at once, named, over both doors.
        let (status, refused) = upsert(&app, json!({
            "email": "not an address",
            "first_name": "Eve\r\nBcc: victim@example.com",
            "last_name": "x".repeat(257),
            "lists": ["ok", ""],
        })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(json_reason(&refused), "VALIDATION_FAILED");
        assert_eq!(json_violations(&refused), ["email", "first_name", "last_name", "lists[1]"]);
        let status = client(&app)
            .upsert_contact(with_key(v1::UpsertContactRequest { email: String::new(), ..Default::default() }, KeyHeader::XApiKey, &app.account_a.key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("email"), "{}", status.message());
    }

    async fn unsubscribing_suppresses_the_address_and_deleting_does_not(app: TestApp) {
        let key = app.account_a.key.clone();
        upsert(&app, json!({"email": "grace@example.com", "first_name": "Grace"})).await;
        let (status, first) = rest(&app, &key, reqwest::Method::POST, "/v1/contacts/grace%40example.com/unsubscribe", Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["contact"]["subscribed"], false);
        assert_eq!(first["contact"]["first_name"], "Grace");
        let (status, suppression) = rest(&app, &key, reqwest::Method::GET, "/v1/suppressions/grace%40example.com", None).await;
        assert_eq!(status, StatusCode::OK, "{suppression}");
        assert_eq!(suppression["suppression"]["reason"], "unsubscribed");
        assert_eq!(suppression["suppression"]["origin"], "api");
        assert!(suppression["suppression"].get("expires_at").is_none_or(Value::is_null));

        // Repeating it changes nothing, and an upsert that does not name
        // the state does not re-subscribe.
        let (_, second) = rest(&app, &key, reqwest::Method::POST, "/v1/contacts/grace%40example.com/unsubscribe", Some(json!({}))).await;
        assert_eq!(second["contact"]["unsubscribed_at"], first["contact"]["unsubscribed_at"]);
        let (_, kept) = upsert(&app, json!({"email": "grace@example.com", "first_name": "Grace B."})).await;
        assert_eq!(kept["contact"]["subscribed"], false);
        // Subscribing again does not lift the suppression: only its deletion does.
        upsert(&app, json!({"email": "grace@example.com", "subscribed": true})).await;
        let (status, _) = rest(&app, &key, reqwest::Method::GET, "/v1/suppressions/grace%40example.com", None).await;
        assert_eq!(status, StatusCode::OK);

        // A suppression without an end is kept as it was; one that would
        // end becomes the unsubscription, for good.
        for (email, body) in [
            ("bounced@example.com", json!({"email": "bounced@example.com", "reason": "bounced"})),
            ("paused@example.com", json!({"email": "paused@example.com", "reason": "other", "expires_at": "2999-01-01T00:00:00Z"})),
        ] {
            upsert(&app, json!({"email": email})).await;
            let (status, created) = rest(&app, &key, reqwest::Method::POST, "/v1/suppressions", Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{created}");
            let (status, _) = rest(&app, &key, reqwest::Method::POST, &format!("/v1/contacts/{email}/unsubscribe"), Some(json!({}))).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (_, bounced) = rest(&app, &key, reqwest::Method::GET, "/v1/suppressions/bounced@example.com", None).await;
        assert_eq!(bounced["suppression"]["reason"], "bounced");
        let (_, paused) = rest(&app, &key, reqwest::Method::GET, "/v1/suppressions/paused@example.com", None).await;
        assert_eq!(paused["suppression"]["reason"], "unsubscribed");
        assert!(paused["suppression"].get("expires_at").is_none_or(Value::is_null), "{paused}");

        // Deleting a contact suppresses nothing and forgets it.
        upsert(&app, json!({"email": "linus@example.com"})).await;
        let (status, _) = rest(&app, &key, reqwest::Method::DELETE, "/v1/contacts/linus%40example.com", None).await;
        assert_eq!(status, StatusCode::OK);
        for path in ["/v1/contacts/linus%40example.com", "/v1/suppressions/linus%40example.com"] {
            let (status, body) = rest(&app, &key, reqwest::Method::GET, path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
        let (status, body) = rest(&app, &key, reqwest::Method::DELETE, "/v1/contacts/linus%40example.com", None).await;
        assert_eq!((status, body["message"].as_str()), (StatusCode::NOT_FOUND, Some("contact `linus@example.com` not found")));
        let (status, _) = rest(&app, &key, reqwest::Method::POST, "/v1/contacts/nobody%40example.com/unsubscribe", Some(json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = rest(&app, &key, reqwest::Method::GET, "/v1/suppressions/nobody%40example.com", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an unknown contact's address is not suppressed");
    }

    async fn listing_filters_by_list_and_state_and_pages_oldest_first(app: TestApp) {
        let key = app.account_a.key.clone();
        let people = [
            ("p0@example.com", vec!["news"], true),
            ("p1@example.com", vec!["new"], true),
            ("p2@example.com", vec!["product", "news"], false),
            ("p3@example.com", vec!["say \"news\""], true),
            ("p4@example.com", vec!["news"], true),
            ("p5@example.com", vec![], true),
            ("p6@example.com", vec!["News"], true),
        ];
        for (email, lists, subscribed) in &people {
            let (status, body) = upsert(&app, json!({"email": email, "lists": lists, "subscribed": subscribed})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let list_all = |query: &str| {
            let query = query.to_owned();
            let key = key.clone();
            let app = &app;
            async move {
                let mut seen = Vec::new();
                let mut token = String::new();
                loop {
                    let (status, page) = rest(app, &key, reqwest::Method::GET, &format!("/v1/contacts?page_size=2&{query}&page_token={token}"), None).await;
                    assert_eq!(status, StatusCode::OK, "{page}");
                    let contacts = page["contacts"].as_array().cloned().unwrap_or_default();
                    assert!(contacts.len() <= 2);
                    seen.extend(contacts.iter().map(|c| c["email"].as_str().unwrap().to_owned()));
                    token = page["next_page_token"].as_str().unwrap_or_default().to_owned();
                    if token.is_empty() {
                        return seen;
                    }
                }
            }
        };
        assert_eq!(list_all("list=news").await, ["p0@example.com", "p2@example.com", "p4@example.com"],
            "whole, case-sensitive list names only, oldest first");
        assert_eq!(list_all("list=news&subscribed=true").await, ["p0@example.com", "p4@example.com"]);
        assert_eq!(list_all("subscribed=false").await, ["p2@example.com"]);
        assert_eq!(list_all("list=say%20%22news%22").await, ["p3@example.com"]);
        assert_eq!(list_all("").await.len(), people.len());

        // A token is bound to its filter; bad sizes are named.
        let (_, first) = rest(&app, &key, reqwest::Method::GET, "/v1/contacts?list=news&page_size=1", None).await;
        let token = first["next_page_token"].as_str().unwrap().to_owned();
        let (status, refused) = rest(&app, &key, reqwest::Method::GET, &format!("/v1/contacts?list=new&page_size=1&page_token={token}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_violations(&refused), ["page_token"]);
        let refused = client(&app)
            .list_contacts(with_key(v1::ListContactsRequest { page_size: -1, page_token: "nonsense".into(), ..Default::default() }, KeyHeader::Bearer, &key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("page_size") && refused.message().contains("page_token"), "{}", refused.message());
    }

    async fn another_account_neither_sees_nor_changes_a_contact(app: TestApp) {
        upsert(&app, json!({"email": "shared@example.com", "first_name": "A's"})).await;
        let b = app.account_b.key.clone();
        for (method, path) in [
            (reqwest::Method::GET, "/v1/contacts/shared%40example.com"),
            (reqwest::Method::DELETE, "/v1/contacts/shared%40example.com"),
            (reqwest::Method::POST, "/v1/contacts/shared%40example.com/unsubscribe"),
        ] {
            let body = (method == reqwest::Method::POST).then(|| json!({}));
            let (status, json) = rest(&app, &b, method.clone(), path, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
        }
        let (_, listed) = rest(&app, &b, reqwest::Method::GET, "/v1/contacts", None).await;
        assert!(listed["contacts"].as_array().is_none_or(Vec::is_empty), "{listed}");
        // B's upsert of the same address is B's own contact.
        let (_, own) = rest(&app, &b, reqwest::Method::POST, "/v1/contacts", Some(json!({"email": "shared@example.com"}))).await;
        assert_eq!(own["created"], true);

        let (status, mine) = rest(&app, &app.account_a.key, reqwest::Method::GET, "/v1/contacts/shared%40example.com", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((mine["contact"]["first_name"].as_str(), mine["contact"]["subscribed"].as_bool()), (Some("A's"), Some(true)));
        let (status, _) = rest(&app, &app.account_a.key, reqwest::Method::GET, "/v1/suppressions/shared%40example.com", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
