//! Process-wide telemetry: the tracing subscriber (`RUST_LOG`, `LOG_FORMAT=json|pretty`; colors only
//! on a terminal), OpenTelemetry traces behind it, the Prometheus recorder behind every
//! `metrics::` call, and the one `GET /metrics` answer every service serves
//! ([`metrics_response`]). Binaries call [`init`] once in `main` (and [`shutdown`] on the way
//! out); tests never need to (metrics calls are no-ops without a recorder, and spans without
//! the subscriber simply carry no trace). No routing lives here.
//!
//! Traces: every span at `info` or above is an OpenTelemetry span, whatever `RUST_LOG` lets
//! through to the log, so a trace id exists (and travels) even where nothing is logged; every log
//! line written inside one carries `trace_id` and `span_id` ([`format`]). [`trace`] moves a
//! trace across processes (W3C `traceparent`). Spans are exported over OTLP (HTTP/protobuf) only
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otlp`]); otherwise nothing is exported and no
//! exporter thread runs.

use std::io::IsTerminal;
use std::sync::OnceLock;

use http::{header, HeaderName};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use clap::Args;

mod format;
mod otlp;
pub mod trace;

/// Logging and tracing switches, read by [`init`].
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// `pretty` for people, `json` for log shippers
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,
    /// OTLP/HTTP collector to export traces to (e.g. `http://127.0.0.1:4318`; spans go to
    /// `<endpoint>/v1/traces` as protobuf); unset: traces stay in the logs' `trace_id`s
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Installs the log subscriber (with OpenTelemetry spans behind it) and the metrics recorder.
/// Safe to call more than once: the first call's subscriber stays.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = if args.log_format == "json" {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_ansi(false)
            .map_event_format(format::WithTraceIds::json)
            .with_filter(filter)
            .boxed()
    } else {
        let ansi = std::io::stdout().is_terminal();
        fmt::layer()
            .with_ansi(ansi)
            .event_format(format::WithTraceIds::text(
                fmt::format().with_target(false).with_ansi(ansi),
            ))
            .with_filter(filter)
            .boxed()
    };
    let (provider, exporting) = otlp::provider(args.otlp_endpoint.as_deref());
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "conveyor");
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(spans_and_warnings());
    let installed = Registry::default().with(log).with(spans).try_init().is_ok();
    if installed {
        let _ = PROVIDER.set(provider);
        match exporting {
            Ok(Some(endpoint)) => tracing::info!(%endpoint, "exporting traces over OTLP/HTTP"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "traces are not exported"),
        }
    }
    prometheus();
}

/// What the OpenTelemetry layer sees: spans at `info` and above (the request and job spans; a
/// library's debug spans stay out) and, as span events, warnings and errors.
fn spans_and_warnings<S>() -> impl Filter<S> {
    filter_fn(|meta| {
        if meta.is_span() {
            *meta.level() <= Level::INFO
        } else {
            *meta.level() <= Level::WARN
        }
    })
}

static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// Sends the spans still buffered to the OTLP collector (when exporting) and stops the exporter.
/// Call it once, after the runtime has stopped (the exporter blocks while it flushes).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            // Waiting in a queue (enqueued → started) takes seconds to minutes under a backlog.
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("conveyor_job_wait_seconds".into()),
                    &[
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                        900.0,
                    ],
                )
            })
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may already be installed (tests running several services in one
        // process); the handle still renders this recorder's view.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The text for a `GET /metrics` answer (Prometheus exposition format).
pub fn render_metrics() -> String {
    prometheus().render()
}

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The `GET /metrics` answer: content type header and the rendered text. An axum handler can
/// return it as it is; a service with extra lines appends them to the text first.
pub fn metrics_response() -> ([(HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        render_metrics(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_response_is_prometheus_text_with_its_content_type() {
        prometheus();
        metrics::counter!("conveyor_telemetry_selftest_total").increment(3);
        let ([(name, value)], text) = metrics_response();
        assert_eq!(name, header::CONTENT_TYPE);
        assert_eq!(value, "text/plain; version=0.0.4");
        assert!(text.contains("conveyor_telemetry_selftest_total"), "{text}");
    }
}
