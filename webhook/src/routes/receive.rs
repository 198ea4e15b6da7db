//! `POST /webhooks/resources`: checks the signature header and its timestamp before reading a
//! byte of the body (a missing, garbled or stale one answers 401 at once, whatever the body's
//! size), then reads the body under [`BODY_LIMIT`] and checks its MAC, then the shape, then
//! stores the resource once (document first, then file); a repeat delivery answers 200 and
//! changes nothing (it only restores a missing file from the stored document).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use pipeline::ids::ResourceId;
use pipeline::resource::CollatedResource;
use pipeline::signing::{Signature, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use serde_json::json;
use service_kit::http::{parse_json, read_body};
use service_kit::problem::FieldError;

use crate::error::ApiError;
use crate::output::{self, Written};
use crate::state::AppState;
use crate::store::{Created, DeliveredResource};

/// Largest accepted delivery body: the largest resource the worker can deliver
/// (`pipeline::resource::MAX_DELIVERY_BYTES`, 5.75 MiB, derived there from the collation limit).
pub const BODY_LIMIT: usize = pipeline::resource::MAX_DELIVERY_BYTES;

fn count(outcome: &'static str) {
    metrics::counter!("conveyor_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// Receives one signed delivery (the body is read as raw bytes, after the header passed: the
/// signature covers them exactly).
pub async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let delivered_at = Utc::now();
    let result = accept(&app, &headers, body, delivered_at).await;
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

/// The signature header, well-formed and fresh; judged before the body is read.
fn signature(
    app: &AppState,
    headers: &HeaderMap,
    delivered_at: chrono::DateTime<Utc>,
) -> Result<Signature, ApiError> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or_else(|| ApiError::Unauthorized(format!("missing {SIGNATURE_HEADER} header")))?;
    let unauthorized = |e: pipeline::signing::SignatureError| ApiError::Unauthorized(e.to_string());
    let text = header
        .to_str()
        .map_err(|_| unauthorized(pipeline::signing::SignatureError::Malformed))?;
    let signature = Signature::parse(text).map_err(unauthorized)?;
    signature
        .check_fresh(delivered_at.timestamp(), app.tolerance_secs)
        .map_err(unauthorized)?;
    Ok(signature)
}

async fn accept(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    delivered_at: chrono::DateTime<Utc>,
) -> Result<Response, ApiError> {
    let signature = signature(app, headers, delivered_at)?;
    let body = read_body(headers, body, BODY_LIMIT).await?;
    signature
        .matches(&app.secret, &body)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let value = parse_json(headers, &body)?;
    let resource: CollatedResource = serde_json::from_value(value)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("$", e.to_string())]))?;
    let (id, mut errors) = match resource.validate() {
        Ok(id) => (Some(id), Vec::new()),
        Err(errors) => (None, errors),
    };
    if let Some(key) = headers.get(IDEMPOTENCY_HEADER) {
        if key.to_str().ok() != Some(resource.resource_id.as_str()) {
            errors.push(FieldError::new(
                IDEMPOTENCY_HEADER,
                "must equal resource_id",
            ));
        }
    }
    let id = match id {
        Some(id) if errors.is_empty() => id,
        _ => return Err(ApiError::Validation(errors)),
    };

    app.ensure_index().await?;
    let doc = DeliveredResource::new(resource, delivered_at);
    match app.store.create(&doc).await? {
        Created::New => {
            write_file(app, &id, &doc).await?;
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
                write_file(app, &id, &stored).await?;
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

async fn write_file(
    app: &AppState,
    id: &ResourceId,
    doc: &DeliveredResource,
) -> Result<Written, ApiError> {
    let content = serde_json::to_vec_pretty(doc)
        .map_err(|e| ApiError::Unavailable(format!("encoding output file: {e}")))?;
    let dir = app.output_dir.clone();
    let id = id.clone();
    tokio::task::spawn_blocking(move || output::write_once(&dir, &id, &content))
        .await
        .map_err(|e| ApiError::Unavailable(format!("output writer: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("writing output file: {e}")))
}
