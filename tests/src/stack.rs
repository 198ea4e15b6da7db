//! `Stack`: the real Conveyor binaries (consumer, N workers, optionally webhook and dashboard)
//! started as child processes on free loopback ports, all pointed at one test's Redis namespace
//! and Elasticsearch index prefix. A thin layer over the `conveyor-stack` launcher, which owns
//! each service's environment (the same as `./setup.sh` and compose), starts each child with only
//! that environment plus the test's overrides, and counts a service as started when the child is
//! alive and answers `/healthz` with its own pid. Every child dies with the stack (SIGKILL on
//! drop). It only starts processes and knows their addresses; it asserts nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conveyor_stack::{StackConfig, Transport, Tunables};
use testkit::{bin_path, free_port, ChildGuard, TestEnv};

pub use conveyor_stack::Service;

/// Secret the stack's worker and webhook share for signatures.
pub const WEBHOOK_SECRET: &str = "stack-test-secret-of-at-least-32-bytes";

/// What to start. Build with [`Stack::builder`], finish with [`StackBuilder::start`].
pub struct StackBuilder {
    namespace: String,
    index_prefix: String,
    redis_url: String,
    elasticsearch_url: String,
    workers: usize,
    webhook: bool,
    dashboard: bool,
    worker_elasticsearch_url: Option<String>,
    common_env: Vec<(String, String)>,
    service_env: BTreeMap<Service, Vec<(String, String)>>,
}

impl StackBuilder {
    /// Number of worker processes to start (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    /// Also start the webhook service; workers then deliver to it (default off).
    pub fn webhook(mut self, on: bool) -> Self {
        self.webhook = on;
        self
    }
    /// Also start the dashboard (default off).
    pub fn dashboard(mut self, on: bool) -> Self {
        self.dashboard = on;
        self
    }
    /// The Redis every service uses (default: the test's shared one), e.g. a private
    /// `testkit::RedisServer` a test stops and restarts.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = url.into();
        self
    }
    /// Elasticsearch URL the workers use (e.g. a `testkit::TcpProxy`); others keep the real one.
    pub fn worker_elasticsearch_url(mut self, url: impl Into<String>) -> Self {
        self.worker_elasticsearch_url = Some(url.into());
        self
    }
    /// An environment variable for every service.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.common_env.push((key.to_string(), value.into()));
        self
    }
    /// An environment variable for one service only (wins over [`StackBuilder::env`]); an
    /// empty value unsets it.
    pub fn env_for(mut self, service: Service, key: &str, value: impl Into<String>) -> Self {
        self.service_env
            .entry(service)
            .or_default()
            .push((key.to_string(), value.into()));
        self
    }

    /// Starts everything; each service counts as started when its process is alive and answers
    /// `/healthz` with its own pid.
    pub async fn start(self) -> Result<Stack> {
        let output_dir = std::env::temp_dir().join(testkit::unique_name("stack-out"));
        std::fs::create_dir_all(&output_dir)?;
        let launch = StackConfig {
            redis_url: self.redis_url.clone(),
            elasticsearch_url: self.elasticsearch_url.clone(),
            namespace: self.namespace.clone(),
            index_prefix: self.index_prefix.clone(),
            log_format: "pretty".into(),
            webhook_secret: WEBHOOK_SECRET.into(),
            consumer_port: free_port(),
            webhook_port: free_port(),
            dashboard_port: free_port(),
            output_dir: output_dir.clone(),
            api_keys_file: None,
            api_key_file: None,
            tunables: Tunables::defaults(),
            // TLS, credentials and CA files as the suite's own environment sets them (the
            // secured step of scripts/test.sh), so the services reach the servers the test does.
            transport: Transport::from_env(),
        };
        let mut stack = Stack {
            launch,
            config: self,
            output_dir: OutputDir(output_dir),
            consumer: None,
            workers: Vec::new(),
            webhook: None,
            dashboard: None,
        };
        if stack.config.webhook {
            let port = stack.launch.webhook_port;
            stack.webhook = Some(stack.spawn_service(Service::Webhook, port, &[]).await?);
        }
        let port = stack.launch.consumer_port;
        stack.consumer = Some(stack.spawn_service(Service::Consumer, port, &[]).await?);
        for _ in 0..stack.config.workers {
            stack.start_worker().await?;
        }
        if stack.config.dashboard {
            let port = stack.launch.dashboard_port;
            stack.dashboard = Some(stack.spawn_service(Service::Dashboard, port, &[]).await?);
        }
        Ok(stack)
    }
}

