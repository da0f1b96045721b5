//! Delivery through the worker pool with the capture and file transports,
//! the built MIME (GetMessageContent) and the live event stream
//! (WatchMessages): replay, resume from a cursor, account isolation.

use std::time::Duration;

use futures::StreamExt;
use posthorn::proto::v1;
use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Streaming;

use crate::helpers::{Backend, KeyHeader, TestApp, reason, try_spawn_app_with, with_key};

use crate::on_both_databases;
use crate::send::{client, get, inline, post};

pub fn messages(app: &TestApp) -> MessagesServiceClient<tonic::transport::Channel> {
    MessagesServiceClient::new(app.channel.clone())
}

pub async fn watch(
    app: &TestApp,
    key: &str,
    request: v1::WatchMessagesRequest,
) -> Streaming<v1::WatchMessagesResponse> {
    messages(app)
        .watch_messages(with_key(request, KeyHeader::Bearer, key))
        .await
        .expect("watch starts")
        .into_inner()
}

/// The next event of a stream, awaited (bounded so a broken pool fails the
/// test instead of hanging it).
pub async fn next_event(stream: &mut Streaming<v1::WatchMessagesResponse>) -> v1::MessageEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
        .expect("no error")
        .event
        .expect("an event")
}

pub async fn send(app: &TestApp, key: &str, request: v1::SendEmailRequest) -> String {
    client(app)
        .send_email(with_key(request, KeyHeader::Bearer, key))
        .await
        .expect("accepted")
        .into_inner()
        .id
}

/// The next Server-Sent Events block of a REST stream (an event or a
/// comment), without its blank line; awaited, bounded.
pub(crate) async fn next_sse<S>(body: &mut S, buffer: &mut Vec<u8>) -> String
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8(buffer[..end].to_vec()).expect("UTF-8");
            buffer.drain(..end + 2);
            return block;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("a block arrives")
            .expect("the stream is open")
            .unwrap();
        buffer.extend_from_slice(&chunk);
    }
}

/// An SSE event's `id` and its data as JSON.
pub(crate) fn sse_event(block: &str) -> (String, serde_json::Value) {
    let (id, data) = block
        .split_once('\n')
        .unwrap_or_else(|| panic!("{block:?}"));
    let id = id
        .strip_prefix("id: ")
        .unwrap_or_else(|| panic!("{block:?}"));
    let data = data
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("{block:?}"));
    (id.to_owned(), serde_json::from_str(data).unwrap())
}

