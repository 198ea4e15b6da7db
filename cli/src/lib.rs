//! # conveyor-cli — the `conveyor` operator command
//!
//! A thin layer over the queue library's admin surface (`queue::admin` and the admin methods of
//! `queue::Queue`): it parses the command line ([`args`]), opens the queue named on it with the
//! partition count its workers stored, calls the library and prints a table or JSON
//! ([`render`]). Every decision about jobs is the library's; this crate never touches a Redis
//! key itself.
//!
//! Reading order: [`args`] → [`ctx`] → `main` here (exit statuses) → [`inspect`] (queues,
//! stats, workers, pending, delayed) → [`dead`] (dead letters) → [`control`] (pause, resume,
//! enqueue, promote, purge) → [`render`].

pub mod args;
pub mod control;
pub mod ctx;
pub mod dead;
pub mod inspect;
pub mod render;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use queue::QueueError;

use args::{Cli, Command};
pub use ctx::{Ctx, Refused};

/// Parses the command line, runs it on a single-threaded runtime, prints any error on standard
/// error and returns the exit status: 0 done, 1 failed (Redis unreachable, …), 2 refused or a
/// usage error (clap's own).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conveyor: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conveyor: {e:#}");
            ExitCode::from(status(&e))
        }
    }
}

/// 2 for a refused request, 1 for anything else.
fn status(e: &anyhow::Error) -> u8 {
    let refused = e.chain().any(|cause| {
        cause.is::<Refused>()
            || matches!(
                cause.downcast_ref::<QueueError>(),
                Some(QueueError::Refused(_))
            )
    });
    if refused {
        2
    } else {
        1
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let pool = cli.redis.pool().context("Redis settings")?;
    let ctx = Ctx {
        pool,
        namespace: cli.redis.queue_namespace.clone(),
    };
    let url = cli.redis.redacted_url();
    let done = match cli.command {
        Command::Queues(out) => inspect::queues(&ctx, &out).await,
        Command::Stats(args) => inspect::stats(&ctx, &args).await,
        Command::Workers(args) => inspect::workers(&ctx, &args).await,
        Command::Pending(args) => inspect::pending(&ctx, &args).await,
        Command::Delayed(args) => inspect::delayed(&ctx, &args).await,
        Command::Dead(cmd) => dead::run(&ctx, cmd).await,
        Command::Pause(q) => control::pause(&ctx, &q.queue, true).await,
        Command::Resume(q) => control::pause(&ctx, &q.queue, false).await,
        Command::Enqueue(args) => control::enqueue(&ctx, &args).await,
        Command::Promote(args) => control::promote(&ctx, &args).await,
        Command::Purge(args) => control::purge(&ctx, &args).await,
    };
    done.map_err(|e| match e.downcast_ref::<QueueError>() {
        Some(q) if q.is_unavailable() => e.context(format!("Redis at {url} is not reachable")),
        _ => e,
    })
}
