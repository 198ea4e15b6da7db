//! `GET /events`: Server-Sent Events, one `stats` event with the latest snapshot at once, then
//! one per published snapshot; the stream ends at shutdown. Open streams are counted and capped:
//! past `MAX_SSE_CLIENTS` the answer is 503 problem+json (`overloaded`) with `Retry-After`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use service_kit::problem::Problem;

use crate::state::AppState;

/// Counts an open `/events` connection for as long as its stream lives.
struct ClientGuard(Arc<AtomicU64>);

impl ClientGuard {
    /// Counts one more stream, unless `max` are open already.
    fn admit(counter: Arc<AtomicU64>, max: u64) -> Option<ClientGuard> {
        let admitted = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < max).then_some(open + 1)
        });
        admitted.ok().map(|_| ClientGuard(counter))
    }
}

/// Seconds a refused viewer is asked to wait (the page retries by itself).
const RETRY_AFTER_SECS: u64 = 5;

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `stats` event with the latest snapshot at once, then one per published snapshot; 503
/// when `MAX_SSE_CLIENTS` streams are open.
pub async fn events(State(state): State<AppState>) -> Response {
    let Some(guard) = ClientGuard::admit(state.sse_clients.clone(), state.max_sse_clients) else {
        let max = state.max_sse_clients;
        tracing::debug!(max, "event stream refused: MAX_SSE_CLIENTS open");
        return Problem::overloaded(format!(
            "{max} event streams are open, the most this dashboard serves (MAX_SSE_CLIENTS); \
             retry later"
        ))
        .retry_after(RETRY_AFTER_SECS)
        .into_response();
    };
    let rx = state.snapshots.clone();
    let updates = stream::unfold((rx, true, guard), |(mut rx, first, guard)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let latest = rx.borrow_and_update().clone();
        let mut event = Event::default().event("stats").data(latest.json.as_str());
        if first {
            event = event.retry(Duration::from_secs(1));
        }
        Some((Ok::<_, Infallible>(event), (rx, false, guard)))
    });
    let until_shutdown = updates.take_until(state.shutdown.cancelled_owned());
    Sse::new(until_shutdown)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}
