//! The MCP door, driven by the official MCP Python SDK (`mcp`) as an agent
//! would drive it: tools per scope, each tool's call, errors with the
//! API's reasons, progress while a send is followed, read-only mode.

use posthorn::domain::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, json_reason, try_spawn_app_with};
use crate::templates::rest;

/// What the SDK client saw: the server's name and instructions, and one
/// result per step (see tests/peers/mcp_client.py).
struct Session {
    server: Value,
    results: Vec<Value>,
}

/// Runs `steps` in one client session with `key` in the `x-api-key`
/// header, connecting with the initialize handshake.
async fn session(app: &TestApp, key: &str, steps: Value) -> Session {
    session_with(app, json!({"x-api-key": key}), "legacy", steps).await
}

async fn session_with(app: &TestApp, headers: Value, mode: &str, steps: Value) -> Session {
    let plan = json!({
        "url": format!("{}/mcp", app.base_url),
        "headers": headers,
        "mode": mode,
        "steps": steps,
    });
    let mut printed =
        crate::relay::python_json("mcp_client.py", &[], plan.to_string().as_bytes()).await;
    Session {
        server: printed["server"].take(),
        results: printed["results"]
            .as_array()
            .expect("one result per step")
            .clone(),
    }
}

fn tool_names(listing: &Value) -> Vec<String> {
    listing["tools"]
        .as_array()
        .expect("a tools listing")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The structured result of a call that succeeded.
fn ok(result: &Value) -> &Value {
    assert_eq!(result["is_error"], false, "the call failed: {result}");
    &result["structured"]
}

/// The `google.rpc.Status` of a call that failed as a tool error.
fn tool_error(result: &Value) -> &Value {
    assert_eq!(result["is_error"], true, "the call succeeded: {result}");
    &result["structured"]
}

fn password_reset(from: &str, to: &str) -> Value {
    json!({
        "from_email": from,
        "to": [to],
        "template": "password-reset",
        "variables": {"reset_url": "https://app.acme.example/reset?t=1", "user": {"first_name": "Ada"}},
    })
}

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut posthorn::config::Settings),
) -> Option<TestApp> {
    try_spawn_app_with(backend, |settings| {
        settings.deliver = true;
        configure(settings);
    })
    .await
}

on_both_databases_with!(
    an_agent_finds_a_template_sends_it_follows_it_and_reads_its_timeline,
    scheduled_mail_is_listed_and_cancelled_through_mcp,
);

