//! The plain `_bulk` baseline for `bench/pipeline.sh`: the same documents the pipeline stores
//! (producer packets → `pipeline::task::process`), the same batch size and parallelism as the
//! workers, written straight into a fresh index with the same mapping — no HTTP API, no queue.
//! The clock starts at the first request (documents are rendered before) and stops when a
//! `_refresh` + `_count` sees every document — the check the script polls the pipeline with.
//! Requests have the worker's shape: index in the URL, `{"index":{"_id":…}}` action lines, and
//! the same `filter_path` (Elasticsearch renders only `errors` and item statuses).
//!
//! `cargo run --release -p producer --example bulk_baseline -- <es_url> <index> <count> <batch> <parallel>`

use std::time::Instant;

use anyhow::{bail, Context};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use pipeline::packet::{EdgeRules, MessageJob, Packet};
use producer::packets::Generator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [es, index, count, batch, parallel] = args.as_slice() else {
        bail!("usage: bulk_baseline <es_url> <index> <count> <batch> <parallel>");
    };
    let es = es.trim_end_matches('/');
    let count: u64 = count.parse().context("count")?;
    let batch: usize = batch.parse().context("batch")?;
    let parallel: usize = parallel.parse().context("parallel")?;
    let http = reqwest::Client::new();

    let created = http
        .put(format!("{es}/{index}"))
        .json(&pipeline::store::messages_index_body(Default::default()))
        .send()
        .await?;
    if !created.status().is_success() {
        bail!("creating {index}: {}", created.text().await?);
    }

    // The documents, rendered before the clock starts (the worker renders its own inside).
    let generator = Generator::new("bench", 0, Some(count), false, 8);
    let mut bodies = Vec::new();
    let mut ndjson = String::new();
    let mut in_body = 0;
    for planned in generator {
        let packet = Packet::from_slice(&planned.render(), &EdgeRules::at(Utc::now()))
            .map_err(|e| anyhow::anyhow!("generated packet invalid: {e:?}"))?;
        let job = MessageJob {
            packet,
            received_at: Utc::now(),
        };
        let doc = pipeline::task::process(&job, Utc::now());
        ndjson.push_str(&serde_json::json!({"index": {"_id": doc.doc_id()}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&serde_json::to_string(&doc)?);
        ndjson.push('\n');
        in_body += 1;
        if in_body == batch {
            bodies.push(std::mem::take(&mut ndjson));
            in_body = 0;
        }
    }
    if in_body > 0 {
        bodies.push(ndjson);
    }

    let url = format!("{es}/{index}/_bulk?filter_path=errors,items.*.status,items.*.error");
    let started = Instant::now();
    let failures = stream::iter(bodies)
        .map(|body| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let resp = http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                let answer: serde_json::Value = resp.json().await?;
                anyhow::Ok(answer["errors"].as_bool() != Some(false))
            }
        })
        .buffer_unordered(parallel.max(1))
        .filter(|r| std::future::ready(!matches!(r, Ok(false))))
        .count()
        .await;
    let bulk_secs = started.elapsed().as_secs_f64();
    if failures > 0 {
        bail!("{failures} bulk requests failed");
    }
    // Timed like the pipeline: until a search sees every document.
    while visible(&http, es, index).await? < count {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "BASELINE docs={count} batch={batch} parallel={parallel} bulk_secs={bulk_secs:.3} visible_secs={secs:.3} docs_per_s={:.0}",
        count as f64 / secs
    );
    Ok(())
}

/// `_refresh` then `_count`, the same check the script polls the pipeline's index with.
async fn visible(http: &reqwest::Client, es: &str, index: &str) -> anyhow::Result<u64> {
    http.post(format!("{es}/{index}/_refresh")).send().await?;
    let answer: serde_json::Value = http
        .get(format!("{es}/{index}/_count"))
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["count"].as_u64().unwrap_or(0))
}
