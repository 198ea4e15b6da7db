//! `conveyor-stack`: start, check and stop a Conveyor stack of detached processes whose pids and
//! logs live in a directory; print the environment a service gets. `./setup.sh` (native mode and
//! the notebook step of `./setup.sh test`) and the benches call it; see `conveyor-stack --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use conveyor_stack::detached::{self, UpOptions};
use conveyor_stack::{Service, StackConfig, Transport, Tunables};

/// Start, check and stop the Conveyor services (consumer, workers, webhook, dashboard, producer)
/// as detached processes, each with only its own environment; pids and logs in --dir.
#[derive(Parser)]
#[command(name = "conveyor-stack", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start what is not running yet and wait until every process answers its /healthz with its
    /// own pid (the consumer and the workers also /readyz). A port held by another process is an
    /// error naming it; nothing is started then.
    Up(UpArgs),
    /// Stop the processes an earlier `up` started in --dir (only those still running our binaries).
    Stop(DirArgs),
    /// One line per process of --dir: name, pid, state (running / unhealthy / dead), port, log.
    Status(DirArgs),
    /// The URLs of the stack in --dir as shell assignments (CONSUMER_URL=…, WEBHOOK_BASE_URL=…,
    /// DASHBOARD_URL=…, WORKER_PORTS="…").
    Urls(DirArgs),
    /// The exact environment (NAME=value lines) one process of SERVICE gets; --names: names only.
    Env(EnvArgs),
}

#[derive(Args)]
struct DirArgs {
    /// The stack's state directory (pids/, logs/, output/, stack.json)
    #[arg(long, default_value = ".run")]
    dir: PathBuf,
    /// Where the service binaries are (when stack.json does not say)
    #[arg(long, env = "CONVEYOR_BIN_DIR", default_value = "target/release")]
    bin_dir: PathBuf,
}

#[derive(Args)]
struct ConfigArgs {
    /// The services' REDIS_URL (REDIS_USERNAME, REDIS_PASSWORD(_FILE) and REDIS_CA_FILE are
    /// passed on from this environment when set)
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    redis_url: String,
    /// File holding the Redis password, passed on as REDIS_PASSWORD_FILE (native mode: the
    /// generated <dir>/secrets/redis_password); overrides REDIS_PASSWORD_FILE of this environment
    #[arg(long)]
    redis_password_file: Option<PathBuf>,
    /// The services' ELASTICSEARCH_URL (ELASTICSEARCH_CA_FILE, ELASTICSEARCH_API_KEY(_FILE),
    /// ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD(_FILE) are passed on when set)
    #[arg(
        long,
        env = "ELASTICSEARCH_URL",
        default_value = "http://127.0.0.1:9200",
        hide_env_values = true
    )]
    elasticsearch_url: String,
    #[arg(long, env = "QUEUE_NAMESPACE", default_value = "conveyor")]
    namespace: String,
    #[arg(long, env = "ES_INDEX_PREFIX", default_value = "")]
    index_prefix: String,
    /// pretty or json
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    log_format: String,
    /// Secret shared by the workers and the webhook service (prefer the env var or a file)
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Read the webhook secret from this file (./setup.sh keeps one in .run/webhook_secret)
    #[arg(long)]
    webhook_secret_file: Option<PathBuf>,
    #[arg(long, env = "CONSUMER_PORT", default_value_t = 8000)]
    consumer_port: u16,
    #[arg(long, env = "WEBHOOK_PORT", default_value_t = 8001)]
    webhook_port: u16,
    #[arg(long, env = "DASHBOARD_PORT", default_value_t = 5000)]
    dashboard_port: u16,
    /// Worker N listens (/healthz, /metrics) on this port + N
    #[arg(long, env = "WORKER_BASE_PORT", default_value_t = 9100)]
    worker_base_port: u16,
    /// The webhook service's OUTPUT_DIR (default: <dir>/output)
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// The consumer's API key table (API_KEYS_FILE; without it writes are open, loopback only)
    #[arg(long)]
    api_keys_file: Option<PathBuf>,
    /// The producer's API key (API_KEY_FILE)
    #[arg(long)]
    api_key_file: Option<PathBuf>,
}

