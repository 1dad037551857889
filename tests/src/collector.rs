//! A local OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf), standing
//! in for an OpenTelemetry collector: it keeps every span it is sent.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value,
};
use prost::Message;
use tokio::{net::TcpListener, task::JoinHandle};

/// One received span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The exporter's `service.name`.
    pub service: String,
    /// Lowercase hex, as in `traceparent`.
    pub trace_id: String,
    pub name: String,
    /// String attributes only.
    pub attributes: Vec<(String, String)>,
    /// The trace ids of the spans this one links to (lowercase hex).
    pub linked_traces: Vec<String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

pub struct Collector {
    /// Base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub url: String,
    spans: Spans,
    server: JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> anyhow::Result<Collector> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans = Spans::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Collector { url, spans, server })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> Result<Vec<u8>, StatusCode> {
    let request = ExportTraceServiceRequest::decode(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(ReceivedSpan {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                linked_traces: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                name: span.name,
                attributes: span
                    .attributes
                    .iter()
                    .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?)))
                    .collect(),
            });
        }
    }
    spans
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .extend(received);
    Ok(ExportTraceServiceResponse::default().encode_to_vec())
}
