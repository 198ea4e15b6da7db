//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    pipeline::telemetry::init(&config.log);
    let shutdown = pipeline::shutdown::on_signals();
    worker::run(config, shutdown).await
}
