//! The worker's small HTTP side on `WORKER_METRICS_ADDR`: only the kit's `/healthz`, `/readyz`
//! (start-up finished: indices ensured, queue workers running) and `/metrics`.

use axum::Router;
use service_kit::http::{Access, Check, HttpKit};

use crate::state::Readiness;

pub fn router(ready: Readiness, access: Access) -> Router {
    let kit = HttpKit::new("worker").access(access).readiness(move || {
        let ready = ready.get();
        async move { vec![Check::new("queue_worker", ready)] }
    });
    kit.mount(Router::new())
}
