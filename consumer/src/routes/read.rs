//! Reads of stored messages: `GET /messages` (newest first, optional producer, paged) and
//! `GET /messages/{producer}/{number}` (404 when absent). Elasticsearch answers; this module
//! only checks parameters and shapes answers.

use axum::extract::{Path, State};
use axum::Json;
use pipeline::ids::ProducerName;
use pipeline::packet::{FieldError, StoredMessage};
use serde::{Deserialize, Serialize};
use service_kit::http::{PageParams, Query};
use service_kit::problem::Problem;

use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this producer's messages.
    pub producer: Option<String>,
    /// Page size, 1..=1000 (default 20).
    #[param(value_type = Option<usize>)]
    pub size: Option<String>,
    /// Offset; `from + size` ≤ 10000 (default 0).
    #[param(value_type = Option<usize>)]
    pub from: Option<String>,
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
        (status = 503, description = "Elasticsearch unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_messages(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<MessagesPage>, ApiError> {
    let page = PageParams {
        size: params.size,
        from: params.from,
    };
    let (size, from, mut errors) = match page.resolve() {
        Ok((size, from)) => (size, from, Vec::new()),
        Err(errors) => (0, 0, errors),
    };
    let producer = match params.producer.as_deref().map(ProducerName::parse) {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => {
            errors.push(FieldError::new("producer", ProducerName::RULE));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let store = state.store();
    let messages = state
        .bounded("Elasticsearch", async {
            store
                .list_messages(producer.as_ref(), size, from)
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
        (status = 503, description = "Elasticsearch unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
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
    let Some(name) = ProducerName::parse(&producer) else {
        return Err(not_found());
    };
    let store = state.store();
    let found = state
        .bounded("Elasticsearch", async {
            store
                .get_message(&name, n)
                .await
                .map_err(ApiError::from_store)
        })
        .await?;
    found.map(Json).ok_or_else(not_found)
}
