//! The REST gateway on the test-only `gatewaytest.v1` contract: every
//! shape of `google.api.http` rule, the JSON mapping, errors, headers,
//! limits and streaming. The echo service answers with the request it got,
//! so each assertion shows what the gateway built from the HTTP request.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use posthorn::gateway::GatewayOptions;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::echo;

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(
        Method::from_bytes(method.as_bytes()).expect("method"),
        format!("http://{addr}{path}"),
    );
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text:?}"));
    (status, headers, json)
}

/// Asserts that every key of `expected` has that value in `actual`.
fn assert_includes(actual: &Value, expected: &Value, context: &str) {
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(
            actual.get(key),
            Some(value),
            "{context}: field `{key}` in {actual}"
        );
    }
}

#[tokio::test]
async fn every_rule_shape_routes_and_maps_the_request() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let cases: Vec<(&str, &str, Option<&str>, Value)> = vec![
        // GET with a path variable; every other field from the query.
        (
            "GET",
            "/v1/things/abc?big=9007199254740993&ubig=18446744073709551615&small=-3&flag=true&ratio=0.5\
             &color=red&colors=1&colors=COLOR_GREEN&tags=a&tags=b+c&nested.label=x\
             &at=2026-01-02T03:04:05Z&wait=1.5s&maybe=7&mask=a.b_c,dE&blob=aGk%3D",
            None,
            json!({
                "id": "abc", "big": "9007199254740993", "ubig": "18446744073709551615",
                "small": -3, "flag": true, "ratio": 0.5, "color": "red",
                "colors": ["red", "green"], "tags": ["a", "b c"],
                "nested": {"label": "x", "count": 0}, "at": "2026-01-02T03:04:05Z",
                "wait": "1.500s", "maybe": 7, "mask": "a.bC,dE", "blob": "aGk=",
            }),
        ),
        // additional_bindings with a multi-segment variable.
        (
            "GET",
            "/v1/shelves/s1/things/t2",
            None,
            json!({"name": "shelves/s1/things/t2", "id": ""}),
        ),
        // body "*": lowerCamelCase names, 64-bit integers as numbers and
        // strings, enums by number, short name (any case) and proto name,
        // Struct and Value, maps, bytes.
        (
            "POST",
            "/v1/things",
            Some(
                r#"{"id":"x","anyValue":{"k":[1,"a",null,true]},"meta":{"a":{"b":2}},"labels":{"k":"v"},
                    "big":12,"ubig":"7","blob":"AAE=","color":2,"colors":["Green","COLOR_RED"],"failCode":0}"#,
            ),
            json!({
                "id": "x", "any_value": {"k": [1.0, "a", null, true]}, "meta": {"a": {"b": 2.0}},
                "labels": {"k": "v"}, "big": "12", "ubig": "7", "blob": "AAE=", "color": "green",
                "colors": ["green", "red"],
            }),
        ),
        // The path variable wins over the same field in the body.
        (
            "PUT",
            "/v1/things/p1",
            Some(r#"{"id":"ignored","name":"n"}"#),
            json!({"id": "p1", "name": "n"}),
        ),
        // body "field": a message field.
        (
            "PATCH",
            "/v1/things/p1?flag=true",
            Some(r#"{"label":"L","count":3}"#),
            json!({"id": "p1", "flag": true, "nested": {"label": "L", "count": 3}}),
        ),
        // body "field": a repeated field.
        (
            "PUT",
            "/v1/things/p1/tags",
            Some(r#"["a","b"]"#),
            json!({"id": "p1", "tags": ["a", "b"]}),
        ),
        ("DELETE", "/v1/things/d1", None, json!({"id": "d1"})),
        // A custom verb.
        (
            "POST",
            "/v1/things/a1:archive",
            Some("{}"),
            json!({"id": "a1"}),
        ),
        // `**` takes the rest of the path.
        (
            "GET",
            "/v1/files/a/b/c.txt",
            None,
            json!({"path": "a/b/c.txt"}),
        ),
        // A nested field path, percent-decoded.
        (
            "GET",
            "/v1/labels/x%2Fy%20z",
            None,
            json!({"nested": {"label": "x/y z", "count": 0}}),
        ),
        // A custom HTTP method.
        ("SEARCH", "/v1/things?id=s", None, json!({"id": "s"})),
        // Percent-encoded addresses in a path.
        (
            "GET",
            "/v1/things/a%40b.com",
            None,
            json!({"id": "a@b.com"}),
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, _, json) = call(addr, method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {json}");
        assert_includes(&json, &expected, &format!("{method} {path}"));
    }

    // Unpopulated fields are emitted, with the proto (snake_case) names.
    let (_, _, json) = call(addr, "GET", "/v1/things/z", None).await;
    for field in [
        "name",
        "tags",
        "big",
        "small",
        "flag",
        "color",
        "labels",
        "fail_code",
        "stream_count",
    ] {
        assert!(json.get(field).is_some(), "`{field}` is emitted: {json}");
    }

    // response_body: only that field comes back.
    let (status, _, json) = call(addr, "GET", "/v1/things/n1/nested?nested.count=4", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, json!({"label": "", "count": 4}));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let (status, _, json) = call(addr, "GET", "/v1/nothing/here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["code"], 5);
    assert_eq!(json["details"][0]["reason"], "NOT_FOUND");

    let (status, headers, json) = call(addr, "POST", "/v1/things/abc", Some("{}")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{json}");
    let allow = headers["allow"].to_str().unwrap().to_owned();
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }
    assert_eq!(json["details"][0]["reason"], "METHOD_NOT_ALLOWED");

    // A trailing slash or an empty segment is not the same path.
    let (status, _, _) = call(addr, "GET", "/v1/things/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn violation(json: &Value) -> (String, String) {
    let details = json["details"].as_array().expect("details");
    assert!(
        details.iter().any(|d| d["reason"] == "VALIDATION_FAILED"),
        "ErrorInfo VALIDATION_FAILED in {json}"
    );
    let bad = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("BadRequest in {json}"));
    let v = &bad["field_violations"][0];
    (
        v["field"].as_str().unwrap().to_owned(),
        v["description"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_field() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let cases: Vec<(&str, &str, Option<&str>, &str, &str)> = vec![
        (
            "POST",
            "/v1/things",
            Some(r#"{"id":"x","bogus":1}"#),
            "bogus",
            "unknown field",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"nested":{"nope":true}}"#),
            "nested.nope",
            "unknown field",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"small":"abc"}"#),
            "small",
            "must be a whole number from -2147483648 to 2147483647",
        ),
        // Numbers name the range of their field, in a body or a query.
        (
            "POST",
            "/v1/things",
            Some(r#"{"big":1e30}"#),
            "big",
            "must be a whole number from -9223372036854775808 to 9223372036854775807",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"nested":{"count":3000000000}}"#),
            "nested.count",
            "must be a whole number from -2147483648 to 2147483647",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"ratio":"half"}"#),
            "ratio",
            "must be a number",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"maybe":"seven"}"#),
            "maybe",
            "must be a whole number from -2147483648 to 2147483647",
        ),
        (
            "GET",
            "/v1/things/x?ubig=-1",
            None,
            "ubig",
            "must be a whole number from 0 to 18446744073709551615",
        ),
        (
            "GET",
            "/v1/things/x?big=99999999999999999999",
            None,
            "big",
            "must be a whole number from -9223372036854775808",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"small":[1]}"#),
            "small",
            "whole number from -2147483648 to 2147483647 (invalid type",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"color":"COLOR_PURPLE"}"#),
            "color",
            "must be one of red, green (",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"nested":{"label":"x"},"colors":["red","purple"]}"#),
            "colors[1]",
            "must be one of red, green",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"tags":["a",2]}"#),
            "tags[1]",
            "invalid type",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"at":"yesterday"}"#),
            "at",
            "",
        ),
        (
            "POST",
            "/v1/things",
            Some(r#"{"blob":"not base64!"}"#),
            "blob",
            "",
        ),
        (
            "PATCH",
            "/v1/things/x",
            Some(r#"{"label":1}"#),
            "nested.label",
            "invalid type",
        ),
        (
            "GET",
            "/v1/things/x?nope=1",
            None,
            "nope",
            "names no request field",
        ),
        (
            "GET",
            "/v1/things/x?nested.nope=1",
            None,
            "nested.nope",
            "names no request field",
        ),
        (
            "GET",
            "/v1/things/x?small=1&small=2",
            None,
            "small",
            "more than once",
        ),
        ("GET", "/v1/things/x?small=big", None, "small", ""),
        (
            "GET",
            "/v1/things/x?color=PURPLE",
            None,
            "color",
            "must be one of red, green",
        ),
        ("GET", "/v1/things/x?flag=maybe", None, "flag", ""),
        (
            "GET",
            "/v1/things/x?labels=a",
            None,
            "labels",
            "cannot be set from the query",
        ),
        (
            "GET",
            "/v1/things/x?nested=a",
            None,
            "nested",
            "cannot be set from the query",
        ),
        ("GET", "/v1/things/x?id=y", None, "id", "already carries"),
        (
            "POST",
            "/v1/things?id=y",
            Some("{}"),
            "id",
            "already carries",
        ),
        ("GET", "/v1/things/%FF", None, "id", "UTF-8"),
    ];
    for (method, path, body, field, words) in cases {
        let (status, _, json) = call(addr, method, path, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {json}"
        );
        assert_eq!(json["code"], 3);
        let (named, description) = violation(&json);
        assert_eq!(named, field, "{method} {path} {body:?}: {json}");
        assert!(
            description.contains(words),
            "{method} {path}: {description}"
        );
        assert!(json["message"].as_str().unwrap().contains(field), "{json}");
    }

    // JSON syntax errors give the position.
    let (status, _, json) = call(
        addr,
        "POST",
        "/v1/things",
        Some("{\"id\": \"x\",\n  \"small\" 3}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("not valid JSON") && message.contains("line 2 column"),
        "{message}"
    );

    // Trailing garbage after the document is refused too.
    let (status, _, _) = call(addr, "POST", "/v1/things", Some("{} {}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn grpc_errors_become_status_json_with_grpc_gateway_http_codes() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let table: [(i32, u16); 16] = [
        (1, 499),
        (2, 500),
        (3, 400),
        (4, 504),
        (5, 404),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
    ];
    for (code, http) in table {
        let body = format!(r#"{{"fail_code":{code}}}"#);
        let (status, headers, json) = call(addr, "POST", "/v1/things", Some(&body)).await;
        assert_eq!(status.as_u16(), http, "gRPC code {code}: {json}");
        assert_eq!(json["code"], code);
        assert_eq!(json["message"], "failed as asked");
        let details = json["details"].as_array().unwrap();
        let of_type = |t: &str| {
            details
                .iter()
                .find(|d| d["@type"] == format!("type.googleapis.com/google.rpc.{t}"))
                .cloned()
        };
        assert_eq!(
            of_type("ErrorInfo"),
            Some(
                json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ASKED", "domain": "gatewaytest", "metadata": {}})
            )
        );
        assert_eq!(headers["grpc-metadata-ratelimit-remaining"], "0");
        if code == 8 {
            // RetryInfo of 2.5 s rounds up to a whole second.
            assert_eq!(headers["retry-after"], "3");
            assert_eq!(of_type("RetryInfo").unwrap()["retry_delay"], "2.500s");
        } else {
            assert!(headers.get("retry-after").is_none());
        }
    }
}

#[tokio::test]
async fn headers_become_metadata_and_metadata_comes_back_as_headers() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/v1/things/h"))
        .header("authorization", "Bearer k1")
        .header("x-api-key", "k2")
        .header("idempotency-key", "idem-1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("tracestate", "vendor=1")
        .header("grpc-metadata-x-custom", "custom-value")
        .header("x-not-forwarded", "no")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["grpc-metadata-echo-authorization"], "Bearer k1");
    assert_eq!(h["grpc-metadata-echo-x-api-key"], "k2");
    assert_eq!(h["grpc-metadata-echo-idempotency-key"], "idem-1");
    assert_eq!(
        h["grpc-metadata-echo-traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(h["grpc-metadata-echo-tracestate"], "vendor=1");
    assert_eq!(h["grpc-metadata-echo-x-custom"], "custom-value");
    // The ones REST clients read also come as plain headers.
    assert_eq!(h["idempotent-replayed"], "false");
    assert_eq!(h["ratelimit-remaining"], "99");
    assert_eq!(h["content-type"], "application/json");
    assert!(h.get("grpc-status").is_none());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_before_decoding_and_gzip_is_limited_inflated() {
    let limit = 64 * 1024;
    let addr = echo::spawn(GatewayOptions {
        max_body_bytes: limit,
        ..GatewayOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/things");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(limit));

    // Declared by Content-Length.
    let response = client.post(&url).body(big.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["code"], 8);
    assert_eq!(json["details"][0]["reason"], "PAYLOAD_TOO_LARGE");

    // Chunked, with no length given: cut off while reading.
    let chunks = futures::stream::iter(
        big.clone()
            .into_bytes()
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A gzip bomb: 1 KB on the wire, 8 MB inflated.
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < limit);
    let response = client
        .post(&url)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A gzip body within the limit is inflated and decoded.

    let response = client
        .post(&url)
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"name":"zipped"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["name"], "zipped");

    // Within the gateway's limit but over the service's own decoding limit
    // (tonic's default 4 MB, answered OUT_OF_RANGE): still 413, not 400.
    let roomy = echo::spawn(GatewayOptions::default()).await;
    let response = client
        .post(format!("http://{roomy}/v1/things"))
        .body(format!(r#"{{"name":"{}"}}"#, "y".repeat(5 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 11);

    // Broken gzip and unknown encodings are refused clearly.
    let response = client
        .post(&url)
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = client
        .post(&url)
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn server_streams_arrive_as_ndjson_or_sse_and_end_with_a_status_on_error() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("http://{addr}/v1/things:watch?stream_count=3&id=w"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], "w");
        assert_eq!(line["small"], i);
    }

    // Server-Sent Events on request.
    let response = client
        .get(format!("http://{addr}/v1/things:watch?stream_count=2"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // Neither a cache nor a proxy's buffer holds the events back.
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 2, "{text:?}");
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["small"], i);
    }

    // An error mid-stream ends it with a final status object.
    let text = client
        .get(format!(
            "http://{addr}/v1/things:watch?stream_count=5&fail_after=2"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2]["error"]["code"], 14);
    assert_eq!(lines[2]["error"]["message"], "the stream failed as asked");
    let text = client
        .get(format!(
            "http://{addr}/v1/things:watch?stream_count=5&fail_after=1"
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("event: error\ndata: {\"code\":14"),
        "{text:?}"
    );

    // Messages are flushed as produced: the first arrives while the stream
    // is still open.
    let mut response = client
        .get(format!(
            "http://{addr}/v1/things:watch?stream_count=-1&id=open"
        ))
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first message arrives before the stream ends")
        .unwrap()
        .expect("a chunk");
    let first: Value = serde_json::from_slice(chunk.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(first["id"], "open");
}

/// The next chunk of a streamed response, awaited (bounded).
async fn next_chunk(response: &mut reqwest::Response) -> bytes::Bytes {
    tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("a chunk arrives")
        .unwrap()
        .expect("the stream is still open")
}

/// The events of a Server-Sent Events text: each one's `id` (when it has
/// one) and its `data` as JSON.
fn sse_events(text: &str) -> Vec<(Option<String>, Value)> {
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let mut id = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("id: ") {
                    id = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(value).expect("data is JSON"));
                } else {
                    panic!("unexpected line {line:?} in {text:?}");
                }
            }
            (id, data.expect("an event has data"))
        })
        .collect()
}

#[tokio::test]
async fn sse_events_carry_their_cursor_as_id_and_last_event_id_resumes_after_it() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    let client = reqwest::Client::new();
    let watch = |query: &str, last_event_id: Option<&str>| {
        let mut request = client
            .get(format!("http://{addr}/v1/things:watch?{query}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };

    // Each event's id is the cursor its message carries.
    let text = watch("stream_count=2&after_cursor=40", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let ids: Vec<_> = events.iter().map(|(id, _)| id.as_deref()).collect();
    assert_eq!(ids, [Some("41"), Some("42")], "{text:?}");
    assert_eq!(events[1].1["cursor"], "42");

    // A client reconnecting with the URL it first used and the last id it
    // saw resumes right after that id.
    let text = watch("stream_count=2&after_cursor=40", Some("41"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<_> = sse_events(&text).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [Some("42".to_owned()), Some("43".to_owned())]);
    // An id older than the request's cursor does not take it back; an empty
    // one means no event was seen.
    for stale in ["7", ""] {
        let text = watch("stream_count=1&after_cursor=40", Some(stale))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(sse_events(&text)[0].0.as_deref(), Some("41"), "{stale:?}");
    }

    // An id that is not a cursor is refused, naming the field and the rule.
    for bad in ["abc", "-1", "99999999999999999999"] {
        let response = watch("stream_count=1", Some(bad)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.unwrap();
        let violation = &body["details"][1]["field_violations"][0];
        assert_eq!(violation["field"], "after_cursor", "{body}");
        let description = violation["description"].as_str().unwrap();
        assert!(
            description.contains("Last-Event-ID")
                && description.contains(bad)
                && description.contains("whole number from 0 to 9223372036854775807"),
            "{body}"
        );
    }

    // A call that is not a stream ignores the header.
    let response = client
        .get(format!("http://{addr}/v1/things/x"))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["after_cursor"], "0");
}

#[tokio::test]
async fn a_quiet_sse_stream_gets_keep_alive_comments_and_a_client_gone_ends_it() {
    let addr = echo::spawn(GatewayOptions {
        stream_keepalive: Duration::from_millis(100),
        ..GatewayOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    // An endless watch (one message, then nothing) named `id`.
    let endless = |id: &str, sse: bool| {
        let mut request = client.get(format!(
            "http://{addr}/v1/things:watch?stream_count=-1&id={id}"
        ));
        if sse {
            request = request.header("accept", "text/event-stream");
        }
        async move { request.send().await.unwrap() }
    };

    let mut response = endless("quiet-sse", true).await;
    let mut text = String::new();
    // Nothing more is sent after the first event, so keep-alive comments
    // follow, one per quiet period.
    while text.matches("\n\n").count() < 4 {
        text.push_str(std::str::from_utf8(&next_chunk(&mut response).await).unwrap());
    }
    let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(blocks[0].starts_with("id: 1\ndata: {"), "{text:?}");
    assert!(blocks[1..].iter().all(|b| *b == ": keep-alive"), "{text:?}");

    // NDJSON has no comment lines: a quiet stream stays quiet.
    let mut response = endless("quiet-ndjson", false).await;
    let first = next_chunk(&mut response).await;
    assert!(
        first.starts_with(b"{") && first.ends_with(b"}\n"),
        "{first:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), response.chunk())
            .await
            .is_err(),
        "five quiet periods pass without a byte"
    );
    drop(response);

    // A client that goes away ends the stream behind it.
    let mut response = endless("gone", true).await;
    next_chunk(&mut response).await;
    let mut open = echo::OPEN_WATCHES.subscribe();
    assert!(open.borrow_and_update().contains(&"gone".to_owned()));
    drop(response);
    drop(client);
    tokio::time::timeout(
        Duration::from_secs(10),
        open.wait_for(|open| !open.contains(&"gone".to_owned())),
    )
    .await
    .expect("the service's stream is dropped once its client is gone")
    .expect("the registry lives as long as the tests");
}

/// Writes `proto` as `bad/v1/bad.proto` and tries to build a gateway on it.
fn gateway_for(proto: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bad/v1")).unwrap();
    std::fs::write(dir.path().join("bad/v1/bad.proto"), proto).unwrap();
    let pool = echo::compile(dir.path(), "bad/v1/bad.proto")?;
    posthorn::gateway::Gateway::new(
        &pool,
        &["bad.v1.Bad".to_owned()],
        axum::Router::new(),
        GatewayOptions::default(),
    )
    .map(|_| ())
}

fn bad_proto(rpcs: &str) -> String {
    format!(
        r#"syntax = "proto3";
package bad.v1;
import "google/api/annotations.proto";
message M {{ string id = 1; string name = 2; N n = 3; repeated string tags = 4; }}
message N {{ string label = 1; }}
service Bad {{
{rpcs}
}}
"#
    )
}

#[test]
fn conflicting_or_unparsable_rules_stop_start_up_naming_the_methods() {
    let cases = [
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x/{id}"}; }
               rpc B(M) returns (M) { option (google.api.http) = {get: "/v1/x/{name}"}; }"#,
            vec!["bad.v1.Bad.A", "bad.v1.Bad.B", "conflicts"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x/{id"}; }"#,
            vec!["bad.v1.Bad.A", "`}`"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x/{missing}"}; }"#,
            vec!["bad.v1.Bad.A", "`missing` is not a field"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {post: "/v1/x" body: "nope"}; }"#,
            vec!["bad.v1.Bad.A", "body `nope`"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x" response_body: "nope"}; }"#,
            vec!["bad.v1.Bad.A", "response_body `nope`"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x/{tags}"}; }"#,
            vec!["bad.v1.Bad.A", "cannot hold"],
        ),
        (
            r#"rpc A(stream M) returns (M) { option (google.api.http) = {post: "/v1/x" body: "*"}; }"#,
            vec!["bad.v1.Bad.A", "gRPC-only"],
        ),
        (
            r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/**/x"}; }"#,
            vec!["bad.v1.Bad.A", "last segment"],
        ),
    ];
    for (rpcs, words) in cases {
        let error = gateway_for(&bad_proto(rpcs)).expect_err(rpcs);
        for word in words {
            assert!(error.contains(word), "{rpcs}\n→ {error}");
        }
    }
    // Literals and variables at the same place, or different verbs, do not
    // conflict; the literal wins when both match.
    gateway_for(&bad_proto(
        r#"rpc A(M) returns (M) { option (google.api.http) = {get: "/v1/x/{id}"}; }
           rpc B(M) returns (M) { option (google.api.http) = {get: "/v1/x/latest"}; }
           rpc C(M) returns (M) { option (google.api.http) = {get: "/v1/x/{id}:peek"}; }"#,
    ))
    .expect("no conflict");
}

#[tokio::test]
async fn a_literal_beats_a_variable_and_verbs_are_told_apart() {
    let addr = echo::spawn(GatewayOptions::default()).await;
    // `/v1/things:watch` is the stream, not Get with id "things:watch"
    // or a verb on `/v1/things/{id}`.
    let response = reqwest::get(format!("http://{addr}/v1/things:watch?stream_count=1"))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    // A colon inside a variable without a matching verb stays in the value.
    let (status, _, json) = call(addr, "GET", "/v1/things/a:b", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["id"], "a:b");
}

#[tokio::test]
async fn every_rule_of_the_test_contract_appears_in_the_table_and_the_openapi_document() {
    let pool = echo::pool();
    let gateway = posthorn::gateway::Gateway::new(
        &pool,
        &[echo::SERVICE.to_owned()],
        axum::Router::new(),
        GatewayOptions::default(),
    )
    .unwrap();
    let routes: Vec<String> = gateway
        .routes()
        .routes()
        .iter()
        .map(|r| format!("{} {}", r.http_method, r.template))
        .collect();
    // One per rule and binding; the client-streaming Upload has none.
    assert_eq!(routes.len(), 13, "{routes:?}");
    assert!(routes.contains(&"GET /v1/{name=shelves/*/things/*}".to_owned()));
    assert!(routes.contains(&"SEARCH /v1/things".to_owned()));

    let document = gateway.openapi("test", "1");
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, 13);
    let get = &paths["/v1/things/{id}"]["get"];
    assert_eq!(get["operationId"], "EchoService_Get");
    assert_eq!(
        get["description"],
        "A GET with a path variable, and a second binding with a multi-segment variable."
    );
    let parameters: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        parameters.contains(&"id")
            && parameters.contains(&"nested.label")
            && parameters.contains(&"tags")
    );
    assert!(
        !parameters.contains(&"labels"),
        "maps cannot come from the query"
    );
    let stream = &paths["/v1/things:watch"]["get"]["responses"]["200"]["content"];
    assert!(stream.get("application/x-ndjson").is_some());
    let echo_schema = &document["components"]["schemas"]["gatewaytest.v1.Echo"];
    assert_eq!(echo_schema["properties"]["big"]["format"], "int64");
    assert_eq!(echo_schema["properties"]["at"]["format"], "date-time");
    // Enums are documented by the names REST writes.
    assert_eq!(
        echo_schema["properties"]["color"]["enum"],
        json!(["unspecified", "red", "green"])
    );
    assert_eq!(
        echo_schema["properties"]["colors"]["items"]["enum"],
        json!(["unspecified", "red", "green"])
    );
}
