//! Logs and traces. Spans become OpenTelemetry spans, so the W3C trace context
//! propagated over gRPC and NATS ties every hop of a login into one trace.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

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
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let json = std::env::var("VIGIL_LOG_FORMAT").is_ok_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(false))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if let Err(error) = result {
        eprintln!("{service}: tracing already initialised: {error}");
    }
    // Before any work, so nothing recorded at start-up is lost.
    crate::metrics::install();
    TelemetryGuard { provider }
}
