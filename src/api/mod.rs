//! The gRPC door: thin tonic handlers and the tower layers every RPC passes
//! through (gRPC-Web, tracing, authentication), plus health and reflection.

pub mod auth;
pub mod codec;
mod console;
mod contacts;
mod convert;
mod messages;
mod preview;
mod send;
pub mod status;
mod suppressions;
mod templates;
mod trace;
mod tracking;
mod unsubscribe;
mod webhooks;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tower::{Layer, Service, ServiceBuilder};

use crate::config::Settings;
use crate::delivery::webhook_http::HttpSender;
use crate::domain::auth::AuthContext;
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::contacts::Contacts;
use crate::domain::feedback::Feedback;
use crate::domain::links::{Links, Unsubscribes};
use crate::domain::messages::Messages;
use crate::domain::send::accept::{SendSettings, Sender};
use crate::domain::send::validate::Limits;
use crate::domain::suppressions::Suppressions;
use crate::domain::templates::Templates;
use crate::domain::tracking::Tracking;
use crate::domain::webhooks::Webhooks;
use crate::proto::v1::{
    contacts_service_server::ContactsServiceServer, messages_service_server::MessagesServiceServer,
    send_service_server::SendServiceServer, suppressions_service_server::SuppressionsServiceServer,
    templates_service_server::TemplatesServiceServer,
    webhooks_service_server::WebhooksServiceServer,
};
use crate::storage::Store;
use auth::{AuthLayer, AuthState};

/// The authenticated caller of a request; the auth layer puts it there
/// before any posthorn.v1 handler runs.
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> Result<&AuthContext, tonic::Status> {
    request.extensions().get::<AuthContext>().ok_or_else(|| {
        status::to_status(crate::domain::Error::Internal(anyhow::anyhow!(
            "a handler ran without the authentication layer"
        )))
    })
}

/// Mounts `service` under its gRPC path prefix, wrapped for gRPC-Web and
/// traced. `layer` is applied innermost (authentication for posthorn.v1).
fn mount<S, L>(router: Router, service: S, layer: L) -> Router
where
    S: NamedService,
    L: Layer<S>,
    L::Service: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
{
    let wrapped = ServiceBuilder::new()
        .map_response(unbuffered_grpc_web)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(trace::rpc_trace_layer())
        .layer(layer)
        .service(service);
    router.route_service(&format!("/{}/{{*method}}", S::NAME), wrapped)
}

/// Marks a gRPC-Web answer `X-Accel-Buffering: no`: nginx holds a proxied
/// answer back until its buffer fills unless told otherwise, and a
/// browser's `WatchMessages` stream would arrive in lumps.
fn unbuffered_grpc_web<B>(mut response: http::Response<B>) -> http::Response<B> {
    let grpc_web = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"));
    if grpc_web {
        response.headers_mut().insert(
            http::HeaderName::from_static("x-accel-buffering"),
            http::HeaderValue::from_static("no"),
        );
    }
    response
}

/// Why a long-lived stream was cut short, told to its client after what
/// the stream had already sent. The first reason recorded is the one told.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<std::sync::Mutex<Option<tonic::Status>>>);

impl Cut {
    /// Records why the stream was cut, unless a reason already was.
    pub(crate) fn record(&self, status: tonic::Status) {
        self.0.lock().expect("not poisoned").get_or_insert(status);
    }

    /// Completes when shutdown begins (or the server is gone), recording
    /// UNAVAILABLE, reason SHUTTING_DOWN, retry soon, with `advice`: cut the
    /// stream, or its requests, with `take_until` on it, so that it neither
    /// holds the shutdown for its whole grace period nor is cut off
    /// without a word.
    pub(crate) fn at_shutdown(
        &self,
        mut stopping: tokio::sync::watch::Receiver<bool>,
        advice: &'static str,
    ) -> impl Future<Output = ()> + Send + 'static {
        let cut = self.clone();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            cut.record(status::to_status(crate::domain::Error::ShuttingDown(
                advice,
            )));
        }
    }

    /// Chained after the stream: yields the recorded reason as its last
    /// item, or nothing when the stream ended by itself.
    pub(crate) fn tail<T: Send + 'static>(
        self,
    ) -> impl futures::Stream<Item = Result<T, tonic::Status>> + Send + 'static {
        use futures::StreamExt as _;

        futures::stream::once(async move { self.0.lock().expect("not poisoned").take().map(Err) })
            .filter_map(std::future::ready)
    }
}

/// The routers this door serves, sharing one authenticator and one set of
/// use cases.
pub struct Routers {
    /// Every gRPC service: the six posthorn.v1 services behind
    /// authentication, `grpc.health.v1` and reflection (v1 and v1alpha).
    pub grpc: Router,
    /// Posthorn's own pages: the template preview (authenticated) and the
    /// browser console (static; it calls the API with the person's key).
    pub pages: Router,
    /// The links in delivered mail (unsubscribe, open pixel, click
    /// redirects), whose tokens are their authority: no key.
    pub links: Router,
    /// The authenticator every door shares: the MCP endpoint checks its
    /// callers with it and lists the tools their scopes allow.
    pub auth: Arc<AuthState>,
}

