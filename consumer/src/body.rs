//! Reading a JSON request body ourselves, so every rejection is our problem+json: 415 for a
//! non-JSON content type, 413 past the size limit (declared or streamed), 400 for malformed
//! JSON. It parses into a `serde_json::Value` only; field rules live in `pipeline::packet`.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::error::ApiError;

/// Whether the request says its body is JSON (`application/json`, `application/*+json`, with
/// any parameters such as `charset`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Checks the content type, reads at most `limit` bytes and parses them as JSON.
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::TooLarge { limit });
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading request body failed");
            return Err(ApiError::Malformed(
                "the request body could not be read".into(),
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Malformed(format!("the body is not valid JSON: {e}")))
}
