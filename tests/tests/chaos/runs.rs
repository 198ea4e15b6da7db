//! Handler runs as the workers log them (`conveyor::run` events, JSON lines: `phase` `start`
//! before the handler, `end` when it returned, with the job id and the delivery — entry id and
//! delivery count, the run's lease token), and the check every row ends with: no handler run of a
//! live worker's job by another worker.
//!
//! Definition. A run R_A of job J by worker A *overlaps* a run R_B of J by another worker B when
//! R_B starts while R_A is in progress: `start(A) <= start(B) < end(A)`, where `end(A)` is A's
//! `end` event, else the moment A's process was seen gone, else never. A counts as *live* at
//! `start(B)` unless the test cut A off from Redis at some moment of `[start(A), start(B)]`:
//! SIGKILLed (from the kill on, for good) or behind a TCP black hole (while the hole lasted).
//! Anything else — Redis paused or restarted under every worker, Elasticsearch or the webhook
//! target away, a slow handler, a SIGTERM — leaves A live, so a run of its job elsewhere is a
//! finding. Every row asserts the count of such overlaps is 0.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One handler run of one job by one worker.
#[derive(Debug, Clone)]
pub struct Run {
    pub worker: usize,
    pub queue: String,
    pub job: String,
    pub entry: String,
    pub deliveries: u64,
    pub start: DateTime<Utc>,
    /// `None`: the handler never returned (its process died or was stopped first).
    pub end: Option<DateTime<Utc>>,
}

/// A stretch of time worker `worker` was cut off from Redis by the test (`to: None`: for good).
#[derive(Debug, Clone)]
pub struct CutOff {
    pub worker: usize,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// The runs in one worker's log (every queue), a start paired with the end of the same delivery.
pub fn parse(worker: usize, log: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut open: HashMap<(String, String, String, u64), usize> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("conveyor::run")) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["target"] != "conveyor::run" {
            continue;
        }
        let (Some(queue), Some(job), Some(at)) = (
            v["queue"].as_str(),
            v["job"].as_str(),
            v["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        ) else {
            continue;
        };
        let at = at.with_timezone(&Utc);
        let entry = v["entry"].as_str().unwrap_or("").to_string();
        let deliveries = v["deliveries"].as_u64().unwrap_or(0);
        let key = (
            queue.to_string(),
            job.to_string(),
            entry.clone(),
            deliveries,
        );
        if v["phase"] == "end" {
            if let Some(i) = open.remove(&key) {
                runs[i].end = Some(at);
            }
            continue;
        }
        open.insert(key, runs.len());
        runs.push(Run {
            worker,
            queue: queue.to_string(),
            job: job.to_string(),
            entry,
            deliveries,
            start: at,
            end: None,
        });
    }
    runs
}

/// Handler runs per job id of `queue`.
pub fn counts(runs: &[Run], queue: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for r in runs.iter().filter(|r| r.queue == queue) {
        *counts.entry(r.job.clone()).or_insert(0) += 1;
    }
    counts
}

/// Every (A, B) pair where B's run of a job began while live worker A's run of it was in
/// progress (see the module doc); `exits` are the moments workers were seen gone.
pub fn overlaps<'a>(
    runs: &'a [Run],
    cut: &[CutOff],
    exits: &[(usize, DateTime<Utc>)],
) -> Vec<(&'a Run, &'a Run)> {
    let mut by_job: HashMap<(&str, &str), Vec<&Run>> = HashMap::new();
    for r in runs {
        by_job.entry((&r.queue, &r.job)).or_default().push(r);
    }
    let gone = |w: usize| exits.iter().filter(|(x, _)| *x == w).map(|(_, t)| *t).min();
    let mut found = Vec::new();
    for same in by_job.values().filter(|v| v.len() > 1) {
        for a in same {
            let end = a.end.or_else(|| gone(a.worker));
            for b in same {
                let after = a.start < b.start || (a.start == b.start && a.worker < b.worker);
                if a.worker == b.worker || !after || end.is_some_and(|e| b.start >= e) {
                    continue;
                }
                let cut_off = cut.iter().any(|c| {
                    c.worker == a.worker && c.from <= b.start && c.to.is_none_or(|t| t >= a.start)
                });
                if !cut_off {
                    found.push((*a, *b));
                }
            }
        }
    }
    found
}
