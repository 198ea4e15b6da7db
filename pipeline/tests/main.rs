//! The pipeline's integration tests: packets, collation and storage against the real Redis and Elasticsearch.
//!
//! Every file beside this one is a module of a single test binary (`cargo test -p pipeline --test
//! integration`; one file: `... --test integration <file>::`): one build and one link instead of
//! one per file, which was most of the time `./setup.sh test` spent compiling.

mod store_support;
mod support;

mod collate;
mod collate_lifecycle;
mod collate_producers;
mod collate_trace;
mod daily;
mod legacy;
mod packet;
mod packet_fuzz;
mod redis_memory;
mod signing_fuzz;
mod store;
mod store_nodes;
mod task;
