//! Logging and tracing: `tracing` with an env filter, human or JSON lines,
//! and OpenTelemetry traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the trace exporter alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("posthorn: could not flush traces: {error}");
        }
    }
}

/// Installs the global subscriber, writing to standard error: `filter` as in `POSTHORN_LOG`, lines in
/// `format`, and an OTLP exporter when the standard OpenTelemetry variable
/// names an endpoint. Call once, inside the Tokio runtime.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(filter).context("invalid log filter")?;
    let fmt = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .flatten_event(true)
            .boxed(),
    };
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("cannot build the OTLP span exporter")?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("posthorn")
                            .build(),
                    )
                    .build(),
            )
        }
        _ => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("posthorn")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("a global tracing subscriber is already installed")?;
    Ok(TelemetryGuard { provider })
}
