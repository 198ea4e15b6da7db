//! The consumer binary: parse the config, set up telemetry, bind, and run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use consumer::Config;

/// mimalloc instead of glibc malloc: allocation was ~15 % of the request path's CPU in `perf`
/// (bench/README.md, "Single POSTs"). Built with `no_thp`: with transparent huge pages its
/// segments pushed the peak RSS under `/messages/batch` load to 50 MB, without them ~31-35 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    service_kit::telemetry::init(&config.log);
    service_kit::runtime::build(&config.runtime)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        consumer::run(config, listener, service_kit::shutdown::on_signals()).await
    })
}
