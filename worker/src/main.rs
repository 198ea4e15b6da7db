//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

/// mimalloc instead of glibc malloc, as in the consumer: under `bench/stack.sh` glibc's
/// malloc/free took about a quarter of a worker's CPU (perf), and its arenas kept RSS after a burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    config
        .common
        .process
        .clone()
        .run(|shutdown| worker::run(config, shutdown))
}
