//! Plain HTTP endpoints on the shared port: liveness, readiness, and the
//! answer for paths no door serves.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::storage::Store;

/// `GET /healthz`: the process is up and its store can still acknowledge
/// (503, `"status": "broken"`, when only a restart can bring that back).
pub async fn healthz(State(store): State<Store>) -> Response {
    match store.broken() {
        // Only a restart recovers: say so to whatever restarts the process.
        Some(reason) => unhealthy("broken", &reason),
        None => Json(json!({"status": "ok"})).into_response(),
    }
}

/// `GET /readyz`: the database answers, every migration is applied and
/// the store can still acknowledge.
pub async fn readyz(State(store): State<Store>) -> Response {
    if let Some(reason) = store.broken() {
        return unavailable(&reason);
    }
    if let Err(error) = store.ping().await {
        tracing::warn!(error = %error, "readiness: database unreachable");
        return unavailable("database unreachable");
    }
    match store.pending_migrations().await {
        Ok(pending) if pending.is_empty() => Json(json!({"status": "ready"})).into_response(),
        Ok(pending) => unavailable(&format!("migrations not applied: {}", pending.join(", "))),
        Err(_) => unavailable("cannot read the migration state"),
    }
}

fn unavailable(reason: &str) -> Response {
    unhealthy("unavailable", reason)
}

fn unhealthy(status: &str, reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": status, "reason": reason})),
    )
        .into_response()
}

/// Answers a path no door serves with a `google.rpc.Status`-shaped 404.
pub async fn not_found(uri: Uri) -> Response {
    let body = json!({
        "code": 5,
        "message": format!("no route for {}", uri.path()),
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "NOT_FOUND",
            "domain": crate::api::status::ERROR_DOMAIN,
        }],
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
