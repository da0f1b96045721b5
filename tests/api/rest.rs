//! The REST door of the real server: every route of the contract behaves
//! like its RPC (authentication, scopes, errors, results), and the
//! suppression list round-trips between REST and gRPC.

use posthorn::domain::Scope;
use posthorn::gateway::routes::{BodyRule, RouteTable};
use posthorn::proto::{self, v1};
use prost_reflect::{DynamicMessage, Value as Field};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::grpc_web;
use crate::helpers::{KeyHeader, TestApp, json_reason, spawn_app, with_key};

fn routes() -> RouteTable {
    RouteTable::build(proto::descriptor_pool(), &proto::service_names())
        .expect("the contract's rules build")
}

/// A request for `route` with every path variable set to `value`: the REST
/// path and the same request as a message for the gRPC door.
fn request_for(route: &posthorn::gateway::routes::Route, value: &str) -> (String, DynamicMessage) {
    let mut message = DynamicMessage::new(route.method.input());
    // A `{}` body for `body: "field"` sets that field to an empty message.
    if let BodyRule::Field(field) = &route.body
        && let prost_reflect::Kind::Message(inner) = field.kind()
    {
        message.set_field(field, Field::Message(DynamicMessage::new(inner)));
    }
    let mut path = route.template.source.clone();
    for (fields, variable) in &route.variables {
        let name = variable.field_path.join(".");
        let start = path
            .find(&format!("{{{name}"))
            .expect("the variable is in the template");
        let end = start + path[start..].find('}').expect("closed") + 1;
        let encoded: String =
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        path.replace_range(start..end, &encoded);
        assert_eq!(
            fields.len(),
            1,
            "the contract's variables are top-level fields"
        );
        message.set_field(&fields[0], Field::String(value.to_owned()));
    }
    (path, message)
}

async fn rest(
    app: &TestApp,
    method: &reqwest::Method,
    path: &str,
    body: bool,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method.clone(), format!("{}{path}", app.base_url));
    if body {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.expect("REST answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"))
    };
    (status, json)
}

