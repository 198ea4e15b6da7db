//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

/// The worker allocates and frees many small JSON values per batch; mimalloc keeps that cheap
/// (glibc malloc was a quarter of the worker's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    pipeline::telemetry::init(&config.log);
    let shutdown = pipeline::shutdown::on_signals();
    worker::run(config, shutdown).await
}