impl ConfigArgs {
    /// The stack configuration; the tunables (RUST_LOG, BACKLOG_LIMIT, WORKER_*, LEASE_MS, …)
    /// come from this process's environment, with compose's defaults.
    fn config(&self, dir: &std::path::Path) -> Result<StackConfig> {
        let secret = match (&self.webhook_secret_file, &self.webhook_secret) {
            (Some(file), _) => std::fs::read_to_string(file)
                .with_context(|| format!("reading the webhook secret {}", file.display()))?
                .trim()
                .to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        let output_dir = self
            .output_dir
            .clone()
            .unwrap_or_else(|| dir.join("output"));
        let mut transport = Transport::from_env();
        if let Some(file) = &self.redis_password_file {
            let file = std::path::absolute(file)?;
            transport.set("REDIS_PASSWORD_FILE", file.display().to_string());
        }
        Ok(StackConfig {
            redis_url: self.redis_url.clone(),
            elasticsearch_url: self.elasticsearch_url.clone(),
            namespace: self.namespace.clone(),
            index_prefix: self.index_prefix.clone(),
            log_format: self.log_format.clone(),
            webhook_secret: secret,
            consumer_port: self.consumer_port,
            webhook_port: self.webhook_port,
            dashboard_port: self.dashboard_port,
            output_dir: std::path::absolute(output_dir)?,
            api_keys_file: self
                .api_keys_file
                .as_deref()
                .map(std::path::absolute)
                .transpose()?,
            api_key_file: self
                .api_key_file
                .as_deref()
                .map(std::path::absolute)
                .transpose()?,
            tunables: Tunables::from_env(),
            transport,
        })
    }
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    config: ConfigArgs,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Pick free ports instead of the fixed ones (a private stack)
    #[arg(long)]
    free_ports: bool,
    /// Services not to start, comma-separated (e.g. producer or dashboard,producer)
    #[arg(long, value_delimiter = ',')]
    without: Vec<Service>,
    /// Seconds each service may take to answer its health check
    #[arg(long, default_value_t = 90)]
    timeout_secs: u64,
}

#[derive(Args)]
struct EnvArgs {
    /// consumer, worker, webhook, dashboard or producer
    service: Service,
    /// Print the variable names only, one per line, sorted
    #[arg(long)]
    names: bool,
    /// The worker's /healthz + /metrics port (default: worker 1's)
    #[arg(long)]
    worker_port: Option<u16>,
    #[arg(long, default_value = ".run")]
    dir: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conveyor-stack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Up(a) => {
            let config = a.config.config(&a.dir.dir)?;
            let workers = a.workers > 0 && !a.without.contains(&Service::Worker);
            let needs_secret = workers || !a.without.contains(&Service::Webhook);
            if needs_secret && config.webhook_secret.is_empty() {
                bail!("no webhook secret: set WEBHOOK_SECRET or pass --webhook-secret-file");
            }
            let opts = UpOptions {
                dir: a.dir.dir,
                bin_dir: std::path::absolute(a.dir.bin_dir)?,
                worker_base_port: a.config.worker_base_port,
                config,
                workers: a.workers,
                free_ports: a.free_ports,
                without: a.without,
                timeout: Duration::from_secs(a.timeout_secs),
            };
            detached::up(opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stop(a) => {
            let bin_dir = std::path::absolute(a.bin_dir)?;
            detached::stop(&a.dir, &bin_dir);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status(a) => {
            let bin_dir = std::path::absolute(a.bin_dir)?;
            for l in detached::status(&a.dir, &bin_dir) {
                let pid = l.pid.map_or("-".into(), |p| p.to_string());
                let port = l.port.map_or("-".into(), |p| p.to_string());
                println!(
                    "{:<14} {:<8} {:<9} {:<6} {}",
                    l.name,
                    pid,
                    l.state,
                    port,
                    l.log.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Urls(a) => {
            let Some(state) = detached::read_state(&a.dir) else {
                bail!("no stack in {} (conveyor-stack up)", a.dir.display());
            };
            let port = |name: &str| state.procs.get(name).and_then(|r| r.port);
            for (var, name) in [
                ("CONSUMER_URL", "consumer"),
                ("WEBHOOK_BASE_URL", "webhook"),
                ("DASHBOARD_URL", "dashboard"),
            ] {
                if let Some(p) = port(name) {
                    println!("{var}=http://127.0.0.1:{p}");
                }
            }
            let workers: Vec<String> = state
                .procs
                .iter()
                .filter(|(_, r)| r.service == Service::Worker)
                .filter_map(|(_, r)| r.port.map(|p| p.to_string()))
                .collect();
            println!("WORKER_PORTS=\"{}\"", workers.join(" "));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Env(a) => {
            if a.names {
                for name in StackConfig::env_names(a.service) {
                    println!("{name}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let config = a.config.config(&a.dir)?;
            let port = a
                .worker_port
                .unwrap_or(a.config.worker_base_port.saturating_add(1));
            for (k, v) in config.env(a.service, port) {
                println!("{k}={v}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