#[tokio::test]
async fn every_route_answers_like_its_rpc_over_grpc() {
    let app = spawn_app().await;
    let table = routes();
    assert_eq!(
        table.routes().len(),
        38,
        "one route per google.api.http rule"
    );
    let unscoped = app
        .key_with_scopes(&["webhooks:read".parse::<Scope>().unwrap()])
        .await;
    // Something to list, so successful answers carry data.
    let created = app
        .http
        .post(format!("{}/v1/suppressions", app.base_url))
        .header("x-api-key", &app.account_a.key)
        .json(&json!({"email": "listed@example.com", "reason": "SUPPRESSION_REASON_COMPLAINED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let mut successes = Vec::new();
    for route in table.routes() {
        let method = reqwest::Method::from_bytes(route.http_method.as_str().as_bytes()).unwrap();
        let (path, message) = request_for(route, "x@example.com");
        let has_body = !matches!(route.body, BodyRule::None);
        let label = format!("{} {path}", route.http_method);

        let (status, json) = rest(&app, &method, &path, has_body, None).await;
        assert_eq!(
            (status.as_u16(), json_reason(&json).as_str()),
            (401, "API_KEY_MISSING"),
            "{label}: {json}"
        );

        let scope = proto::required_scopes()[&route.grpc_path].clone();
        if scope != "webhooks:read" {
            let (status, json) = rest(&app, &method, &path, has_body, Some(&unscoped)).await;
            assert_eq!(
                (status.as_u16(), json_reason(&json).as_str()),
                (403, "SCOPE_MISSING"),
                "{label}: {json}"
            );
        }

        if route.method.is_server_streaming() {
            // A watch follows live events without end: delivery.rs tests
            // its REST stream.
            continue;
        }
        // The same request over gRPC-Web and over REST gives the same status.
        let grpc = grpc_web::call(
            &app.http,
            &app.base_url,
            &route.grpc_path,
            &message,
            &[KeyHeader::XApiKey.pair(&app.account_a.key)],
        )
        .await;
        let (status, json) = rest(&app, &method, &path, has_body, Some(&app.account_a.key)).await;
        if grpc.grpc_status == 0 {
            assert_eq!(status, StatusCode::OK, "{label}: {json}");
            // The REST body is the gRPC response in REST JSON.
            let decoded =
                DynamicMessage::decode(route.method.output(), grpc.messages[0].as_slice()).unwrap();
            let expected = posthorn::gateway::rest_json(&decoded).unwrap();
            // Reads answer alike; writes ran twice, so only their status is compared.
            if route.http_method == http::Method::GET {
                assert_eq!(json, expected, "{label}");
            }
            successes.push(label);
            continue;
        }
        assert_eq!(json["code"], grpc.grpc_status, "{label}: {json}");
        assert_eq!(json["message"], grpc.grpc_message, "{label}");
        assert_eq!(json_reason(&json), grpc.reason(), "{label}");
        let expected_http = match grpc.grpc_status {
            3 => 400,
            5 => 404,
            12 => 501,
            other => panic!("{label}: unexpected gRPC status {other}"),
        };
        assert_eq!(status.as_u16(), expected_http, "{label}");
    }
    successes.sort();
    assert_eq!(
        successes,
        [
            "GET /v1/branding",
            "GET /v1/contacts",
            "GET /v1/messages",
            "GET /v1/suppressions",
            "GET /v1/templates",
            "GET /v1/webhooks",
            "PATCH /v1/branding",
        ],
        "the routes whose RPC succeeds with an empty request"
    );
}

#[tokio::test]
async fn a_suppression_lookup_by_percent_encoded_address_is_404_not_found_or_401_without_a_key() {
    let app = spawn_app().await;
    let url = format!("{}/v1/suppressions/a%40b.com", app.base_url);
    let response = app
        .http
        .get(&url)
        .header("x-api-key", &app.account_a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["code"], 5);
    assert_eq!(json_reason(&json), "NOT_FOUND");
    assert_eq!(json["message"], "suppression `a@b.com` not found");

    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_reason(&response.json().await.unwrap()),
        "API_KEY_MISSING"
    );
}

crate::on_both_databases! {
    async fn suppressions_round_trip_between_rest_and_grpc(app: TestApp) {
        let key = app.account_a.key.clone();
        let post = |body: Value| {
            app.http
                .post(format!("{}/v1/suppressions", app.base_url))
                .header("authorization", format!("Bearer {key}"))
                .json(&body)
                .send()
        };
        // Created over REST with the JSON names a user would type.
        let response = post(json!({"email": "Jane@Example.COM", "reason": "bounced"})).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let created: Value = response.json().await.unwrap();
        let created = &created["suppression"];
        assert_eq!(created["email"], "Jane@example.com");
        assert_eq!(created["reason"], "bounced");
        assert_eq!(created["origin"], "api");
        assert_eq!(created["message_id"], "");
        assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

        // Read over gRPC, matched case-insensitively.
        let mut grpc = v1::suppressions_service_client::SuppressionsServiceClient::new(app.channel.clone());
        let got = grpc
            .get_suppression(with_key(v1::GetSuppressionRequest { email: "jane@example.com".into() }, KeyHeader::Bearer, &key))
            .await
            .unwrap()
            .into_inner()
            .suppression
            .unwrap();
        assert_eq!(got.email, "Jane@example.com");
        assert_eq!(got.reason, v1::SuppressionReason::Bounced as i32);

        // Invalid input: every violation at once, named.
        let response = post(json!({"email": "not an address", "expiresAt": "2000-01-01T00:00:00Z"})).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let json: Value = response.json().await.unwrap();
        let fields: Vec<&str> = json["details"]
            .as_array().unwrap().iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest").unwrap()["field_violations"]
            .as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["email", "reason", "expires_at"]);

        // Listing pages through the query string, newest first, filtered by reason.
        for i in 0..4 {
            let response = post(json!({"email": format!("u{i}@example.com"), "reason": "other"})).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let response = app.http
                .get(format!("{}/v1/suppressions?reason=other&page_size=3&page_token={token}", app.base_url))
                .header("x-api-key", &key)
                .send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let page: Value = response.json().await.unwrap();
            for s in page["suppressions"].as_array().unwrap() {
                seen.push(s["email"].as_str().unwrap().to_owned());
            }
            token = page["next_page_token"].as_str().unwrap().to_owned();
            if token.is_empty() { break; }
        }
        assert_eq!(seen, ["u3@example.com", "u2@example.com", "u1@example.com", "u0@example.com"]);

        // Account B sees none of A's suppressions.
        let response = app.http
            .get(format!("{}/v1/suppressions/jane%40example.com", app.base_url))
            .header("x-api-key", &app.account_b.key)
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        // Deleted over REST; gone over gRPC; a second delete is NOT_FOUND.
        let delete = || app.http
            .delete(format!("{}/v1/suppressions/JANE%40example.com", app.base_url))
            .header("x-api-key", &key)
            .send();
        let response = delete().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
        let status = grpc
            .get_suppression(with_key(v1::GetSuppressionRequest { email: "jane@example.com".into() }, KeyHeader::Bearer, &key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(delete().await.unwrap().status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_both_security_schemes() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, 38);
    let get = &document["paths"]["/v1/suppressions/{email}"]["get"];
    assert_eq!(get["operationId"], "SuppressionsService_GetSuppression");
    assert!(
        get["description"]
            .as_str()
            .unwrap()
            .contains("NOT_FOUND when it is not suppressed")
    );
    assert_eq!(get["parameters"][0]["in"], "path");
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKeyAuth"]["name"], "X-API-Key");
    let watch = &document["paths"]["/v1/messages:watch"]["get"]["responses"]["200"]["content"];
    assert!(
        watch.get("application/x-ndjson").is_some() && watch.get("text/event-stream").is_some()
    );
    // The watch resumes after an SSE client's Last-Event-ID.
    let parameters = document["paths"]["/v1/messages:watch"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let last_event_id = parameters
        .iter()
        .find(|p| p["name"] == "Last-Event-ID")
        .expect("a Last-Event-ID parameter");
    assert_eq!(last_event_id["in"], "header");
    assert!(
        last_event_id["description"]
            .as_str()
            .unwrap()
            .contains("after_cursor")
    );
    // A call that is not a stream has none.
    let get = &document["paths"]["/v1/messages/{id}"]["get"]["parameters"];
    assert!(
        get.as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "Last-Event-ID")
    );
}

/// The REST surface is an inventory, reviewed like code (OWASP API9): a new
/// route changes this snapshot, so exposing an RPC over REST is a conscious
/// act. Regenerate with `POSTHORN_TEST_UPDATE_SNAPSHOTS=1`.
#[test]
fn the_rest_route_inventory_matches_its_snapshot() {
    let routes = routes();
    let inventory: String = routes
        .routes()
        .iter()
        .map(|r| {
            format!(
                "{:<7} {:<50} {:<52} {}\n",
                r.http_method.as_str(),
                r.template.source,
                r.method.full_name(),
                proto::required_scopes()[&r.grpc_path]
            )
        })
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/snapshots/rest_routes.txt"
    );
    if std::env::var_os("POSTHORN_TEST_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &inventory).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        inventory == expected,
        "the REST routes changed; review and update {path}:\n{inventory}"
    );
}
