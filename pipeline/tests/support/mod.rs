//! Helpers shared by the collation tests: a collator over a `webhooks` queue and a stored
//! packet. No assertions here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline::collate::Collator;
use pipeline::ids::{ProducerName, ResourceId, ResourcePart};
use pipeline::packet::StoredMessage;
use pipeline::resource::DeliveryJob;
use queue::{Queue, QueueConfig};

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

/// The key of resource `id` of producer `p`, the producer of every [`packet`].
pub fn key(id: &str) -> pipeline::ids::ResourceKey {
    pipeline::ids::ResourceKey::parse(&format!("p@{id}")).unwrap()
}

pub fn packet(
    resource: &str,
    seq: u32,
    total: u32,
    text: &str,
    received_at: DateTime<Utc>,
) -> StoredMessage {
    StoredMessage {
        producer: ProducerName::parse("p").unwrap(),
        number: u64::from(seq),
        sent_at: received_at,
        received_at,
        stored_at: received_at,
        transit_ms: 0.0,
        word_lengths: pipeline::task::word_lengths(text),
        text: text.into(),
        part: ResourcePart::new(ResourceId::parse(resource).unwrap(), seq, total).ok(),
    }
}
