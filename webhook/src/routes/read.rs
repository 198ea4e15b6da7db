//! Reads of delivered resources: `GET /resources/{key}` (the resource key: `<resource_id>` for the
//! default producer, `<producer>@<resource_id>` otherwise; 404 when absent) and
//! `GET /resources?size=&from=` (most recently delivered first).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline::ids::ResourceKey;
use serde::Deserialize;
use service_kit::http::{PageParams, Query};
use service_kit::problem::FieldError;

use crate::error::ApiError;
use crate::state::AppState;

/// One delivered resource by id.
pub async fn get_one(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    // An id that does not even decode (e.g. `%FF`) names no resource.
    let Ok(Path(id)) = path else {
        return Err(ApiError::NotFound);
    };
    let Some(id) = ResourceKey::parse(&id) else {
        return Err(ApiError::NotFound);
    };
    match app.store.get(&id).await? {
        Some(doc) => Ok(Json(doc).into_response()),
        None => Err(ApiError::NotFound),
    }
}

/// Query of `GET /resources`: the page, and `fields=word_lengths` to include them; any other
/// parameter answers 422.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    size: Option<String>,
    from: Option<String>,
    fields: Option<String>,
}

/// A page of delivered resources, newest first; `word_lengths` (megabytes for a large
/// resource) only with `fields=word_lengths`, and then one resource per page.
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let (size, from) = PageParams::of(params.size, params.from).resolve_noting(&mut errors);
    let with_word_lengths = match params.fields.as_deref() {
        None | Some("") => false,
        Some("word_lengths") => true,
        Some(_) => {
            errors.push(FieldError::new("fields", "may only be word_lengths"));
            false
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = app.store.list(size, from, with_word_lengths).await?;
    Ok(Json(page).into_response())
}
