//! The webhook service's settings: flags with environment fallbacks. Describes; opens nothing.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use pipeline::config::{ElasticArgs, LogArgs};

/// `webhook --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "webhook",
    about = "Receives signed collated resources, stores them in Elasticsearch and OUTPUT_DIR"
)]
pub struct Config {
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Address to listen on
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "0.0.0.0:8001")]
    pub addr: SocketAddr,
    /// Shared HMAC secret; when unset a development default is used and a warning logged
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Directory receiving one `<resource_id>.json` per delivered resource
    #[arg(long, env = "OUTPUT_DIR", default_value = "./output")]
    pub output_dir: PathBuf,
    /// Largest accepted age (or future skew) of a signature timestamp, in seconds
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECS", default_value_t = pipeline::signing::DEFAULT_TOLERANCE_SECS)]
    pub tolerance_secs: i64,
}

impl Config {
    /// The secret bytes, falling back (with a warning) to the documented development secret.
    pub fn secret_bytes(&self) -> Vec<u8> {
        match &self.secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => {
                tracing::warn!("WEBHOOK_SECRET is not set: using the development secret");
                pipeline::signing::DEV_SECRET.as_bytes().to_vec()
            }
        }
    }
}
