//! The flags of each role, the queue names and the worker settings every role shares. Describes
//! settings only; opens nothing.

use std::time::Duration;

use clap::Args;
use queue::WorkerConfig;

/// Queue of the recurring ticks (one job per occurrence).
pub const TICKS: &str = "sched-ticks";
/// Queue of the data service.
pub const DATA: &str = "sched-data";
/// Queue of the API service (questions and follow-ups).
pub const API: &str = "sched-api";

#[derive(Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// Time between two occurrences, e.g. `5s`
    #[arg(long, env = "SCHEDULER_PERIOD", default_value = "5s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Delay between a decision and its follow-up to the API service (`x`), e.g. `3s`
    #[arg(long, env = "SCHEDULER_FOLLOW_UP", default_value = "3s", value_parser = humantime::parse_duration)]
    pub follow_up: Duration,
    /// How long an occurrence waits for each service's answer; must be shorter than the period
    #[arg(long, env = "SCHEDULER_ANSWER_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub answer_timeout: Duration,
}

#[derive(Args, Clone, Debug)]
pub struct ServiceArgs {
    /// Extra time each answer takes (to try the timeout policy), e.g. `0ms`
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
}

/// Worker settings of every role: one job per batch (each is one question), read without
/// lingering, so an answer leaves as soon as it is ready.
pub fn worker_config(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        batch_size: 1,
        batch_linger: Duration::ZERO,
        concurrency,
        shutdown_deadline: Duration::from_secs(3),
        ..WorkerConfig::default()
    }
}
