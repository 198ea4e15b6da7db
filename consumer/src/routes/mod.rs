//! The HTTP handlers, grouped by what they serve: ingest (POST), reads of stored messages, and
//! operations endpoints. Handlers validate and shape answers; the queue and store do the work.

pub mod ingest;
pub mod ops;
pub mod read;
