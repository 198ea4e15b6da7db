//! `POST /webhooks/resources`: checks the signature headers and their timestamps before reading a
//! byte of the body (a missing, garbled or stale one answers 401 at once, whatever the body's
//! size), then reads the body under [`BODY_LIMIT`] and checks its MACs, then the shape, then
//! stores the resource once (document first, then file); a repeat delivery answers 200 and
//! changes nothing (it only restores a missing file from the stored document).
//!
//! Two signature schemes are accepted: `X-Conveyor-Signature` and the Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`); at least one must be present and every
//! one present must verify, under the current or (during a rotation) the previous secret.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use pipeline::ids::ResourceKey;
use pipeline::resource::CollatedResource;
use pipeline::signing::standard::{self, StandardSignature};
use pipeline::signing::{Signature, SignatureError, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use serde_json::json;
use service_kit::http::{is_json, parse_json, read_body};
use service_kit::problem::FieldError;

use crate::error::ApiError;
use crate::output::Written;
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

/// The signatures a delivery carries: at least one scheme, each well-formed and fresh.
struct Signatures {
    conveyor: Option<Signature>,
    standard: Option<StandardSignature>,
}

fn unauthorized(scheme: &str) -> impl Fn(SignatureError) -> ApiError + '_ {
    move |e| ApiError::Unauthorized(format!("{scheme}: {e}"))
}

/// A header as text; a value that is not visible ASCII is a malformed signature.
fn text<'h>(headers: &'h HeaderMap, name: &str, scheme: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| unauthorized(scheme)(SignatureError::Malformed))
        })
        .transpose()
}

/// The signature headers, judged before the body is read.
fn signatures(
    app: &AppState,
    headers: &HeaderMap,
    delivered_at: chrono::DateTime<Utc>,
) -> Result<Signatures, ApiError> {
    let now = delivered_at.timestamp();
    let conveyor = match text(headers, SIGNATURE_HEADER, SIGNATURE_HEADER)? {
        Some(value) => {
            let signature = Signature::parse(value).map_err(unauthorized(SIGNATURE_HEADER))?;
            signature
                .check_fresh(now, app.tolerance_secs)
                .map_err(unauthorized(SIGNATURE_HEADER))?;
            Some(signature)
        }
        None => None,
    };
    let scheme = standard::SIGNATURE_HEADER;
    let standard = match text(headers, scheme, scheme)? {
        Some(value) => {
            let id = text(headers, standard::ID_HEADER, scheme)?.unwrap_or("");
            let timestamp = text(headers, standard::TIMESTAMP_HEADER, scheme)?.unwrap_or("");
            let signature =
                StandardSignature::parse(id, timestamp, value).map_err(unauthorized(scheme))?;
            signature
                .check_fresh(now, app.tolerance_secs)
                .map_err(unauthorized(scheme))?;
            Some(signature)
        }
        None => None,
    };
    if conveyor.is_none() && standard.is_none() {
        return Err(ApiError::Unauthorized(format!(
            "missing {SIGNATURE_HEADER} or {} header",
            standard::SIGNATURE_HEADER
        )));
    }
    Ok(Signatures { conveyor, standard })
}

impl Signatures {
    /// Every scheme present must match the body under one of the secrets.
    fn check(&self, app: &AppState, body: &[u8]) -> Result<(), ApiError> {
        if let Some(s) = &self.conveyor {
            s.matches_any(&app.secrets, body)
                .map_err(unauthorized(SIGNATURE_HEADER))?;
        }
        if let Some(s) = &self.standard {
            s.matches_any(&app.secrets, body)
                .map_err(unauthorized(standard::SIGNATURE_HEADER))?;
        }
        Ok(())
    }
}

async fn accept(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    delivered_at: chrono::DateTime<Utc>,
) -> Result<Response, ApiError> {
    let signatures = signatures(app, headers, delivered_at)?;
    let body = read_body(headers, body, BODY_LIMIT).await?;
    signatures.check(app, &body)?;
    let resource = decode(headers, &body)?;
    let (id, mut errors) = match resource.validate() {
        Ok(id) => (Some(id), Vec::new()),
        Err(errors) => (None, errors),
    };
    // The delivery's own names for it must be this resource's key.
    let key = resource.key().map(|k| k.to_string());
    if let Some(value) = headers.get(IDEMPOTENCY_HEADER) {
        if key.is_some() && value.to_str().ok() != key.as_deref() {
            errors.push(FieldError::new(
                IDEMPOTENCY_HEADER,
                "must equal the resource key (resource_id, or producer@resource_id)",
            ));
        }
    }
    if let Some(s) = &signatures.standard {
        if key.is_some() && Some(s.id()) != key.as_deref() {
            errors.push(FieldError::new(
                standard::ID_HEADER,
                "must equal the resource key (resource_id, or producer@resource_id)",
            ));
        }
    }
    let id = match id {
        Some(id) if errors.is_empty() => id,
        _ => return Err(ApiError::Validation(errors)),
    };

    app.ensure_index().await?;
    let doc = DeliveredResource::new(resource, delivered_at);
    match app.writes.create(&id, &doc).await? {
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

/// The delivered resource: straight from the bytes when they are one (no `Value` tree on the
/// way); otherwise the answer names why, as for any JSON body (not JSON: 400; the wrong
/// media type: 415; not a resource: 422).
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<CollatedResource, ApiError> {
    if is_json(headers) {
        if let Ok(resource) = serde_json::from_slice::<CollatedResource>(body) {
            return Ok(resource);
        }
    }
    let value = parse_json(headers, body)?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("$", e.to_string())]))
}

async fn write_file(
    app: &AppState,
    id: &ResourceKey,
    doc: &DeliveredResource,
) -> Result<Written, ApiError> {
    let content = serde_json::to_vec_pretty(doc)
        .map_err(|e| ApiError::Unavailable(format!("encoding output file: {e}")))?;
    app.files
        .write(id, content)
        .await
        .map_err(|e| ApiError::Unavailable(format!("writing output file: {e}")))
}
