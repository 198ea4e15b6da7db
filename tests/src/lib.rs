//! Helpers for the end-to-end tests in `tests/tests/`: [`Stack`] starts the real binaries on free
//! ports against one test's Redis namespace and Elasticsearch index prefix; [`es`] reads the
//! test's indices directly. Nothing here asserts behaviour; the tests do.

pub mod es;
mod stack;

pub use stack::{Service, Stack, StackBuilder, WorkerProcess, WEBHOOK_SECRET};
