//! The `dashboard` binary: parse config, set up telemetry, bind DASHBOARD_ADDR, run the library.

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = dashboard::Config::parse();
    service_kit::telemetry::init(&config.log);
    service_kit::runtime::build(&config.runtime)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.dashboard_addr)
            .await
            .with_context(|| format!("binding DASHBOARD_ADDR {}", config.dashboard_addr))?;
        let shutdown = service_kit::shutdown::on_signals();
        dashboard::run(config, listener, shutdown).await
    })
}
