//! The chaos suite's harness: a stack of the real binaries on the test's own namespace (and, for
//! rows that pause or restart Redis, a private `redis-server`), producer load, and the counting
//! that ends every row: runs per job id from the workers' `conveyor::run` events (JSON logs),
//! messages per natural key in Elasticsearch, resources per file in the webhook service's output
//! directory and its `duplicate` deliveries counter, the queue's counters. One [`Row`] per
//! fault, appended to a file under the target directory; the row that completes the set prints
//! the table (rows are separate tests, run in parallel by the test harness). Every row also
//! counts handler runs of a live worker's job by another worker (see [`runs`]) and asserts none.

#![allow(dead_code)]

pub mod rows;
pub mod runs;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use e2e::es::all_docs;
use e2e::{Service, Stack};
use queue::{Queue, QueueConfig};
use serde_json::Value;
use testkit::{RedisServer, TcpProxy, TestEnv};

/// Every row of the table, in print order (the names the row tests report under).
pub const ROWS: [&str; 10] = [
    "SIGKILL 1 of 3 workers mid-batch",
    "SIGKILL the consumer mid-request, restarted",
    "Redis paused 2x lease (CLIENT PAUSE ALL)",
    "Redis restarted: pending + delayed jobs",
    "TCP black hole worker-Redis 2x lease",
    "Elasticsearch down 20 s",
    "webhook target down 15 s",
    "rolling replacement of every worker",
    "4 partitions, handler > lease, concurrency 1",
    "Redis slower than the response timeout (DEBUG SLEEP)",
];

/// The lease the rows run with (ms).
pub const LEASE_MS: u64 = 2000;

/// One line of the table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub fault: String,
    pub sent: u64,
    pub stored: u64,
    pub max_runs: u64,
    pub dup_store: u64,
    pub dup_deliveries: u64,
    pub lost: u64,
    pub recovery_s: f64,
    /// Repeated webhook POSTs the webhook service recognised (Idempotency-Key / stored
    /// resource) and answered without changing anything: a delivery job that ran again after
    /// its worker died between the POST and the ack.
    #[serde(default)]
    pub redundant_posts: u64,
    /// Handler runs of a job that began while a live worker's run of it had not ended (see
    /// [`runs`]).
    #[serde(default)]
    pub overlaps: u64,
    /// Requests the producer sent again (no answer, or 429/503).
    #[serde(default)]
    pub client_retries: u64,
    /// Rows that kill the consumer: messages whose job the killed consumer enqueued but whose
    /// request it never answered (the producer got their 202 from the restarted consumer, on
    /// a retry the queue deduplicated): stored messages it received, minus the messages it
    /// answered (sent minus what the restarted consumer accepted).
    #[serde(default)]
    pub unanswered: u64,
}

/// What a row starts.
pub struct Options {
    pub workers: usize,
    pub private_redis: bool,
    pub es_proxy: bool,
    pub webhook_proxy: bool,
    /// Worker 0's Redis goes through a proxy of its own.
    pub redis_proxied_worker: bool,
    /// The consumer's Redis goes through a proxy of its own (also after a restart).
    pub redis_proxied_consumer: bool,
    /// Extra environment for every worker.
    pub worker_env: Vec<(&'static str, &'static str)>,
    /// Extra environment for the consumer.
    pub consumer_env: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 3,
            private_redis: false,
            es_proxy: false,
            webhook_proxy: false,
            redis_proxied_worker: false,
            redis_proxied_consumer: false,
            worker_env: Vec::new(),
            consumer_env: Vec::new(),
        }
    }
}

