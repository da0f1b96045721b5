//! The unsubscribe link of delivered mail (`/u/{token}`), reached without
//! a key or a cookie: the signed token is the authority.
//!
//! `POST` unsubscribes at once (RFC 8058 one-click: the mailbox provider
//! posts `List-Unsubscribe=One-Click`; the page's button posts the same).
//! `GET` only shows a page that explains and offers the button: mail
//! scanners fetch links, and a fetch must never unsubscribe anybody.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::domain::Error;
use crate::domain::links::Unsubscribes;
use crate::storage::Store;

/// The page (`src/pages/unsubscribe.html`).
#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage {
    address: String,
    /// The token names a recipient (else the page says the link is bad).
    valid: bool,
    /// The address was unsubscribed by this request.
    done: bool,
}

/// The unsubscribe routes, ready to merge into the server's router.
pub fn router(unsubscribes: Arc<Unsubscribes<Store>>) -> Router {
    Router::new()
        .route("/u/{token}", get(confirm).post(unsubscribe))
        .with_state(unsubscribes)
}

async fn confirm(
    State(unsubscribes): State<Arc<Unsubscribes<Store>>>,
    Path(token): Path<String>,
) -> Response {
    match unsubscribes.check(&token) {
        Ok(link) => page(StatusCode::OK, link.recipient, true, false),
        Err(_) => page(StatusCode::NOT_FOUND, String::new(), false, false),
    }
}

async fn unsubscribe(
    State(unsubscribes): State<Arc<Unsubscribes<Store>>>,
    Path(token): Path<String>,
) -> Response {
    match unsubscribes.unsubscribe(&token).await {
        Ok(link) => page(StatusCode::OK, link.recipient, true, true),
        Err(Error::NotFound { .. }) => page(StatusCode::NOT_FOUND, String::new(), false, false),
        Err(error) => {
            tracing::warn!(
                error = error.chain(),
                "an unsubscribe link could not be applied"
            );
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "The unsubscribe could not be saved; please try again.",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

fn page(status: StatusCode, address: String, valid: bool, done: bool) -> Response {
    let page = UnsubscribePage {
        address,
        valid,
        done,
    };
    match page.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "the unsubscribe page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
