//! `webhook` binary: parse config, set up telemetry, bind, and hand over to [`webhook::run`].

use clap::Parser;

/// mimalloc instead of glibc malloc, as in the consumer: under `bench/stack.sh` glibc's
/// malloc/free took about a quarter of a worker's CPU (perf), and its arenas kept RSS after a burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = webhook::Config::parse();
    config.process.clone().run(|shutdown| async move {
        let listener = service_kit::http::bind("WEBHOOK_ADDR", config.addr).await?;
        webhook::run(config, listener, shutdown).await
    })
}
