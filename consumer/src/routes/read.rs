//! Reads of stored messages: `GET /messages` (newest first, optional producer, paged) and
//! `GET /messages/{producer}/{number}` (404 when absent). Elasticsearch answers; this module
//! only checks parameters and shapes answers.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use pipeline::ids::ProducerName;
use pipeline::packet::{FieldError, StoredMessage};
use pipeline::store::{Fields, MessagesPage};
use serde::Deserialize;
use service_kit::http::{PageParams, Query};
use service_kit::problem::Problem;

use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /messages`; any other parameter answers 422.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this producer's messages.
    #[param(pattern = r"^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    pub producer: Option<String>,
    /// Page size, 1..=1000 (default 20).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 1000)]
    pub size: Option<String>,
    /// Offset; `from + size` ≤ 10000 (default 0), else 422.
    #[param(value_type = Option<usize>, minimum = 0, maximum = 9999)]
    pub from: Option<String>,
    /// Large fields to include, comma-separated: `text`, `word_lengths` (default none). A page
    /// with either holds at most 8 messages; `next_from` says where the next page starts.
    #[param(pattern = r"^((text|word_lengths)(,(text|word_lengths))*)?$")]
    pub fields: Option<String>,
}

/// The `fields` parameter, or the error naming it.
fn parse_fields(raw: Option<&str>) -> Result<Fields, FieldError> {
    let mut fields = Fields::default();
    for name in raw.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        match name {
            "text" => fields.text = true,
            "word_lengths" => fields.word_lengths = true,
            _ => {
                return Err(FieldError::new(
                    "fields",
                    "must list only text and word_lengths, comma-separated",
                ))
            }
        }
    }
    Ok(fields)
}

/// Most recent stored messages, newest first (by `received_at`).
#[utoipa::path(
    get, path = "/messages", tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages (`text` and `word_lengths` only when `fields` asks)", body = MessagesPage),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Elasticsearch unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_messages(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<MessagesPage>, ApiError> {
    let mut errors = Vec::new();
    let (size, from) = PageParams::of(params.size, params.from).resolve_noting(&mut errors);
    let fields = parse_fields(params.fields.as_deref()).unwrap_or_else(|e| {
        errors.push(e);
        Fields::default()
    });
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
    let page = state
        .bounded("Elasticsearch", async {
            store
                .list_messages(producer.as_ref(), size, from, fields)
                .await
                .map_err(ApiError::from_store)
        })
        .await?;
    Ok(Json(page))
}

/// One stored message by its natural key.
#[utoipa::path(
    get, path = "/messages/{producer}/{number}", tag = "messages",
    params(
        ("producer" = String, Path, description = "Producer name", pattern = r"^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64),
        ("number" = u64, Path, description = "Packet number", minimum = 0, maximum = 9_007_199_254_740_991_i64),
    ),
    responses(
        (status = 200, description = "The stored message", body = StoredMessage),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Elasticsearch unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_message(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<StoredMessage>, ApiError> {
    // A path that does not even decode (e.g. `%FF`), a producer that breaks its rule or a number
    // that is not one names no message; the answer does not echo such input back.
    let parsed = path.ok().and_then(|Path((producer, number))| {
        Some((ProducerName::parse(&producer)?, number.parse::<u64>().ok()?))
    });
    let Some((name, n)) = parsed else {
        return Err(ApiError::NotFound(
            "no stored message has that producer and number".into(),
        ));
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
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no stored message {name}:{n}")))
}
