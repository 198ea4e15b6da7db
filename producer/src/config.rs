//! The producer's settings: flags with environment fallbacks (`producer --help`). This module only
//! describes settings and derives limits from them; it sends nothing.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use reqwest::header::HeaderValue;
use service_kit::config::ProcessArgs;

/// An API key as given, redacted in `Debug` (and never parsed by clap, which would print it).
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

fn keep(value: &str) -> Result<ApiKey, std::convert::Infallible> {
    Ok(ApiKey(value.to_string()))
}

/// Load generator for the Conveyor consumer API.
#[derive(Parser, Clone, Debug)]
#[command(name = "producer", version, about)]
pub struct Config {
    /// Base URL of the consumer API
    #[arg(long, env = "CONSUMER_URL", default_value = "http://127.0.0.1:8000")]
    pub consumer_url: String,
    /// Messages per second (paced mode)
    #[arg(long, env = "PRODUCER_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// The sends of each second are spread over its first WINDOW_MS milliseconds (default 50:
    /// half the design's 100 ms, so a send a loaded machine schedules late is still inside)
    #[arg(long, env = "PRODUCER_WINDOW_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub window_ms: u64,
    /// Stop after this many seconds (paced mode; default: run until Ctrl-C)
    #[arg(long, env = "PRODUCER_DURATION_SECS")]
    pub duration_secs: Option<u64>,
    /// Stop after this many messages (--bench default: 100000)
    #[arg(long, env = "PRODUCER_COUNT")]
    pub count: Option<u64>,
    /// First message number
    #[arg(long, env = "PRODUCER_START", default_value_t = 0)]
    pub start: u64,
    /// Producer name stamped on every packet ([A-Za-z0-9_.-]{1,64})
    #[arg(long, env = "PRODUCER_NAME", default_value = "default")]
    pub producer: String,
    /// Group packets into resources of 1-5 packets sent out of order (on|off)
    #[arg(long, env = "PRODUCER_RESOURCES", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub resources: bool,
    /// Largest number of random words in a packet's text
    #[arg(long, env = "PRODUCER_MAX_WORDS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_words: u32,
    /// Retries of one request answered 429/503 (after Retry-After) or not answered at all
    #[arg(long, env = "PRODUCER_MAX_RETRIES", default_value_t = 20)]
    pub max_retries: u32,
    /// Timeout of one HTTP request in milliseconds
    #[arg(long, env = "PRODUCER_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Send as fast as the API takes and print throughput and latency percentiles
    #[arg(long)]
    pub bench: bool,
    /// Requests in flight at once (--bench)
    #[arg(long, env = "PRODUCER_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Packets per request through POST /messages/batch (--bench; 0 = single POST /messages)
    #[arg(long, env = "PRODUCER_BATCH", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub batch: u32,
    /// API key sent as `Authorization: Bearer <key>` (needed when the API has API_KEYS; its
    /// grants must name PRODUCER_NAME)
    #[arg(long, env = "API_KEY", hide_env_values = true, value_parser = keep)]
    pub api_key: Option<ApiKey>,
    /// A file holding API_KEY (./setup.sh writes one: .run/secrets/api_key)
    #[arg(long, env = "API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub process: ProcessArgs,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

impl Config {
    /// The `Authorization` header value, if a key is configured (marked sensitive: never logged).
    pub fn authorization(&self) -> anyhow::Result<Option<HeaderValue>> {
        let key = match (&self.api_key, &self.api_key_file) {
            (Some(k), Some(_)) if !k.0.trim().is_empty() => {
                bail!("both API_KEY and API_KEY_FILE are set: keep one")
            }
            (_, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading API_KEY_FILE {}", path.display()))?,
            (Some(k), None) => k.0.clone(),
            (None, None) => return Ok(None),
        };
        let key = key.trim();
        if key.is_empty() {
            return Ok(None);
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("API_KEY holds characters a header cannot carry"))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// How many messages this run sends: `None` means until shut down.
    pub fn limit(&self) -> Option<u64> {
        let by_duration = if self.bench {
            None
        } else {
            self.duration_secs
                .map(|s| s.saturating_mul(u64::from(self.rate)))
        };
        match (self.count, by_duration) {
            (Some(c), Some(d)) => Some(c.min(d)),
            (Some(c), None) => Some(c),
            (None, Some(d)) => Some(d),
            (None, None) if self.bench => Some(100_000),
            (None, None) => None,
        }
    }

    pub fn messages_url(&self) -> String {
        format!("{}/messages", self.consumer_url.trim_end_matches('/'))
    }

    pub fn batch_url(&self) -> String {
        format!("{}/messages/batch", self.consumer_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::try_parse_from(["producer"]).unwrap();
        assert_eq!(c.rate, 10);
        assert_eq!(
            c.window_ms, 50,
            "within the design's 100 ms, with room for lateness"
        );
        assert!(c.resources);
        assert_eq!(c.limit(), None);
        assert_eq!(c.messages_url(), "http://127.0.0.1:8000/messages");
    }

    #[test]
    fn duration_and_count_bound_the_run() {
        let c = Config::try_parse_from(["producer", "--duration-secs", "10"]).unwrap();
        assert_eq!(c.limit(), Some(100));
        let c =
            Config::try_parse_from(["producer", "--duration-secs", "10", "--count", "7"]).unwrap();
        assert_eq!(c.limit(), Some(7));
        let c = Config::try_parse_from(["producer", "--bench", "--resources", "off"]).unwrap();
        assert_eq!(c.limit(), Some(100_000));
        assert!(!c.resources);
        assert!(Config::try_parse_from(["producer", "--resources", "maybe"]).is_err());
        assert!(Config::try_parse_from(["producer", "--rate", "0"]).is_err());
    }
}
