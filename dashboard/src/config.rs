//! The dashboard's settings: shared Redis / Elasticsearch / log groups plus its own address and
//! poll cadence, as clap flags with environment fallbacks. Describes settings only; opens nothing.

use std::time::Duration;

use clap::Parser;
use service_kit::config::ServiceArgs;

/// `dashboard --help`: the live page on DASHBOARD_ADDR.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "dashboard",
    version,
    about = "Conveyor live dashboard (HTML page, SSE, JSON)"
)]
pub struct Config {
    #[command(flatten)]
    pub common: ServiceArgs,
    /// Address the dashboard listens on
    #[arg(long, env = "DASHBOARD_ADDR", default_value = "127.0.0.1:5000")]
    pub dashboard_addr: String,
    /// How often the single background poller queries Elasticsearch and Redis (milliseconds)
    #[arg(long, env = "DASHBOARD_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub poll_ms: u64,
    /// Most `/events` streams open at once; one more answers 503 with Retry-After
    #[arg(long, env = "MAX_SSE_CLIENTS", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sse_clients: u64,
    /// Time limit of one Elasticsearch or Redis round trip made by the poller (milliseconds)
    #[arg(long, env = "DASHBOARD_QUERY_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub query_timeout_ms: u64,
}

impl Config {
    /// Parses a config from an explicit argument list (tests), with env fallbacks.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let program = std::ffi::OsString::from("dashboard");
        Config::try_parse_from(std::iter::once(program).chain(args.into_iter().map(Into::into)))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }
}
