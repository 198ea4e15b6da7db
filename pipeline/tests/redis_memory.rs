//! What the pipeline keeps in Redis per resource and per message, measured on a private server
//! (`INFO memory` used_memory before and after; the figures are printed and quoted in the README):
//! a resource's data while it is live, its tombstone once the data expired (the only thing a
//! finished resource leaves for `RESOURCE_RETENTION`), against the per-key tombstone of earlier
//! releases measured the same way, and a queued message job.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use pipeline::collate::Collator;
use pipeline::packet::{MessageJob, Packet};
use queue::{Queue, QueueConfig};
use support::packet;
use testkit::RedisServer;

const RESOURCES: usize = 10_000;

async fn used_memory(pool: &deadpool_redis::Pool) -> i64 {
    let mut c = pool.get().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

fn per(delta: i64, n: usize) -> f64 {
    delta as f64 / n as f64
}

#[tokio::test]
async fn a_finished_resource_leaves_a_compact_tombstone_and_a_job_costs_its_bytes() {
    let server = RedisServer::start().await;
    let pool = server.pool();
    {
        // Memory is measured, not durability: no AOF fsync per write on a loaded machine.
        let mut c = pool.get().await.unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("no")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let webhooks: Queue<pipeline::resource::DeliveryJob> =
        Queue::new(pool.clone(), QueueConfig::new("mem", "webhooks"));
    let collator = Collator::new(pool.clone(), "mem", &webhooks, Duration::from_secs(1));
    let ids: Vec<String> = (0..RESOURCES).map(|i| format!("resource-{i:08}")).collect();
    let now = Utc::now();

    // Live data of resources of 4 packets with 10 words each, complete and undelivered.
    let base = used_memory(&pool).await;
    for chunk in ids.chunks(100) {
        let packets: Vec<_> = chunk
            .iter()
            .flat_map(|id| {
                (0..4).map(move |s| {
                    packet(
                        id,
                        s,
                        4,
                        "one two three four five six seven eight nine ten",
                        now,
                    )
                })
            })
            .collect();
        assert_eq!(collator.record(&packets).await.unwrap(), chunk.len());
    }
    // The delivery jobs are consumed in the real pipeline; drop them to measure the data alone.
    let mut c = pool.get().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(webhooks.stream_key(None))
        .query_async(&mut c)
        .await
        .unwrap();
    let live = used_memory(&pool).await - base;

    // Delivered: the data expires after the (1 s) TTL, the tombstones stay.
    for id in &ids {
        collator.release(&support::key(id)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Expired keys are reclaimed lazily or by the active cycle; touch them all to be sure.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("mem:*:collate:res:*")
        .query_async(&mut c)
        .await
        .unwrap();
    for k in &keys {
        let _: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let tombstones = used_memory(&pool).await - base;

    // The per-key tombstone of earlier releases, measured the same way.
    let before_keys = used_memory(&pool).await;
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("SET")
                .arg(format!("mem:{{webhooks:0}}:collate:res:{id}:done"))
                .arg("delivered")
                .arg("EX")
                .arg(7 * 24 * 3600)
                .ignore();
        }
        let _: () = pipe.query_async(&mut c).await.unwrap();
    }
    let per_key = used_memory(&pool).await - before_keys;

    // A queued message job: a typical packet (a 60-character text, a resource part).
    let messages: Queue<MessageJob> = Queue::new(pool.clone(), QueueConfig::new("mem", "messages"));
    let job = |n: u64| {
        let body = serde_json::json!({
            "producer": "notebook", "number": n, "sent_at": now.to_rfc3339(),
            "text": "the quick brown fox jumps over the lazy dog, again and again",
            "resource_id": format!("resource-{n}"), "seq": 0, "total": 4,
        });
        MessageJob {
            packet: Packet::from_slice(
                body.to_string().as_bytes(),
                &pipeline::packet::EdgeRules::at(now),
            )
            .unwrap(),
            received_at: now,
        }
    };
    let before_jobs = used_memory(&pool).await;
    let jobs: Vec<MessageJob> = (0..RESOURCES as u64).map(job).collect();
    for chunk in jobs.chunks(1000) {
        messages.enqueue_batch(chunk).await.unwrap();
    }
    let queued = used_memory(&pool).await - before_jobs;

    let (live, tomb, key, job) = (
        per(live, RESOURCES),
        per(tombstones, RESOURCES),
        per(per_key, RESOURCES),
        per(queued, RESOURCES),
    );
    println!(
        "redis memory per resource (4 packets x 10 words, 17-char id): live data {live:.0} B, \
         tombstone {tomb:.0} B (per-key tombstone of earlier releases {key:.0} B); \
         per queued message job {job:.0} B"
    );
    assert!(
        tomb > 0.0 && tomb < key * 0.75,
        "tombstone {tomb:.0} B vs per-key {key:.0} B"
    );
    assert!(live > tomb, "live {live:.0} B");
    assert!(job > 100.0, "a job holds at least its text: {job:.0} B");
}
