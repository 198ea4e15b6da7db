//! `webhook` binary: parse config, set up telemetry, bind, and hand over to [`webhook::run`].

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = webhook::Config::parse();
    pipeline::telemetry::init(&config.log);
    pipeline::runtime::build(&config.runtime)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let shutdown = pipeline::shutdown::on_signals();
        webhook::run(config, listener, shutdown).await
    })
}
