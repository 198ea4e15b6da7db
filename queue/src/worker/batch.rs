//! One batch's life: decode entries into typed jobs, run the handler, and settle every outcome
//! in ONE pipelined round trip — ack + delete finished entries (one script call per partition),
//! move retries to the delayed set with backoff, move waits there with the same attempt number
//! (a dependency outage does not use up attempts), dead-letter the rest, store and announce
//! results of reply-wanted jobs. Every settling script is fenced: it acts only on an entry this
//! consumer still owns at the delivery count it read it at, so a worker whose entries were
//! taken over settles none of them. Settling is retried while Redis is unreachable (until the
//! hard stop); an error Redis answers with is retried a few times, then the batch is released
//! (its entries stay pending, to be run again) and `conveyor_settle_failures_total` counts it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use super::send;
use super::shared::{in_flight, Delivered, Handler, Held, Shared};
use crate::backoff::retry_delay;
use crate::config::QueueConfig;
use crate::fanout::Fanout;
use crate::job::{Entry, Job, JobId, Outcome, MIN_WAIT};
use crate::keys::Keys;
use crate::keys::GROUP;
use crate::router::ReplyMsg;
use crate::scripts;

/// An entry and what became of it.
struct Settle {
    partition: u16,
    entry_id: String,
    deliveries: u64,
    entry: Entry,
    outcome: Outcome,
}

/// Runs one batch to completion (or until the shutdown deadline's hard stop).
pub(crate) async fn process<T, H>(shared: Arc<Shared<T, H>>, entries: Vec<Delivered>, _held: Held)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    // Tracked as in flight by whoever read or reclaimed them; untracked here when settled.
    let ids = in_flight(&entries);
    let hard_stop = shared.hard_stop.clone();
    let span = tracing::debug_span!("batch", queue = shared.queue.name(), size = ids.len());
    tokio::select! {
        _ = run(&shared, entries).instrument(span) => {}
        _ = hard_stop.cancelled() => {}
    }
    shared.track(&ids, false);
}

async fn run<T, H>(shared: &Shared<T, H>, entries: Vec<Delivered>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let mut settled = Vec::with_capacity(entries.len());
    let mut jobs = Vec::with_capacity(entries.len());
    let mut waiting = Vec::with_capacity(entries.len());
    let limit = poison_limit(shared.queue.config());
    let wait_histogram = metrics::histogram!("conveyor_job_wait_seconds", "queue" => shared.queue.name().to_string());
    for d in entries {
        let poison = Some(d.deliveries).filter(|n| *n > limit);
        let parsed = Entry::from_map(&d.map);
        let dead_reason = match (&parsed, poison) {
            (_, Some(n)) => Some(format!(
                "poison job: delivered {n} times without being settled"
            )),
            (None, None) => Some("malformed entry: missing id or payload".to_string()),
            (Some(_), None) => None,
        };
        if let Some(reason) = dead_reason {
            let entry = parsed.unwrap_or_else(|| Entry {
                id: d.entry_id.clone(),
                payload: String::new(),
                attempt: 1,
                enqueued_at: 0,
                reply: false,
                history: Vec::new(),
                trace: None,
            });
            let outcome = Outcome::Dead { reason };
            settled.push(Settle {
                partition: d.partition,
                entry_id: d.entry_id,
                deliveries: d.deliveries,
                entry,
                outcome,
            });
            continue;
        }
        let Some(entry) = parsed else { continue };
        match serde_json::from_str::<T>(&entry.payload) {
            Ok(payload) => {
                if entry.attempt == 1 && entry.enqueued_at > 0 {
                    // Enqueued → started, of first attempts (a retry's wait includes its backoff).
                    let waited = crate::job::now_ms().saturating_sub(entry.enqueued_at);
                    wait_histogram.record(waited as f64 / 1000.0);
                }
                jobs.push(Job {
                    id: JobId(entry.id.clone()),
                    payload,
                    attempt: entry.attempt,
                    enqueued_at: UNIX_EPOCH + Duration::from_millis(entry.enqueued_at),
                    partition: d.partition,
                    reply_wanted: entry.reply,
                    trace: entry.trace.clone(),
                });
                waiting.push((d.partition, d.entry_id, d.deliveries, entry));
            }
            Err(e) => {
                let outcome = Outcome::Dead {
                    reason: format!("undecodable payload: {e}"),
                };
                settled.push(Settle {
                    partition: d.partition,
                    entry_id: d.entry_id,
                    deliveries: d.deliveries,
                    entry,
                    outcome,
                });
            }
        }
    }
    if !jobs.is_empty() {
        // Two events per handler run of a job, for run counting and overlap checks (enable the
        // target `conveyor::run` at trace level; off, it costs a level check): `phase = start`
        // before the handler, `phase = end` when it returned. The delivery (entry id + delivery
        // count) is the run's lease token: the fence its settle is checked against.
        let run_events = tracing::enabled!(target: "conveyor::run", tracing::Level::TRACE);
        let job_ids: Vec<JobId> = match run_events {
            true => jobs.iter().map(|j| j.id.clone()).collect(),
            false => Vec::new(),
        };
        let run_event = |phase: &str| {
            for (job, (_, entry, deliveries, e)) in job_ids.iter().zip(&waiting) {
                tracing::trace!(target: "conveyor::run", queue = shared.queue.name(), job = %job,
                    entry = %entry, deliveries, attempt = e.attempt,
                    consumer = %shared.config.consumer, phase, "run");
            }
        };
        run_event("start");
        let started = Instant::now();
        // A panicking handler must not strand its jobs (their leases would be extended forever):
        // every job of the batch is retried instead.
        let handled = AssertUnwindSafe(shared.handler.handle(jobs))
            .catch_unwind()
            .await;
        let outcomes = handled.unwrap_or_else(|_| {
            tracing::error!(jobs = waiting.len(), "handler panicked; retrying its batch");
            waiting
                .iter()
                .map(|_| Outcome::Retry {
                    error: "handler panicked".into(),
                    after: None,
                })
                .collect()
        });
        run_event("end");
        let took = started.elapsed().as_secs_f64();
        let histogram = metrics::histogram!("conveyor_job_duration_seconds", "queue" => shared.queue.name().to_string());
        let mut outcomes = outcomes.into_iter();
        for (partition, entry_id, deliveries, entry) in waiting {
            histogram.record(took);
            let outcome = outcomes.next().unwrap_or_else(|| Outcome::Retry {
                error: "handler returned no outcome for this job".into(),
                after: None,
            });
            settled.push(Settle {
                partition,
                entry_id,
                deliveries,
                entry,
                outcome,
            });
        }
    }
    settle(shared, settled).await;
}

