//! The `dashboard` binary: parse config, set up telemetry, bind DASHBOARD_ADDR, run the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = dashboard::Config::parse();
    config.common.process.clone().run(|shutdown| async move {
        let listener =
            service_kit::http::bind("DASHBOARD_ADDR", config.dashboard_addr.clone()).await?;
        dashboard::run(config, listener, shutdown).await
    })
}
