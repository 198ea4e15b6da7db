//! The consumer binary: parse the config, set up telemetry, bind, and run until SIGINT/SIGTERM.

use clap::Parser;
use consumer::Config;

/// mimalloc instead of glibc malloc: allocation was ~15 % of the request path's CPU in `perf`
/// (bench/README.md, "Single POSTs"). Built with `no_thp`: with transparent huge pages its
/// segments pushed the peak RSS under `/messages/batch` load to 50 MB, without them ~31-35 MB.
/// Its v2 line (the workspace's `mimalloc` features): v3 kept what three 6 MB batches had freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.common.process.clone().run(|shutdown| async move {
        let listener = service_kit::http::bind("CONSUMER_ADDR", config.addr).await?;
        consumer::run(config, listener, shutdown).await
    })
}
