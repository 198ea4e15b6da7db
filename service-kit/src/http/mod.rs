//! The one HTTP layer stack every Conveyor service mounts, so that every service answers alike:
//!
//! - routes `GET /healthz` (JSON: status, service, version, pid — the pid lets a launcher tell
//!   its own process from another holding the port), `GET /readyz` (the service's dependency
//!   checks, 200 or 503) and `GET /metrics` (Prometheus text, plus any service-specific lines);
//! - fallbacks: unknown paths 404 and wrong methods 405, both problem+json;
//! - layers, outermost first: request id (`x-request-id`, generated when absent, echoed back),
//!   tracing span per request (method, route, request id), panic → 500 problem+json, a time
//!   limit per request → 503 problem+json, the body limit, HTTP metrics by route template.
//!
//! [`serve`] runs the router with every connection bounded ([`HttpArgs`]: header, body and idle
//! timeouts, and a concurrency limit past which requests are shed with 503); see [`serve`]'s
//! module for each rule.
//!
//! A service builds its own router (its routes and state), then [`HttpKit::mount`]s it; services
//! with an OpenAPI document merge [`HttpKit::routes`] into their `OpenApiRouter` first and
//! [`HttpKit::wrap`] the result. Bodies are read with [`JsonBody`] / [`read_body`] ([`body`]).

pub mod access;
pub mod body;
mod conn;
mod health;
mod kit;
mod layers;
mod metrics;
mod serve;
mod unparsed;

pub use access::{Access, AccessArgs, Denied, Grants, Writer};
pub use body::{
    is_json, parse_json, read_body, JsonBody, JsonBytes, PageParams, Query, RawBody, Rejection,
    DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT,
};
pub use conn::BodyTimedOut;
pub use health::{Check, Health, Readiness};
pub use kit::HttpKit;
pub use metrics::ReceivedAt;
pub use serve::{
    bind, serve, HttpArgs, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
};
