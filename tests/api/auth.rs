//! The authentication matrix (A2, A3): missing, malformed, unknown, revoked,
//! wrong-scope and right-scope keys, over gRPC and gRPC-Web, in both headers.

use std::sync::Arc;
use std::time::Duration;

use posthorn::domain::Scope;
use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
use posthorn::proto::v1::send_service_client::SendServiceClient;
use posthorn::proto::v1::{ListMessagesRequest, SendEmailRequest};
use tonic::Code;

use crate::grpc_web;
use crate::helpers::{KeyHeader, TestApp, reason, with_key};
use crate::on_both_databases;

const SEND: &str = "/posthorn.v1.SendService/SendEmail";

/// Calls SendEmail over gRPC with the given headers.
async fn send_grpc(app: &TestApp, headers: &[(&str, String)]) -> tonic::Status {
    let mut request = tonic::Request::new(SendEmailRequest::default());
    for (name, value) in headers {
        request.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    SendServiceClient::new(app.channel.clone())
        .send_email(request)
        .await
        .expect_err("an empty send is invalid")
}

/// Asserts that a call is refused with `code` and `reason` over gRPC and gRPC-Web.
async fn assert_refused(
    app: &TestApp,
    headers: &[(&str, String)],
    code: Code,
    expected_reason: &str,
) {
    let status = send_grpc(app, headers).await;
    assert_eq!(status.code(), code, "gRPC with {headers:?}: {status:?}");
    assert_eq!(reason(&status), expected_reason, "gRPC with {headers:?}");

    let reply = grpc_web::call(
        &app.http,
        &app.base_url,
        SEND,
        &SendEmailRequest::default(),
        headers,
    )
    .await;
    assert_eq!(reply.http_status, 200, "gRPC-Web answers errors in-band");
    assert_eq!(
        reply.grpc_status, code as i32,
        "gRPC-Web with {headers:?}: {reply:?}"
    );
    assert_eq!(reply.reason(), expected_reason, "gRPC-Web with {headers:?}");
}

on_both_databases! {
    async fn a_call_without_a_key_is_unauthenticated_with_api_key_missing(app: TestApp) {
        assert_refused(&app, &[], Code::Unauthenticated, "API_KEY_MISSING").await;
        let status = send_grpc(&app, &[]).await;
        assert!(status.message().contains("Authorization: Bearer"), "the message says how to authenticate: {}", status.message());
    }

    async fn malformed_and_unknown_keys_are_unauthenticated_alike(app: TestApp) {
        let unknown = format!("ph_live_{}", "A".repeat(40));
        let bad_values = [
            ("authorization", "Basic dXNlcjpwYXNz".to_owned()),
            ("authorization", "Bearer".to_owned()),
            ("authorization", "Bearer not-a-key".to_owned()),
            ("x-api-key", "not-a-key".to_owned()),
            ("authorization", format!("Bearer {unknown}")),
            ("x-api-key", unknown.clone()),
        ];
        let mut messages = Vec::new();
        for header in bad_values {
            assert_refused(&app, std::slice::from_ref(&header), Code::Unauthenticated, "API_KEY_INVALID").await;
            messages.push(send_grpc(&app, &[header]).await.message().to_owned());
        }
        messages.dedup();
        assert_eq!(messages.len(), 1, "every invalid key gets the same answer: {messages:?}");
    }

    async fn a_revoked_key_stops_working_once_the_auth_cache_ttl_has_passed(app: TestApp) {
        use posthorn::domain::auth::Authenticator;
        use posthorn::domain::clock::ManualClock;

        let key = app.key_with_scopes(&[Scope::EmailSend]).await;
        let clock = Arc::new(ManualClock::at(chrono::Utc::now()));
        let ttl = Duration::from_secs(5);
        let authenticator = Authenticator::new(app.store.clone(), Default::default(), ttl, clock.clone());
        authenticator.authenticate(Some(&key)).await.expect("a fresh key works");
        app.revoke(&key).await;
        clock.advance(chrono::Duration::milliseconds(4_999));
        authenticator
            .authenticate(Some(&key))
            .await
            .expect("within the TTL the cached lookup still answers");
        clock.advance(chrono::Duration::milliseconds(1));
        let refused = authenticator.authenticate(Some(&key)).await.unwrap_err();
        assert_eq!(refused.reason().as_str(), "API_KEY_INVALID");
        clock.advance(chrono::Duration::seconds(60));
        assert_eq!(authenticator.authenticate(Some(&key)).await.unwrap_err().reason().as_str(), "API_KEY_INVALID");
    }
    async fn a_key_without_the_scope_is_permission_denied_with_scope_missing(app: TestApp) {
        let read_only = app.key_with_scopes(&[Scope::EmailRead, Scope::ContactsRead]).await;
        for header in KeyHeader::BOTH {
            assert_refused(&app, &[header.pair(&read_only)], Code::PermissionDenied, "SCOPE_MISSING").await;
        }
        let status = send_grpc(&app, &[KeyHeader::Bearer.pair(&read_only)]).await;
        assert!(status.message().contains("email:send"), "the message names the scope: {}", status.message());
    }

    async fn a_key_with_the_scope_reaches_the_handler_over_both_doors_and_headers(app: TestApp) {
        let sender = app.key_with_scopes(&[Scope::EmailSend]).await;
        for header in KeyHeader::BOTH {
            // Past authentication the handler answers; SendEmail itself is built later.
            assert_refused(&app, &[header.pair(&sender)], Code::InvalidArgument, "VALIDATION_FAILED").await;
        }
        // The same key cannot read.
        let status = MessagesServiceClient::new(app.channel.clone())
            .list_messages(with_key(ListMessagesRequest::default(), KeyHeader::XApiKey, &sender))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::PermissionDenied, "SCOPE_MISSING"));
    }

    async fn each_key_authenticates_as_its_own_account_and_handlers_receive_it(app: TestApp) {
        let state = posthorn::api::auth::AuthState::new(app.store.clone(), Default::default(), std::time::Duration::ZERO).unwrap();
        for (account, header) in [(&app.account_a, KeyHeader::Bearer), (&app.account_b, KeyHeader::XApiKey)] {
            let (name, value) = header.pair(&account.key);
            let mut headers = http::HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            let context = state.authorize(SEND, &headers).await.unwrap();
            assert_eq!(context.account_id, account.id, "{}", account.name);
            assert!(context.scopes.grants(Scope::WebhooksWrite));
            assert!(!context.test_mode);
        }
    }

    async fn account_admin_grants_every_scope(app: TestApp) {
        let admin = app.key_with_scopes(&[Scope::AccountAdmin]).await;
        MessagesServiceClient::new(app.channel.clone())
            .list_messages(with_key(ListMessagesRequest::default(), KeyHeader::Bearer, &admin))
            .await
            .expect("an admin key may list messages");
    }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes() {
    let app = crate::helpers::spawn_app().await;
    let keys = posthorn::domain::accounts::Accounts::new(app.store.clone())
        .list_keys("acme")
        .await
        .unwrap();
    let plaintext = &app.account_a.key;
    let stored = keys
        .iter()
        .find(|k| plaintext.starts_with(&k.prefix))
        .expect("the key is listed by prefix");
    assert_ne!(&stored.secret_hash, plaintext);
    assert_eq!(stored.secret_hash, posthorn::domain::keys::hash(plaintext));
    assert!(!plaintext.starts_with(&stored.secret_hash[..16]));
}

