//! [`ProcessArgs`]: the settings every binary has (logging, runtime) and [`ProcessArgs::run`],
//! the whole body of a service's `main`.

use clap::Args;

use crate::runtime::RuntimeArgs;
use crate::telemetry::LogArgs;

/// What every binary has: logging and the runtime. [`ProcessArgs::run`] is each `main`.
#[derive(Args, Clone, Debug)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl ProcessArgs {
    /// Installs telemetry, builds the runtime and runs `service` on it with a token that is
    /// cancelled on SIGINT/SIGTERM: the whole body of a service's `main`.
    pub fn run<F, Fut>(&self, service: F) -> anyhow::Result<()>
    where
        F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        crate::telemetry::init(&self.log);
        let program = std::env::args()
            .next()
            .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        tracing::info!(%program, pid = std::process::id(), "starting");
        let result = match crate::runtime::build(&self.runtime) {
            Ok(rt) => rt.block_on(async move { service(crate::shutdown::on_signals()).await }),
            Err(e) => Err(e.into()),
        };
        // After the runtime: the exporter (if any) flushes its last spans, blocking.
        crate::telemetry::shutdown();
        result
    }
}