/// A running row: the stack, its servers and proxies.
pub struct Chaos {
    pub env: TestEnv,
    pub stack: Stack,
    pub redis: Option<RedisServer>,
    pub redis_url: String,
    pub es_proxy: Option<TcpProxy>,
    pub webhook_proxy: Option<TcpProxy>,
    pub redis_proxy: Option<TcpProxy>,
    pub consumer_proxy: Option<TcpProxy>,
    pub started: Instant,
    /// Which workers the test cut off from Redis and when, and when workers were seen gone.
    faults: Mutex<Faults>,
    /// Set by a row that kills the consumer: its recovery is from this moment to the first
    /// message the API accepted after it (the earliest stored `received_at` after it).
    pub accepted_again_after: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Faults {
    cut: Vec<runs::CutOff>,
    exits: Vec<(usize, DateTime<Utc>)>,
}

impl Chaos {
    pub async fn start(test: &str, opts: Options) -> Chaos {
        let env = TestEnv::new(test).await;
        let redis = match opts.private_redis {
            true => Some(RedisServer::start().await),
            false => None,
        };
        let redis_url = redis
            .as_ref()
            .map_or_else(|| env.redis_url.clone(), RedisServer::url);
        let es_proxy = match opts.es_proxy {
            true => Some(TcpProxy::start(env.elasticsearch_addr()).await),
            false => None,
        };
        let redis_addr = || {
            redis_url
                .trim_start_matches("redis://")
                .trim_end_matches('/')
                .parse::<std::net::SocketAddr>()
                .expect("redis addr")
        };
        let consumer_proxy = match opts.redis_proxied_consumer {
            true => Some(TcpProxy::start(redis_addr()).await),
            false => None,
        };
        let mut builder = Stack::builder(&env)
            .redis_url(redis_url.clone())
            .workers(0)
            .webhook(true)
            .env_for(Service::Worker, "LEASE_MS", LEASE_MS.to_string())
            .env_for(Service::Worker, "LOG_FORMAT", "json")
            .env_for(Service::Worker, "RUST_LOG", "warn,conveyor::run=trace");
        if let Some(p) = &es_proxy {
            builder = builder.worker_elasticsearch_url(p.http_url());
        }
        if let Some(p) = &consumer_proxy {
            builder = builder.env_for(
                Service::Consumer,
                "REDIS_URL",
                format!("redis://{}", p.addr),
            );
        }
        for (k, v) in &opts.worker_env {
            builder = builder.env_for(Service::Worker, k, *v);
        }
        for (k, v) in &opts.consumer_env {
            builder = builder.env_for(Service::Consumer, k, *v);
        }
        let mut stack = builder.start().await.expect("stack starts");
        let webhook_proxy = match opts.webhook_proxy {
            true => {
                let addr = stack
                    .webhook_url()
                    .trim_start_matches("http://")
                    .parse()
                    .expect("webhook addr");
                Some(TcpProxy::start(addr).await)
            }
            false => None,
        };
        let redis_proxy = match opts.redis_proxied_worker {
            true => Some(TcpProxy::start(redis_addr()).await),
            false => None,
        };
        for i in 0..opts.workers {
            let mut extra: Vec<(String, String)> = Vec::new();
            if let Some(p) = &webhook_proxy {
                extra.push((
                    "WEBHOOK_URL".into(),
                    format!("{}/webhooks/resources", p.http_url()),
                ));
            }
            if let (Some(p), 0) = (&redis_proxy, i) {
                extra.push(("REDIS_URL".into(), format!("redis://{}", p.addr)));
            }
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            stack
                .start_worker_with(&extra)
                .await
                .expect("worker starts");
        }
        Chaos {
            env,
            stack,
            redis,
            redis_url,
            es_proxy,
            webhook_proxy,
            redis_proxy,
            consumer_proxy,
            started: Instant::now(),
            faults: Mutex::default(),
            accepted_again_after: None,
        }
    }

    /// The producer at `rate` messages per second for `secs` seconds, resources on.
    pub fn produce(&self, rate: u32, secs: u32) -> tokio::task::JoinHandle<anyhow::Result<String>> {
        let (rate, secs) = (rate.to_string(), secs.to_string());
        tokio::spawn(self.stack.run_producer(&[
            "--rate",
            &rate,
            "--window-ms",
            "900",
            "--duration-secs",
            &secs,
        ]))
    }

    pub fn messages(&self) -> Queue<Value> {
        let pool = testkit::redis_pool(&self.redis_url);
        Queue::new(pool, QueueConfig::new(&self.env.namespace, "messages"))
    }