async fn an_agent_finds_a_template_sends_it_follows_it_and_reads_its_timeline(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let key = app.account_a.key.clone();
    let mut send = password_reset("security@acme.example", "ada@example.com");
    send["wait_for"] = json!("delivered");
    let first = session(
        &app,
        &key,
        json!([
            {"list_tools": true},
            {"call": "list_templates", "arguments": {"category": "auth"}},
            {"call": "render_template", "arguments": {"slug": "password-reset", "variables": {"reset_url": "https://r.example/x"}}},
            {"call": "send_email", "arguments": send, "progress": true},
        ]),
    )
    .await;
    assert_eq!(first.server["name"], "posthorn");
    assert!(
        first.server["instructions"]
            .as_str()
            .unwrap()
            .contains("send_email")
    );
    assert_eq!(
        tool_names(&first.results[0]),
        [
            "list_templates",
            "get_template",
            "render_template",
            "send_email",
            "get_email_status",
            "list_messages",
            "cancel_message"
        ]
    );
    let listed = &first.results[0]["tools"];
    let send_tool = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "send_email")
        .unwrap();
    assert_eq!(
        send_tool["inputSchema"]["required"],
        json!(["from_email", "to"])
    );
    assert_eq!(send_tool["annotations"]["readOnlyHint"], false);

    let templates = ok(&first.results[1])["templates"]
        .as_array()
        .unwrap()
        .clone();
    assert!(templates.iter().all(|t| t["category"] == "auth"));
    let reset = templates
        .iter()
        .find(|t| t["slug"] == "password-reset")
        .expect("password-reset is in the auth category");
    assert_eq!(reset["name"], "Password reset");
    assert!(!reset["description"].as_str().unwrap().is_empty());
    let variables: Vec<&str> = reset["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(variables.contains(&"reset_url"), "{variables:?}");

    let rendered = ok(&first.results[2]);
    assert!(
        rendered["text"]
            .as_str()
            .unwrap()
            .contains("https://r.example/x"),
        "{rendered}"
    );
    assert_eq!(rendered["missing_variables"], json!([]));

    let sent = &first.results[3];
    let accepted = ok(sent);
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_"));
    assert_eq!(accepted["status"], "delivered", "{sent}");
    let progress: Vec<&str> = sent["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(progress, ["queued", "delivered: ada@example.com"]);

    let second = session(
        &app,
        &key,
        json!([
            {"call": "get_email_status", "arguments": {"id": id}},
            {"call": "list_messages", "arguments": {"status": "delivered", "page_size": 10}},
            {"call": "get_template", "arguments": {"slug": "password-reset"}},
        ]),
    )
    .await;
    let message = &ok(&second.results[0])["message"];
    assert_eq!(message["status"], "delivered");
    assert_eq!(message["template"], "password-reset");
    let timeline: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, ["queued", "delivered"]);
    let listed: Vec<&str> = ok(&second.results[1])["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    let template = &ok(&second.results[2])["template"];
    assert!(
        template["html"].as_str().unwrap().contains("reset_url"),
        "the source: {template}"
    );
    assert!(template["variables"].as_array().unwrap().len() >= 2);

    // The send is marked as made through MCP, seen from the REST door.
    let (status, got) = rest(
        &app,
        reqwest::Method::GET,
        &format!("/v1/messages/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["message"]["metadata"], json!({"source": "mcp"}));
}

async fn scheduled_mail_is_listed_and_cancelled_through_mcp(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let mut send = password_reset("security@acme.example", "bo@example.com");
    send["scheduled_at"] = json!(later);
    send["metadata"] = json!({"order": "A-17"});
    send["wait_for"] = json!("sent");
    let first = session(
        &app,
        &app.account_a.key,
        json!([{"call": "send_email", "arguments": send}]),
    )
    .await;
    let accepted = ok(&first.results[0]);
    assert_eq!(accepted["status"], "scheduled");
    assert!(
        first.results[0]["text"][1]
            .as_str()
            .unwrap()
            .contains("it will not be sent now"),
        "waiting for a scheduled send ends at once, saying why: {}",
        first.results[0]
    );
    let id = accepted["id"].as_str().unwrap();

    let second = session(
        &app,
        &app.account_a.key,
        json!([
            {"call": "cancel_message", "arguments": {"id": id}},
            {"call": "cancel_message", "arguments": {"id": id}},
            {"call": "list_messages", "arguments": {"status": "cancelled"}},
        ]),
    )
    .await;
    let cancelled = &ok(&second.results[0])["message"];
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        cancelled["metadata"],
        json!({"order": "A-17", "source": "mcp"})
    );
    let again = tool_error(&second.results[1]);
    assert_eq!(again["code"], 9, "FAILED_PRECONDITION: {again}");
    assert_eq!(ok(&second.results[2])["messages"][0]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_only_the_tools_its_scopes_allow() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let reader = app.key_with_scopes(&[Scope::EmailRead]).await;
    let templates = app.key_with_scopes(&[Scope::TemplatesRead]).await;
    let sender = app.key_with_scopes(&[Scope::EmailSend]).await;

    let read = session(
        &app,
        &reader,
        json!([
            {"list_tools": true},
            {"call": "send_email", "arguments": password_reset("security@acme.example", "x@example.com")},
            {"call": "list_messages", "arguments": {}},
        ]),
    )
    .await;
    assert_eq!(
        tool_names(&read.results[0]),
        ["get_email_status", "list_messages"]
    );
    // Not listed, and refused by the RPC as the API refuses it.
    let refused = tool_error(&read.results[1]);
    assert_eq!(json_reason(refused), "SCOPE_MISSING", "{refused}");
    assert_eq!(ok(&read.results[2])["messages"], json!([]));

    let listed = session(&app, &templates, json!([{"list_tools": true}])).await;
    assert_eq!(
        tool_names(&listed.results[0]),
        ["list_templates", "get_template", "render_template"]
    );
    let listed = session(&app, &sender, json!([{"list_tools": true}])).await;
    assert_eq!(
        tool_names(&listed.results[0]),
        ["send_email", "cancel_message"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_tool_errors_with_the_apis_reasons_and_fields() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let other_account = json!({"from_email": "billing@globex.example", "to": ["a@example.com"], "subject": "Hi", "text": "x"});
    let fifty_one: Vec<String> = (0..51).map(|i| format!("r{i}@example.com")).collect();
    let mut waits_wrong = password_reset("security@acme.example", "a@example.com");
    waits_wrong["wait_for"] = json!("opened");
    let session = session(
        &app,
        &app.account_a.key,
        json!([
            {"call": "send_email", "arguments": other_account},
            {"call": "send_email", "arguments": {"from_email": "security@acme.example", "to": fifty_one, "subject": "Hi", "text": "x"}},
            {"call": "send_email", "arguments": {"from_email": "security@acme.example", "too": ["a@example.com"]}},
            {"call": "send_email", "arguments": {"from_email": "security@acme.example", "to": ["a@example.com"], "template": "no-such-template"}},
            {"call": "send_email", "arguments": waits_wrong},
            {"call": "get_email_status", "arguments": {"id": "msg_00000000000000000000000000000000"}},
            {"call": "no_such_tool", "arguments": {}},
        ]),
    )
    .await;
    let results = &session.results;

    let unverified = tool_error(&results[0]);
    assert_eq!(unverified["code"], 7);
    assert_eq!(json_reason(unverified), "SENDER_NOT_VERIFIED");
    assert!(
        results[0]["text"][0]
            .as_str()
            .unwrap()
            .starts_with("PERMISSION_DENIED: "),
        "{}",
        results[0]
    );

    let too_many = tool_error(&results[1]);
    assert_eq!(json_reason(too_many), "VALIDATION_FAILED");
    assert!(
        results[1]["text"][0].as_str().unwrap().contains("\n- to: "),
        "the field at fault is named: {}",
        results[1]
    );

    let unknown_field = tool_error(&results[2]);
    assert_eq!(json_reason(unknown_field), "VALIDATION_FAILED");
    assert!(
        unknown_field["message"].as_str().unwrap().contains("`too`"),
        "{unknown_field}"
    );

    assert_eq!(
        tool_error(&results[3])["code"],
        5,
        "an unknown template is NOT_FOUND"
    );
    let wait = tool_error(&results[4]);
    assert!(
        wait["message"].as_str().unwrap().contains("`wait_for`"),
        "{wait}"
    );
    assert_eq!(tool_error(&results[5])["code"], 5);
    assert!(
        results[6]["raised"]
            .as_str()
            .unwrap()
            .contains("unknown tool `no_such_tool`"),
        "{}",
        results[6]
    );

    // Nothing was accepted by the refused sends.
    let (_, listed) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/messages",
        &app.account_a.key,
        None,
    )
    .await;
    assert_eq!(listed["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_offers_no_tool_that_writes() {
    let app = spawn(Backend::Sqlite, |s| s.mcp_read_only = true)
        .await
        .unwrap();
    let session = session(
        &app,
        &app.account_a.key,
        json!([
            {"list_tools": true},
            {"call": "send_email", "arguments": password_reset("security@acme.example", "a@example.com")},
            {"call": "list_templates", "arguments": {"category": "billing"}},
        ]),
    )
    .await;
    assert_eq!(
        tool_names(&session.results[0]),
        [
            "list_templates",
            "get_template",
            "render_template",
            "get_email_status",
            "list_messages"
        ]
    );
    assert!(
        session.results[1]["raised"]
            .as_str()
            .unwrap()
            .contains("unknown tool `send_email`")
    );
    assert!(
        !ok(&session.results[2])["templates"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_mode_key_captures_what_an_agent_sends() {
    // A relay nobody answers: live mail would only be deferred.
    let app = spawn(Backend::Sqlite, |s| {
        s.transport = "smtp://127.0.0.1:9".into()
    })
    .await
    .unwrap();
    let key = app.test_mode_key().await;
    let mut send = password_reset("security@acme.example", "trial@example.com");
    send["wait_for"] = json!("delivered");
    let session = session_with(
        &app,
        json!({"authorization": format!("Bearer {key}")}),
        "auto",
        json!([{"call": "send_email", "arguments": send, "progress": true}]),
    )
    .await;
    let sent = ok(&session.results[0]);
    assert_eq!(sent["status"], "delivered", "{}", session.results[0]);
    let id = sent["id"].as_str().unwrap();
    let (status, content) = rest(
        &app,
        reqwest::Method::GET,
        &format!("/v1/messages/{id}/content"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{content}");
    assert!(
        !content["raw"].as_str().unwrap().is_empty(),
        "the captured MIME is readable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_refuses_a_missing_or_unknown_key_and_answers_plain_json_rpc() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}},
    });
    for key in [None, Some("ph_live_not-a-key")] {
        let mut request = app
            .http
            .post(format!("{}/mcp", app.base_url))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"posthorn\""
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 16, "{body}");
    }

    let response = app
        .http
        .post(format!("{}/mcp", app.base_url))
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", &app.account_a.key)
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "posthorn", "{body}");

    // The README's curl: one request, no session to set up first.
    let reader = app.key_with_scopes(&[Scope::EmailRead]).await;
    let response = app
        .http
        .post(format!("{}/mcp", app.base_url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", &reader)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        tool_names(&body["result"]),
        ["get_email_status", "list_messages"],
        "{body}"
    );
}

#[tokio::test]
async fn a_body_that_is_no_message_gets_a_json_rpc_error_and_a_large_send_fits() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let post = |body: String| {
        app.http
            .post(format!("{}/mcp", app.base_url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-api-key", &app.account_a.key)
            .body(body)
            .send()
    };

    // Not JSON, a batch, an object of no JSON-RPC shape: 400 with the
    // JSON-RPC error a client reads, not 415 (the content type is right).
    for (body, code, words) in [
        (r#"{"jsonrpc":"2.0","#, -32700, "not valid JSON"),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            -32600,
            "batches are not accepted",
        ),
        (r#"{"hello":"world"}"#, -32600, "not one JSON-RPC"),
    ] {
        let response = post(body.to_owned()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["id"], Value::Null, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{body}: {answer}"
        );
    }

    // A send with a 6 MB attachment, which REST takes, MCP takes too.
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 6_000_000]);
    let call = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "send_email", "arguments": {
            "from_email": "security@acme.example", "to": ["a@example.com"],
            "subject": "The report", "text": "Attached.",
            "attachments": [{"filename": "report.txt", "content_type": "text/plain", "content": content}],
        }},
    });
    let response = post(call.to_string()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let sent = &answer["result"]["structuredContent"];
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let id = sent["id"].as_str().expect("the message id");
    let (status, message) = rest(
        &app,
        reqwest::Method::GET,
        &format!("/v1/messages/{id}"),
        &app.account_a.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(
        message["message"]["attachments"][0]["size_bytes"], "6000000",
        "{message}"
    );

    // Past the limit: 413, still as JSON-RPC.
    let too_large = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(37 * 1024 * 1024)
    );
    let response = post(too_large).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rest_max_body_bytes"),
        "{answer}"
    );
}
