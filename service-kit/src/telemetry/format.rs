//! Trace ids on log lines: [`WithTraceIds`] wraps the log format (text or JSON) and adds the
//! `trace_id` and `span_id` of the OpenTelemetry span the event happened in — the nearest span
//! of its scope that is one, whether or not `RUST_LOG` lets that span into the log — so
//! `grep <trace id>` finds every line of one message in every service. A line outside any
//! traced span is written as the wrapped format writes it.

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

/// A log format plus the trace and span id of the event's span.
pub(super) struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    /// Text lines end with ` trace_id=<32 hex> span_id=<16 hex>`.
    pub(super) fn text(inner: F) -> Self {
        WithTraceIds { inner, json: false }
    }
    /// JSON objects start with `"trace_id":"…","span_id":"…"`.
    pub(super) fn json(inner: F) -> Self {
        WithTraceIds { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = ids_of(event) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            let rest = line.strip_prefix('{').unwrap_or(&line);
            let sep = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{sep}{rest}"
            )
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}

/// The trace and span id of the nearest OpenTelemetry span around `event`, if any.
fn ids_of(event: &Event<'_>) -> Option<(TraceId, SpanId)> {
    tracing::dispatcher::get_default(|dispatch| {
        let start = match event.parent() {
            Some(id) => id.clone(),
            None if event.is_contextual() => dispatch.current_span().id()?.clone(),
            None => return None,
        };
        let scope: Vec<tracing::span::Id> = {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(&start)?;
            span.scope().map(|s| s.id()).collect()
        };
        scope.iter().find_map(|id| ids_in(id, dispatch))
    })
}

fn ids_in(id: &tracing::span::Id, dispatch: &Dispatch) -> Option<(TraceId, SpanId)> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}
