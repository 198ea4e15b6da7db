//! What the worker's HTTP side shares with its run loop: whether start-up finished (indices
//! ensured, the queue workers running). The worker serves no job data over HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the worker finished start-up; cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
