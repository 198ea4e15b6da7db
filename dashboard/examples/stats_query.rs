//! The stats-query benchmark behind `bench/stats-query.sh`: loads synthetic messages through
//! the real write path (`Store::index_messages`, daily indices behind the alias) into a scratch
//! index prefix, and at each size times the two per-second queries with the real query code —
//! `Store::stats` (the consumer's `/stats`) and `StatsReader::read` (the dashboard's poll) —
//! while a live writer adds 10 messages a second, as the producer does (so the 10 s window is
//! not empty and Elasticsearch's request cache cannot answer from an unchanged index).
//! Deletes every index and the template it created at the end, also after a failure.
//!
//! `cargo run --release -p dashboard --example stats_query -- <es_url> <prefix> <sizes> <runs> <days>`
//! e.g. `… http://127.0.0.1:19200 bench-stats-1a2b- 10000,1000000,5000000 50 3`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use dashboard::es::StatsReader;
use futures::StreamExt;
use pipeline::ids::ProducerName;
use pipeline::packet::StoredMessage;
use pipeline::store::Store;
use serde_json::Value;
use service_kit::config::ElasticArgs;

const PRODUCERS: u64 = 8;
const BATCH: u64 = 5_000;
const IN_FLIGHT: usize = 3;
const PAUSE: Duration = Duration::from_millis(100);

struct Bench {
    es: String,
    store: Store,
    reader: StatsReader,
    http: reqwest::Client,
    sizes: Vec<u64>,
    runs: usize,
    /// `sent_at` of the loaded messages spreads evenly over this span, ending a minute ago.
    span: chrono::Duration,
    start: DateTime<Utc>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [es, prefix, sizes, runs, days] = args.as_slice() else {
        bail!("usage: stats_query <es_url> <prefix> <sizes,…> <runs> <days>");
    };
    let elastic = ElasticArgs::new(es.trim_end_matches('/').to_string(), prefix.clone());
    let sizes: Vec<u64> = sizes
        .split(',')
        .map(|s| s.trim().parse().context("sizes: whole numbers"))
        .collect::<Result<_>>()?;
    let span = chrono::Duration::days(days.parse().context("days: a whole number")?);
    let bench = Bench {
        es: elastic.elasticsearch_url.clone(),
        store: Store::new(&elastic)?,
        reader: StatsReader::new(&elastic, Duration::from_secs(30))?,
        http: reqwest::Client::new(),
        sizes,
        runs: runs.parse().context("runs: a whole number")?,
        span,
        start: Utc::now() - span - chrono::Duration::minutes(1),
    };
    let result = bench.run().await;
    // KEEP=1 leaves the indices for a closer look (delete them by hand afterwards).
    if std::env::var_os("KEEP").is_none() {
        bench.cleanup().await;
    }
    result
}

