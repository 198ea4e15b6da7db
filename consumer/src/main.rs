//! The consumer binary: parse the config, set up telemetry, bind, and run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use consumer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    pipeline::telemetry::init(&config.log);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    consumer::run(config, listener, pipeline::shutdown::on_signals()).await
}
