//! `conveyor-stack`: the one place that knows how to start the Conveyor services.
//!
//! It owns the list of services ([`Service`]), exactly which environment variables each process
//! gets ([`StackConfig::env`], the names docker-compose.yml sets too), how a child is started with
//! only that environment ([`command`]), how a port is checked before use ([`ports`]) and how a
//! start is confirmed: the process we started is alive *and* it is the one answering its
//! `/healthz` ([`health::wait_started`]). [`detached`] runs a stack of detached children with
//! pidfiles and logs in a directory (`./setup.sh`, the notebook step, the benches, through the
//! `conveyor-stack` binary); the e2e tests use the same pieces with children they own.
//! It never provisions anything (Redis, Elasticsearch: scripts/provision.sh does) and never
//! touches a process it did not start.

pub mod detached;
mod env;
pub mod health;
pub mod ports;
pub mod process;
mod service;

pub use env::{
    StackConfig, Transport, Tunables, ELASTICSEARCH_TRANSPORT, REDIS_TRANSPORT, TUNABLES,
};
pub use health::{probe, wait_ready, wait_started, Health};
pub use process::command;
pub use service::Service;
