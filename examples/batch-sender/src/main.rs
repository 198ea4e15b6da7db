//! `batch-sender front | executor | bench`: parse the flags, set up logging, run one role until
//! it is done or SIGINT/SIGTERM.

use clap::Parser;
use example_batch_sender::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.process
        .clone()
        .run(|shutdown| example_batch_sender::run(cli, shutdown))
}
