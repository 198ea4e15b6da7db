//! `webhook` binary: parse config, set up telemetry, bind, and hand over to [`webhook::run`].

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = webhook::Config::parse();
    service_kit::telemetry::init(&config.log);
    service_kit::runtime::build(&config.runtime)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let shutdown = service_kit::shutdown::on_signals();
        webhook::run(config, listener, shutdown).await
    })
}
