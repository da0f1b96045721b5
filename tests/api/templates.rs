//! Templates and branding through the real server, over gRPC and REST: the
//! system catalog, dry-run rendering, branding in every template, the
//! sandbox, account templates with versions, cloning, shadowing and tenant
//! isolation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use posthorn::domain::clock::SystemClock;
use posthorn::domain::templates::Templates;
use posthorn::proto::v1::{self, templates_service_client::TemplatesServiceClient};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::helpers::{
    KeyHeader, TestApp, json_reason, json_violations, reason, spawn_app, with_key,
};

fn client(app: &TestApp) -> TemplatesServiceClient<Channel> {
    TemplatesServiceClient::new(app.channel.clone())
}

/// A REST call with `key`: the status and the JSON body.
pub async fn rest(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base_url))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn post_json(app: &TestApp, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    rest(app, reqwest::Method::POST, path, key, Some(body)).await
}

async fn render_welcome(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let variables =
        json!({"variables": {"user": {"first_name": "Kim"}, "dashboard_url": "https://x.example"}});
    post_json(app, key, "/v1/templates/welcome:render", variables).await
}

/// The examples of a template's variables, nested by their dotted names.
fn examples(template: &Value) -> Value {
    let mut root = json!({});
    for variable in template["variables"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let mut parts: Vec<&str> = name.split('.').collect();
        let leaf = parts.pop().unwrap();
        let mut node = &mut root;
        for part in parts {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(part)
                .or_insert(json!({}));
        }
        node[leaf] = variable["example"].clone();
    }
    root
}

