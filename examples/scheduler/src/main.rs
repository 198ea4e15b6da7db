//! `scheduler run | data-service | api-service`: parse the flags, set up logging, run one role
//! until SIGINT/SIGTERM.

use clap::Parser;
use example_scheduler::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.process
        .clone()
        .run(|shutdown| example_scheduler::run(cli, shutdown))
}