/// Builds the settling pipeline and sends it until Redis accepts it.
async fn settle<T, H>(shared: &Shared<T, H>, settled: Vec<Settle>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    if settled.is_empty() {
        return;
    }
    let cfg = shared.queue.config();
    let keys = shared.queue.keys();
    // Grouped by partition (a stable sort keeps each partition's order): one pipeline on one
    // node, one per partition on a cluster, each ending with its partition's ack.
    let mut settled = settled;
    settled.sort_by_key(|s| s.partition);
    let mut pipes = Fanout::new(shared.queue.pool().is_cluster(), shared.queue.keys());
    let consumer = &shared.config.consumer;
    let mut acks: Vec<String> = Vec::new();
    let mut open: Option<u16> = None;
    let (mut done, mut retried, mut waited, mut dead) = (0u64, 0u64, 0u64, 0u64);
    for s in settled {
        if open != Some(s.partition) {
            if let Some(p) = open {
                push_ack(&mut pipes, keys, p, consumer, std::mem::take(&mut acks));
            }
            open = Some(s.partition);
        }
        let pipe = pipes.partition(s.partition);
        let stream = keys.stream(s.partition);
        let final_error = match s.outcome {
            Outcome::Done(value) => {
                if s.entry.reply {
                    announce(shared, pipe, s.partition, &s.entry.id, Ok(value));
                }
                acks.push(s.entry_id);
                acks.push(s.deliveries.to_string());
                done += 1;
                continue;
            }
            Outcome::Retry { error, after } if s.entry.attempt < cfg.max_attempts => {
                let mut next = s.entry.clone();
                next.attempt += 1;
                next.history.push(error);
                let delay = after.unwrap_or_else(|| retry_delay(cfg, s.entry.attempt));
                let fence = (consumer.as_str(), s.entry_id, s.deliveries);
                push_delayed(pipe, keys, s.partition, fence, delay, &next);
                retried += 1;
                continue;
            }
            Outcome::Wait { reason, after } => {
                let mut next = s.entry.clone();
                next.note_wait(&reason);
                let fence = (consumer.as_str(), s.entry_id, s.deliveries);
                push_delayed(pipe, keys, s.partition, fence, after.max(MIN_WAIT), &next);
                waited += 1;
                continue;
            }
            Outcome::Retry { error, .. } => error,
            Outcome::Dead { reason } => reason,
        };
        let keep = shared.queue.config().dead_letter_max.to_string();
        let mut args = vec![
            GROUP.to_string(),
            consumer.clone(),
            s.entry_id,
            s.deliveries.to_string(),
            keep,
        ];
        for (k, v) in s.entry.dead_fields(&final_error) {
            args.push(k.to_string());
            args.push(v);
        }
        let (dead_key, trimmed) = (keys.dead(s.partition), keys.dead_trimmed(s.partition));
        scripts::push(pipe, &scripts::DEAD, &[&stream, &dead_key, &trimmed], &args);
        pipe.ignore();
        if s.entry.reply {
            announce(shared, pipe, s.partition, &s.entry.id, Err(final_error));
        }
        dead += 1;
    }
    if let Some(p) = open {
        push_ack(&mut pipes, keys, p, consumer, acks);
    }
    pipes.wait_for(cfg.replication());
    send::send(shared, &pipes).await;
    let name = shared.queue.name().to_string();
    let counts = [
        ("done", done),
        ("retry", retried),
        ("wait", waited),
        ("dead", dead),
    ];
    for (outcome, n) in counts {
        if n > 0 {
            metrics::counter!("conveyor_jobs_processed_total", "queue" => name.clone(), "outcome" => outcome).increment(n);
        }
    }
}