#[tokio::test]
async fn the_catalog_lists_over_grpc_and_rest_with_variables_schemas() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let mut grpc = client(&app);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = grpc
            .list_templates(with_key(
                v1::ListTemplatesRequest {
                    page_size: 10,
                    page_token: token.clone(),
                    ..Default::default()
                },
                KeyHeader::Bearer,
                key,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.templates.len() <= 10);
        all.extend(page.templates);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(all.len() >= 35, "{} templates", all.len());
    assert!(
        all.iter()
            .all(|t| t.owner == v1::TemplateOwner::System as i32)
    );
    let reset = all.iter().find(|t| t.slug == "password-reset").unwrap();
    let reset_url = reset
        .variables
        .iter()
        .find(|v| v.name == "reset_url")
        .unwrap();
    assert!(reset_url.required && !reset_url.description.is_empty() && reset_url.example.is_some());
    assert!(
        all.iter()
            .all(|t| t.subject.is_empty() && t.html.is_empty() && t.text.is_empty()),
        "lists leave the sources out"
    );
    let order: Vec<(&str, &str)> = all
        .iter()
        .map(|t| (t.category.as_str(), t.slug.as_str()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "by category, then slug, across pages");

    let (status, json) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates?category=auth",
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let auth: Vec<&str> = json["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(auth.len(), 9, "{auth:?}");
    assert!(auth.contains(&"password-reset") && auth.contains(&"two-factor-code"));
    assert!(
        json["templates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["category"] == "auth" && t["owner"] == "system")
    );
    assert!(
        json["templates"][0]["variables"][0]["name"]
            .as_str()
            .is_some()
    );
}

#[tokio::test]
async fn password_reset_renders_branded_html_and_text_and_reports_missing_variables() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let (status, json) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/password-reset:render",
        key,
        Some(json!({"variables": {"user": {"first_name": "Alex"}, "reset_url": "https://app.example.com/reset?token=abc", "colour": "blue"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["subject"], "Reset your acme password");
    let html = json["html"].as_str().unwrap();
    assert!(
        html.contains("Hi Alex,") && html.contains("#00a071"),
        "default primary colour on the button"
    );
    assert!(html.contains("https:&#x2f;&#x2f;app.example.com&#x2f;reset?token=abc"));
    let text = json["text"].as_str().unwrap();
    assert!(
        text.starts_with("Reset your password\n\nHi Alex, we received a request"),
        "{text}"
    );
    assert!(
        text.contains("\nhttps://app.example.com/reset?token=abc\n"),
        "URLs are not escaped in text: {text}"
    );
    assert!(!text.contains('<'));
    assert_eq!(json["missing_variables"], json!([]));
    assert_eq!(json["unknown_variables"], json!(["colour"]));
    assert_eq!(json["version"], 1);

    let (status, json) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/password-reset:render",
        key,
        Some(json!({"variables": {"user": {"first_name": "Alex"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["missing_variables"], json!(["reset_url"]));

    // The same over gRPC.
    let reply = client(&app)
        .render_template(with_key(
            v1::RenderTemplateRequest {
                slug: "password-reset".into(),
                ..Default::default()
            },
            KeyHeader::XApiKey,
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.missing_variables, ["reset_url"]);

    // An unknown slug is NOT_FOUND with TEMPLATE_NOT_FOUND.
    let (status, json) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/no-such-thing:render",
        key,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_reason(&json), "TEMPLATE_NOT_FOUND");
}

crate::on_both_databases! {
    async fn branding_appears_in_every_system_template_and_is_validated(app: TestApp) {
    let key = &app.account_a.key;
    let (status, json) = rest(&app, reqwest::Method::GET, "/v1/branding", key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["branding"]["brand_name"], "acme");
    assert_eq!(json["branding"]["primary_color"], "#00a071");
    assert_eq!(json["branding"]["accent_color"], "#00e5a0");
    assert_eq!(json["branding"]["button_radius"], 8);

    // Invalid values: every violation named.
    let (status, json) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/branding",
        key,
        Some(json!({"primary_color": "green", "button_radius": 30, "logo_url": "ftp://x", "support_email": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_violations(&json),
        [
            "branding.primary_color",
            "branding.logo_url",
            "branding.support_email",
            "branding.button_radius"
        ]
    );

    let (status, json) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/branding",
        key,
        Some(json!({"brand_name": "Acme", "primary_color": "#aa3300", "privacy_policy_url": "https://acme.example/privacy", "terms_url": "https://acme.example/terms"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["branding"]["primary_color"], "#aa3300");
    assert_eq!(
        json["branding"]["accent_color"], "#00e5a0",
        "untouched fields stay"
    );

    let (_, list) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates?page_size=200",
        key,
        None,
    )
    .await;
    let templates = list["templates"].as_array().unwrap();
    assert!(templates.len() >= 35);
    for template in templates {
        let slug = template["slug"].as_str().unwrap();
        let (status, out) = rest(
            &app,
            reqwest::Method::POST,
            &format!("/v1/templates/{slug}:render"),
            key,
            Some(json!({"variables": examples(template)})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{slug}: {out}");
        assert_eq!(out["missing_variables"], json!([]), "{slug}");
        assert_eq!(out["unknown_variables"], json!([]), "{slug}");
        let html = out["html"].as_str().unwrap();
        assert!(
            html.contains(">Privacy Policy</a>") && html.contains(">Terms &amp; Conditions</a>"),
            "{slug}"
        );
        assert!(
            html.contains("https:&#x2f;&#x2f;acme.example&#x2f;privacy"),
            "{slug}"
        );
        assert!(
            html.contains(">Acme</span>"),
            "{slug}: the header is the brand name without a logo"
        );
        assert!(
            out["text"]
                .as_str()
                .unwrap()
                .contains("Privacy Policy: https://acme.example/privacy"),
            "{slug}"
        );
    }

    // A mask can clear a field.
    let (status, json) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/branding?update_mask=privacy_policy_url",
        key,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["branding"]["privacy_policy_url"], "");
    assert_eq!(json["branding"]["terms_url"], "https://acme.example/terms");
    }
}

#[tokio::test]
async fn variables_are_escaped_in_html_and_hostile_templates_fail_cleanly() {
    let app = spawn_app().await;
    let key = &app.account_a.key;
    let (_, out) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/welcome:render",
        key,
        Some(json!({"variables": {"user": {"first_name": "<script>alert(1)</script>"}, "dashboard_url": "https://x.example/\"onmouseover=\"x"}})),
    )
    .await;
    let html = out["html"].as_str().unwrap();
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(!html.contains("\"onmouseover"));
    assert!(
        out["subject"].as_str().unwrap().contains("<script>"),
        "subjects are text, not html"
    );

    let hostile = [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "too much work",
        ),
        // Refused before the 100 MB string is made, not after.
        ("{{ \"x\" * 100000000 }}", "too much work or memory"),
        (
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "nests too deeply",
        ),
        (
            "{% include \"/etc/passwd\" %}",
            "can be extended, included or imported",
        ),
        (
            "{% set s = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" %}{% for i in range(60000) %}{{ s }}{% endfor %}",
            "larger than",
        ),
    ];
    for (i, (html, words)) in hostile.into_iter().enumerate() {
        let slug = format!("hostile-{i}");
        let (status, created) = rest(&app, reqwest::Method::POST, "/v1/templates", key, Some(json!({"slug": slug, "name": "Hostile", "subject": "x", "html": html, "publish": true}))).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let started = Instant::now();
        let (status, json) = rest(
            &app,
            reqwest::Method::POST,
            &format!("/v1/templates/{slug}:render"),
            key,
            Some(json!({})),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{slug} took {:?}",
            started.elapsed()
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{slug}: {json}");
        assert!(
            json["message"].as_str().unwrap().contains(words),
            "{slug}: {json}"
        );
        assert_eq!(json_violations(&json), ["html"], "{slug}");
    }

    // Syntax errors are refused at creation, naming the part and line.
    let (status, json) = rest(&app, reqwest::Method::POST, "/v1/templates", key, Some(json!({"slug": "broken", "name": "Broken", "subject": "{{ oops", "html": "<p>\n{% if %}</p>"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_violations(&json), ["subject", "html"]);
    assert!(
        json["message"].as_str().unwrap().contains("line 2"),
        "{json}"
    );
}

crate::on_both_databases! {
    async fn account_templates_have_versions_that_publish_and_pin(app: TestApp) {
    let key = &app.account_a.key;
    let (status, json) = post_json(&app, key, "/v1/templates", json!({
        "slug": "order-shipped", "name": "Order shipped", "category": "orders",
        "subject": "Order {{ order.id }} shipped", "html": "<p>Hi {{ name }}, order {{ order.id }} is on its way.</p>",
        "variables": [{"name": "order.id", "required": true, "description": "Order number", "example": "A-1"}, {"name": "name", "required": false, "example": "Alex"}],
        "publish": true,
    })).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let t = &json["template"];
    assert_eq!(
        (
            t["owner"].as_str(),
            t["version"].as_i64(),
            t["published_version"].as_i64()
        ),
        (Some("account"), Some(1), Some(1))
    );
    assert_eq!(t["text"], "");

    // An update is a new draft; the published version stays live.
    let (status, json) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/templates/order-shipped",
        key,
        Some(json!({"subject": "Your order {{ order.id }} has shipped"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (
            json["template"]["version"].as_i64(),
            json["template"]["published_version"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        json["template"]["html"], "<p>Hi {{ name }}, order {{ order.id }} is on its way.</p>",
        "unchanged parts carry over"
    );
    let vars = json!({"variables": {"order": {"id": "A-7"}}});
    let (_, out) = post_json(
        &app,
        key,
        "/v1/templates/order-shipped:render",
        vars.clone(),
    )
    .await;
    assert_eq!(
        (out["subject"].as_str(), out["version"].as_i64()),
        (Some("Order A-7 shipped"), Some(1))
    );
    let (_, out) = post_json(
        &app,
        key,
        "/v1/templates/order-shipped:render",
        json!({"version": 2, "variables": {"order": {"id": "A-7"}}}),
    )
    .await;
    assert_eq!(out["subject"], "Your order A-7 has shipped");
    assert!(
        out["text"]
            .as_str()
            .unwrap()
            .contains("order A-7 is on its way"),
        "text derived from html"
    );

    // The send path's port: published unless pinned; missing variables named.
    let templates = Templates::new(app.store.clone(), Arc::new(SystemClock));
    let variables = vars["variables"].as_object().unwrap().clone();
    let (rendered, version) = templates
        .render_for_send(&app.account_a.id, "order-shipped", 0, &variables)
        .await
        .unwrap();
    assert_eq!(
        (rendered.subject.as_str(), version),
        ("Order A-7 shipped", 1)
    );
    let (rendered, version) = templates
        .render_for_send(&app.account_a.id, "order-shipped", 2, &variables)
        .await
        .unwrap();
    assert_eq!(
        (rendered.subject.as_str(), version),
        ("Your order A-7 has shipped", 2)
    );
    let error = templates
        .render_for_send(
            &app.account_a.id,
            "order-shipped",
            0,
            &serde_json::Map::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid request: variables.order.id: required by template `order-shipped`"
    );
    let error = templates
        .render_for_send(&app.account_a.id, "nope", 0, &variables)
        .await
        .unwrap_err();
    assert_eq!(error.reason().as_str(), "TEMPLATE_NOT_FOUND");

    let (status, json) =
        post_json(&app, key, "/v1/templates/order-shipped:publish", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["template"]["published_version"], 2);
    let (_, json) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates/order-shipped",
        key,
        None,
    )
    .await;
    let versions = json["template"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[0]["published"].as_bool(),
            versions[1]["published"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert_eq!(
        json["template"]["subject"],
        "Your order {{ order.id }} has shipped"
    );
    let (_, json) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates/order-shipped?version=1",
        key,
        None,
    )
    .await;
    assert_eq!(json["template"]["subject"], "Order {{ order.id }} shipped");

    // Bad slugs and duplicates.
    let (status, json) = post_json(
        &app,
        key,
        "/v1/templates",
        json!({"slug": "Bad Slug", "name": "x", "subject": "x", "html": "x"}),
    )
    .await;
    assert_eq!(
        (status, json_violations(&json)),
        (StatusCode::BAD_REQUEST, vec!["slug".to_owned()])
    );
    let (status, json) = post_json(
        &app,
        key,
        "/v1/templates",
        json!({"slug": "order-shipped", "name": "x", "subject": "x", "html": "x"}),
    )
    .await;
    assert_eq!(
        (status, json_reason(&json).as_str()),
        (StatusCode::CONFLICT, "ALREADY_EXISTS")
    );
    }
}

crate::on_both_databases! {
    async fn clones_and_shadows_system_templates_and_keeps_accounts_apart(app: TestApp) {
    let key = &app.account_a.key;
    let (status, json) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/welcome:clone",
        key,
        Some(json!({"new_slug": "welcome"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["template"]["owner"], "account");
    assert_eq!(json["template"]["name"], "Welcome (copy)");
    let (status, _) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/templates/welcome",
        key,
        Some(json!({"subject": "Hello {{ user.first_name }}!"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/welcome:publish",
        key,
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A shadows the system slug; B still sees the system template.
    assert_eq!(render_welcome(&app, key).await.1["subject"], "Hello Kim!");
    assert_eq!(
        render_welcome(&app, &app.account_b.key).await.1["subject"],
        "Welcome to globex, Kim"
    );
    let (_, list) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates?category=auth",
        key,
        None,
    )
    .await;
    let welcome: Vec<&Value> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["slug"] == "welcome")
        .collect();
    assert_eq!(welcome.len(), 1);
    assert_eq!(welcome[0]["owner"], "account");
    let (_, own) = rest(
        &app,
        reqwest::Method::GET,
        "/v1/templates?owner=account",
        key,
        None,
    )
    .await;
    assert_eq!(own["templates"].as_array().unwrap().len(), 1);

    // Clone into a new slug from A's own template.
    let (status, json) = rest(
        &app,
        reqwest::Method::POST,
        "/v1/templates/welcome:clone",
        key,
        Some(json!({"new_slug": "welcome-v2", "name": "Welcome v2"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["template"]["subject"], "Hello {{ user.first_name }}!");

    // B can neither read nor change A's own template.
    let mut grpc = client(&app);
    let status = grpc
        .get_template(with_key(
            v1::GetTemplateRequest {
                slug: "welcome-v2".into(),
                version: 0,
            },
            KeyHeader::Bearer,
            &app.account_b.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (tonic::Code::NotFound, "TEMPLATE_NOT_FOUND")
    );
    let (status, _) = rest(
        &app,
        reqwest::Method::DELETE,
        "/v1/templates/welcome-v2",
        &app.account_b.key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // System templates cannot be changed or deleted; deleting A's shadow
    // brings the system one back.
    let (status, json) = rest(
        &app,
        reqwest::Method::PATCH,
        "/v1/templates/receipt",
        key,
        Some(json!({"subject": "x"})),
    )
    .await;
    assert_eq!(
        (status, json_reason(&json).as_str()),
        (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION")
    );
    let (status, _) = rest(
        &app,
        reqwest::Method::DELETE,
        "/v1/templates/welcome",
        key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        render_welcome(&app, key).await.1["subject"],
        "Welcome to acme, Kim"
    );
    let (status, _) = rest(
        &app,
        reqwest::Method::DELETE,
        "/v1/templates/welcome",
        key,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a system template cannot be deleted"
    );
    }
}

#[tokio::test]
async fn the_preview_page_shows_a_template_rendered_with_its_examples() {
    let app = spawn_app().await;
    let url = format!("{}/v1/templates/password-reset/preview", app.base_url);
    let response = app
        .http
        .get(&url)
        .header("x-api-key", &app.account_a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("<h1>Password reset</h1>"));
    assert!(
        page.contains("Reset your acme password"),
        "the rendered subject"
    );
    // The email sits escaped in a sandboxed frame's srcdoc.
    assert!(
        page.contains("<iframe sandbox title=\"Rendered HTML\" srcdoc=\"&#60;!DOCTYPE html&#62;")
    );
    assert!(
        !page.contains("<!DOCTYPE html>\n<html lang=\"en\" xmlns"),
        "the email is not inlined unescaped"
    );
    assert!(
        page.contains("https://app.example.com/reset?token=abc123"),
        "the text part with the example URL"
    );

    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_reason(&response.json().await.unwrap()),
        "API_KEY_MISSING"
    );
    let unscoped = app.key_with_scopes(&["email:send".parse().unwrap()]).await;
    let response = app
        .http
        .get(&url)
        .header("x-api-key", &unscoped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .http
        .get(format!("{}/v1/templates/nope/preview", app.base_url))
        .header("x-api-key", &app.account_a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_reason(&response.json().await.unwrap()),
        "TEMPLATE_NOT_FOUND"
    );
}

crate::on_both_databases! {
    async fn concurrent_creates_of_one_slug_make_one_template_and_conflicts(app: TestApp) {
        let key = app.account_a.key.clone();
        let attempts = (0..6).map(|i| {
            let (http, url, key) = (app.http.clone(), format!("{}/v1/templates", app.base_url), key.clone());
            async move {
                http.post(url)
                    .header("x-api-key", key)
                    .json(&json!({"slug": "race", "name": format!("Race {i}"), "subject": "s", "html": "<p>h</p>"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        });
        let mut statuses: Vec<u16> = futures::future::join_all(attempts).await.into_iter().map(|s| s.as_u16()).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 409, 409, 409, 409, 409]);
    }
}
