//! The admin API under `/api/admin`, what the Queues page calls (and any script may):
//!
//! - `GET /api/admin/queues`: every queue of the namespace with its totals and paused flag;
//! - `GET /api/admin/queues/{queue}?limit=N`: one queue in full — per-partition states (next
//!   due, oldest age), workers with their in-flight counts, pending jobs (owner, idle), delayed
//!   jobs, dead letters with their error history (up to `N` each, default 50, at most 500);
//! - `POST /api/admin/queues/{queue}/dead/retry` and `…/dead/delete` with `{"handle":
//!   "<partition>/<entry id>"}` or `{"all": true}`: retry or delete one or every dead letter;
//! - `POST /api/admin/queues/{queue}/pause` and `…/resume`.
//!
//! Reads follow the service's read access (the kit's read gate). Every POST needs an admin key
//! as `Authorization: Bearer` ([`auth`]), judged before the body is read; bodies are JSON of at
//! most [`MAX_BODY`] bytes. Every refusal is problem+json and changes nothing.

pub mod auth;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use service_kit::http::{JsonBytes, Query, Rejection};

use crate::error::AdminError;
use crate::queue_admin::{DeadAction, Letters};
use crate::state::AppState;
use auth::AdminKey;

/// Largest admin request body (a handle or `{"all": true}` needs far less).
pub const MAX_BODY: usize = 4096;
/// Entries listed per list of a queue's detail unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// Most entries per list `?limit=` may ask for.
pub const MAX_LIMIT: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/queues", get(list))
        .route("/api/admin/queues/{queue}", get(detail))
        .route("/api/admin/queues/{queue}/dead/retry", post(retry))
        .route("/api/admin/queues/{queue}/dead/delete", post(delete))
        .route("/api/admin/queues/{queue}/pause", post(pause))
        .route("/api/admin/queues/{queue}/resume", post(resume))
}

/// The queue name of the path; one that does not decode cannot name a queue (404).
fn queue_name(path: Result<Path<String>, PathRejection>) -> Result<String, AdminError> {
    path.map(|Path(name)| name)
        .map_err(|_| AdminError::NotFound("no such queue".into()))
}

fn fresh(value: Value) -> Response {
    let mut resp = Json(value).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn list(State(state): State<AppState>) -> Result<Response, AdminError> {
    Ok(fresh(state.admin.list().await?))
}

#[derive(Deserialize)]
struct DetailQuery {
    limit: Option<String>,
}

async fn detail(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DetailQuery>, Rejection>,
) -> Result<Response, AdminError> {
    let name = queue_name(path)?;
    let Query(query) = query?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(AdminError::validation(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    Ok(fresh(state.admin.detail(&name, limit).await?))
}

/// The body of a dead-letter action: one handle, or every letter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LettersBody {
    handle: Option<String>,
    all: Option<bool>,
}

/// Parses a dead-letter action's body: malformed JSON 400, wrong shape or rule 422.
fn letters(bytes: &[u8]) -> Result<Letters, AdminError> {
    let body: LettersBody = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AdminError::validation("$", e.to_string()),
        _ => AdminError::Body(Rejection::Malformed(e.to_string())),
    })?;
    match (body.handle, body.all) {
        (Some(handle), None | Some(false)) => {
            let parsed = handle
                .split_once('/')
                .and_then(|(p, id)| Some((p.parse::<u16>().ok()?, id)))
                .filter(|(_, id)| is_entry_id(id));
            match parsed {
                Some((partition, id)) => Ok(Letters::One {
                    partition,
                    entry_id: id.to_string(),
                }),
                None => Err(AdminError::validation(
                    "handle",
                    "must be `<partition>/<entry id>` as listed, e.g. `0/1733212345678-0`",
                )),
            }
        }
        (None, Some(true)) => Ok(Letters::All),
        _ => Err(AdminError::validation(
            "$",
            "send exactly one of `handle` (one dead letter) or `all: true` (every one)",
        )),
    }
}

/// `<ms>-<seq>`, both decimal.
fn is_entry_id(id: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('-').is_some_and(|(a, b)| num(a) && num(b))
}

async fn dead_action(
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonBytes<MAX_BODY>, Rejection>,
    action: DeadAction,
) -> Result<Response, AdminError> {
    let name = queue_name(path)?;
    let JsonBytes(bytes) = body?;
    let letters = letters(&bytes)?;
    let count = state.admin.dead(&name, action, &letters).await?;
    Ok(fresh(
        json!({"queue": name, "action": action.as_str(), "count": count}),
    ))
}

async fn retry(
    _admin: AdminKey,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonBytes<MAX_BODY>, Rejection>,
) -> Result<Response, AdminError> {
    dead_action(state, path, body, DeadAction::Retry).await
}

async fn delete(
    _admin: AdminKey,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<JsonBytes<MAX_BODY>, Rejection>,
) -> Result<Response, AdminError> {
    dead_action(state, path, body, DeadAction::Delete).await
}

async fn pause(
    _admin: AdminKey,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    set_paused(state, path, true).await
}

async fn resume(
    _admin: AdminKey,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    set_paused(state, path, false).await
}

async fn set_paused(
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    paused: bool,
) -> Result<Response, AdminError> {
    let name = queue_name(path)?;
    state.admin.set_paused(&name, paused).await?;
    Ok(fresh(json!({"queue": name, "paused": paused})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_bodies_are_parsed_strictly() {
        assert_eq!(
            letters(br#"{"handle":"3/1733212345678-12"}"#).unwrap(),
            Letters::One {
                partition: 3,
                entry_id: "1733212345678-12".into()
            }
        );
        assert_eq!(letters(br#"{"all":true}"#).unwrap(), Letters::All);
        for (body, status) in [
            (&br#"{"all":false}"#[..], 422),
            (br#"{}"#, 422),
            (br#"{"all":true,"handle":"0/1-0"}"#, 422),
            (br#"{"handle":"0/1-0","x":1}"#, 422),
            (br#"{"handle":"a/1-0"}"#, 422),
            (br#"{"handle":"0/1-"}"#, 422),
            (br#"{"handle":"70000/1-0"}"#, 422),
            (br#"{"handle":"0/+"}"#, 422),
            (br#"{"handle":7}"#, 422),
            (br#"[1]"#, 422),
            (br#"{"handle":"0/1-0""#, 400),
            (b"nope", 400),
        ] {
            let err = letters(body).unwrap_err();
            assert_eq!(
                err.problem().status,
                status,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
