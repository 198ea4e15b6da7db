//! `producer` binary: parses flags, sets up logging, runs until done or Ctrl-C.

use clap::Parser;

/// mimalloc instead of glibc malloc: less CPU per request in `--bench` (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = producer::Config::parse();
    service_kit::telemetry::init(&config.log);
    service_kit::runtime::build(&config.runtime)?.block_on(async move {
        let shutdown = service_kit::shutdown::on_signals();
        producer::run(config, shutdown).await
    })
}