/// Sets every service's health, and the server's as a whole.
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for name in crate::proto::service_names() {
        reporter.set_service_status(&name, status).await;
    }
    reporter.set_service_status("", status).await;
}

/// Builds the gRPC router and the pages beside it.
pub async fn routers(
    store: Store,
    settings: &Settings,
    links: &Links,
    webhook_sender: Arc<HttpSender>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Routers> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let contacts = Arc::new(Contacts::new(store.clone(), clock.clone()));
    let suppressions = Arc::new(Suppressions::new(store.clone(), clock.clone()));
    let templates = Arc::new(Templates::new(store.clone(), clock.clone()));
    let limits = Limits {
        max_attachments: settings.max_attachments,
        ..Limits::default()
    };
    let messages = Arc::new(Messages::new(
        store.clone(),
        clock.clone(),
        limits.max_schedule_ahead,
    ));
    let sender = Arc::new(Sender::new(
        store.clone(),
        templates.clone(),
        clock.clone(),
        SendSettings {
            hostname: settings.hostname.clone(),
            limits,
            daily_quota: settings.policy.daily_quota,
            identity_ttl: settings.auth_cache,
        },
    ));
    tokio::spawn(purge_idempotency(Arc::downgrade(&sender)));
    let hang_after_commit =
        std::env::var("POSTHORN_TEST_FAILPOINT").is_ok_and(|f| f == "after_commit_before_reply");
    let auth_state = Arc::new(AuthState::new(
        store.clone(),
        settings.policy,
        settings.auth_cache,
    )?);
    let unsubscribes = Arc::new(Unsubscribes::new(
        store.clone(),
        links.signer().clone(),
        clock.clone(),
    ));
    let tracking = Arc::new(Tracking::new(
        store.clone(),
        links.signer().clone(),
        clock.clone(),
    ));
    let feedback = Arc::new(Feedback::new(store.clone(), clock.clone()));
    let pages = preview::router(auth_state.clone(), templates.clone()).merge(console::router());
    let links = unsubscribe::router(unsubscribes).merge(tracking::router(tracking));
    let auth = AuthLayer::new(auth_state.clone());
    let max = 32 * 1024 * 1024;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    set_health(&health_reporter, ServingStatus::Serving).await;
    // A store that can acknowledge nothing more until a restart serves
    // nothing: health checks say so, as /healthz does.
    let (watched, reporter) = (store.clone(), health_reporter.clone());
    tokio::spawn(async move {
        let reason = watched.breaks().await;
        tracing::error!(%reason, "the store is broken; health checks answer NOT_SERVING");
        set_health(&reporter, ServingStatus::NotServing).await;
    });

    // Each reflection version also lists the other, so clients see both.
    let reflection_v1 =
        reflection(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET).build_v1()?;
    let reflection_v1alpha =
        reflection(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET).build_v1alpha()?;

    let open = tower::layer::util::Identity::new;
    let router = Router::new();
    let router = mount(
        router,
        SendServiceServer::new(send::SendApi::new(
            sender.clone(),
            hang_after_commit,
            stopping.clone(),
        ))
        .max_decoding_message_size(max),
        auth.clone(),
    );
    let router = mount(
        router,
        MessagesServiceServer::new(messages::MessagesApi::new(
            messages,
            sender,
            feedback,
            store.clone(),
            stopping,
        )),
        auth.clone(),
    );
    let router = mount(
        router,
        ContactsServiceServer::new(contacts::ContactsApi::new(contacts)),
        auth.clone(),
    );
    let router = mount(
        router,
        SuppressionsServiceServer::new(suppressions::SuppressionsApi::new(suppressions)),
        auth.clone(),
    );
    let router = mount(
        router,
        TemplatesServiceServer::new(templates::TemplatesApi::new(templates)),
        auth.clone(),
    );
    let router = mount(
        router,
        WebhooksServiceServer::new(webhooks::WebhooksApi::new(
            Arc::new(Webhooks::new(
                store.clone(),
                settings.webhook_clock(),
                settings.webhook_targets,
            )),
            webhook_sender,
        )),
        auth,
    );
    let router = mount(router, health, open());
    let router = mount(router, reflection_v1, open());
    let router = mount(router, reflection_v1alpha, open());
    Ok(Routers {
        grpc: router,
        pages,
        links,
        auth: auth_state,
    })
}

/// Deletes expired idempotency records every ten minutes while the
/// accept path is alive.
async fn purge_idempotency(sender: std::sync::Weak<Sender<Store>>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        let Some(sender) = sender.upgrade() else {
            return;
        };
        match sender.purge_idempotency().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "purged expired idempotency records"),
            Err(error) => tracing::warn!(%error, "could not purge idempotency records"),
        }
    }
}

/// Returns a reflection builder serving the contract, health, and `other`.
fn reflection(other: &'static [u8]) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(other)
}
