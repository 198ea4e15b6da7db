//! The `conveyor` binary: parse the command line, run it, exit with its status.

fn main() -> std::process::ExitCode {
    conveyor_cli::main()
}
