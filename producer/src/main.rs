//! `producer` binary: parses flags, sets up logging, runs until done or Ctrl-C.

use clap::Parser;

/// mimalloc instead of glibc malloc: less CPU per request in `--bench` (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = producer::Config::parse();
    config
        .process
        .clone()
        .run(|shutdown| producer::run(config, shutdown))
}
