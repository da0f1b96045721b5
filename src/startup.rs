//! The application: binds its listener first, then serves every door on it
//! until a shutdown future fires.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::config::Settings;
use crate::delivery::webhook_http::HttpSender;
use crate::delivery::webhooks::DispatchSettings;
use crate::delivery::{DeliverySettings, Transport};
use crate::domain::clock::Clock;
use crate::domain::links::{LinkSigner, Links};
use crate::gateway::{Gateway, GatewayOptions};
use crate::storage::Store;

/// A bound, ready-to-run Posthorn server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Store,
    grace: Duration,
    /// The time limits of both listeners' connections.
    limits: crate::serve::Limits,
    transport: Transport,
    /// `None` when this process does not deliver.
    delivery: Option<DeliverySettings>,
    /// The webhook dispatcher's settings, sender and clock; `None` when
    /// this process does not deliver.
    webhooks: Option<(DispatchSettings, Arc<HttpSender>, Arc<dyn Clock>)>,
    /// The second listener, serving only the links in delivered mail.
    public: Option<(TcpListener, Router)>,
    /// Set when shutdown begins (see `run_until`).
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Application {
    /// Builds the router and binds the listener. The store must be migrated.
    pub async fn build(settings: &Settings, store: Store) -> anyhow::Result<Application> {
        let transport = Transport::parse(&settings.transport, &settings.hostname)
            .map_err(|problem| anyhow::anyhow!("setting `transport`: {problem}"))?;
        if settings.deliver
            && let Some(timeout) = transport.reply_timeout()
            && settings.delivery_lease <= timeout
        {
            // A lease that can run out while a worker still waits for a
            // healthy relay's reply hands the recipient to a second worker.
            anyhow::bail!(
                "setting `delivery_lease_seconds` ({} s) must be longer than the relay's reply timeout ({} s, the transport's `timeout`)",
                settings.delivery_lease.as_secs(),
                timeout.as_secs()
            );
        }
        let links = Links::new(
            LinkSigner::new(store.link_key().await.context("reading the link key")?),
            &settings.public_url,
            settings.unsubscribe_mailto.as_deref(),
        );
        // One client for TestWebhook and the dispatcher: one pool of kept
        // connections.
        let webhook_sender = Arc::new(HttpSender::new(
            settings.webhook_targets,
            settings.webhook_hosts.clone(),
        ));
        // Turns true when shutdown begins; long-lived streams end then.
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let (router, links_router) = routes(
            settings,
            store.clone(),
            &links,
            webhook_sender.clone(),
            stopping_rx,
        )
        .await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
        let public = match settings.public_listen {
            Some(address) => {
                let listener = TcpListener::bind(address).await.with_context(|| {
                    format!("cannot listen on {address} (setting `public_listen`)")
                })?;
                let router = links_router.fallback(crate::http::not_found);
                Some((listener, router))
            }
            None => None,
        };
        Ok(Application {
            listener,
            router,
            stopping,
            store,
            grace: settings.shutdown_grace,
            limits: crate::serve::Limits::with_client_timeout(settings.client_timeout),
            transport,
            delivery: settings.deliver.then(|| DeliverySettings {
                concurrency: settings.delivery_concurrency,
                lease: settings.delivery_lease,
                retry: settings.retry,
                hang_after_reply: std::env::var("POSTHORN_TEST_FAILPOINT")
                    .is_ok_and(|f| f == "after_reply_before_record"),
                links: Some(links),
                ..DeliverySettings::default()
            }),
            webhooks: settings.deliver.then(|| {
                (
                    DispatchSettings {
                        concurrency: settings.webhook_concurrency,
                        per_endpoint: settings.webhook_endpoint_concurrency,
                        lease: settings.webhook_lease,
                        policy: settings.webhook_policy.clone(),
                        hang_after_success: std::env::var("POSTHORN_TEST_FAILPOINT")
                            .is_ok_and(|f| f == "after_webhook_2xx_before_mark"),
                        ..DispatchSettings::default()
                    },
                    webhook_sender,
                    settings.webhook_clock(),
                )
            }),
            public,
        })
    }

    /// Returns the address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address of the second listener (links only), when there is one.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public.as_ref().map(|(listener, _)| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (up to the grace period) and closes the
    /// database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping_tx = self.stopping;
        let stopping = stopping_tx.subscribe();
        let (pool_stop, pool_stopping) = tokio::sync::watch::channel(false);
        let dispatcher = self.webhooks.map(|(settings, sender, clock)| {
            crate::delivery::webhooks::spawn(
                self.store.clone(),
                sender,
                clock,
                settings,
                pool_stopping.clone(),
            )
        });
        let workers = self.delivery.map(|delivery| {
            crate::delivery::spawn(self.store.clone(), self.transport, delivery, pool_stopping)
        });
        // The links' listener stops taking connections with the main one.
        let public = self.public.map(|(listener, router)| {
            tokio::spawn(crate::serve::serve(
                listener,
                router,
                self.limits,
                stopping.clone(),
            ))
        });
        let serve = crate::serve::serve(self.listener, self.router, self.limits, stopping.clone());
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => {}
            () = shutdown => {
                tracing::info!("shutting down: no new connections; finishing in-flight requests");
                let _ = stopping_tx.send(true);
                if tokio::time::timeout(self.grace, &mut serve).await.is_err() {
                    tracing::warn!(grace_seconds = self.grace.as_secs(), "grace period over; closing remaining connections");
                }
            }
        }
        if let Some(public) = public
            && tokio::time::timeout(self.grace, public).await.is_err()
        {
            tracing::warn!("the links' listener still had requests after the grace period");
        }
        // The pool stops claiming and records what it holds.
        let _ = pool_stop.send(true);
        if let Some(workers) = workers
            && let Err(error) = workers.await
        {
            tracing::warn!(%error, "the delivery pool ended abnormally");
        }
        if let Some(dispatcher) = dispatcher
            && let Err(error) = dispatcher.await
        {
            tracing::warn!(%error, "the webhook dispatcher ended abnormally");
        }
        self.store.close().await.context("closing the database")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds the one router of the shared port, and the router of the links
