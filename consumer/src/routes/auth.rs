//! Write authentication: the [`Authenticated`] extractor judges the request's API key from its
//! headers before a byte of the body is read (401 without a known key, when keys are configured),
//! and its [`Writer`] then allows or refuses each packet's producer (403) once the body is
//! parsed — so nothing is enqueued for a caller that may not post it. The key table and the read
//! gate are the kit's (`service_kit::http::access`); this only applies them to the writes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use service_kit::http::Writer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::ApiError;
use crate::state::AppState;

/// The name of the security scheme in the OpenAPI document.
pub const SCHEME: &str = "api_key";

/// The caller of a write, authenticated.
pub struct Authenticated(pub Writer);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Authenticated(state.access().writer(&parts.headers)?))
    }
}

/// Adds the bearer scheme the write operations name (`security(("api_key" = []))`, which must
/// spell [`SCHEME`]).
pub struct SecurityScheme_;

impl utoipa::Modify for SecurityScheme_ {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from API_KEYS / API_KEYS_FILE with a `producer:<name>` (or \
                         `producer:*`) grant for every packet's producer. Without configured keys \
                         (an API on loopback only) writes need none.",
                    ))
                    .build(),
            ),
        );
    }
}
