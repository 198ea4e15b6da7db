//! `GET /healthz`, `GET /readyz` and `GET /metrics`, the same in every service.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::telemetry;

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

pub type ReadyFn = Arc<dyn Fn() -> BoxFuture<'static, Vec<Check>> + Send + Sync>;
pub type ExtraMetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// `/healthz`: the process serves requests.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
    /// Which service answers, e.g. `consumer`.
    pub service: String,
    pub version: String,
    /// Process id of the answering process.
    pub pid: u32,
}

/// `/readyz`: `status` is `"ready"` or `"unavailable"`; every other field is one dependency,
/// `"ok"` or `"down"`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: String,
    #[serde(flatten)]
    pub checks: BTreeMap<String, String>,
}

/// What the three routes answer with: the service's name, readiness checks and extra metrics.
#[derive(Clone)]
pub(super) struct Ops {
    pub service: &'static str,
    pub readiness: Option<ReadyFn>,
    pub extra_metrics: Option<ExtraMetricsFn>,
}

pub(super) fn routes(ops: Ops) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(ops)
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz(State(kit): State<Ops>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        service: kit.service.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
    })
}

/// Readiness: every dependency this service needs answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Every dependency reachable", body = Readiness),
        (status = 503, description = "A dependency is down (a Readiness body), or the service is over \
            MAX_CONCURRENT_REQUESTS (problem+json `overloaded`, with Retry-After)",
            content(
                (Readiness = "application/json"),
                (crate::problem::Problem = "application/problem+json"),
            )),
    ))]
async fn readyz(State(kit): State<Ops>) -> Response {
    let checks: Vec<Check> = match &kit.readiness {
        Some(check) => check().await,
        None => Vec::new(),
    };
    let ready = checks.iter().all(|c| c.ok);
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.into(),
        checks: checks
            .iter()
            .map(|c| (c.name.to_string(), if c.ok { "ok" } else { "down" }.into()))
            .collect(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(kit): State<Ops>) -> Response {
    let (content_type, mut text) = telemetry::metrics_response();
    if let Some(extra) = &kit.extra_metrics {
        text.push_str(&extra());
    }
    (content_type, text).into_response()
}
