//! The pipeline's domain, shared by the binaries: what a packet is ([`packet`]), the word-length
//! task ([`task`]), the Elasticsearch store ([`store`]), collation per resource ([`collate`]),
//! the webhook payload ([`resource`]) and its signature ([`signing`]), and the names of the two
//! queues the pipeline runs ([`queues`]). No HTTP server, configuration parsing or process
//! plumbing lives here: that is `service-kit`.

pub mod collate;
pub mod ids;
pub mod packet;
pub mod queues;
pub mod resource;
pub mod signing;
pub mod store;
pub mod task;
