//! The authentication layer: one tower layer in front of every posthorn.v1
//! service. It reads `Authorization: Bearer <key>` or `X-API-Key: <key>`,
//! checks the key and the scope the method's `posthorn.v1.required_scope`
//! option names, and hands the handler an `AuthContext` in the request
//! extensions.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderMap;
use tower::{Layer, Service};

use super::status::to_status;
use crate::domain::auth::{AuthContext, Authenticator};
use crate::domain::limits::{Policy, RateLimiter, RateState};
use crate::domain::{Error, Scope};
use crate::storage::Store;
use std::time::Instant;

/// Shared state of the layer.
pub struct AuthState {
    authenticator: Authenticator<Store>,
    limiter: RateLimiter,
    /// gRPC path → scope required, from the descriptor set.
    scopes: HashMap<String, Scope>,
}

impl AuthState {
    /// Builds the state, reading each method's scope from the contract.
    /// Fails when a posthorn.v1 method names no scope or an unknown one.
    /// Key lookups are reused for `key_ttl` (`auth_cache_seconds`).
    pub fn new(store: Store, policy: Policy, key_ttl: std::time::Duration) -> anyhow::Result<Self> {
        let mut scopes = HashMap::new();
        for (path, scope) in crate::proto::required_scopes() {
            let scope: Scope = scope.parse().map_err(|e| {
                anyhow::anyhow!("method {path} has no valid posthorn.v1.required_scope: {e}")
            })?;
            scopes.insert(path, scope);
        }
        Ok(AuthState {
            authenticator: Authenticator::new(
                store,
                policy,
                key_ttl,
                std::sync::Arc::new(crate::domain::clock::SystemClock),
            ),
            limiter: RateLimiter::default(),
            scopes,
        })
    }

    /// Authenticates the caller of `path` and checks its scope.
    pub async fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<AuthContext, Error> {
        let presented = presented_key(headers)?;
        let context = self
            .authenticator
            .authenticate(presented.as_deref())
            .await?;
        if let Some(scope) = self.scopes.get(path) {
            context.require(*scope)?;
        }
        Ok(context)
    }

    /// Takes one request from the key's rate limit.
    pub fn admit(&self, context: &AuthContext) -> Result<RateState, Error> {
        self.limiter
            .take(&context.key_id, &context.policy, Instant::now())
    }
}

/// Returns the key presented in the headers, if any. An `Authorization`
/// header that is not a bearer token is an invalid key, not a missing one.
pub fn presented_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Error::ApiKeyInvalid)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(Error::ApiKeyInvalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::ApiKeyInvalid);
        }
        return Ok(Some(token.trim().to_owned()));
    }
    match headers.get("x-api-key") {
        Some(value) => Ok(Some(
            value
                .to_str()
                .map_err(|_| Error::ApiKeyInvalid)?
                .trim()
                .to_owned(),
        )),
        None => Ok(None),
    }
}

/// The layer; wraps each posthorn.v1 service.
#[derive(Clone)]
pub struct AuthLayer {
    state: Arc<AuthState>,
}

impl AuthLayer {
    /// Builds the layer around shared state.
    pub fn new(state: Arc<AuthState>) -> Self {
        AuthLayer { state }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service the layer produces.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    state: Arc<AuthState>,
}

type GrpcResponse = http::Response<tonic::body::Body>;

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = GrpcResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<GrpcResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let context = match state
                .authorize(request.uri().path(), request.headers())
                .await
            {
                Ok(context) => context,
                Err(error) => return Ok(to_status(error).into_http()),
            };
            tracing::Span::current().record("account", context.account_id.as_str());
            let limit = context.policy.burst.max(1);
            match state.admit(&context) {
                Ok(rate) => {
                    request.extensions_mut().insert(context);
                    let mut response = inner.call(request).await?;
                    rate_headers(response.headers_mut(), rate);
                    Ok(response)
                }
                Err(error) => {
                    let reset = match &error {
                        Error::RateLimited { retry_after, .. } => {
                            retry_after.as_secs_f64().ceil().max(1.0) as u64
                        }
                        _ => 1,
                    };
                    let mut response = to_status(error).into_http();
                    rate_headers(
                        response.headers_mut(),
                        RateState {
                            limit,
                            remaining: 0,
                            reset_seconds: reset,
                        },
                    );
                    Ok(response)
                }
            }
        })
    }
}

/// The `RateLimit-*` fields (IETF draft) as response metadata; the REST
/// gateway passes them on as plain headers.
fn rate_headers(headers: &mut HeaderMap, rate: RateState) {
    for (name, value) in [
        ("ratelimit-limit", rate.limit as u64),
        ("ratelimit-remaining", rate.remaining as u64),
        ("ratelimit-reset", rate.reset_seconds),
    ] {
        headers.insert(name, http::HeaderValue::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc")]))
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  abc ")]))
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "abc")]))
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        assert_eq!(presented_key(&headers(&[])).unwrap(), None);
    }

    #[test]
    fn a_non_bearer_authorization_is_an_invalid_key() {
        assert!(matches!(
            presented_key(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])),
            Err(Error::ApiKeyInvalid)
        ));
        assert!(matches!(
            presented_key(&headers(&[("authorization", "abc")])),
            Err(Error::ApiKeyInvalid)
        ));
    }
}
