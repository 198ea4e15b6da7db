//! The webhook service's routes: [`receive`] (the signed deliveries) and [`read`] (the stored
//! resources), inside the kit's layers. Readiness = Elasticsearch answers and the index exists.

pub mod read;
pub mod receive;

use axum::routing::{get, post};
use axum::Router;
use service_kit::http::{Check, HttpKit};

use crate::state::AppState;

pub use receive::BODY_LIMIT;

pub fn router(state: AppState) -> Router {
    let ready = state.clone();
    let kit = HttpKit::new("webhook")
        .access(state.access.clone())
        .body_limit(BODY_LIMIT)
        .readiness(move || {
            let state = ready.clone();
            async move {
                let ok = state.store.ping().await.is_ok() && state.ensure_index().await.is_ok();
                vec![Check::new("elasticsearch", ok)]
            }
        });
    let app = Router::new()
        .route("/webhooks/resources", post(receive::receive))
        .route("/resources", get(read::list))
        .route("/resources/{id}", get(read::get_one))
        .with_state(state);
    kit.mount(app)
}
