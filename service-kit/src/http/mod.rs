//! The one HTTP layer stack every Conveyor service mounts, so that every service answers alike:
//!
//! - routes `GET /healthz` (JSON: status, service, version, pid — the pid lets a launcher tell
//!   its own process from another holding the port), `GET /readyz` (the service's dependency
//!   checks, 200 or 503) and `GET /metrics` (Prometheus text, plus any service-specific lines);
//! - fallbacks: unknown paths 404 and wrong methods 405, both problem+json;
//! - layers, outermost first: request id (`x-request-id`, generated when absent, echoed back),
//!   tracing span per request (method, route, request id), panic → 500 problem+json, a time
//!   limit per request → 503 problem+json, the body limit, HTTP metrics by route template.
//!
//! A service builds its own router (its routes and state), then [`HttpKit::mount`]s it; services
//! with an OpenAPI document merge [`HttpKit::routes`] into their `OpenApiRouter` first and
//! [`HttpKit::wrap`] the result. Bodies are read with [`JsonBody`] / [`read_body`] ([`body`]).

pub mod body;
mod health;
mod layers;
mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use utoipa_axum::router::OpenApiRouter;

pub use body::{is_json, parse_json, read_body, JsonBody, PageParams, Query, RawBody, Rejection};
pub use health::{Health, Readiness};
pub use metrics::ReceivedAt;

/// One dependency check of `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// Name in the answer, e.g. `redis`.
    pub name: &'static str,
    pub ok: bool,
}

impl Check {
    pub fn new(name: &'static str, ok: bool) -> Check {
        Check { name, ok }
    }
}

type ReadyFn = Arc<dyn Fn() -> BoxFuture<'static, Vec<Check>> + Send + Sync>;
type ExtraMetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Default largest request body: 8 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Default time limit of one request (until its response head): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared HTTP surface of one service; see the module docs.
#[derive(Clone)]
pub struct HttpKit {
    service: &'static str,
    body_limit: usize,
    request_timeout: Duration,
    readiness: Option<ReadyFn>,
    extra_metrics: Option<ExtraMetricsFn>,
}

impl HttpKit {
    /// The kit for `service` (its name in `/healthz` and logs), with default limits and a
    /// `/readyz` that is ready as soon as the process serves.
    pub fn new(service: &'static str) -> HttpKit {
        HttpKit {
            service,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            readiness: None,
            extra_metrics: None,
        }
    }

    /// Largest accepted request body in bytes (413 problem+json above).
    pub fn body_limit(mut self, bytes: usize) -> HttpKit {
        self.body_limit = bytes;
        self
    }

    /// Longest a request may take until its response head (503 problem+json after); a
    /// streamed body (SSE) is not limited by it.
    pub fn request_timeout(mut self, limit: Duration) -> HttpKit {
        self.request_timeout = limit;
        self
    }

    /// The checks `/readyz` runs (200 when all pass, 503 otherwise).
    pub fn readiness<F, Fut>(mut self, check: F) -> HttpKit
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Check>> + Send + 'static,
    {
        self.readiness = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// Lines appended to `/metrics` (Prometheus text the service keeps itself).
    pub fn extra_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> HttpKit {
        self.extra_metrics = Some(Arc::new(render));
        self
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// `/healthz`, `/readyz` and `/metrics`, documented for OpenAPI.
    pub fn routes(&self) -> OpenApiRouter {
        health::routes(self)
    }

    /// Fallbacks and layers around `app` (which already holds its state).
    pub fn wrap(&self, app: Router) -> Router {
        layers::wrap(self, app)
    }

    /// `app` with the kit's routes, fallbacks and layers: the whole service router.
    pub fn mount(&self, app: Router) -> Router {
        let (ops, _) = self.routes().split_for_parts();
        self.wrap(app.merge(ops))
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish (open streams end with the shutdown token the service passes them).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
