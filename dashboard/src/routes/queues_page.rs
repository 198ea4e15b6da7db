//! `GET /queues`: the Queues page, one self-contained HTML file (inline CSS and JS, nothing
//! fetched from elsewhere) that polls the admin API once per second and calls its actions with
//! the admin key typed into the page (kept in `sessionStorage`, sent as a Bearer header).

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

/// The page.
const PAGE: &str = include_str!("../../assets/queues.html");

pub async fn page() -> Response {
    let mut resp = Html(PAGE).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