on_both_databases! {
    configure = |s| {
        s.deliver = true;
        s.stream_keepalive = Duration::from_millis(200);
    };

    async fn capture_delivers_and_the_stream_shows_queued_then_delivered(app: TestApp) {
        let key = &app.account_a.key;
        let mut request = inline();
        request.text = "Thanks.\n.\nA line that is a single dot stays.".into();
        request.bcc = vec!["audit@example.com".into()];
        request.cc = vec!["Zoë Ünicode <zoe@example.com>".into()];
        request.subject = "Grüße — your receipt".into();
        request.headers.insert("X-Order".into(), "1042".into());
        let id = send(&app, key, request).await;

        // Replayed for one message: its stored events first, then live ones.
        let mut stream = watch(&app, key, v1::WatchMessagesRequest { message_id: id.clone(), ..Default::default() }).await;
        let first = next_event(&mut stream).await;
        assert_eq!((first.message_id.as_str(), first.r#type), (id.as_str(), v1::EventType::Queued as i32));
        let mut delivered = Vec::new();
        while delivered.len() < 3 {
            let event = next_event(&mut stream).await;
            assert!(event.cursor > first.cursor, "cursors grow");
            assert_eq!(event.r#type, v1::EventType::Delivered as i32, "{event:?}");
            assert_eq!(event.details.as_ref().unwrap().smtp_code, 250);
            delivered.push(event.recipient);
        }
        delivered.sort();
        assert_eq!(delivered, ["audit@example.com", "jane@example.com", "zoe@example.com"]);

        let (status, got) = get(&app, key, &format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        let m = &got["message"];
        assert_eq!(m["status"], "delivered", "{m}");
        assert!(m["recipients"].as_array().unwrap().iter().all(|r| r["status"] == "delivered" && r["attempts"] == 1), "{m}");
        let types: Vec<&str> = m["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["queued", "delivered", "delivered", "delivered"]);

        // The built MIME: the stored Message-ID, encoded headers, both
        // parts, the dot line, and no Bcc anywhere.
        let content = messages(&app)
            .get_message_content(with_key(v1::GetMessageContentRequest { id: id.clone() }, KeyHeader::Bearer, key))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(content.content_type, "message/rfc822");
        let raw = String::from_utf8(content.raw.clone()).expect("7-bit clean MIME");
        assert!(raw.contains(&format!("Message-ID: {}", m["message_id_header"].as_str().unwrap())), "{raw}");
        assert!(raw.contains("Subject: =?utf-8?"), "the subject is RFC 2047-encoded: {raw}");
        assert!(raw.contains("X-Order: 1042"), "{raw}");
        assert!(raw.contains("multipart/alternative") && raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
        assert!(!raw.to_ascii_lowercase().contains("audit@example.com"), "bcc stays out of the MIME: {raw}");
        assert!(raw.contains("\r\n.\r\n") || raw.contains("=2E") || raw.contains("\r\n.\r\nA line"), "the dot line is kept: {raw}");
        assert!(!raw.replace("\r\n", "").contains('\r') && !raw.replace("\r\n", "").contains('\n'), "only CRLF line breaks");

        // Over REST the same bytes come back base64-encoded.
        let (status, json) = get(&app, key, &format!("/v1/messages/{id}/content")).await;
        assert_eq!(status, StatusCode::OK);
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(json["raw"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, content.raw);
    }

    async fn a_watcher_resumes_from_its_cursor_without_losing_or_repeating(app: TestApp) {
        let key = &app.account_a.key;
        let mut live = watch(&app, key, v1::WatchMessagesRequest::default()).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(send(&app, key, inline()).await);
        }
        // 3 queued + 3 delivered, in cursor order.
        let mut seen = Vec::new();
        while seen.len() < 6 {
            seen.push(next_event(&mut live).await);
        }
        assert!(seen.windows(2).all(|w| w[0].cursor < w[1].cursor));
        drop(live);
        // Resume after the second event: exactly the remaining four.
        let mut resumed = watch(&app, key, v1::WatchMessagesRequest { after_cursor: seen[1].cursor, ..Default::default() }).await;
        for expected in &seen[2..] {
            assert_eq!(next_event(&mut resumed).await.cursor, expected.cursor);
        }
        // Only the requested types (the first event is a `queued`).
        assert_eq!(seen[0].r#type, v1::EventType::Queued as i32);
        let mut delivered_only = watch(&app, key, v1::WatchMessagesRequest {
            after_cursor: seen[0].cursor,
            types: vec![v1::EventType::Delivered as i32],
            ..Default::default()
        }).await;
        for _ in 0..3 {
            assert_eq!(next_event(&mut delivered_only).await.r#type, v1::EventType::Delivered as i32);
        }
    }

    async fn a_watcher_that_stops_reading_misses_and_repeats_nothing(app: TestApp) {
        let key = &app.account_a.key;
        // Opened and then left unread while far more commits are made than
        // it buffers or the server keeps for it.
        let mut slow = watch(&app, key, v1::WatchMessagesRequest::default()).await;
        let mut ids = Vec::new();
        for _ in 0..600 {
            ids.push(send(&app, key, inline()).await);
        }
        let mut queued = Vec::new();
        let mut delivered = Vec::new();
        let mut last = 0;
        while delivered.len() < ids.len() {
            let event = next_event(&mut slow).await;
            assert!(event.cursor > last, "cursor order, each once: {} after {last}", event.cursor);
            last = event.cursor;
            match v1::EventType::try_from(event.r#type) {
                Ok(v1::EventType::Queued) => queued.push(event.message_id),
                Ok(v1::EventType::Delivered) => delivered.push(event.message_id),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(queued, ids, "every message's queued event, in the order sent");
        delivered.sort();
        ids.sort();
        assert_eq!(delivered, ids, "every message's delivered event, once");
    }

    async fn a_watcher_sees_a_cancellation_as_it_happens(app: TestApp) {
        let key = &app.account_a.key;
        let mut request = inline();
        request.scheduled_at = Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        });
        let id = send(&app, key, request).await;
        let mut stream = watch(&app, key, v1::WatchMessagesRequest::default()).await;
        let (status, _, json) = post(&app, key, &format!("/v1/messages/{id}:cancel"), &json!({}), &[]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let event = next_event(&mut stream).await;
        assert_eq!((event.message_id.as_str(), event.r#type), (id.as_str(), v1::EventType::Cancelled as i32), "{event:?}");
        // Then the next commit's events, after it.
        let next = send(&app, key, inline()).await;
        let queued = next_event(&mut stream).await;
        assert_eq!(queued.message_id, next);
        assert!(queued.cursor > event.cursor);
    }

    async fn watchers_see_only_their_own_accounts_events(app: TestApp) {
        let (a, b) = (&app.account_a.key, &app.account_b.key);
        let mut b_stream = watch(&app, b, v1::WatchMessagesRequest::default()).await;
        let a_id = send(&app, a, inline()).await;
        let mut request = inline();
        request.from_email = "hello@globex.example".into();
        let b_id = send(&app, b, request).await;
        let first = next_event(&mut b_stream).await;
        assert_eq!(first.message_id, b_id, "account A's {a_id} is not in B's stream");
        // Another account's message by id: NOT_FOUND, and no content.
        let status = messages(&app)
            .watch_messages(with_key(v1::WatchMessagesRequest { message_id: a_id.clone(), ..Default::default() }, KeyHeader::Bearer, b))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = messages(&app)
            .get_message_content(with_key(v1::GetMessageContentRequest { id: a_id }, KeyHeader::Bearer, b))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::NotFound, "NOT_FOUND"));
    }

    async fn rest_streams_the_watch_as_sse_with_cursor_ids_and_resumes_after_last_event_id(app: TestApp) {
        let key = &app.account_a.key;
        let (status, _, sent) = post(&app, key, "/v1/send", &crate::send::inline_json(), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let id = sent["id"].as_str().unwrap();
        let url = format!("{}/v1/messages:watch?message_id={id}", app.base_url);
        let open = |last_event_id: Option<String>| {
            let mut request = app.http.get(&url).header("x-api-key", key).header("accept", "text/event-stream");
            if let Some(last) = last_event_id {
                request = request.header("last-event-id", last);
            }
            request.send()
        };

        // The message's events from its first, each with its cursor as id,
        // up to its delivery.
        let response = open(None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let (mut body, mut buffer) = (response.bytes_stream(), Vec::new());
        let mut events = Vec::new();
        while events.last().is_none_or(|(_, event): &(String, serde_json::Value)| event["event"]["type"] != "delivered") {
            let block = next_sse(&mut body, &mut buffer).await;
            if block.starts_with(':') {
                continue;
            }
            events.push(sse_event(&block));
        }
        let types: Vec<_> = events.iter().map(|(_, e)| e["event"]["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["queued", "delivered"]);
        for (id, event) in &events {
            assert_eq!(event["event"]["cursor"], json!(id), "the id is the event's cursor");
        }
        // Nothing more happens to the message: the stream keeps alive.
        assert_eq!(next_sse(&mut body, &mut buffer).await, ": keep-alive");
        drop(body);

        // A client that lost the stream after the first event reconnects
        // with its id and gets the rest, not the first again.
        let response = open(Some(events[0].0.clone())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (mut body, mut buffer) = (response.bytes_stream(), Vec::new());
        let resumed = sse_event(&next_sse(&mut body, &mut buffer).await);
        assert_eq!(resumed, events[1]);

        // An id that is not a cursor is refused, naming the field.
        let response = open(Some("evt_1".into())).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let status: serde_json::Value = response.json().await.unwrap();
        assert_eq!(crate::helpers::json_violations(&status), ["after_cursor"], "{status}");
        assert!(status["message"].as_str().unwrap().contains("Last-Event-ID header `evt_1` must be a whole number"), "{status}");
    }

    async fn a_browser_watch_over_grpc_web_streams_unbuffered_through_proxies(app: TestApp) {
        let key = &app.account_a.key;
        let id = send(&app, key, inline()).await;
        let request = v1::WatchMessagesRequest { message_id: id.clone(), ..Default::default() };
        let mut response = app
            .http
            .post(format!("{}/posthorn.v1.MessagesService/WatchMessages", app.base_url))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("x-api-key", key)
            .body(crate::grpc_web::frame(&request))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/grpc-web+proto");
        assert_eq!(response.headers()["x-accel-buffering"], "no", "nginx must not buffer the stream");
        // The message's first event arrives while the stream stays open.
        let mut body = Vec::new();
        while body.len() < 5 || body.len() < 5 + u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize {
            let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
                .await
                .expect("a frame arrives")
                .unwrap()
                .expect("the stream is open");
            body.extend_from_slice(&chunk);
        }
        assert_eq!(body[0], 0, "a message frame, not trailers");
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let event = <v1::WatchMessagesResponse as prost::Message>::decode(&body[5..5 + length])
            .unwrap()
            .event
            .unwrap();
        assert_eq!((event.message_id.as_str(), event.r#type), (id.as_str(), v1::EventType::Queued as i32));
    }

    async fn rest_streams_the_watch_as_ndjson(app: TestApp) {
        let key = &app.account_a.key;
        let (status, _, sent) = post(&app, key, "/v1/send", &crate::send::inline_json(), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let id = sent["id"].as_str().unwrap();
        let response = app
            .http
            .get(format!("{}/v1/messages:watch?message_id={id}&types=delivered", app.base_url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.bytes_stream();
        let mut buffer = Vec::new();
        let line = loop {
            let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
                .await
                .expect("a line arrives")
                .expect("open")
                .unwrap();
            buffer.extend_from_slice(&chunk);
            if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                break serde_json::from_slice::<serde_json::Value>(&buffer[..end]).unwrap();
            }
        };
        assert_eq!(line["event"]["type"], "delivered", "{line}");
        assert_eq!(line["event"]["status"], "delivered");
        assert_eq!(line["event"]["message_id"], json!(id));
    }
}

async fn file_transport(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let Some(app) = try_spawn_app_with(backend, |s| {
        s.transport = url.clone();
        s.deliver = true;
    })
    .await
    else {
        eprintln!("skipped: POSTHORN_TEST_DATABASE_URL is not set");
        return;
    };
    let key = &app.account_a.key;
    let id = send(&app, key, inline()).await;
    let mut stream = watch(
        &app,
        key,
        v1::WatchMessagesRequest {
            message_id: id.clone(),
            types: vec![v1::EventType::Delivered as i32],
            ..Default::default()
        },
    )
    .await;
    next_event(&mut stream).await;
    let written =
        std::fs::read(dir.path().join(format!("{id}.eml"))).expect("one .eml per message");
    let content = messages(&app)
        .get_message_content(with_key(
            v1::GetMessageContentRequest { id: id.clone() },
            KeyHeader::Bearer,
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written, content.raw, "the file holds the stored MIME");

    // A test-mode key captures: nothing is written.
    let test_key = app.test_mode_key().await;
    let test_id = send(&app, &test_key, inline()).await;
    let mut stream = watch(
        &app,
        &test_key,
        v1::WatchMessagesRequest {
            message_id: test_id.clone(),
            types: vec![v1::EventType::Delivered as i32],
            ..Default::default()
        },
    )
    .await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.details.unwrap().smtp_reply, "2.0.0 captured");
    assert!(!dir.path().join(format!("{test_id}.eml")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_transport_writes_one_eml_per_message_and_test_keys_capture_sqlite() {
    file_transport(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_transport_writes_one_eml_per_message_and_test_keys_capture_postgres() {
    file_transport(Backend::Postgres).await;
}

#[tokio::test]
async fn a_bad_relay_url_is_refused_at_start_without_showing_the_password() {
    let mut settings = posthorn::config::Settings::defaults();
    settings.transport = "smtp://user:secret@127.0.0.1:2525?tls=sometimes".into();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = posthorn::storage::Store::connect(
        &format!("sqlite://{}", dir.path().join("p.db").display()),
        2,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let error = posthorn::startup::Application::build(&settings, store)
        .await
        .err()
        .expect("refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("`transport`")
            && text.contains("`tls` must be required, opportunistic or none"),
        "{text}"
    );
    assert!(!text.contains("secret"), "credentials never appear: {text}");
}
