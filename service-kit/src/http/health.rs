//! `GET /healthz`, `GET /readyz` and `GET /metrics`, the same in every service.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Check, HttpKit};
use crate::telemetry;

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

pub(super) fn routes(kit: &HttpKit) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(kit.clone())
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz(State(kit): State<HttpKit>) -> Json<Health> {
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
        (status = 503, description = "A dependency is down", body = Readiness),
    ))]
async fn readyz(State(kit): State<HttpKit>) -> Response {
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
async fn metrics(State(kit): State<HttpKit>) -> Response {
    let (content_type, mut text) = telemetry::metrics_response();
    if let Some(extra) = &kit.extra_metrics {
        text.push_str(&extra());
    }
    (content_type, text).into_response()
}
