//! [`HttpKit`]: one service's configuration of the shared HTTP surface.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use super::access::Access;
use super::body::{DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT};
use super::health::{self, Check, ExtraMetricsFn, ReadyFn};
use super::layers;

/// The shared HTTP surface of one service; see the module docs.
#[derive(Clone)]
pub struct HttpKit {
    service: &'static str,
    body_limit: usize,
    request_timeout: Duration,
    readiness: Option<ReadyFn>,
    extra_metrics: Option<ExtraMetricsFn>,
    access: Access,
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
            access: Access::open(),
        }
    }

    /// Who may read (every GET but `/healthz` and `/readyz`); open by default.
    pub fn access(mut self, access: Access) -> HttpKit {
        self.access = access;
        self
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
        health::routes(health::Ops {
            service: self.service,
            readiness: self.readiness.clone(),
            extra_metrics: self.extra_metrics.clone(),
        })
    }

    /// Fallbacks and layers around `app` (which already holds its state).
    pub fn wrap(&self, app: Router) -> Router {
        layers::wrap(
            app,
            self.body_limit,
            self.request_timeout,
            self.access.clone(),
        )
    }

    /// `app` with the kit's routes, fallbacks and layers: the whole service router.
    pub fn mount(&self, app: Router) -> Router {
        let (ops, _) = self.routes().split_for_parts();
        self.wrap(app.merge(ops))
    }
}
