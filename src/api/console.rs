//! `/console`: the browser console, a static page whose script (the
//! TypeScript client, bundled by scripts/build-console.sh) talks to the API
//! over gRPC-Web with the key the person pastes. Everything it loads is
//! served from here, embedded in the binary: no CDN, no key in a cookie.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../pages/console/index.html");
const SCRIPT: &str = include_str!("../pages/console/console.js");
const STYLE: &str = include_str!("../pages/console/console.css");

/// Scripts and styles from here only; template previews (an iframe's
/// srcdoc) may use inline styles and images from anywhere, as mail does.
const POLICY: &str = "default-src 'self'; img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The console's routes.
pub fn router() -> Router {
    let page = || async { asset(PAGE, "text/html; charset=utf-8") };
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route(
            "/console/console.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}
