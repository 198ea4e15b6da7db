//! Moving a trace across processes with the W3C `traceparent` (`00-<trace id>-<span id>-<flags>`):
//! a request span continues the caller's header ([`continue_from`]), a job carries the
//! enqueuing span's value ([`traceparent`]) and its handler's span continues it, an outgoing
//! request sends its span's value. A missing or malformed value starts a new trace (as the W3C
//! rules say), it is never an error. Without the process's subscriber ([`super::init`]) spans
//! have no trace and these functions return `None` / do nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header (and the name of the queue entry field that carries it).
pub const TRACEPARENT: &str = "traceparent";

/// Whether `value` has the W3C shape `<version>-<trace id>-<parent id>-<flags>`: 2, 32, 16 and 2
/// lowercase hex digits (a later version may add fields after the flags; `ff` is no version).
/// The propagator alone lets a short id through.
fn well_formed(value: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [version, trace, parent, flags, rest @ ..] => {
            hex(version, 2)
                && *version != "ff"
                && (rest.is_empty() || *version != "00")
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
        }
        _ => false,
    }
}

/// The remote context in a `traceparent` value, if it is a valid one.
fn parse(traceparent: &str) -> Option<Context> {
    let traceparent = traceparent.trim();
    if !well_formed(traceparent) {
        return None;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` (just created, not yet entered) a child of the span `traceparent` names, so it
/// continues that trace; returns whether it does. `None` or a malformed value: `span` keeps
/// its own new trace.
pub fn continue_from(span: &Span, traceparent: Option<&str>) -> bool {
    match traceparent.and_then(parse) {
        Some(cx) => span.set_parent(cx).is_ok(),
        None => false,
    }
}

/// Records on `span` a link to the local span `other` (a related trace it does not belong to,
/// e.g. the other jobs of a batch); nothing when `other` has no trace.
pub fn link_span(span: &Span, other: &Span) {
    let cx = other.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}

/// The `traceparent` naming `span`, to send with a request or store in a job: what the W3C
/// propagator writes (version 00, the sampled flag alone), formatted directly (a worker makes
/// one per job; the propagator's map and the copy out of it were a noticeable part of that).
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        let flags = sc.trace_flags() & opentelemetry::trace::TraceFlags::SAMPLED;
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            flags.to_u8()
        )
    })
}

/// The `traceparent` of the current span ([`traceparent`] of `Span::current()`).
pub fn current() -> Option<String> {
    traceparent(&Span::current())
}

/// `span`'s trace id (32 lowercase hex digits), as the log lines show it.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace id inside a `traceparent` value, if it is a valid one.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    parse(traceparent).map(|cx| cx.span().span_context().trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_traceparents_name_a_trace() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(
            trace_id_of(tp).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad:?}");
        }
    }

    /// [`traceparent`] writes exactly what the W3C propagator injects, sampled or not, and
    /// [`link_span`] links a local span without a round trip through text.
    #[test]
    fn traceparent_is_what_the_propagator_writes() {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "test");
        let subscriber = tracing_subscriber::Registry::default()
            .with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::with_default(subscriber, || {
            for parent in [
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            ] {
                let span = tracing::info_span!("job");
                assert!(continue_from(&span, Some(parent)));
                let mut carrier = HashMap::new();
                TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
                let written = traceparent(&span).expect("a traced span");
                assert_eq!(Some(&written), carrier.get(TRACEPARENT), "{parent}");
                assert_eq!(
                    trace_id_of(&written).as_deref(),
                    Some("0af7651916cd43dd8448eb211c80319c")
                );
                assert_eq!(&written[written.len() - 2..], &parent[parent.len() - 2..]);
            }
            let (a, b) = (tracing::info_span!("a"), tracing::info_span!("b"));
            link_span(&a, &b);
            drop((a, b));
        });
    }
}
