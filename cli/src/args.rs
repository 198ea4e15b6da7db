//! `conveyor --help`: the command line, as clap derive types. Redis settings are the services'
//! own group (`RedisArgs`: the same flags and environment variables, `REDIS_URL`,
//! `QUEUE_NAMESPACE`, …). Describes the command line only; opens nothing.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use queue::admin::PurgeTarget;
use service_kit::config::RedisArgs;

/// `conveyor`: see and fix Conveyor's queues.
#[derive(Parser, Debug)]
#[command(
    name = "conveyor",
    version,
    about = "Operate Conveyor's queues: counts, dead letters, pause/resume, enqueue, workers",
    after_help = "Exit status: 0 done, 1 Redis unreachable or failed, 2 refused (no such queue, \
                  dead letter or job; a wrong purge token) or a usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Every queue of the namespace with its counts
    Queues(Output),
    /// Counts of one queue per partition, or of every queue; --watch repeats them
    Stats(StatsArgs),
    /// Dead letters: list, show, retry, delete
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Pause a queue: workers stop reading new jobs within one read; in-flight jobs finish
    Pause(QueueArg),
    /// Resume a paused queue
    Resume(QueueArg),
    /// Enqueue one job with a JSON payload; prints its job id
    Enqueue(EnqueueArgs),
    /// Workers of a queue: live or not, jobs held, idle time
    Workers(QueueOutput),
    /// Jobs held by workers right now (owner, idle time, deliveries)
    Pending(ListArgs),
    /// Delayed jobs (scheduled, retries), soonest first
    Delayed(ListArgs),
    /// Run a delayed job now
    Promote(JobArg),
    /// Remove waiting, delayed or dead jobs (never held ones); asks for a token first
    Purge(PurgeArgs),
}

#[derive(Args, Debug)]
pub struct Output {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct QueueArg {
    /// Queue name, e.g. `messages`, `webhooks`
    pub queue: String,
}

#[derive(Args, Debug)]
pub struct QueueOutput {
    pub queue: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One queue (per-partition rows); every queue when left out
    pub queue: Option<String>,
    /// Print again every --interval until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Time between two prints with --watch, e.g. `1s`, `500ms`
    #[arg(long, default_value = "1s", value_parser = interval)]
    pub interval: Duration,
    /// With --watch: stop after this many prints
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    pub queue: String,
    /// Most rows (per partition for pending and delayed)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum DeadCommand {
    /// The newest dead letters, newest first
    List(ListArgs),
    /// One dead letter whole: payload, error, history
    Show(DeadArg),
    /// Run dead letters again (as a new first attempt)
    #[command(override_usage = "conveyor dead retry <QUEUE> (<ID> | --all) [--json]")]
    Retry(DeadTarget),
    /// Delete dead letters for good
    #[command(override_usage = "conveyor dead delete <QUEUE> (<ID> | --all) [--json]")]
    Delete(DeadTarget),
}

#[derive(Args, Debug)]
pub struct DeadArg {
    pub queue: String,
    /// A job id, or a dead letter's handle `<partition>/<entry id>` (from `dead list`)
    pub id: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct DeadTarget {
    pub queue: String,
    /// A job id, or a dead letter's handle `<partition>/<entry id>`
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every dead letter of the queue
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    pub queue: String,
    /// The job's payload, a JSON document (`-` reads it from standard input)
    #[arg(long = "json", value_name = "PAYLOAD")]
    pub payload: String,
    /// Run no earlier than this from now, e.g. `30s`
    #[arg(long, value_parser = interval)]
    pub delay: Option<Duration>,
    /// Partition key (e.g. a resource id); round-robin when left out
    #[arg(long)]
    pub key: Option<String>,
    /// A job id of your own: enqueued at most once within the dedup window however often sent
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct JobArg {
    pub queue: String,
    /// The delayed job's id (from `delayed`)
    pub job_id: String,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    pub queue: String,
    /// What to remove: waiting, delayed or dead
    pub target: PurgeTarget,
    /// The token a first run without it printed (valid 60 s, used once)
    #[arg(long)]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

fn interval(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d < Duration::from_millis(1) => Err("must be at least 1ms".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dead_retry_wants_an_id_or_all_not_both() {
        assert!(Cli::try_parse_from(["conveyor", "dead", "retry", "q"]).is_err());
        assert!(Cli::try_parse_from(["conveyor", "dead", "retry", "q", "x", "--all"]).is_err());
        assert!(Cli::try_parse_from(["conveyor", "dead", "retry", "q", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["conveyor", "purge", "q", "everything"]).is_err());
        assert!(Cli::try_parse_from(["conveyor", "stats", "--interval", "0s"]).is_err());
    }
}
