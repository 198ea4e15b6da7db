//! Helpers shared by the collation tests: a pool, a collator over a `webhooks` queue, a stored
//! packet, and a stream's length. No assertions here.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline::collate::Collator;
use pipeline::packet::StoredMessage;
use pipeline::resource::DeliveryJob;
use queue::{Queue, QueueConfig};

pub fn pool(url: &str) -> deadpool_redis::Pool {
    deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
}

pub fn collator(
    pool: &deadpool_redis::Pool,
    ns: &str,
    partitions: u16,
) -> (Collator, Queue<DeliveryJob>) {
    let mut cfg = QueueConfig::new(ns, "webhooks");
    cfg.partitions = partitions;
    let q = Queue::new(pool.clone(), cfg);
    (
        Collator::new(pool.clone(), ns, &q, Duration::from_secs(60)),
        q,
    )
}

pub fn packet(
    resource: &str,
    seq: u32,
    total: u32,
    text: &str,
    received_at: DateTime<Utc>,
) -> StoredMessage {
    StoredMessage {
        producer: "p".into(),
        number: u64::from(seq),
        sent_at: received_at,
        received_at,
        stored_at: received_at,
        transit_ms: 0.0,
        word_lengths: pipeline::task::word_lengths(text),
        text: text.into(),
        resource_id: Some(resource.into()),
        seq: Some(seq),
        total: Some(total),
    }
}

pub async fn stream_len(pool: &deadpool_redis::Pool, key: &str) -> u64 {
    let mut c = pool.get().await.unwrap();
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}
