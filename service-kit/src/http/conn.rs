//! What [`serve`](super::serve) keeps per connection and per request: [`Activity`] (requests in
//! flight on a connection and since when it has been idle, so the connection can be closed when
//! it has waited too long for a request), the request body under a total deadline
//! ([`DeadlineBody`], which fails with [`BodyTimedOut`]) and the response body that marks its
//! request finished when it is dropped ([`TrackedBody`]). Bodies are only passed through: no
//! HTTP is parsed here (hyper does that).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body did not arrive in full within the body timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimedOut(pub Duration);

/// Requests in flight on one connection, and since when none has been.
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` at which the last request finished (0: none yet).
    idle_since_ms: AtomicU64,
    /// Whether a request head ever arrived on this connection.
    served: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    /// A request head arrived; it is in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection is to be closed if it stays as it is: `None` while a request is in
    /// flight; `first` after it opened when no request came yet, `idle` after the last request
    /// finished. Nothing wakes the connection's task when a request begins or ends (that would
    /// cost a wake-up per request): it looks at least once per idle period.
    pub fn deadline(&self, first: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        if self.served.load(Ordering::Relaxed) {
            Some(since + idle)
        } else {
            Some(since + first)
        }
    }
}

/// One request in flight on its connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let ms = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since_ms.fetch_max(ms, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is sent in full (or dropped): an
/// open event stream is a busy connection, never an idle one.
pub(super) struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails with [`BodyTimedOut`] when it has not ended by its deadline (a
/// total deadline from the request head, however the bytes trickle in). The timer is only
/// created the first time the body is not ready, so bodies that arrive with their head cost
/// nothing.
pub(super) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The [`BodyTimedOut`] somewhere in an error's chain of sources (the body errors that reach an
/// extractor are wrapped by axum and by `http-body-util`).
pub(crate) fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(*t);
        }
        current = e.source();
    }
    None
}
