//! `producer` binary: parses flags, sets up logging, runs until done or Ctrl-C.

use clap::Parser;

/// mimalloc instead of glibc malloc: less CPU per request in `--bench` (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = producer::Config::parse();
    pipeline::telemetry::init(&config.log);
    pipeline::runtime::build(&config.runtime)?.block_on(async move {
        let shutdown = pipeline::shutdown::on_signals();
        producer::run(config, shutdown).await
    })
}