/// A running worker and the port of its `/healthz` + `/metrics` listener.
pub struct WorkerProcess {
    pub guard: ChildGuard,
    pub metrics_port: u16,
}

/// The running services of one test. Dropping it SIGKILLs every child.
pub struct Stack {
    config: StackBuilder,
    /// What the launcher derives each service's environment from.
    launch: StackConfig,
    output_dir: OutputDir,
    consumer: Option<ChildGuard>,
    workers: Vec<Option<WorkerProcess>>,
    webhook: Option<ChildGuard>,
    dashboard: Option<ChildGuard>,
}

struct OutputDir(PathBuf);
impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Stack {
    /// A builder for `env`'s namespace and index prefix: 1 worker, no webhook, no dashboard.
    pub fn builder(env: &TestEnv) -> StackBuilder {
        StackBuilder {
            namespace: env.namespace.clone(),
            index_prefix: env.index_prefix.clone(),
            redis_url: env.redis_url.clone(),
            elasticsearch_url: env.elasticsearch_url.clone(),
            workers: 1,
            webhook: false,
            dashboard: false,
            worker_elasticsearch_url: None,
            common_env: Vec::new(),
            service_env: BTreeMap::new(),
        }
    }

    /// `http://127.0.0.1:<port>` of the consumer API.
    pub fn consumer_url(&self) -> String {
        self.launch.consumer_url()
    }
    /// `http://127.0.0.1:<port>` of the webhook service (meaningful when it was started).
    pub fn webhook_url(&self) -> String {
        self.launch.webhook_url()
    }
    /// `http://127.0.0.1:<port>` of the dashboard (meaningful when it was started).
    pub fn dashboard_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.launch.dashboard_port)
    }
    /// The webhook service's `OUTPUT_DIR` (removed when the stack drops).
    pub fn output_dir(&self) -> &Path {
        &self.output_dir.0
    }
    /// The Redis namespace and Elasticsearch index prefix every service uses.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }
    pub fn index_prefix(&self) -> &str {
        &self.config.index_prefix
    }

    /// Starts one more worker, waits for its `/healthz`, returns its index.
    pub async fn start_worker(&mut self) -> Result<usize> {
        self.start_worker_with(&[]).await
    }

    /// Starts one more worker with extra environment (wins over everything else), e.g. its own
    /// `ELASTICSEARCH_URL`; waits for its `/healthz`, returns its index.
    pub async fn start_worker_with(&mut self, env: &[(&str, &str)]) -> Result<usize> {
        let port = free_port();
        let es = self.config.worker_elasticsearch_url.clone();
        let mut extra: Vec<(String, String)> = es
            .map(|u| vec![("ELASTICSEARCH_URL".to_string(), u)])
            .unwrap_or_default();
        extra.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let guard = self.spawn_service(Service::Worker, port, &extra).await?;
        self.workers.push(Some(WorkerProcess {
            guard,
            metrics_port: port,
        }));
        Ok(self.workers.len() - 1)
    }

    /// SIGKILLs worker `i` (like `kill -9`): its in-flight jobs are left to lease reclaim.
    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers.get_mut(i).and_then(Option::take) {
            w.guard.kill();
        }
    }
    /// SIGTERMs worker `i`; returns whether it exited by itself within `deadline`.
    pub fn stop_worker(&mut self, i: usize, deadline: Duration) -> bool {
        match self.workers.get_mut(i).and_then(Option::take) {
            Some(mut w) => w.guard.terminate(deadline),
            None => true,
        }
    }
    /// SIGKILLs every worker.
    pub fn kill_workers(&mut self) {
        for i in 0..self.workers.len() {
            self.kill_worker(i);
        }
    }
    /// Workers currently alive.
    pub fn running_workers(&mut self) -> usize {
        self.workers
            .iter_mut()
            .flatten()
            .map(|w| w.guard.is_running())
            .filter(|running| *running)
            .count()
    }
    /// Worker `i`'s process, if it was not killed or stopped.
    pub fn worker(&self, i: usize) -> Option<&WorkerProcess> {
        self.workers.get(i).and_then(Option::as_ref)
    }
    /// The consumer's process.
    pub fn consumer(&self) -> Option<&ChildGuard> {
        self.consumer.as_ref()
    }
    /// The webhook service's process (when it was started).
    pub fn webhook(&self) -> Option<&ChildGuard> {
        self.webhook.as_ref()
    }
    /// SIGKILLs the consumer (like `kill -9`): requests in flight get no answer, and nothing
    /// answers on its port until [`Stack::start_consumer`].
    pub fn kill_consumer(&mut self) {
        if let Some(mut g) = self.consumer.take() {
            g.kill();
        }
    }
    /// Starts the consumer again on the same port with the same environment (after
    /// [`Stack::kill_consumer`] or [`Stack::stop_consumer`]); waits until it answers `/healthz`
    /// with its own pid.
    pub async fn start_consumer(&mut self) -> Result<()> {
        let port = self.launch.consumer_port;
        let guard = self.spawn_service(Service::Consumer, port, &[]).await?;
        self.consumer = Some(guard);
        Ok(())
    }
    /// SIGTERMs the consumer; returns whether it exited by itself within `deadline`.
    pub fn stop_consumer(&mut self, deadline: Duration) -> bool {
        self.consumer
            .take()
            .is_none_or(|mut g| g.terminate(deadline))
    }

    /// Stops every service with SIGTERM, as `./setup.sh stop` does: the consumer first, then the
    /// workers, the webhook service and the dashboard. Returns whether all exited by themselves
    /// within `deadline` each.
    pub fn stop(&mut self, deadline: Duration) -> bool {
        let mut clean = self.stop_consumer(deadline);
        for i in 0..self.workers.len() {
            clean &= self.stop_worker(i, deadline);
        }
        for mut guard in [self.webhook.take(), self.dashboard.take()]
            .into_iter()
            .flatten()
        {
            clean &= guard.terminate(deadline);
        }
        clean
    }

    /// A `producer` command aimed at this stack's consumer (add flags, then spawn or run it).
    pub fn producer_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("producer"));
        cmd.args(args)
            .env("CONSUMER_URL", self.consumer_url())
            .env("RUST_LOG", "warn");
        cmd
    }
    /// Starts the producer in the background (killed when the guard drops).
    pub fn spawn_producer(&self, args: &[&str]) -> Result<ChildGuard> {
        ChildGuard::spawn("producer", self.producer_command(args))
    }
    /// Runs the producer to completion; returns its stdout. The future owns everything it needs,
    /// so it can be `tokio::spawn`ed while the test kills workers or cuts Elasticsearch off.
    pub fn run_producer(
        &self,
        args: &[&str],
    ) -> impl std::future::Future<Output = Result<String>> + Send + 'static {
        let mut cmd = tokio::process::Command::from(self.producer_command(args));
        cmd.kill_on_drop(true);
        async move {
            let out = cmd.output().await.context("running producer")?;
            if !out.status.success() {
                bail!(
                    "producer exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    }

    /// Starts one process of `service` listening on `port` with the launcher's environment for it,
    /// then the builder's overrides (every service, then this service), then `extra`; waits until
    /// it is alive and answers `/healthz` with its own pid.
    async fn spawn_service(
        &self,
        service: Service,
        port: u16,
        extra: &[(String, String)],
    ) -> Result<ChildGuard> {
        let overrides = self.config.service_env.get(&service).into_iter().flatten();
        let mut env: Vec<(String, String)> = Vec::new();
        for (key, value) in self
            .launch
            .env(service, port)
            .into_iter()
            .chain(self.config.common_env.iter().cloned())
            .chain(overrides.cloned())
            .chain(extra.iter().cloned())
        {
            // The last value wins; an empty one unsets the variable (e.g. a credential the
            // launcher passes on from the suite's environment).
            env.retain(|(k, _)| *k != key);
            if !value.is_empty() {
                env.push((key, value));
            }
        }
        let cmd = conveyor_stack::command(&bin_path(service.name()), &env);
        let guard = ChildGuard::spawn(service.name(), cmd)?;
        let pid = guard.id();
        let started = tokio::task::spawn_blocking(move || {
            conveyor_stack::wait_started(pid, service, port, Duration::from_secs(60))
        })
        .await
        .context("waiting for the start")?;
        if let Err(e) = started {
            bail!("{e:#}; its output:\n{}", guard.output());
        }
        Ok(guard)
    }
}
