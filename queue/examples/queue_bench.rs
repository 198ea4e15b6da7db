//! Throughput benchmark of the queue (run through `bench/queue.sh`, which starts a private Redis).
//!
//! `queue_bench bench --url <redis> --jobs N` measures, against the same server:
//! the bare-stream limits (pipelined XADD; XREADGROUP COUNT 100 + XACK loop, no queue logic),
//! bulk enqueue of N no-op jobs, and draining N jobs by one and by two worker PROCESSES (this
//! binary re-spawned in `worker` mode). `queue_bench worker --url <redis> --ns <ns>` runs one
//! worker until its stdin closes.
//!
//! `--wait-replicas N` measures instead what the replication wait costs (`WAIT N` after each
//! enqueue pipeline and each settle, `QueueConfig::wait_replicas`): bulk enqueue, one-at-a-time
//! enqueue and drain by one worker process, each without and with the wait, and the ratios.
//! The server(s) need at least N replicas per master (e.g. the 3 + 3 test cluster and N = 1).
//!
//! `--only scale` (for `bench/cluster.sh`): bulk enqueue of N jobs, then their drain by
//! `--procs` worker processes (default 2), on a fresh namespace; `--partitions P` (default 1,
//! also for the other modes) spreads the queue over P partitions.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use queue::{CancellationToken, Handler, Job, Outcome, Queue, QueueConfig, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

struct NoopHandler;

impl Handler<Noop> for NoopHandler {
    async fn handle(&self, jobs: Vec<Job<Noop>>) -> Vec<Outcome> {
        jobs.iter()
            .map(|_| Outcome::Done(serde_json::Value::Null))
            .collect()
    }
}

const QUEUE: &str = "bench";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Jobs per `enqueue_batch` call (one pipeline) and how many calls run at once.
fn chunk() -> usize {
    arg("--chunk").and_then(|c| c.parse().ok()).unwrap_or(1000)
}

fn parallel() -> usize {
    arg("--parallel").and_then(|c| c.parse().ok()).unwrap_or(4)
}

/// One node (`redis://`) or a cluster (`redis+cluster://host:port,...`).
fn pool(url: &str) -> anyhow::Result<queue::RedisPool> {
    Ok(queue::RedisPool::open(url, 16)?)
}

/// `QueueConfig` of namespace `ns`, waiting for `wait` replicas (0: no wait), with the
/// `--partitions` count.
fn queue_config(ns: &str, wait: u32) -> QueueConfig {
    let mut config = QueueConfig::new(ns, QUEUE);
    config.wait_replicas = wait;
    config.partitions = partitions();
    config
}

fn partitions() -> u16 {
    arg("--partitions")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
}

fn wait_arg() -> Option<u32> {
    arg("--wait-replicas").and_then(|w| w.parse().ok())
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        batch_size: arg("--batch").and_then(|b| b.parse().ok()).unwrap_or(500),
        concurrency: 4,
        batch_linger: Duration::from_millis(2),
        ..WorkerConfig::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = arg("--url").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    match std::env::args().nth(1).as_deref() {
        Some("worker") => run_worker(&url, &arg("--ns").unwrap_or_else(|| "bench".into())).await,
        _ => {
            let jobs = arg("--jobs")
                .and_then(|j| j.parse().ok())
                .unwrap_or(200_000);
            bench(&url, jobs).await
        }
    }
}

/// Worker mode: one worker on the namespace until stdin closes.
async fn run_worker(url: &str, ns: &str) -> anyhow::Result<()> {
    let config = queue_config(ns, wait_arg().unwrap_or(0));
    let q: Queue<Noop> = Queue::new(pool(url)?, config);
    let token = CancellationToken::new();
    let stop = token.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stop.cancel();
    });
    Worker::new(q, NoopHandler, worker_config())
        .run(token)
        .await?;
    Ok(())
}

