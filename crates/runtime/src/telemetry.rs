//! Logs and traces. Spans become OpenTelemetry spans, so the W3C trace context
//! propagated over gRPC and NATS ties every hop of a login into one trace;
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` set they are exported (see [`crate::otlp`]).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// The default filter (`RUST_LOG` replaces it).
const LOG_FILTER: &str = "info,sqlx=warn,async_nats=warn";

/// Keeps the tracer provider alive; dropping it flushes spans.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. `VIGIL_LOG_FORMAT=json` gives structured
/// logs for production; the default is human-readable. `RUST_LOG` filters.
pub fn init(service: &'static str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut provider =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service).build());
    // Reported once logging is up.
    let export_error = match crate::otlp::exporter() {
        Ok(Some(exporter)) => {
            provider = provider.with_batch_exporter(exporter);
            None
        }
        Ok(None) => None,
        Err(error) => Some(error),
    };
    let provider = provider.build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());

    // One filter for logs and spans alike. (Per-layer filters would let a
    // quiet RUST_LOG keep the spans, but tracing-subscriber's per-layer
    // filtering dropped whole targets' events here, intermittently.) So a
    // RUST_LOG quieter than `info` for Vigil's crates also drops the spans
    // that carry trace context.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(LOG_FILTER));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let json = std::env::var("VIGIL_LOG_FORMAT").is_ok_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(false))
            .try_init()
    } else {
        registry
            // Colours only for a terminal: in a file or a log collector the
            // escape codes would be noise around every field.
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init()
    };
    if let Err(error) = result {
        eprintln!("{service}: tracing already initialised: {error}");
    }
    match export_error {
        Some(error) => {
            tracing::warn!(%error, "OTLP endpoint set but no exporter could be built; spans are not exported")
        }
        None if crate::otlp::configured() => tracing::info!("exporting spans over OTLP/HTTP"),
        None => {}
    }
    // Before any work, so nothing recorded at start-up is lost.
    crate::metrics::install();
    TelemetryGuard { provider }
}

/// A server span for one gRPC request that continues the caller's trace
/// from its `traceparent` metadata; for tonic's `Server::builder().trace_fn`.
pub fn grpc_server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %request.uri().path(),
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}
