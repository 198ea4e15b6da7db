//! The webhook service's settings: flags with environment fallbacks. Describes; opens nothing.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use service_kit::config::{ElasticArgs, HttpArgs, ProcessArgs};

/// `webhook --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "webhook",
    version,
    about = "Receives signed collated resources, stores them in Elasticsearch and OUTPUT_DIR"
)]
pub struct Config {
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Address to listen on
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "0.0.0.0:8001")]
    pub addr: SocketAddr,
    /// Shared HMAC secret (required, no default): the same value the worker signs with
    // The empty default is never accepted: `parse_secret` refuses it with instructions, so a missing
    // secret stops start-up with an error that says how to set it (clap's own "required" error
    // would not name the environment variable).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, default_value = "",
          hide_default_value = true, value_parser = pipeline::signing::parse_secret)]
    pub secret: String,
    /// Directory receiving one `<resource_id>.json` per delivered resource
    #[arg(long, env = "OUTPUT_DIR", default_value = "./.run/output")]
    pub output_dir: PathBuf,
    /// Largest accepted age (or future skew) of a signature timestamp, in seconds
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECS", default_value_t = pipeline::signing::DEFAULT_TOLERANCE_SECS,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub tolerance_secs: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_secret_stops_start_up_with_instructions() {
        // Runs without WEBHOOK_SECRET in the environment (the test harness does not set it).
        if std::env::var_os("WEBHOOK_SECRET").is_some() {
            return;
        }
        for args in [vec!["webhook"], vec!["webhook", "--secret", ""]] {
            let err = Config::try_parse_from(&args).unwrap_err().to_string();
            assert!(
                err.contains("WEBHOOK_SECRET is required"),
                "{args:?}: {err}"
            );
            assert!(err.contains("export WEBHOOK_SECRET="), "{err}");
        }
        let c = Config::try_parse_from(["webhook", "--secret", "s"]).unwrap();
        assert_eq!(c.secret, "s");
        assert_eq!(c.output_dir, PathBuf::from("./.run/output"));
        assert!(
            Config::try_parse_from(["webhook", "--secret", "s", "--tolerance-secs", "0"]).is_err()
        );
    }
}