/// in delivered mail (served there too, and alone on the public listener).
async fn routes(
    settings: &Settings,
    store: Store,
    links: &Links,
    webhook_sender: Arc<HttpSender>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Router, Router)> {
    let crate::api::Routers {
        grpc,
        pages,
        links: links_router,
        auth,
    } = crate::api::routers(store.clone(), settings, links, webhook_sender, stopping).await?;
    let mcp = crate::mcp::router(
        grpc.clone(),
        auth,
        settings.mcp_read_only,
        settings.rest_max_body_bytes,
    );
    let gateway = Gateway::new(
        crate::proto::descriptor_pool(),
        &crate::proto::service_names(),
        grpc.clone(),
        GatewayOptions {
            max_body_bytes: settings.rest_max_body_bytes,
            stream_keepalive: settings.stream_keepalive,
        },
    )
    .map_err(|problems| anyhow::anyhow!("the REST route table cannot be built: {problems}"))?;
    let openapi = Arc::new(
        gateway
            .openapi("Posthorn", env!("CARGO_PKG_VERSION"))
            .to_string(),
    );
    let plain = Router::new()
        .route("/healthz", get(crate::http::healthz))
        .route("/readyz", get(crate::http::readyz))
        .with_state(store)
        .route(
            "/openapi.json",
            get(move || {
                let document = openapi.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "application/json")],
                        document.as_str().to_owned(),
                    )
                }
            }),
        );
    // The gateway answers every path no other door serves (its own 404
    // included), so REST shares the port without a second fallback.
    let router = grpc
        .merge(plain)
        .merge(pages)
        .merge(mcp)
        .merge(links_router.clone())
        .fallback_service(gateway)
        .layer(cors(settings));
    Ok((router, links_router))
}

/// CORS for browsers: gRPC-Web and REST callers send their key in a header,
/// never a cookie, so credentials are not allowed.
fn cors(settings: &Settings) -> CorsLayer {
    let origins = if settings.cors_origins == ["*"] {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            settings
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("idempotent-replayed"),
            HeaderName::from_static("retry-after"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("allow"),
        ])
        .max_age(Duration::from_secs(86400))
}

/// Completes on SIGINT or SIGTERM. The handlers are installed by the call,
/// not when the future is first awaited: `serve` calls it before printing
/// its banner, so a signal sent as soon as the banner appears stops the
/// server cleanly instead of killing it with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            tokio::select! {
                () = received(interrupt) => {},
                () = received(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
