//! `GET /` (the page: one self-contained HTML file, inline CSS and JS, nothing fetched from
//! elsewhere) and `GET /api/stats` (the latest snapshot as JSON).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use crate::state::AppState;

/// The page.
const PAGE: &str = include_str!("../../assets/index.html");

pub async fn page() -> Response {
    let mut resp = Html(PAGE).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub async fn api_stats(State(state): State<AppState>) -> Response {
    let latest = state.snapshots.borrow().clone();
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        latest.json.clone(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