impl Bench {
    async fn run(&self) -> Result<()> {
        self.store.ensure_indices().await?;
        let total = *self.sizes.iter().max().unwrap_or(&0);
        let mut loaded = 0;
        println!("| documents | day indices | store | query | median ms | p99 ms | runs |");
        println!("|---:|---:|---:|---|---:|---:|---:|");
        for &size in &self.sizes {
            self.load(loaded, size, total).await?;
            loaded = size;
            let (docs, indices, bytes) = self.layout().await?;
            let stop = Arc::new(AtomicBool::new(false));
            let live = tokio::spawn(live_writer(self.store.clone(), stop.clone()));
            tokio::time::sleep(Duration::from_secs(2)).await; // the window fills, refreshes run
            let consumer = self
                .time(|| async { self.store.stats().await.map(|_| ()).map_err(Into::into) })
                .await?;
            let dashboard = self
                .time(|| async {
                    let now = Utc::now().timestamp_millis();
                    self.reader
                        .read(now)
                        .await
                        .map(|_| ())
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await?;
            stop.store(true, Ordering::Relaxed);
            live.await??;
            for (name, (median, p99)) in [
                ("/stats (Store::stats)", consumer),
                ("dashboard poll", dashboard),
            ] {
                println!(
                    "| {docs} | {indices} | {:.0} MB | {name} | {median:.1} | {p99:.1} | {} |",
                    bytes as f64 / 1e6,
                    self.runs
                );
            }
        }
        Ok(())
    }

    /// Loads messages `from..to` of `total` through `Store::index_messages`, printing progress.
    async fn load(&self, from: u64, to: u64, total: u64) -> Result<()> {
        let started = Instant::now();
        let done = AtomicU64::new(0);
        let step = (self.span.num_milliseconds() as f64) / total.max(1) as f64;
        let batches = (from..to).step_by(BATCH as usize).map(|first| {
            let last = (first + BATCH).min(to);
            let docs: Vec<StoredMessage> = (first..last)
                .map(|i| {
                    let sent_at =
                        self.start + chrono::Duration::milliseconds((i as f64 * step) as i64);
                    synthetic(i, sent_at, 1.0 + (i % 97) as f64 * 0.1)
                })
                .collect();
            let done = &done;
            async move {
                self.store.index_messages(&docs).await?;
                let n = done.fetch_add(docs.len() as u64, Ordering::Relaxed) + docs.len() as u64;
                if n % 250_000 < BATCH || from + n == to {
                    let rate = n as f64 / started.elapsed().as_secs_f64();
                    eprintln!("   loaded {:>9} / {to} ({rate:.0} docs/s)", from + n);
                }
                anyhow::Ok(())
            }
        });
        let mut stream = futures::stream::iter(batches).buffer_unordered(IN_FLIGHT);
        while let Some(result) = stream.next().await {
            result?;
        }
        self.request(
            reqwest::Method::POST,
            &format!("/{}/_refresh", self.store.messages_index()),
        )
        .await?;
        Ok(())
    }

    /// Documents behind the alias, how many daily indices, and their size on disk.
    async fn layout(&self) -> Result<(u64, usize, u64)> {
        let alias = self.store.messages_index();
        let stats = self
            .request(reqwest::Method::GET, &format!("/{alias}/_stats/docs,store"))
            .await?;
        let docs = stats["_all"]["primaries"]["docs"]["count"]
            .as_u64()
            .unwrap_or(0);
        let bytes = stats["_all"]["primaries"]["store"]["size_in_bytes"]
            .as_u64()
            .unwrap_or(0);
        let days = self.store.message_indices().await?.len();
        Ok((docs, days, bytes))
    }

    /// Median and p99 (nearest rank) in ms of `runs` calls, `PAUSE` apart.
    async fn time<F, Fut>(&self, call: F) -> Result<(f64, f64)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        call().await?; // a first call opens the connection
        let mut ms = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            tokio::time::sleep(PAUSE).await;
            let t = Instant::now();
            call().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Ok((rank(0.5), rank(0.99)))
    }

    async fn request(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.es))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    /// Deletes the scratch prefix's message indices (by exact name) and its template.
    async fn cleanup(&self) {
        let names = self.store.message_indices().await.unwrap_or_default();
        for name in &names {
            if let Err(e) = self.store.delete_message_index(name).await {
                eprintln!("deleting {name}: {e}");
            }
        }
        let template = format!("/_index_template/{}", self.store.messages_template());
        if let Err(e) = self.request(reqwest::Method::DELETE, &template).await {
            eprintln!("deleting the template: {e}");
        }
        eprintln!("   deleted {} indices and the template", names.len());
    }
}

/// Message `i`: producer `bench-{i % 8}`, its number `i / 8`, three short words.
fn synthetic(i: u64, sent_at: DateTime<Utc>, transit_ms: f64) -> StoredMessage {
    let received_at = sent_at + chrono::Duration::microseconds((transit_ms * 1000.0) as i64);
    StoredMessage {
        producer: ProducerName::parse(&format!("bench-{}", i % PRODUCERS)).expect("valid name"),
        number: i / PRODUCERS,
        sent_at,
        received_at,
        stored_at: received_at,
        transit_ms,
        word_lengths: vec![5, 5, 5],
        text: "lorem ipsum dolor".into(),
        part: None,
    }
}

/// 10 messages a second stamped now, as the producer sends them, until `stop`.
async fn live_writer(store: Store, stop: Arc<AtomicBool>) -> Result<()> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = Utc::now();
        let doc = StoredMessage {
            producer: ProducerName::parse("bench-live").expect("valid name"),
            number: n, // a new id each time: no overwrites (deleted documents) in the indices
            ..synthetic(n, now - chrono::Duration::milliseconds(2), 2.0)
        };
        store.index_messages(&[doc]).await?;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
