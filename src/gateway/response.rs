//! Turns the tonic service's gRPC answer into the REST answer: canonical
//! proto3 JSON with the proto field names, `google.rpc.Status` JSON with
//! grpc-gateway's HTTP status for errors, and server streams as NDJSON or
//! Server-Sent Events.

use std::time::Duration;

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, SerializeOptions,
};
use serde_json::{Value as Json, json};
use tonic_types::StatusExt;

use super::MappingError;
use super::routes::Route;
use crate::api::status::ERROR_DOMAIN;

/// How a server stream is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    /// `application/x-ndjson`: one JSON document per line.
    Ndjson,
    /// `text/event-stream`: one `data:` event per message.
    Sse,
}

impl StreamFormat {
    /// Server-Sent Events when the client accepts `text/event-stream`.
    pub fn from_accept(headers: &HeaderMap) -> StreamFormat {
        let sse = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/event-stream"));
        if sse {
            StreamFormat::Sse
        } else {
            StreamFormat::Ndjson
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            StreamFormat::Ndjson => "application/x-ndjson",
            StreamFormat::Sse => "text/event-stream",
        }
    }

    /// One streamed message; over Server-Sent Events with its `id` when the
    /// stream can be resumed.
    fn message(self, json: &[u8], id: Option<i64>) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 32);
        match self {
            StreamFormat::Ndjson => {
                out.extend_from_slice(json);
                out.push(b'\n');
            }
            StreamFormat::Sse => {
                if let Some(id) = id {
                    out.extend_from_slice(format!("id: {id}\n").as_bytes());
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
        }
        Bytes::from(out)
    }

    /// What is written when a stream has been quiet for a while, so that
    /// proxies keep it open and a vanished client is noticed by the failed
    /// write: a comment line over Server-Sent Events, which every client
    /// skips. Nothing over NDJSON, where every line is a JSON document.
    fn keepalive(self) -> Option<Bytes> {
        match self {
            StreamFormat::Ndjson => None,
            StreamFormat::Sse => Some(Bytes::from_static(b": keep-alive\n\n")),
        }
    }

    fn error(self, status: &Json) -> Bytes {
        match self {
            StreamFormat::Ndjson => Bytes::from(format!("{}\n", json!({ "error": status }))),
            StreamFormat::Sse => Bytes::from(format!("event: error\ndata: {status}\n\n")),
        }
    }
}

/// The HTTP status grpc-gateway gives a gRPC code.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        // 499 "Client Closed Request", as grpc-gateway answers.
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// An error answer: a `google.rpc.Status` as JSON.
pub struct ErrorBody {
    status: StatusCode,
    json: Json,
    headers: HeaderMap,
}

impl ErrorBody {
    /// An error with `ErrorInfo{reason}` as its one detail.
    pub fn new(status: StatusCode, code: i32, message: &str, reason: &str) -> ErrorBody {
        ErrorBody {
            status,
            json: json!({
                "code": code,
                "message": message,
                "details": [error_info(reason)],
            }),
            headers: HeaderMap::new(),
        }
    }

    /// 400 for a request the gateway could not map, naming the field.
    pub fn invalid(error: &MappingError) -> ErrorBody {
        ErrorBody {
            status: StatusCode::BAD_REQUEST,
            json: json!({
                "code": 3,
                "message": error.message(),
                "details": [
                    error_info("VALIDATION_FAILED"),
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "field_violations": [{
                            "field": error.field,
                            "description": error.description,
                            "reason": "",
                        }],
                    },
                ],
            }),
            headers: HeaderMap::new(),
        }
    }

    /// The answer for a gRPC status: its HTTP status and its
    /// `google.rpc.Status` JSON, details included.
    pub fn from_status(status: &tonic::Status) -> ErrorBody {
        ErrorBody {
            status: http_status(status.code()),
            json: status_json(crate::proto::descriptor_pool(), status),
            headers: HeaderMap::new(),
        }
    }

    /// The `google.rpc.Status` JSON.
    pub fn json(&self) -> &Json {
        &self.json
    }

    /// 408 for a body whose client paused longer than the client timeout.
    pub fn body_stopped() -> ErrorBody {
        ErrorBody::new(
            StatusCode::REQUEST_TIMEOUT,
            4,
            "the request body stopped arriving before it was whole (setting `client_timeout_seconds`)",
            "REQUEST_TIMEOUT",
        )
    }

    /// 413 for a body over the limit.
    pub fn payload_too_large(limit: usize) -> ErrorBody {
        ErrorBody::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            8,
            &format!(
                "the request body is larger than the limit of {limit} bytes (setting `rest_max_body_bytes`)"
            ),
            "PAYLOAD_TOO_LARGE",
        )
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.json.to_string()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn error_info(reason: &str) -> Json {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": ERROR_DOMAIN,
        "metadata": {},
    })
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
}

