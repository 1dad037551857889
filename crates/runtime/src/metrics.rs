//! Prometheus metrics. Code anywhere records through the `metrics` facade
//! (`metrics::counter!(…)`); this module installs the one recorder per
//! process and renders it at `GET /metrics` on the service's HTTP port.

use std::sync::OnceLock;

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for every `*_seconds` histogram: from one hop
/// of a login (a millisecond or two) through a typed code (well under a
/// second) to a phone call answered late (minutes).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often recorded histogram samples are folded into their buckets. The
/// recorder keeps every sample until then, and a `/metrics` read is the only
/// other thing that folds them: with no Prometheus scraping (or scraping
/// slowly) a service's memory grew by about 2 MiB a minute at 200 logins/s.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder (once; later calls return the same
/// handle). `None` if another recorder was installed first, in which case
/// `/metrics` answers empty rather than taking the service down.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    // A thread, not a task: the recorder is installed before
                    // (and outlives) any runtime.
                    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        }
                    });
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "metrics upkeep not started; histograms fold only when /metrics is read");
                    }
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    Router::new().route("/metrics", get(render))
}

async fn render() -> impl IntoResponse {
    let body = install()
        .map(|handle| {
            // Also publishes descriptions registered since the last upkeep.
            handle.run_upkeep();
            handle.render()
        })
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
