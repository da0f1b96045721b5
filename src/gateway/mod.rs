//! The REST/JSON door. Its routes are derived at start-up from the
//! `google.api.http` rules of the descriptor set, and each request is
//! dispatched in-process to the same tonic services the gRPC door serves,
//! so authentication, tracing and limits apply alike. There is no per-RPC
//! code here: an RPC with a rule in the proto has a REST route.

mod enums;
pub mod openapi;
mod request;
mod response;
pub mod routes;
mod template;

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use prost::Message as _;
use prost_reflect::DescriptorPool;
use tower::{Service, ServiceExt};

pub use request::{MappingError, from_json};
use response::StreamFormat;
pub use response::{ErrorBody, http_status, rest_json};
use routes::{Match, RouteTable};

/// Settings of the gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// The largest request body accepted, in bytes, measured after
    /// decompression.
    pub max_body_bytes: usize,
    /// How long a Server-Sent Events stream may be quiet before a comment
    /// line is written to keep it open through proxies.
    pub stream_keepalive: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            max_body_bytes: 36 * 1024 * 1024,
            stream_keepalive: Duration::from_secs(15),
        }
    }
}

struct Inner {
    table: RouteTable,
    pool: DescriptorPool,
    grpc: Router,
    options: GatewayOptions,
}

/// The REST gateway: a tower service answering every path it has a route
/// for, and the JSON 404 for the rest.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// Request headers forwarded as gRPC metadata under their own names.
const FORWARDED: &[&str] = &[
    "authorization",
    "x-api-key",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "user-agent",
];

impl Gateway {
    /// Builds the gateway for `services` (full names) of `pool`, calling
    /// `grpc` for each request. Fails, naming the methods, when a rule
    /// cannot be parsed or two rules conflict.
    pub fn new(
        pool: &DescriptorPool,
        services: &[String],
        grpc: Router,
        options: GatewayOptions,
    ) -> Result<Gateway, String> {
        let table = RouteTable::build(pool, services)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                table,
                pool: pool.clone(),
                grpc,
                options,
            }),
        })
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.inner.table
    }

    /// The OpenAPI 3.1 document of the routes.
    pub fn openapi(&self, title: &str, version: &str) -> serde_json::Value {
        openapi::document(&self.inner.table, &self.inner.pool, title, version)
    }

    async fn handle(self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let (route, captured) = match self.inner.table.find(&parts.method, parts.uri.path()) {
            Match::Found(route, captured) => (route, captured),
            Match::NotFound => return crate::http::not_found(parts.uri).await,
            Match::MethodNotAllowed(allowed) => {
                return refused(
                    &parts,
                    method_not_allowed(&parts.method, allowed),
                    "method not allowed",
                );
            }
        };

        let body = match read_body(&parts.headers, body, self.inner.options.max_body_bytes).await {
            Ok(body) => body,
            Err(response) => return refused(&parts, response, "body refused"),
        };
        let built =
            request::build(route, &captured, parts.uri.query(), &body).and_then(|mut message| {
                if let Some(resume) = &route.resume {
                    request::resume_after_last_event(resume, &parts.headers, &mut message)?;
                }
                Ok(message)
            });
        let message = match built {
            Ok(message) => message,
            Err(error) => {
                let response = ErrorBody::invalid(&error).into_response();
                return refused(&parts, response, &error.message());
            }
        };

        // The length once: it walks every field of a dynamic message.
        let length = message.encoded_len();
        let mut frame = BytesMut::with_capacity(5 + length);
        frame.put_u8(0);
        frame.put_u32(length as u32);
        message.encode_raw(&mut frame);

        let mut grpc = Request::builder()
            .method(Method::POST)
            .uri(route.grpc_path.as_str())
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers");
        if let Some(headers) = grpc.headers_mut() {
            copy_request_metadata(&parts.headers, headers);
        }
        let grpc = grpc
            .body(Body::from(frame.freeze()))
            .expect("a request from valid parts");
        let answer = match self.inner.grpc.clone().oneshot(grpc).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let format = StreamFormat::from_accept(&parts.headers);
        response::translate(
            &self.inner.pool,
            route,
            answer,
            format,
            self.inner.options.stream_keepalive,
        )
        .await
    }
}

impl Service<Request<Body>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let gateway = self.clone();
        Box::pin(async move { Ok(gateway.handle(request).await) })
    }
}

/// Logs a request the gateway answered itself, before any RPC ran (the
/// RPC's own span covers everything after).
fn refused(parts: &http::request::Parts, response: Response<Body>, reason: &str) -> Response<Body> {
    tracing::info!(
        http.method = %parts.method,
        http.path = parts.uri.path(),
        http.status = response.status().as_u16(),
        reason,
        "REST request refused by the gateway"
    );
    response
}

/// Forwards the headers grpc-gateway forwards: the named ones as they
/// are, and `Grpc-Metadata-<name>` as `<name>`.
pub fn copy_request_metadata(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if FORWARDED.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-")
            && !key.starts_with("grpc-")
            && let Ok(key) = HeaderName::from_bytes(key.as_bytes())
        {
            to.append(key, value.clone());
        }
    }
}

/// Whether a body failed because its client paused longer than the
/// client timeout (`src/serve.rs`).
fn stopped_arriving(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

/// Reads the body under the limit, inflating gzip; answers 413 when the
/// (decoded) body is over the limit, before decoding any JSON.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response<Body>> {
    let too_large = || ErrorBody::payload_too_large(limit).into_response();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(error) if stopped_arriving(&*error) => {
            return Err(ErrorBody::body_stopped().into_response());
        }
        Err(_) => {
            return Err(ErrorBody::new(
                StatusCode::BAD_REQUEST,
                3,
                "the request body could not be read",
                "VALIDATION_FAILED",
            )
            .into_response());
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(bytes),
        Some("gzip") | Some("x-gzip") => {
            let mut inflated = Vec::new();
            let mut reader = flate2::read::GzDecoder::new(&bytes[..]).take(limit as u64 + 1);
            if reader.read_to_end(&mut inflated).is_err() {
                return Err(ErrorBody::new(
                    StatusCode::BAD_REQUEST,
                    3,
                    "the request body is not valid gzip",
                    "VALIDATION_FAILED",
                )
                .into_response());
            }
            if inflated.len() > limit {
                return Err(too_large());
            }
            Ok(Bytes::from(inflated))
        }
        Some(other) => Err(ErrorBody::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            &format!("Content-Encoding `{other}` is not supported; send identity or gzip"),
            "VALIDATION_FAILED",
        )
        .into_response()),
    }
}

fn method_not_allowed(method: &Method, allowed: Vec<Method>) -> Response<Body> {
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = ErrorBody::new(
        StatusCode::METHOD_NOT_ALLOWED,
        12,
        &format!("{method} is not allowed on this path; allowed: {list}"),
        "METHOD_NOT_ALLOWED",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&list) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
