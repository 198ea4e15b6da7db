//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    pipeline::telemetry::init(&config.log);
    pipeline::runtime::build(&config.runtime)?.block_on(async move {
        let shutdown = pipeline::shutdown::on_signals();
        worker::run(config, shutdown).await
    })
}