async fn bench(url: &str, n: u64) -> anyhow::Result<()> {
    let pool = pool(url)?;
    println!(
        "queue benchmark: {n} jobs, worker batch {}, redis {url}",
        worker_config().batch_size
    );

    if let Some(wait) = wait_arg().filter(|w| *w > 0) {
        return wait_cost(&pool, url, n, wait).await;
    }
    if arg("--only").as_deref() == Some("scale") {
        return scale(&pool, url, n).await;
    }
    if arg("--only").as_deref() == Some("enqueue") {
        let q: Queue<Noop> = Queue::new(pool.clone(), queue_config("qe", 0));
        let enq = enqueue(&q, n).await?;
        report("queue bulk enqueue (enqueue_batch)", n, enq, None);
        return Ok(());
    }
    let bare_add = bare_xadd(&pool, n).await?;
    report("bare pipelined XADD (enqueue limit)", n, bare_add, None);
    let bare_drain = bare_drain(&pool, n).await?;
    report(
        "bare XREADGROUP COUNT 100 + XACK loop (drain limit)",
        n,
        bare_drain,
        None,
    );

    let q: Queue<Noop> = Queue::new(pool.clone(), queue_config("q1", 0));
    let enq = enqueue(&q, n).await?;
    report("queue bulk enqueue (enqueue_batch)", n, enq, Some(bare_add));
    let one = drain(&q, url, "q1", n, 1, 0).await?;
    report("queue drain, 1 worker process", n, one, Some(bare_drain));

    let q2: Queue<Noop> = Queue::new(pool.clone(), queue_config("q2", 0));
    enqueue(&q2, n).await?;
    let two = drain(&q2, url, "q2", n, 2, 0).await?;
    report("queue drain, 2 worker processes", n, two, Some(bare_drain));
    Ok(())
}

/// Bulk enqueue, one-at-a-time enqueue (a tenth of `n`) and drain by one worker process, each
/// without and with `WAIT wait`, on fresh namespaces; prints each rate and the ratios.
async fn wait_cost(pool: &queue::RedisPool, url: &str, n: u64, wait: u32) -> anyhow::Result<()> {
    let run = unique_suffix();
    let mut rates = Vec::new();
    for w in [0, wait] {
        let ns = format!("wc{w}-{run}");
        let q: Queue<Noop> = Queue::new(pool.clone(), queue_config(&ns, w));
        let bulk = n as f64 / enqueue(&q, n).await?.as_secs_f64();
        let drained = n as f64 / drain(&q, url, &ns, n, 1, w).await?.as_secs_f64();
        let singles = (n / 10).max(1);
        let started = Instant::now();
        for i in 0..singles {
            q.enqueue(&Noop { n: i }).await?;
        }
        let single = singles as f64 / started.elapsed().as_secs_f64();
        let label = if w == 0 {
            "no WAIT".to_string()
        } else {
            format!("WAIT {w}")
        };
        println!("RESULT wait cost, {label}: bulk enqueue {bulk:.0} jobs/s, one-at-a-time enqueue {single:.0} jobs/s, drain (1 worker process) {drained:.0} jobs/s");
        rates.push((bulk, single, drained));
        drain(&q, url, &ns, 0, 1, w).await?;
    }
    let (off, on) = (rates[0], rates[1]);
    println!(
        "RESULT wait cost, WAIT {wait} vs none: bulk enqueue x{:.2}, one-at-a-time enqueue x{:.2}, drain x{:.2}",
        on.0 / off.0,
        on.1 / off.1,
        on.2 / off.2
    );
    Ok(())
}

/// Bulk enqueue of `n` jobs, then their drain by `--procs` worker processes, on a fresh
/// namespace: what `bench/cluster.sh` runs against one node and against a cluster.
async fn scale(pool: &queue::RedisPool, url: &str, n: u64) -> anyhow::Result<()> {
    let procs: usize = arg("--procs").and_then(|p| p.parse().ok()).unwrap_or(2);
    let ns = format!("scale-{}", unique_suffix());
    let q: Queue<Noop> = Queue::new(pool.clone(), queue_config(&ns, 0));
    q.check_partitions().await?;
    let enq = enqueue(&q, n).await?;
    let drained = drain(&q, url, &ns, n, procs, 0).await?;
    println!(
        "RESULT scale: {} partitions, bulk enqueue {:.0} jobs/s, drain by {procs} worker processes {:.0} jobs/s",
        partitions(),
        n as f64 / enq.as_secs_f64(),
        n as f64 / drained.as_secs_f64()
    );
    Ok(())
}

/// A suffix that keeps one run's namespaces apart from an earlier run's.
fn unique_suffix() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}-{ms}", std::process::id())
}

