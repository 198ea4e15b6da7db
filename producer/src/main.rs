//! `producer` binary: parses flags, sets up logging, runs until done or Ctrl-C.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = producer::Config::parse();
    pipeline::telemetry::init(&config.log);
    let shutdown = pipeline::shutdown::on_signals();
    producer::run(config, shutdown).await
}
