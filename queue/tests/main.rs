//! The queue's integration tests, against real Redis servers (shared, private, cluster).
//!
//! Every file beside this one is a module of a single test binary (`cargo test -p queue --test
//! integration`; one file: `... --test integration <file>::`): one build and one link instead of
//! one per file, which was most of the time `./setup.sh test` spent compiling.

mod support;

mod admin;
mod admin_pause;
mod backlog;
mod backlog_property;
mod clock_skew;
mod dead_trim;
mod enqueue;
mod extend_script;
mod failover;
mod fencing;
mod flow;
mod inflight_budget;
mod invariant;
mod leases;
mod modes;
mod openapi;
mod pool_checks;
mod reply_flag;
mod reshard;
mod restart;
mod result_sweep;
mod retries;
mod scheduling;
mod script_cache;
mod stale_topology;
mod trace;
mod waiting;
