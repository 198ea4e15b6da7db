//! [`serve`]: the HTTP server of every service (hyper through hyper-util), with its connections
//! bounded by [`HttpArgs`]:
//!
//! - **header timeout**: a request head (HTTP/1) must arrive in full within it, or hyper closes
//!   the connection; a connection that sends nothing at all is closed after it too;
//! - **body timeout**: a request body must arrive in full within it, counted from its head, or
//!   reading it fails and the kit's extractors answer 408 problem+json (`body-timeout`);
//! - **idle timeout**: a connection with no request in flight (keep-alive, HTTP/1 or HTTP/2) is
//!   closed after it. hyper also runs the header clock while an HTTP/1 connection waits for its
//!   next request, so for HTTP/1 the shorter of the two applies;
//! - **concurrency limit**: at most `MAX_CONCURRENT_REQUESTS` requests are handled at once
//!   (from the head until the response head); one more is answered at once with 503
//!   problem+json (`overloaded`, `Retry-After: 1`), never queued. `/healthz` and `/metrics`
//!   are exempt, so probes and scrapes see a busy process as alive.
//!
//! A request hyper cannot parse (a garbled request line or header: 400; a URI over its limit:
//! 414; a head over its read buffer: 431) is answered by hyper itself; that answer leaves as
//! problem+json too, and a head hyper parsed but over 64 KiB is a 431 as well (see `unparsed`).
//!
//! On shutdown it stops accepting, asks every connection to finish its in-flight requests and
//! waits for them (open streams end with the service's own shutdown token).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Args;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::conn::{Activity, DeadlineBody, TrackedBody};
use super::unparsed::ProblemOnParseError;
use crate::problem::Problem;

/// Default `HTTP_HEADER_TIMEOUT`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `HTTP_BODY_TIMEOUT`: below the kit's request time limit (30 s), so a slow body is a
/// 408, not a 503.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `HTTP_IDLE_TIMEOUT`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `MAX_CONCURRENT_REQUESTS`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 1024;

/// Paths never shed by the concurrency limit.
const EXEMPT: [&str; 2] = ["/healthz", "/metrics"];

fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// How long a connection may take and how many requests a service handles at once; the same
/// settings for every service (flattened into each one's config).
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct HttpArgs {
    /// A request head (HTTP/1) not received in full within this time closes the connection,
    /// e.g. `10s`
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_header_timeout: Duration,
    /// A request body not received in full within this time after its head answers 408
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub http_body_timeout: Duration,
    /// A connection with no request in flight for this long is closed (keep-alive)
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,
    /// Requests handled at once; one more answers 503 with Retry-After at once (/healthz and
    /// /metrics are exempt)
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_requests: u32,
    /// API keys and the read policy (`super::access`)
    #[command(flatten)]
    pub access: super::access::AccessArgs,
}

impl Default for HttpArgs {
    fn default() -> Self {
        HttpArgs {
            http_header_timeout: DEFAULT_HEADER_TIMEOUT,
            http_body_timeout: DEFAULT_BODY_TIMEOUT,
            http_idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            access: super::access::AccessArgs::default(),
        }
    }
}

/// What every connection task shares.
struct Shared {
    router: Router,
    limits: HttpArgs,
    permits: Arc<Semaphore>,
    builder: Builder<TokioExecutor>,
}

/// Serves `router` on `listener` under `limits` until `shutdown` is cancelled, then lets
/// in-flight requests finish (open streams end with the shutdown token the service passes them).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpArgs,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.http_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        router,
        limits: limits.clone(),
        permits: Arc::new(Semaphore::new(limits.max_concurrent_requests as usize)),
        builder,
    });
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(shared.clone(), stream, shutdown.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Like axum's own loop: a failed handshake is skipped; anything else (out of file
/// descriptors) is logged and the loop pauses a little instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Drives one connection: hyper serves it; this closes it when it stays idle too long, and
/// gracefully at shutdown.
async fn connection(shared: Arc<Shared>, stream: TcpStream, shutdown: CancellationToken) {
    metrics::gauge!("conveyor_http_connections_open").increment(1.0);
    let activity = Activity::new();
    let service = {
        let (shared, activity) = (shared.clone(), activity.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.begin();
            let shared = shared.clone();
            async move {
                let response = handle(&shared, request).await;
                Ok::<_, Infallible>(response.map(|b| Body::new(TrackedBody::new(b, in_flight))))
            }
        })
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(ProblemOnParseError::new(stream)), service);
    tokio::pin!(conn);
    let (first, idle) = (
        shared.limits.http_header_timeout,
        shared.limits.http_idle_timeout,
    );
    let mut closing = false;
    loop {
        // The next look at the connection: its deadline, and at least once per idle period
        // (a request may have come and gone since, bringing the deadline forward).
        let soon = tokio::time::Instant::now() + idle;
        let next = activity.deadline(first, idle).map_or(soon, |d| d.min(soon));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    closed_with(&*e);
                }
                break;
            }
            () = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(next), if !closing => {
                let expired = activity.deadline(first, idle);
                if expired.is_some_and(|d| d <= tokio::time::Instant::now()) {
                    metrics::counter!("conveyor_http_connections_closed_total", "reason" => "idle")
                        .increment(1);
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    metrics::gauge!("conveyor_http_connections_open").decrement(1.0);
}

/// Counts a connection hyper ended with an error (a header timeout among them).
fn closed_with(error: &(dyn std::error::Error + 'static)) {
    let timed_out = error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout);
    if timed_out {
        metrics::counter!("conveyor_http_connections_closed_total", "reason" => "header_timeout")
            .increment(1);
    }
    tracing::debug!(error = %error, "connection ended with an error");
}

/// One request: shed past the concurrency limit, else the router with the body under its
/// deadline.
async fn handle(shared: &Shared, request: Request<Incoming>) -> Response {
    if let Some(problem) = super::unparsed::oversized_head(&request) {
        // Its body is never read: the connection ends with this answer.
        let mut response = problem.into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let permit = if EXEMPT.contains(&request.uri().path()) {
        None
    } else {
        match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return overloaded(shared.limits.max_concurrent_requests),
        }
    };
    let limit = shared.limits.http_body_timeout;
    let request = request.map(|body| Body::new(DeadlineBody::new(body, limit)));
    let response = match shared.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    drop(permit);
    response
}

fn overloaded(limit: u32) -> Response {
    metrics::counter!("conveyor_http_requests_shed_total").increment(1);
    tracing::debug!(limit, "request shed: too many requests in flight");
    Problem::overloaded(format!(
        "{limit} requests are being handled, the most this service takes at once \
         (MAX_CONCURRENT_REQUESTS); retry later"
    ))
    .into_response()
}

/// Binds the service's listener; the error names the setting and the address.
pub async fn bind(
    setting: &str,
    addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    let described = format!("binding {setting} {addr}");
    TcpListener::bind(addr).await.context(described)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn the_flag_defaults_are_the_default_and_zero_is_refused() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().http;
        assert_eq!(parsed, HttpArgs::default());
        let set = Cli::try_parse_from([
            "x",
            "--http-header-timeout",
            "1s",
            "--max-concurrent-requests",
            "2",
        ])
        .unwrap()
        .http;
        assert_eq!(set.http_header_timeout, Duration::from_secs(1));
        assert_eq!(set.max_concurrent_requests, 2);
        for bad in [
            ["--http-body-timeout", "0s"],
            ["--http-idle-timeout", "soon"],
            ["--max-concurrent-requests", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["x", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }
}
