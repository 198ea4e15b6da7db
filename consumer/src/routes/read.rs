//! Reads of stored messages: `GET /messages` (newest first, optional producer, paged) and
//! `GET /messages/{producer}/{number}` (404 when absent). Elasticsearch answers; this module
//! only checks parameters and shapes answers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use pipeline::packet::{is_valid_producer, FieldError, StoredMessage};
use pipeline::store::MAX_PAGE;
use serde::{Deserialize, Serialize};

use super::ingest::query_error;
use crate::error::ApiError;
use crate::state::AppState;
use pipeline::problem::Problem;

/// Deepest page Elasticsearch serves (`from + size`).
const MAX_WINDOW: usize = 10_000;
/// Page size when none is given.
const DEFAULT_SIZE: usize = 20;

/// Query of `GET /messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this producer's messages.
    pub producer: Option<String>,
    /// Page size, 1..=1000 (default 20).
    pub size: Option<usize>,
    /// Offset; `from + size` ≤ 10000 (default 0).
    pub from: Option<usize>,
}

/// A page of stored messages, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessagesPage {
    pub messages: Vec<StoredMessage>,
}

/// Most recent stored messages, newest first (by `received_at`).
#[utoipa::path(
    get, path = "/messages", tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagesPage),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Elasticsearch unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_messages(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<MessagesPage>, ApiError> {
    let params = params.map_err(query_error)?.0;
    let size = params.size.unwrap_or(DEFAULT_SIZE);
    let from = params.from.unwrap_or(0);
    let mut errors = Vec::new();
    if size == 0 || size > MAX_PAGE {
        errors.push(FieldError::new(
            "size",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    } else if from.saturating_add(size) > MAX_WINDOW {
        errors.push(FieldError::new(
            "from",
            format!("from + size must be at most {MAX_WINDOW}"),
        ));
    }
    if let Some(p) = &params.producer {
        if !is_valid_producer(p) {
            errors.push(FieldError::new(
                "producer",
                "must be 1 to 64 characters from A-Z a-z 0-9 _ . -",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let store = state.store();
    let messages = state
        .bounded("Elasticsearch", async {
            store
                .list_messages(params.producer.as_deref(), size, from)
                .await
                .map_err(ApiError::from_store)
        })
        .await?;
    Ok(Json(MessagesPage { messages }))
}

/// One stored message by its natural key.
#[utoipa::path(
    get, path = "/messages/{producer}/{number}", tag = "messages",
    params(
        ("producer" = String, Path, description = "Producer name"),
        ("number" = u64, Path, description = "Packet number"),
    ),
    responses(
        (status = 200, description = "The stored message", body = StoredMessage),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Elasticsearch unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_message(
    State(state): State<AppState>,
    Path((producer, number)): Path<(String, String)>,
) -> Result<Json<StoredMessage>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no stored message {producer}:{number}"));
    let Ok(n) = number.parse::<u64>() else {
        return Err(not_found());
    };
    if !is_valid_producer(&producer) {
        return Err(not_found());
    }
    let store = state.store();
    let found = state
        .bounded("Elasticsearch", async {
            store
                .get_message(&producer, n)
                .await
                .map_err(ApiError::from_store)
        })
        .await?;
    found.map(Json).ok_or_else(not_found)
}
