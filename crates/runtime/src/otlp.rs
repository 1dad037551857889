//! Span export over OTLP/HTTP (protobuf), on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The standard `OTEL_*`
//! variables configure it (the endpoint gets `/v1/traces` appended; headers,
//! timeout, batch delay).
//!
//! The SDK's batch processor exports from a plain thread with no Tokio
//! runtime, so the HTTP client here runs its requests on a small runtime of
//! its own: the workspace's reqwest works there, and the service's runtime
//! is never blocked by (or needed for) an export, not even at shutdown.

use std::{sync::OnceLock, time::Duration};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};

const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an OTLP endpoint is configured.
pub fn configured() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|e| !e.trim().is_empty()))
}

/// The span exporter, if an endpoint is configured; an error if it is but
/// the exporter cannot be built (a malformed endpoint, say).
pub fn exporter() -> Result<Option<SpanExporter>, String> {
    if !configured() {
        return Ok(None);
    }
    let client = ExportClient::new()?;
    SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .map(Some)
        .map_err(|e| e.to_string())
}

/// reqwest on the export runtime.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("OTLP HTTP client: {e}"))?;
        Ok(Self {
            client,
            runtime: export_runtime()?,
        })
    }
}

/// One current-thread runtime on its own thread, for the life of the process.
fn export_runtime() -> Result<tokio::runtime::Handle, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("OTLP export runtime: {e}"))?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("otlp-export".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("OTLP export thread: {e}"))?;
            Ok(handle)
        })
        .clone()
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}