/// The REST JSON of `message`: proto3 JSON with proto field names, every
/// field present, and enum values by their short names (`super::enums`).
pub fn rest_json(message: &DynamicMessage) -> Result<Json, serde_json::Error> {
    let mut json =
        message.serialize_with_options(serde_json::value::Serializer, &serialize_options())?;
    super::enums::shorten(&mut json, &message.descriptor());
    Ok(json)
}

fn to_json(message: &DynamicMessage) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&rest_json(message)?)
}

/// The `google.rpc.Status` JSON of `status`, with its details (reason,
/// field violations, retry delay), as REST error bodies carry it.
fn status_json(pool: &DescriptorPool, status: &tonic::Status) -> Json {
    pool.get_message_by_name("google.rpc.Status")
        .filter(|_| !status.details().is_empty())
        .and_then(|d| DynamicMessage::decode(d, status.details()).ok())
        .and_then(|m| rest_json(&m).ok())
        .unwrap_or_else(
            || json!({"code": status.code() as i32, "message": status.message(), "details": []}),
        )
}

/// The `google.rpc.Status` JSON carried by gRPC headers or trailers.
fn error_from(pool: &DescriptorPool, map: &HeaderMap) -> ErrorBody {
    let status = tonic::Status::from_header_map(map)
        .unwrap_or_else(|| tonic::Status::internal("the service ended without a status"));
    let json = status_json(pool, &status);

    let mut http = http_status(status.code());
    let mut headers = HeaderMap::new();
    // Too large for the service: Posthorn's own PAYLOAD_TOO_LARGE, or tonic
    // refusing a request over the service's decoding limit (OUT_OF_RANGE).
    let too_large = match status.code() {
        tonic::Code::ResourceExhausted => status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "PAYLOAD_TOO_LARGE"),
        tonic::Code::OutOfRange => status
            .message()
            .starts_with("Error, decoded message length too large"),
        _ => false,
    };
    if too_large {
        http = StatusCode::PAYLOAD_TOO_LARGE;
    }
    if status.code() == tonic::Code::ResourceExhausted
        && let Some(delay) = status.get_details_retry_info().and_then(|r| r.retry_delay)
    {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    copy_response_metadata(map, &mut headers, "grpc-metadata-");
    ErrorBody {
        status: http,
        json,
        headers,
    }
}

/// Metadata REST clients expect as plain headers, besides its
/// `Grpc-Metadata-` form.
fn is_plain(name: &str) -> bool {
    name == "retry-after" || name == "idempotent-replayed" || name.starts_with("ratelimit-")
}

/// Copies gRPC metadata into REST headers: `<prefix><name>` for every
/// application entry, and the plain form for the ones REST clients read.
fn copy_response_metadata(from: &HeaderMap, to: &mut HeaderMap, prefix: &str) {
    for (name, value) in from {
        let name = name.as_str();
        if name.starts_with("grpc-")
            || name.ends_with("-bin")
            || matches!(
                name,
                "content-type" | "content-length" | "te" | "trailer" | "date" | "transfer-encoding"
            )
        {
            continue;
        }
        if is_plain(name)
            && let Ok(plain) = HeaderName::from_bytes(name.as_bytes())
        {
            to.insert(plain, value.clone());
        }
        if let Ok(prefixed) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            to.append(prefixed, value.clone());
        }
    }
}

fn internal(reason: &str) -> Response<Body> {
    tracing::error!(reason, "the gateway could not translate a gRPC answer");
    ErrorBody::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        "internal error",
        "INTERNAL",
    )
    .into_response()
}

/// Takes one complete length-prefixed message off the front of `buffer`.
fn take_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, &'static str> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err("a compressed gRPC message arrived although none was asked for");
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(length).freeze()))
}

fn decode(descriptor: &MessageDescriptor, bytes: Bytes) -> Result<DynamicMessage, String> {
    DynamicMessage::decode(descriptor.clone(), bytes)
        .map_err(|e| format!("undecodable response: {e}"))
}

