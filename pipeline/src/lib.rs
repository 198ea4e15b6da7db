//! The pipeline's domain, shared by the binaries: what a packet is, the word-length task, the
//! Elasticsearch store, collation per resource, webhook payload and signing, configuration groups,
//! telemetry and shutdown. No HTTP server lives here; binaries own their routers.

pub mod collate;
pub mod config;
pub mod packet;
pub mod problem;
pub mod resource;
pub mod runtime;
pub mod shutdown;
pub mod signing;
pub mod store;
pub mod task;
pub mod telemetry;