/// Adds `ack.lua` for partition `p`'s finished entries (`ids`: entry id, delivery count, …).
fn push_ack(pipes: &mut Fanout, keys: &Keys, p: u16, consumer: &str, ids: Vec<String>) {
    if ids.is_empty() {
        return;
    }
    let (lo, hi) = id_range(ids.iter().step_by(2));
    let mut args = Vec::with_capacity(ids.len() + 4);
    args.push(GROUP.to_string());
    args.push(consumer.to_string());
    args.push(lo);
    args.push(hi);
    args.extend(ids);
    let pipe = pipes.partition(p);
    scripts::push(pipe, &scripts::ACK, &[&keys.stream(p)], &args);
    pipe.ignore();
}

/// The lowest and the highest of stream entry ids (`<ms>-<seq>`, compared as numbers), as
/// `ack.lua` takes them; ("0-0", "0-0") for none.
fn id_range<'a>(ids: impl Iterator<Item = &'a String> + Clone) -> (String, String) {
    let order = |id: &&String| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    match (ids.clone().min_by_key(order), ids.max_by_key(order)) {
        (Some(lo), Some(hi)) => (lo.clone(), hi.clone()),
        _ => ("0-0".to_string(), "0-0".to_string()),
    }
}

/// Adds `retry.lua` to the pipeline: the entry leaves the stream and `next` (the entry to run
/// later) goes to the delayed set, due `delay` after now by Redis's clock — if the entry is
/// still this consumer's: `fence` is (consumer, entry id, delivery count).
fn push_delayed(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    partition: u16,
    fence: (&str, String, u64),
    delay: Duration,
    next: &Entry,
) {
    let (consumer, entry_id, deliveries) = fence;
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 4);
    let args = vec![
        GROUP.to_string(),
        consumer.to_string(),
        entry_id,
        deliveries.to_string(),
        delay_ms.to_string(),
        next.delayed_member(),
    ];
    scripts::push(
        pipe,
        &scripts::RETRY,
        &[&keys.stream(partition), &keys.delayed(partition)],
        &args,
    );
    pipe.ignore();
}

/// Stores a result with its TTL and announces it on the results channel.
fn announce<T, H>(
    shared: &Shared<T, H>,
    pipe: &mut redis::Pipeline,
    partition: u16,
    job_id: &str,
    result: Result<serde_json::Value, String>,
) {
    let (ok, value, error) = match result {
        Ok(value) => (true, value, None),
        Err(error) => (false, serde_json::Value::Null, Some(error)),
    };
    let msg = ReplyMsg {
        id: job_id.to_string(),
        ok,
        value,
        error,
    };
    let keys = shared.queue.keys();
    let raw = serde_json::to_string(&msg).unwrap_or_default();
    let ttl = shared.queue.config().result_ttl.as_millis().max(1) as u64;
    pipe.cmd("SET")
        .arg(keys.result(partition, &msg.id))
        .arg(&raw)
        .arg("PX")
        .arg(ttl)
        .ignore();
    let (publish, channel) = shared.queue.results_channel(partition);
    pipe.cmd(publish).arg(channel).arg(&raw).ignore();
}

/// Deliveries after which a reclaimed entry is poison (it keeps killing or stalling its
/// workers) and is dead-lettered instead of run again: two more than `max_attempts`.
fn poison_limit(cfg: &QueueConfig) -> u64 {
    u64::from(cfg.max_attempts) + 2
}

#[cfg(test)]
mod tests {
    use super::id_range;

    #[test]
    fn id_range_compares_entry_ids_as_numbers() {
        let ids: Vec<String> = [
            "1700000000000-10",
            "1700000000000-9",
            "999-0",
            "1700000000001-0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            id_range(ids.iter()),
            ("999-0".to_string(), "1700000000001-0".to_string())
        );
        assert_eq!(
            id_range(ids[..2].iter()),
            (
                "1700000000000-9".to_string(),
                "1700000000000-10".to_string()
            )
        );
        assert_eq!(id_range([].iter()), ("0-0".to_string(), "0-0".to_string()));
    }
}
