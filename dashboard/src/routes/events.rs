//! `GET /events`: Server-Sent Events, one `stats` event with the latest snapshot at once, then
//! one per published snapshot; the stream ends at shutdown. Open streams are counted.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};

use crate::state::AppState;

/// Counts an open `/events` connection for as long as its stream lives.
struct ClientGuard(Arc<AtomicU64>);

impl ClientGuard {
    fn new(counter: Arc<AtomicU64>) -> ClientGuard {
        counter.fetch_add(1, Ordering::Relaxed);
        ClientGuard(counter)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `stats` event with the latest snapshot at once, then one per published snapshot.
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let guard = ClientGuard::new(state.sse_clients.clone());
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
        Some((Ok(event), (rx, false, guard)))
    });
    let until_shutdown = updates.take_until(state.shutdown.cancelled_owned());
    Sse::new(until_shutdown).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}
