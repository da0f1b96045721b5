//! The contract as served: reflection lists the six services, every method
//! of the descriptor set is routed and behind authentication, and methods
//! whose behaviour is not built yet say so.

use posthorn::proto;
use tonic_reflection::pb::{v1, v1alpha};

use crate::grpc_web;
use crate::helpers::{KeyHeader, spawn_app};

#[tokio::test]
async fn reflection_v1_lists_the_six_services_health_and_reflection() {
    let app = spawn_app().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    let six = proto::service_names();
    assert_eq!(six.len(), 6);
    for expected in six.iter().map(String::as_str).chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]) {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1alpha_serves_descriptors_with_their_http_rules_and_scopes() {
    let app = spawn_app().await;
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let requests = [
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "posthorn.v1.SendService".into(),
                ),
            ),
        },
    ];
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    assert_eq!(
        list.service
            .iter()
            .filter(|s| s.name.starts_with("posthorn.v1."))
            .count(),
        6
    );
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    let send_proto = files
        .file_descriptor_proto
        .iter()
        .find(|f| {
            f.windows(b"posthorn/v1/send.proto".len())
                .any(|w| w == b"posthorn/v1/send.proto")
        })
        .expect("send.proto is served");
    // The options survive encoding: the REST route and the scope are in the descriptor.
    for needle in [&b"/v1/send/batch"[..], b"email:send"] {
        assert!(
            send_proto.windows(needle.len()).any(|w| w == needle),
            "{} missing",
            String::from_utf8_lossy(needle)
        );
    }
}

#[tokio::test]
async fn every_method_of_the_contract_is_routed_authenticated_and_built() {
    let app = spawn_app().await;
    let methods: Vec<String> = proto::methods().iter().map(proto::grpc_path).collect();
    assert_eq!(methods.len(), 39, "the six services define 39 RPCs");
    for path in &methods {
        let anonymous = grpc_web::call(&app.http, &app.base_url, path, &(), &[]).await;
        assert_eq!(
            (anonymous.grpc_status, anonymous.reason().as_str()),
            (16, "API_KEY_MISSING"),
            "{path} without a key"
        );

        if path.ends_with("/WatchMessages") {
            // An empty watch follows live events without end; its behaviour
            // has tests of its own (delivery.rs).
            continue;
        }
        let reply = grpc_web::call(
            &app.http,
            &app.base_url,
            path,
            &(),
            &[KeyHeader::Bearer.pair(&app.account_a.key)],
        )
        .await;
        assert_ne!(reply.grpc_status, 12, "{path} is built: {reply:?}");
        assert_ne!(reply.reason(), "NOT_IMPLEMENTED", "{path}");
    }
}

#[tokio::test]
async fn grpc_web_answers_browsers_with_cors_headers() {
    let app = spawn_app().await;
    let reply = grpc_web::call(
        &app.http,
        &app.base_url,
        "/posthorn.v1.SendService/SendEmail",
        &(),
        &[],
    )
    .await;
    assert_eq!(reply.cors_allow_origin.as_deref(), Some("*"));

    let preflight = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/posthorn.v1.SendService/SendEmail", app.base_url),
        )
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "x-api-key,content-type,x-grpc-web",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("POST"), "{allowed}");
}