#[tokio::test]
async fn a_key_records_when_it_was_last_used() {
    let app = crate::helpers::spawn_app().await;
    let key = app.key_with_scopes(&[Scope::EmailRead]).await;
    let accounts = posthorn::domain::accounts::Accounts::new(app.store.clone());
    let prefix = posthorn::domain::keys::parse(&key).unwrap().prefix;
    let last_used = || async {
        let keys = accounts.list_keys("acme").await.unwrap();
        keys.into_iter()
            .find(|k| k.prefix == prefix)
            .unwrap()
            .last_used_at
    };
    assert_eq!(last_used().await, None, "a new key has never been used");

    let _ = MessagesServiceClient::new(app.channel.clone())
        .list_messages(with_key(
            ListMessagesRequest::default(),
            KeyHeader::Bearer,
            &key,
        ))
        .await;
    // The use is written in the background; await it, bounded.
    let recorded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(at) = last_used().await {
                return at;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("last_used_at is recorded");
    assert!(chrono::Utc::now() - recorded < chrono::TimeDelta::seconds(60));
}

// With `auth_cache_seconds = 0` every request reads its key: a revocation
// applies to the very next request, over both headers.
on_both_databases! {
    configure = |s| s.auth_cache = Duration::ZERO;

    async fn a_revoked_key_is_refused_at_once_without_an_auth_cache(app: TestApp) {
        let key = app.key_with_scopes(&[Scope::EmailSend]).await;
        for header in KeyHeader::BOTH {
            assert_refused(&app, &[header.pair(&key)], Code::InvalidArgument, "VALIDATION_FAILED").await;
        }
        app.revoke(&key).await;
        for header in KeyHeader::BOTH {
            assert_refused(&app, &[header.pair(&key)], Code::Unauthenticated, "API_KEY_INVALID").await;
        }
    }
}
