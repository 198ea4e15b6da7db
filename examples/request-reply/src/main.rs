//! `request-reply server | client | bench`: parse the flags, set up logging, run one role until
//! it is done or SIGINT/SIGTERM.

use clap::Parser;
use example_request_reply::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.process
        .clone()
        .run(|shutdown| example_request_reply::run(cli, shutdown))
}
