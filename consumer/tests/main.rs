//! The consumer's integration tests: the real API in-process against the real Redis and Elasticsearch.
//!
//! Every file beside this one is a module of a single test binary (`cargo test -p consumer --test
//! integration`; one file: `... --test integration <file>::`): one build and one link instead of
//! one per file, which was most of the time `./setup.sh test` spent compiling.

mod support;

mod auth;
mod backlog_restart;
mod coalesce;
mod connections;
mod daily_reads;
mod dependencies;
mod errors;
mod hostile;
mod ingest;
mod not_replicated;
mod openapi;
mod storage_full;
mod wait;
