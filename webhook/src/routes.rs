//! HTTP routes of the webhook service. `receive` checks the signature before anything else, then
//! shape, then stores the resource once (document first, then file); a repeat delivery answers 200
//! and changes nothing (it only restores a missing file from the stored document). Unknown paths,
//! wrong methods and bad query strings answer problem+json like every other error.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use pipeline::packet::is_valid_resource_id;
use pipeline::problem::FieldError;
use pipeline::resource::CollatedResource;
use pipeline::signing::{self, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use serde_json::json;

use crate::error::ApiError;
use crate::output::{self, Written};
use crate::store::{Created, DeliveredResource};
use crate::AppState;

/// Largest accepted delivery body.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/resources", post(receive))
        .route("/resources", get(list))
        .route("/resources/{id}", get(get_one))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async { pipeline::telemetry::metrics_response() }),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn count(outcome: &'static str) {
    metrics::counter!("conveyor_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let delivered_at = Utc::now();
    let result = match body {
        Ok(body) => accept(&app, &headers, &body, delivered_at).await,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::TooLarge { limit: BODY_LIMIT })
        }
        Err(e) => Err(ApiError::Malformed(format!("reading the body: {e}"))),
    };
    match &result {
        Ok(_) => {}
        Err(ApiError::Unauthorized(reason)) => {
            count("unauthorized");
            tracing::warn!(%reason, "delivery refused: bad signature");
        }
        Err(ApiError::Unavailable(_)) => count("error"),
        Err(_) => count("invalid"),
    }
    result
}

async fn accept(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    delivered_at: chrono::DateTime<Utc>,
) -> Result<Response, ApiError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Unauthorized(format!("missing {SIGNATURE_HEADER} header")))?;
    signing::verify(
        &app.secret,
        signature,
        body,
        delivered_at.timestamp(),
        app.tolerance_secs,
    )
    .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Malformed(format!("invalid JSON: {e}")))?;
    let resource: CollatedResource = serde_json::from_value(value)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("$", e.to_string())]))?;
    let mut errors = resource.validate();
    if let Some(key) = headers.get(IDEMPOTENCY_HEADER) {
        if key.to_str().ok() != Some(resource.resource_id.as_str()) {
            errors.push(FieldError::new(
                IDEMPOTENCY_HEADER,
                "must equal resource_id",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    app.ensure_index().await?;
    let doc = DeliveredResource::new(resource, delivered_at);
    let id = doc.resource.resource_id.clone();
    match app.store.create(&doc).await? {
        Created::New => {
            write_file(app, &doc).await?;
            count("stored");
            metrics::histogram!("conveyor_webhook_latency_seconds").record(doc.latency_ms / 1000.0);
            tracing::info!(resource_id = %id, latency_ms = doc.latency_ms, "resource stored");
            Ok((
                StatusCode::CREATED,
                Json(
                    json!({ "resource_id": id, "status": "stored", "latency_ms": doc.latency_ms }),
                ),
            )
                .into_response())
        }
        Created::Duplicate => {
            // The first delivery's document is the truth; restore its file if a crash lost it.
            if let Some(stored) = app.store.get(&id).await? {
                write_file(app, &stored).await?;
            }
            count("duplicate");
            tracing::info!(resource_id = %id, "duplicate delivery ignored");
            Ok((
                StatusCode::OK,
                Json(json!({ "resource_id": id, "status": "duplicate" })),
            )
                .into_response())
        }
    }
}

async fn write_file(app: &AppState, doc: &DeliveredResource) -> Result<Written, ApiError> {
    let content = serde_json::to_vec_pretty(doc)
        .map_err(|e| ApiError::Unavailable(format!("encoding output file: {e}")))?;
    let dir = app.output_dir.clone();
    let id = doc.resource.resource_id.clone();
    tokio::task::spawn_blocking(move || output::write_once(&dir, &id, &content))
        .await
        .map_err(|e| ApiError::Unavailable(format!("output writer: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("writing output file: {e}")))
}

async fn get_one(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    // An id that does not even decode (e.g. `%FF`) names no resource.
    let Ok(Path(id)) = path else {
        return Err(ApiError::NotFound);
    };
    if !is_valid_resource_id(&id) {
        return Err(ApiError::NotFound);
    }
    match app.store.get(&id).await? {
        Some(doc) => Ok(Json(doc).into_response()),
        None => Err(ApiError::NotFound),
    }
}

fn param(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, FieldError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| FieldError::new(name, "must be a non-negative integer")),
    }
}

async fn list(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let size = param(&q, "size", 20);
    let from = param(&q, "from", 0);
    let (size, from) = match (size, from) {
        (Ok(s), Ok(f)) => (s, f),
        (s, f) => {
            return Err(ApiError::Validation(
                s.err().into_iter().chain(f.err()).collect(),
            ))
        }
    };
    if size > 1000 || from.saturating_add(size) > 10_000 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "size",
            "size must be at most 1000 and from + size at most 10000",
        )]));
    }
    Ok(Json(app.store.list(size, from).await?).into_response())
}

async fn readyz(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.store.ping().await?;
    app.ensure_index().await?;
    Ok(Json(json!({ "status": "ready" })).into_response())
}
