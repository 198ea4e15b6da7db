//! `webhook` binary: parse config, set up telemetry, bind, and hand over to [`webhook::run`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = webhook::Config::parse();
    config.process.clone().run(|shutdown| async move {
        let listener = service_kit::http::bind("WEBHOOK_ADDR", config.addr).await?;
        webhook::run(config, listener, shutdown).await
    })
}
