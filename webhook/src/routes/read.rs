//! Reads of delivered resources: `GET /resources/{id}` (404 when absent) and
//! `GET /resources?size=&from=` (most recently delivered first).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline::ids::ResourceId;
use service_kit::http::{PageParams, Query};

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
    let Some(id) = ResourceId::parse(&id) else {
        return Err(ApiError::NotFound);
    };
    match app.store.get(&id).await? {
        Some(doc) => Ok(Json(doc).into_response()),
        None => Err(ApiError::NotFound),
    }
}

/// A page of delivered resources, newest first.
pub async fn list(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
) -> Result<Response, ApiError> {
    let (size, from) = page.resolve().map_err(ApiError::Validation)?;
    Ok(Json(app.store.list(size, from).await?).into_response())
}
