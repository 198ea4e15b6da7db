//! The two queues the pipeline runs, named once: `messages` (one job per accepted packet, fed by
//! the consumer, run by the worker) and `webhooks` (one delivery per completed resource, enqueued
//! by the collation script, run by the worker's delivery side). Every crate builds them from
//! here, so a queue name is spelled in one place. Settings beyond the name (attempts, backoff)
//! stay with the binary that owns them.

use queue::QueueConfig;

/// Name of the queue of `MessageJob`s.
pub const MESSAGES: &str = "messages";
/// Name of the queue of `DeliveryJob`s.
pub const WEBHOOKS: &str = "webhooks";

/// The `messages` queue of a namespace, with the queue's default settings.
pub fn messages(namespace: &str) -> QueueConfig {
    QueueConfig::new(namespace, MESSAGES)
}

/// The `webhooks` queue of a namespace, with the queue's default settings.
pub fn webhooks(namespace: &str) -> QueueConfig {
    QueueConfig::new(namespace, WEBHOOKS)
}