fn message_json(message: &DynamicMessage, route: &Route) -> Result<Vec<u8>, String> {
    match &route.response_body {
        None => to_json(message).map_err(|e| e.to_string()),
        Some(field) => {
            let whole: Json = serde_json::from_slice(&to_json(message).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let part = whole.get(field.name()).cloned().unwrap_or(Json::Null);
            serde_json::to_vec(&part).map_err(|e| e.to_string())
        }
    }
}

/// The cursor a streamed message carries, when its stream can be resumed.
fn cursor(message: &DynamicMessage, route: &Route) -> Option<i64> {
    fn at(message: &DynamicMessage, path: &[prost_reflect::FieldDescriptor]) -> Option<i64> {
        let (first, rest) = path.split_first()?;
        let value = message.get_field(first);
        if rest.is_empty() {
            value.as_i64()
        } else {
            at(value.as_message()?, rest)
        }
    }
    at(message, &route.resume.as_ref()?.cursor)
}

/// Translates the answer of the tonic service for `route`.
pub async fn translate(
    pool: &DescriptorPool,
    route: &Route,
    answer: Response<Body>,
    format: StreamFormat,
    keepalive: Duration,
) -> Response<Body> {
    let (parts, body) = answer.into_parts();
    if parts.headers.contains_key("grpc-status") {
        // Trailers-only: the call failed before any message.
        return error_from(pool, &parts.headers).into_response();
    }
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if parts.status != StatusCode::OK || !grpc {
        return internal("the service did not answer with gRPC");
    }
    let mut headers = HeaderMap::new();
    copy_response_metadata(&parts.headers, &mut headers, "grpc-metadata-");
    let output = route.method.output();

    if route.method.is_server_streaming() {
        let stream = stream_body(pool.clone(), route.clone(), output, body, format, keepalive);
        let mut response = Response::new(Body::from_stream(stream));
        *response.headers_mut() = headers;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx holds a proxied answer back until its buffer fills unless
        // told otherwise: a stream's messages would arrive in lumps.
        response.headers_mut().insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        return response;
    }

    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(_) => return internal("the service's answer broke off"),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut buffer = BytesMut::from(collected.to_bytes());
    if trailers
        .get("grpc-status")
        .is_none_or(|s| s.as_bytes() != b"0")
    {
        let mut error = error_from(pool, &trailers);
        copy_response_metadata(&parts.headers, &mut error.headers, "grpc-metadata-");
        return error.into_response();
    }
    let message = match take_message(&mut buffer) {
        Ok(Some(message)) if buffer.is_empty() => message,
        Ok(_) => return internal("a unary answer did not hold exactly one message"),
        Err(reason) => return internal(reason),
    };
    let json = match decode(&output, message).and_then(|message| message_json(&message, route)) {
        Ok(json) => json,
        Err(reason) => return internal(&reason),
    };
    copy_response_metadata(&trailers, &mut headers, "grpc-trailer-");
    let mut response = Response::new(Body::from(json));
    *response.headers_mut() = headers;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

struct StreamState {
    pool: DescriptorPool,
    route: Route,
    output: MessageDescriptor,
    body: Body,
    buffer: BytesMut,
    format: StreamFormat,
    /// How long the stream may be quiet before a keep-alive is written.
    keepalive: Duration,
    done: bool,
}

fn broken(reason: &str) -> Json {
    tracing::warn!(reason, "a REST stream ended abnormally");
    json!({"code": 13, "message": "internal error", "details": [error_info("INTERNAL")]})
}

/// Writes each streamed message as it arrives, a keep-alive when the
/// stream was quiet for `keepalive` (Server-Sent Events only), and a final
/// status object when the stream ends with an error.
fn stream_body(
    pool: DescriptorPool,
    route: Route,
    output: MessageDescriptor,
    body: Body,
    format: StreamFormat,
    keepalive: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let state = StreamState {
        pool,
        route,
        output,
        body,
        buffer: BytesMut::new(),
        format,
        keepalive,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            match take_message(&mut state.buffer) {
                Ok(Some(message)) => {
                    let answer = decode(&state.output, message).and_then(|message| {
                        let json = message_json(&message, &state.route)?;
                        Ok((json, cursor(&message, &state.route)))
                    });
                    return match answer {
                        Ok((json, id)) => Some((Ok(state.format.message(&json, id)), state)),
                        Err(reason) => {
                            state.done = true;
                            Some((Ok(state.format.error(&broken(&reason))), state))
                        }
                    };
                }
                Ok(None) => {}
                Err(reason) => {
                    state.done = true;
                    return Some((Ok(state.format.error(&broken(reason))), state));
                }
            }
            let frame = match state.format.keepalive() {
                Some(line) => match tokio::time::timeout(state.keepalive, state.body.frame()).await
                {
                    Ok(frame) => frame,
                    Err(_) => return Some((Ok(line), state)),
                },
                None => state.body.frame().await,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => state.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        state.done = true;
                        let trailers = frame.into_trailers().unwrap_or_default();
                        if trailers
                            .get("grpc-status")
                            .is_some_and(|s| s.as_bytes() == b"0")
                        {
                            return None;
                        }
                        let error = error_from(&state.pool, &trailers);
                        return Some((Ok(state.format.error(&error.json)), state));
                    }
                },
                Some(Err(_)) => {
                    state.done = true;
                    return Some((
                        Ok(state.format.error(&broken("the stream broke off"))),
                        state,
                    ));
                }
                None => return None,
            }
        }
    })
}
