//! A test-only gRPC service over the `gatewaytest.v1` contract
//! (`tests/proto`), implemented with dynamic messages: it answers each call
//! with its request, so what the REST gateway mapped is what comes back.
//! Shared by the gateway tests and the gateway benchmark.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures::{Stream, StreamExt as _};
use posthorn::gateway::{Gateway, GatewayOptions};
use posthorn::proto::DynamicCodec;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic_types::{ErrorDetails, StatusExt};

/// The echo service's full name.
pub const SERVICE: &str = "gatewaytest.v1.EchoService";

/// Compiles `file` from `dir` (with the repository's `proto/` for the
/// google imports), keeping extension options.
pub fn compile(dir: &std::path::Path, file: &str) -> Result<DescriptorPool, String> {
    let vendored = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compiler =
        protox::Compiler::new([dir.to_path_buf(), vendored]).map_err(|e| e.to_string())?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(file).map_err(|e| e.to_string())?;
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
        .map_err(|e| e.to_string())
}

/// The descriptor pool of the test contract.
pub fn pool() -> DescriptorPool {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/proto");
    compile(&dir, "gatewaytest/v1/echo.proto").expect("the test proto compiles")
}

/// Serves the echo service over gRPC and its REST gateway on a free port.
pub async fn spawn(options: GatewayOptions) -> SocketAddr {
    let pool = pool();
    let grpc = Router::new().route_service(
        &format!("/{SERVICE}/{{*method}}"),
        EchoService { pool: pool.clone() },
    );
    let gateway = Gateway::new(&pool, &[SERVICE.to_owned()], grpc.clone(), options)
        .expect("the test contract's rules build a route table");
    let app = grpc.fallback_service(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

fn int(message: &DynamicMessage, name: &str) -> i32 {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_i32())
        .unwrap_or_default()
}

fn string(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Request metadata echoed back as `echo-<name>` response metadata.
const ECHOED: &[&str] = &[
    "authorization",
    "x-api-key",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "x-custom",
];

struct Unary;

impl UnaryService<DynamicMessage> for Unary {
    type Response = DynamicMessage;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<DynamicMessage>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        Box::pin(async move {
            let metadata = request.metadata().clone();
            let message = request.into_inner();
            let code = int(&message, "fail_code");
            if code != 0 {
                let mut details = ErrorDetails::with_error_info("ASKED", "gatewaytest", []);
                if code == 8 {
                    details.set_retry_info(Some(Duration::from_millis(2500)));
                }
                let mut status = tonic::Status::with_error_details(
                    tonic::Code::from(code),
                    "failed as asked",
                    details,
                );
                status
                    .metadata_mut()
                    .insert("ratelimit-remaining", "0".parse().expect("ascii"));
                return Err(status);
            }
            let mut response = tonic::Response::new(message);
            for name in ECHOED {
                if let Some(value) = metadata.get(*name) {
                    let key = format!("echo-{name}");
                    let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes())
                        .expect("valid key");
                    response.metadata_mut().insert(key, value.clone());
                }
            }
            response
                .metadata_mut()
                .insert("idempotent-replayed", "false".parse().expect("ascii"));
            response
                .metadata_mut()
                .insert("ratelimit-remaining", "99".parse().expect("ascii"));
            Ok(response)
        })
    }
}

struct Watch;

/// The `id`s of the endless Watch streams (`stream_count` -1) still open;
/// one leaves when whoever called drops its stream. A watch channel, so a
/// test can await a change.
pub static OPEN_WATCHES: std::sync::LazyLock<tokio::sync::watch::Sender<Vec<String>>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(Vec::new()));

/// Holds an id in [`OPEN_WATCHES`] while its stream lives.
struct Open(String);

impl Open {
    fn new(id: String) -> Open {
        OPEN_WATCHES.send_modify(|open| open.push(id.clone()));
        Open(id)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN_WATCHES.send_modify(|open| {
            if let Some(at) = open.iter().position(|id| *id == self.0) {
                open.remove(at);
            }
        });
    }
}

type EchoStream = Pin<Box<dyn Stream<Item = Result<DynamicMessage, tonic::Status>> + Send>>;

impl ServerStreamingService<DynamicMessage> for Watch {
    type Response = DynamicMessage;
    type ResponseStream = EchoStream;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<EchoStream>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        Box::pin(async move {
            let message = request.into_inner();
            let count = int(&message, "stream_count");
            let fail_after = int(&message, "fail_after");
            let after = message
                .get_field_by_name("after_cursor")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let stream: EchoStream = if count < 0 {
                let mut first = message;
                first.set_field_by_name("cursor", Value::I64(after + 1));
                let open = Open::new(string(&first, "id"));
                let rest = futures::stream::poll_fn(move |_| {
                    let _held = &open;
                    Poll::Pending
                });
                Box::pin(futures::stream::once(async move { Ok(first) }).chain(rest))
            } else {
                let mut items = Vec::new();
                for i in 0..count {
                    if fail_after > 0 && i >= fail_after {
                        items.push(Err(tonic::Status::unavailable(
                            "the stream failed as asked",
                        )));
                        break;
                    }
                    let mut copy = message.clone();
                    copy.set_field_by_name("small", Value::I32(i));
                    copy.set_field_by_name("cursor", Value::I64(after + i64::from(i) + 1));
                    items.push(Ok(copy));
                }
                Box::pin(futures::stream::iter(items))
            };
            Ok(tonic::Response::new(stream))
        })
    }
}

/// The echo service as a tower service on the router.
#[derive(Clone)]
pub struct EchoService {
    pool: DescriptorPool,
}

impl EchoService {
    fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let name = path.rsplit('/').next()?;
        self.pool
            .get_service_by_name(SERVICE)?
            .methods()
            .find(|m| m.name() == name)
    }
}

impl tower::Service<http::Request<axum::body::Body>> for EchoService {
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let method = self.method(request.uri().path());
        Box::pin(async move {
            let Some(method) = method else {
                let status = tonic::Status::unimplemented("no such method");
                return Ok(status.into_http::<axum::body::Body>());
            };
            let request = request.map(tonic::body::Body::new);
            let mut grpc = Grpc::new(DynamicCodec(method.input()));
            let response = if method.is_server_streaming() {
                grpc.server_streaming(Watch, request).await
            } else {
                grpc.unary(Unary, request).await
            };
            Ok(response.map(axum::body::Body::new))
        })
    }
}
