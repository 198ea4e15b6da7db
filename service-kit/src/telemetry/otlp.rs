//! The OpenTelemetry tracer provider, and its OTLP exporter when one is configured: spans go
//! as protobuf over HTTP (`<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`) in batches, from the SDK's
//! batch thread, sent by the workspace's reqwest on a one-thread runtime of their own (the
//! services' runtime may be gone while the last batch is flushed). Without an endpoint there
//! is no exporter, no batch thread and no runtime, and the spans this process starts are not
//! recorded ([`ids_only`]): they only give the logs their ids and the next service its parent.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider (always) and what became of the exporter: `Ok(Some(url))` exporting to `url`,
/// `Ok(None)` not configured, `Err` configured but unusable (the services run without it).
pub(super) fn provider(
    endpoint: Option<&str>,
) -> (SdkTracerProvider, Result<Option<String>, String>) {
    let builder = SdkTracerProvider::builder();
    let Some(endpoint) = endpoint.map(str::trim).filter(|e| !e.is_empty()) else {
        return (builder.with_sampler(ids_only()).build(), Ok(None));
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    match exporter(&url) {
        Ok(exporter) => {
            let provider = builder
                .with_batch_exporter(exporter)
                .with_resource(resource())
                .build();
            (provider, Ok(Some(url)))
        }
        Err(e) => (
            builder.with_sampler(ids_only()).build(),
            Err(format!("OTLP exporter to {url}: {e}")),
        ),
    }
}

/// The sampler of a process that exports nothing: a span still gets its trace and span id (for
/// the logs and the `traceparent` it passes on), but records nothing, unless its caller's
/// context says "sampled" (then it records and passes that on, for a service further down that
/// exports). So a trace this process starts is unsampled: set the endpoint on every service.
fn ids_only() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
}

fn exporter(url: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    let runtime = export_runtime()?;
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(OnRuntime {
            client,
            runtime: runtime.clone(),
        })
        .build()?)
}

/// `service.name` is the program's name unless `OTEL_SERVICE_NAME` says otherwise.
fn resource() -> Resource {
    let builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        return builder.build();
    }
    let program = std::env::args()
        .next()
        .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| "conveyor".into());
    builder.with_service_name(program).build()
}

/// The exporter's own runtime, started on first use (only when exporting).
fn export_runtime() -> std::io::Result<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt).handle())
}

/// reqwest's client, driven by the exporter's runtime whatever thread asks.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Largest collector answer read (it is a small protobuf status).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let answer = client.execute(request).await?;
            let (status, headers) = (answer.status(), answer.headers().clone());
            let body = answer.bytes().await?;
            if body.len() > MAX_ANSWER_BYTES {
                return Err::<Response<Bytes>, HttpError>("collector answer too large".into());
            }
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(response)
        });
        sent.await?
    }
}
