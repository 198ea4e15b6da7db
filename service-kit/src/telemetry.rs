//! Process-wide telemetry: the tracing subscriber (`RUST_LOG`, `LOG_FORMAT=json|pretty`; colors only
//! on a terminal), the Prometheus recorder behind every `metrics::` call, and the one `GET /metrics`
//! answer every service serves ([`metrics_response`]). Binaries call [`init`] once in `main`; tests
//! never need to (metrics calls are no-ops without a recorder). No routing lives here.

use std::io::IsTerminal;
use std::sync::OnceLock;

use http::{header, HeaderName};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use clap::Args;

/// Logging switches, read by [`init`].
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// `pretty` for people, `json` for log shippers
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the log subscriber and the metrics recorder. Safe to call more than once.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = if args.log_format == "json" {
        fmt()
            .with_env_filter(filter)
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .with_current_span(true)
            .try_init()
    } else {
        fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
    };
    drop(result); // already installed (second call in one process): keep the first
    prometheus();
}

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
