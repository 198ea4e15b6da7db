//! `worker` binary: parses flags, sets up logging and metrics, runs until SIGINT/SIGTERM.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = worker::Config::parse();
    config
        .common
        .process
        .clone()
        .run(|shutdown| worker::run(config, shutdown))
}
