//! The `dashboard` binary: parse config, set up telemetry, bind DASHBOARD_ADDR, run the library.

use clap::Parser;

/// mimalloc instead of glibc malloc, as in the consumer: under `bench/stack.sh` glibc's
/// malloc/free took about a quarter of a worker's CPU (perf), and its arenas kept RSS after a burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = dashboard::Config::parse();
    config.common.process.clone().run(|shutdown| async move {
        let listener =
            service_kit::http::bind("DASHBOARD_ADDR", config.dashboard_addr.clone()).await?;
        dashboard::run(config, listener, shutdown).await
    })
}
