//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    service_kit::telemetry::init(&config.log);
    service_kit::runtime::build(&config.runtime)?.block_on(async move {
        let shutdown = service_kit::shutdown::on_signals();
        worker::run(config, shutdown).await
    })
}