    /// Pid of worker `i` (still owned by the stack, so its log outlives it).
    pub fn worker_pid(&self, i: usize) -> u32 {
        self.stack.worker(i).expect("worker").guard.id()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the test cut worker `i` off from Redis from `from` to `to` (`None`: for
    /// good): its runs meanwhile do not count as a live worker's.
    pub fn cut_off(&self, i: usize, from: DateTime<Utc>, to: Option<DateTime<Utc>>) {
        self.faults().cut.push(runs::CutOff {
            worker: i,
            from,
            to,
        });
    }

    /// SIGKILL (`-9`) or SIGTERM (`-15`) to worker `i`, keeping its log; waits until it is gone.
    /// A SIGKILL cuts the worker off for good; either way its exit time is recorded.
    pub async fn signal_worker(&self, i: usize, signal: &str) {
        let pid = self.worker_pid(i);
        if signal == "-9" {
            self.cut_off(i, Utc::now(), None);
        }
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
        let start = Instant::now();
        while alive(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "worker {pid} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.faults().exits.push((i, Utc::now()));
    }

    /// Waits for the producer, then until every answered message is stored and the queues are
    /// empty; counts everything, asserts the invariants, records and returns the row.
    pub async fn finish(
        self,
        fault: &str,
        producer: tokio::task::JoinHandle<anyhow::Result<String>>,
        fault_end: Instant,
    ) -> Row {
        let out = producer
            .await
            .expect("producer task")
            .expect("producer ran");
        let sent = producer_total(&out, "ok");
        let client_retries = producer_total(&out, "retries");
        assert_eq!(
            producer_total(&out, "errors"),
            0,
            "every message answered 2xx: {out}"
        );
        let messages = self.messages();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut recovered = None;
        loop {
            let stored = e2e::es::count_docs(&self.env, "messages").await;
            let stats = messages.stats().await.ok();
            let drained = stats
                .as_ref()
                .is_some_and(|s| s.backlog == 0 && s.pending == 0 && s.delayed == 0);
            if stored >= sent && drained {
                recovered = Some(fault_end.elapsed());
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Deliveries of the resources completed last: give the webhook queue a moment.
        let webhooks: Queue<Value> = Queue::new(
            testkit::redis_pool(&self.redis_url),
            QueueConfig::new(&self.env.namespace, "webhooks"),
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let s = webhooks.stats().await.ok();
            if s.is_some_and(|s| s.backlog == 0 && s.pending == 0 && s.delayed == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let docs = all_docs(&self.env, "messages", "number").await;
        let mut per_key: HashMap<String, u64> = HashMap::new();
        let mut numbers = std::collections::HashSet::new();
        let mut resources: BTreeMap<String, (u64, std::collections::HashSet<u64>)> =
            BTreeMap::new();
        for (_, d) in &docs {
            let key = format!("{}:{}", d["producer"].as_str().unwrap_or(""), d["number"]);
            *per_key.entry(key).or_insert(0) += 1;
            numbers.insert(d["number"].as_u64().unwrap_or(u64::MAX));
            if let (Some(r), Some(seq), Some(total)) = (
                d["resource_id"].as_str(),
                d["seq"].as_u64(),
                d["total"].as_u64(),
            ) {
                let e = resources.entry(r.to_string()).or_default();
                e.0 = total;
                e.1.insert(seq);
            }
        }
        let stored = numbers.len() as u64;
        let dup_store = docs.len() as u64 - per_key.len() as u64;
        let lost = (0..sent).filter(|n| !numbers.contains(n)).count() as u64;
        let complete: Vec<&String> = resources
            .iter()
            .filter(|(_, (total, seqs))| seqs.len() as u64 == *total)
            .map(|(r, _)| r)
            .collect();
        let files = output_files(self.stack.output_dir());
        let undelivered: Vec<&&String> = complete
            .iter()
            .filter(|r| !files.iter().any(|f| f.contains(r.as_str())))
            .collect();
        let (applied, redundant_posts) = webhook_deliveries(&self.stack).await;
        // A resource applied (stored + file written) more than once at the webhook service.
        let dup_deliveries = applied.saturating_sub(files.len() as u64);
        let all_runs = self.runs();
        let runs = runs::counts(&all_runs, "messages");
        let max_runs = runs.values().copied().max().unwrap_or(0);
        let overlaps = {
            let faults = self.faults();
            let found = runs::overlaps(&all_runs, &faults.cut, &faults.exits);
            for (a, b) in found.iter().take(10) {
                println!("overlap: {b:?} began while live {a:?} ran");
            }
            found.len() as u64
        };
        let received_at = |d: &Value| {
            d["received_at"]
                .as_str()
                .and_then(|r| DateTime::parse_from_rfc3339(r).ok())
                .map(|r| r.with_timezone(&Utc))
        };
        let unanswered = match self.accepted_again_after {
            Some(t) => {
                let received_by_killed = docs
                    .iter()
                    .filter_map(|(_, d)| received_at(d))
                    .filter(|r| *r <= t)
                    .count() as u64;
                let accepted_after = metric(
                    &self.stack.consumer_url(),
                    "conveyor_messages_accepted_total",
                )
                .await;
                println!(
                    "received by the killed consumer {received_by_killed}, accepted by its \
                     successor {accepted_after}, sent {sent}"
                );
                received_by_killed.saturating_sub(sent.saturating_sub(accepted_after))
            }
            None => 0,
        };
        let recovered = match self.accepted_again_after {
            Some(t) => docs
                .iter()
                .filter_map(|(_, d)| received_at(d))
                .filter(|r| *r > t)
                .min()
                .and_then(|first| (first - t).to_std().ok())
                .filter(|_| recovered.is_some()),
            None => recovered,
        };
        let stats = messages.stats().await.expect("stats");
        let row = Row {
            fault: fault.to_string(),
            sent,
            stored,
            max_runs,
            dup_store,
            dup_deliveries,
            lost,
            recovery_s: recovered.map_or(f64::NAN, |d| d.as_secs_f64()),
            redundant_posts,
            overlaps,
            client_retries,
            unanswered,
        };
        println!(
            "chaos row: {row:?}; stats {stats:?}; {} complete resources, {} files",
            complete.len(),
            files.len()
        );
        record(&row);
        assert!(
            recovered.is_some(),
            "recovered within 90 s: {row:?} {stats:?}"
        );
        assert_eq!((row.lost, row.dup_store), (0, 0), "{row:?}");
        assert_eq!(
            row.overlaps, 0,
            "no handler run of a live worker's job by another worker: {row:?}"
        );
        assert_eq!(row.dup_deliveries, 0, "{row:?}");
        assert!(
            undelivered.is_empty(),
            "complete resources never delivered: {undelivered:?}"
        );
        assert_eq!(
            stats.dead, 0,
            "no job dead-lettered (none both dead and done): {stats:?}"
        );
        assert!(
            runs.len() as u64 >= sent,
            "a run event per job: {} of {sent}",
            runs.len()
        );
        assert_eq!(
            (stats.backlog, stats.pending, stats.delayed),
            (0, 0, 0),
            "{stats:?}"
        );
        row
    }

    /// Every handler run in every worker's log (killed and stopped ones included: their logs
    /// stay with the stack); `CHAOS_RUNS=1` prints them.
    pub fn runs(&self) -> Vec<runs::Run> {
        let mut all = Vec::new();
        for i in 0..64 {
            if let Some(w) = self.stack.worker(i) {
                all.extend(runs::parse(i, &w.guard.output()));
            }
        }
        if std::env::var_os("CHAOS_RUNS").is_some() {
            for r in &all {
                println!("{r:?}");
            }
        }
        all
    }
}

/// Whether process `pid` still runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `total sent=N ok=M errors=E` of the producer's output: the value of `what`.
fn producer_total(out: &str, what: &str) -> u64 {
    out.lines()
        .filter(|l| l.contains("total sent="))
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| {
            w.strip_prefix(&format!("{what}="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no `{what}=` in the producer's output: {out}"))
}

fn output_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

/// The webhook service's counts of deliveries applied (`stored`) and recognised as repeats
/// (`duplicate`), from its `/metrics`.
async fn webhook_deliveries(stack: &Stack) -> (u64, u64) {
    let text = reqwest::get(format!("{}/metrics", stack.webhook_url()))
        .await
        .expect("webhook /metrics")
        .text()
        .await
        .unwrap_or_default();
    let count = |outcome: &str| {
        let label = format!("outcome=\"{outcome}\"");
        text.lines()
            .filter(|l| l.starts_with("conveyor_webhook_deliveries_total") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
            .sum::<f64>() as u64
    };
    (count("stored"), count("duplicate"))
}

/// The sum of a counter's samples on the `/metrics` page at `base`.
async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("/metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// Where the rows of this run of the suite are collected.
fn rows_file() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/chaos");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("rows-{}.jsonl", std::process::id()))
}

/// Appends `row`; when every row of [`ROWS`] is in, prints the table and writes it next to the
/// rows as `table.md`.
pub fn record(row: &Row) {
    let path = rows_file();
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("rows file");
        writeln!(f, "{}", serde_json::to_string(row).expect("row json")).expect("write row");
    }
    let rows: Vec<Row> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if ROWS
        .iter()
        .all(|name| rows.iter().any(|r| r.fault == *name))
    {
        let table = table(&rows);
        println!("\n{table}");
        let _ = std::fs::write(path.with_file_name("table.md"), &table);
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | sent | stored | max runs per job | dup in store | dup deliveries | lost | recovery s | runs overlapping a live worker's | client retries | repeated POSTs ignored by the webhook |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for name in ROWS {
        if let Some(r) = rows.iter().rev().find(|r| r.fault == name) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |\n",
                r.fault,
                r.sent,
                r.stored,
                r.max_runs,
                r.dup_store,
                r.dup_deliveries,
                r.lost,
                r.recovery_s,
                r.overlaps,
                r.client_retries,
                r.redundant_posts
            ));
        }
    }
    out
}
