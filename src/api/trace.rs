//! One span per RPC with its method, account, gRPC status code and latency,
//! and one log line when it is answered.

use std::time::Duration;

use http::{Request, Response};
use tower_http::classify::{GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Returns the layer that traces every RPC.
#[allow(clippy::type_complexity)]
pub fn rpc_trace_layer() -> TraceLayer<
    SharedClassifier<GrpcErrorsAsFailures>,
    fn(&Request<tonic::body::Body>) -> Span,
    (),
    fn(&Response<tonic::body::Body>, Duration, &Span),
    (),
    (),
    (),
> {
    TraceLayer::new_for_grpc()
        .make_span_with(make_span as fn(&Request<tonic::body::Body>) -> Span)
        .on_request(())
        .on_response(on_response as fn(&Response<tonic::body::Body>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn make_span(request: &Request<tonic::body::Body>) -> Span {
    tracing::info_span!(
        "rpc",
        otel.name = request.uri().path(),
        rpc.method = request.uri().path(),
        account = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// Errors are answered as trailers-only responses, so a `grpc-status`
/// header is the call's code; without one the call succeeded (a stream's
/// later failure shows in its trailers, not here).
fn on_response(response: &Response<tonic::body::Body>, latency: Duration, span: &Span) {
    let code: i32 = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.record("rpc.grpc.status_code", code);
    span.record("latency_ms", latency_ms);
    tracing::info!(parent: span, code, latency_ms, "rpc answered");
}
