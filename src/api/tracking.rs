//! The open pixel (`/t/o/{token}`) and click redirect (`/t/c/{token}`) of
//! delivered mail, reached without a key or a cookie.
//!
//! The pixel is served to every request, whatever its token, so that it
//! tells nothing about which tokens are real; only a token this server
//! signed records an open. A click token that is not one of ours answers
//! 404 and never redirects: the only place a click leads is the URL the
//! message was written with. `HEAD` (link scanners checking a link) gets
//! the same answer as `GET` and records nothing. Neither answer may be
//! cached, so each open reaches the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::domain::links::{Link, LinkKind};
use crate::domain::net::is_internal;
use crate::domain::tracking::{Tracking, Visitor};
use crate::storage::Store;

/// A transparent 1×1 GIF (GIF89a, one colour, that colour transparent).
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Every answer here is fetched afresh each time.
const NO_STORE: &str = "no-store, no-cache, must-revalidate, max-age=0";

type Shared = Arc<Tracking<Store>>;

/// The tracking routes, ready to merge into the server's router.
pub fn router(tracking: Shared) -> Router {
    Router::new()
        .route("/t/o/{token}", get(open))
        .route("/t/c/{token}", get(click))
        .with_state(tracking)
}

async fn open(
    State(tracking): State<Shared>,
    Path(token): Path<String>,
    method: Method,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if let Ok(link) = tracking.check(&token, LinkKind::Open) {
        record(&tracking, &link, &method, peer, &headers).await;
    }
    let mut response = (StatusCode::OK, PIXEL).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    no_store(headers);
    response
}

async fn click(
    State(tracking): State<Shared>,
    Path(token): Path<String>,
    method: Method,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    // The destination as a browser would send it (non-ASCII percent-encoded).
    let checked = tracking
        .check(&token, LinkKind::Click)
        .ok()
        .and_then(|link| {
            let location = url::Url::parse(&link.url).ok()?;
            let location = HeaderValue::from_str(location.as_str()).ok()?;
            Some((link, location))
        });
    let mut response = match checked {
        Some((link, location)) => {
            record(&tracking, &link, &method, peer, &headers).await;
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => (
            StatusCode::NOT_FOUND,
            "This link is not valid: it was not written by this server, or it was changed.\n",
        )
            .into_response(),
    };
    no_store(response.headers_mut());
    response
}

/// Records what a `GET` through `link` did; storage trouble is logged, and
/// the visitor still gets the pixel or the page.
async fn record(
    tracking: &Tracking<Store>,
    link: &Link,
    method: &Method,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
) {
    if method != Method::GET {
        return;
    }
    let visitor = Visitor {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        ip: client_ip(peer.map(|Extension(ConnectInfo(addr))| addr.ip()), headers),
    };
    if let Err(error) = tracking.record(link, &visitor).await {
        tracing::warn!(
            message_id = %link.message_id,
            error = error.chain(),
            "an open or click could not be recorded"
        );
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The client's address: the peer's, or, when the peer is a proxy on this
/// host or inside the network (`domain::net`: loopback, private, CGNAT …),
/// the last address before such proxies in `X-Forwarded-For`.
fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    if !is_internal(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_internal(**ip))
        .or(forwarded.first())
        .copied()
        .or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_proxy_on_a_private_network_is_looked_through_and_a_public_peer_is_not() {
        let proxy = Some("10.0.0.5".parse().unwrap());
        let public = Some("198.51.100.7".parse().unwrap());
        let chain = forwarded("192.0.2.1, 203.0.113.9, 10.0.0.2");
        assert_eq!(client_ip(proxy, &chain), "203.0.113.9".parse().ok());
        // A client cannot make itself look like somebody else.
        assert_eq!(client_ip(public, &chain), public);
        assert_eq!(client_ip(proxy, &HeaderMap::new()), proxy);
        assert_eq!(
            client_ip(proxy, &forwarded("10.1.1.1, garbage")),
            "10.1.1.1".parse().ok()
        );
        assert_eq!(client_ip(None, &chain), None);
    }

    #[test]
    fn the_pixel_is_a_one_by_one_gif() {
        assert_eq!(&PIXEL[..6], b"GIF89a");
        assert_eq!(&PIXEL[6..10], &[1, 0, 1, 0]);
        assert_eq!(PIXEL.last(), Some(&0x3b));
    }
}
