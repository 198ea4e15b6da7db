//! What an operator sees of a queue and may do to it. In `view`: the queues of a namespace
//! ([`list_queues`], [`open`]), per-partition counts with the next due time and the oldest job's
//! age ([`Queue::partition_states`](crate::Queue::partition_states)), pending jobs with their
//! owner and idle time, delayed jobs; in `dead`: dead letters with retry and delete; in
//! `control`: pause / resume, promote, purge and live workers. Every change is one Lua script on
//! one partition (one hash slot). Reads are plain Redis reads; nothing here consumes jobs or runs
//! handlers.

mod control;
mod dead;
mod view;

pub use control::{PurgeRequest, PurgeTarget, WorkerInfo, PURGE_TOKEN_TTL};
pub use dead::DeadEntry;
pub use view::{exists, list_queues, open, DelayedJob, PartitionState, PendingJob, QueueRef};
