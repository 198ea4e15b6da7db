//! Test helpers for every crate's tests, in one place.
//!
//! Tests run against the real Redis and the real Elasticsearch that `./setup.sh test` starts; their
//! URLs come from `REDIS_URL` and `ELASTICSEARCH_URL`. A missing or unreachable server is a test
//! failure with a clear message, never a skip. Each test gets its own Redis namespace and
//! Elasticsearch index prefix ([`TestEnv`]) so tests run in parallel; dropping the `TestEnv` deletes
//! both, also when the test fails. A secured server (TLS, ACL user, CA file, API key) is reached
//! through the same variables the services read ([`transport`]).
//! This crate must not depend on any Conveyor crate: it only knows Redis, HTTP and processes.

mod cluster;
mod env;
mod http;
mod process;
mod proxy;
mod redis_server;
mod streams;
mod tls_redis;
pub mod transport;

pub use cluster::{
    cluster_url, node_command, RedisCluster, CLUSTER_NODES, CLUSTER_NODE_TIMEOUT_MS,
};
pub use env::{elasticsearch_url, redis_url, unique_name, TestEnv, DROP_CLEANUP_DEADLINE};
pub use http::{assert_problem, get_text};
pub use process::{bin_dir, bin_path, free_port, wait_for_http, ChildGuard};
pub use proxy::TcpProxy;
pub use redis_server::RedisServer;
pub use streams::{redis_pool, xlen};
pub use tls_redis::{TlsRedisServer, TLS_REDIS_USER};
