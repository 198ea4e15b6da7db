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
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "127.0.0.1:8001")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub secrets: pipeline::signing::SecretArgs,
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
    fn a_missing_or_weak_secret_stops_start_up_with_instructions() {
        // Runs without WEBHOOK_SECRET in the environment (the test harness does not set it).
        if std::env::vars().any(|(k, _)| k.starts_with("WEBHOOK_SECRET")) {
            return;
        }
        for args in [vec!["webhook"], vec!["webhook", "--webhook-secret", ""]] {
            let err = Config::try_parse_from(&args)
                .unwrap()
                .secrets
                .load()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("WEBHOOK_SECRET is required"),
                "{args:?}: {err}"
            );
            assert!(err.contains("export WEBHOOK_SECRET="), "{err}");
        }
        let weak = Config::try_parse_from(["webhook", "--webhook-secret", "s"]).unwrap();
        assert!(weak
            .secrets
            .load()
            .unwrap_err()
            .to_string()
            .contains("too short"));
        let c = Config::try_parse_from(["webhook", "--webhook-secret", &"s".repeat(32)]).unwrap();
        assert_eq!(c.secrets.load().unwrap().iter().count(), 1);
        assert_eq!(c.output_dir, PathBuf::from("./.run/output"));
        assert!(Config::try_parse_from(["webhook", "--tolerance-secs", "0"]).is_err());
    }
}