fn report(what: &str, n: u64, took: Duration, limit: Option<Duration>) {
    let rate = n as f64 / took.as_secs_f64();
    match limit {
        Some(l) => {
            let limit_rate = n as f64 / l.as_secs_f64();
            println!(
                "RESULT {what}: {rate:.0} jobs/s ({:.0}% of the bare limit {limit_rate:.0}/s)",
                100.0 * rate / limit_rate
            );
        }
        None => println!("RESULT {what}: {rate:.0} ops/s"),
    }
}

fn bar(n: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

/// Field layout of a queue job, without the queue: the enqueue limit.
async fn bare_xadd(pool: &queue::Pool, n: u64) -> anyhow::Result<Duration> {
    let pb = bar(n, "bare XADD");
    let start = Instant::now();
    let chunks = (0..n).step_by(chunk()).map(|from| {
        let pool = pool.clone();
        async move {
            let mut pipe = redis::pipe();
            for i in from..(from + chunk() as u64).min(n) {
                pipe.cmd("XADD")
                    .arg("bare")
                    .arg("*")
                    .arg("id")
                    .arg(i)
                    .arg("payload")
                    .arg("{\"n\":1}")
                    .ignore();
            }
            let mut conn = pool.get().await?;
            pipe.query_async::<()>(&mut conn).await?;
            Ok::<u64, anyhow::Error>((n - from).min(chunk() as u64))
        }
    });
    let mut s = futures::stream::iter(chunks).buffer_unordered(parallel());
    while let Some(done) = s.next().await {
        pb.inc(done?);
    }
    pb.finish_and_clear();
    Ok(start.elapsed())
}

/// XREADGROUP COUNT 100 + XACK, one round trip each, no queue logic: the drain limit.
async fn bare_drain(pool: &queue::Pool, n: u64) -> anyhow::Result<Duration> {
    let mut conn = pool.get().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("bare")
        .arg("g")
        .arg("0")
        .query_async(&mut conn)
        .await?;
    let pb = bar(n, "bare XREADGROUP + XACK");
    let start = Instant::now();
    let mut done = 0u64;
    while done < n {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg("bare")
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| e.id)
            .collect();
        if ids.is_empty() {
            break;
        }
        let _: u64 = redis::cmd("XACK")
            .arg("bare")
            .arg("g")
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        done += ids.len() as u64;
        pb.inc(ids.len() as u64);
    }
    pb.finish_and_clear();
    let _: () = redis::cmd("DEL").arg("bare").query_async(&mut conn).await?;
    Ok(start.elapsed())
}

async fn enqueue(q: &Queue<Noop>, n: u64) -> anyhow::Result<Duration> {
    let pb = bar(n, &format!("enqueue_batch into {}", q.config().namespace));
    let start = Instant::now();
    let chunks = (0..n).step_by(chunk()).map(|from| {
        let q = q.clone();
        async move {
            let jobs: Vec<Noop> = (from..(from + chunk() as u64).min(n))
                .map(|i| Noop { n: i })
                .collect();
            q.enqueue_batch(&jobs).await.map(|ids| ids.len() as u64)
        }
    });
    let mut s = futures::stream::iter(chunks).buffer_unordered(parallel());
    while let Some(done) = s.next().await {
        pb.inc(done?);
    }
    pb.finish_and_clear();
    Ok(start.elapsed())
}

/// Spawns `procs` worker processes (waiting for `wait` replicas on settle) and times them until
/// the queue is empty.
async fn drain(
    q: &Queue<Noop>,
    url: &str,
    ns: &str,
    n: u64,
    procs: usize,
    wait: u32,
) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe()?;
    let pb = bar(n, &format!("drain by {procs} worker process(es)"));
    let start = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..procs {
        children.push(
            Command::new(&exe)
                .args(["worker", "--url", url, "--ns", ns])
                .args(["--wait-replicas", &wait.to_string()])
                .args(["--partitions", &partitions().to_string()])
                .args(
                    arg("--batch")
                        .map(|b| vec!["--batch".to_string(), b])
                        .unwrap_or_default(),
                )
                .stdin(Stdio::piped())
                .spawn()?,
        );
    }
    let took = loop {
        let s = q.stats().await?;
        let left = s.backlog + s.pending;
        pb.set_position(n.saturating_sub(left));
        if left == 0 {
            break start.elapsed();
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "drain did not finish: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    pb.finish_and_clear();
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    Ok(took)
}
