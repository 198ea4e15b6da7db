//! What the producer sends: numbered packets with random words, grouped into resources of 1–5
//! packets whose `seq`s are sent out of order. Pure generation; no I/O and no clock except the
//! `sent_at` stamp taken when a body is rendered (just before the send).

use std::collections::VecDeque;

use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Words the texts are made of; a few are non-ASCII so character counts differ from byte counts.
const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "conveyor",
    "queue",
    "stream",
    "packet",
    "worker",
    "redis",
    "elastic",
    "index",
    "lease",
    "batch",
    "reply",
    "a",
    "is",
    "the",
    "résumé",
    "naïve",
    "über",
    "café",
    "データ",
    "ñandú",
    "throughput",
    "latency",
    "x",
    "retry",
    "backoff",
    "ack",
    "webhook",
    "ok",
];

/// One packet before its send time is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub number: u64,
    pub producer: String,
    pub resource: Option<Part>,
    pub text: String,
}

/// The resource a packet belongs to and its place in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub resource_id: String,
    pub seq: u32,
    pub total: u32,
}

#[derive(Serialize)]
struct Body<'a> {
    number: u64,
    sent_at: String,
    producer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u32>,
    text: &'a str,
}

impl Planned {
    fn body(&self, sent_at: String) -> Body<'_> {
        Body {
            number: self.number,
            sent_at,
            producer: &self.producer,
            resource_id: self.resource.as_ref().map(|r| r.resource_id.as_str()),
            seq: self.resource.as_ref().map(|r| r.seq),
            total: self.resource.as_ref().map(|r| r.total),
            text: &self.text,
        }
    }

    /// The JSON body with `sent_at` = now (RFC 3339, microseconds, UTC).
    pub fn render(&self) -> Vec<u8> {
        self.render_at(now_rfc3339())
    }

    /// The JSON body with the given `sent_at` (taken by the caller just before the send).
    pub fn render_at(&self, sent_at: String) -> Vec<u8> {
        serde_json::to_vec(&self.body(sent_at)).unwrap_or_default()
    }
}

/// A JSON array of packets, all stamped with the same `sent_at` = now.
pub fn render_batch(packets: &[Planned]) -> Vec<u8> {
    let now = now_rfc3339();
    let bodies: Vec<Body<'_>> = packets.iter().map(|p| p.body(now.clone())).collect();
    serde_json::to_vec(&bodies).unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Yields packets numbered `start..end` (or forever), resources formed from consecutive numbers.
pub struct Generator {
    producer: String,
    next: u64,
    end: Option<u64>,
    resources: bool,
    max_words: u32,
    pending: VecDeque<Planned>,
    rng: StdRng,
}

impl Generator {
    pub fn new(
        producer: &str,
        start: u64,
        limit: Option<u64>,
        resources: bool,
        max_words: u32,
    ) -> Self {
        Generator {
            producer: producer.to_string(),
            next: start,
            end: limit.map(|l| start.saturating_add(l)),
            resources,
            max_words: max_words.max(1),
            pending: VecDeque::new(),
            rng: StdRng::from_os_rng(),
        }
    }

    fn text(&mut self) -> String {
        let n = self.rng.random_range(1..=self.max_words);
        let words: Vec<&str> = (0..n)
            .map(|_| WORDS[self.rng.random_range(0..WORDS.len())])
            .collect();
        words.join(" ")
    }

    /// Plans the next resource (or single packet) into `pending`.
    fn refill(&mut self) {
        let remaining = self.end.map_or(u64::MAX, |e| e.saturating_sub(self.next));
        if remaining == 0 {
            return;
        }
        if !self.resources {
            let text = self.text();
            self.pending.push_back(Planned {
                number: self.next,
                producer: self.producer.clone(),
                resource: None,
                text,
            });
            self.next += 1;
            return;
        }
        let size = self.rng.random_range(1..=5u64).min(remaining) as u32;
        let mut seqs: Vec<u32> = (0..size).collect();
        seqs.shuffle(&mut self.rng);
        if size > 1 && seqs.windows(2).all(|w| w[0] < w[1]) {
            seqs.reverse(); // always out of order when there is more than one packet
        }
        let resource_id = format!("{}-r{}", self.producer, self.next);
        for seq in seqs {
            let text = self.text();
            self.pending.push_back(Planned {
                number: self.next,
                producer: self.producer.clone(),
                resource: Some(Part {
                    resource_id: resource_id.clone(),
                    seq,
                    total: size,
                }),
                text,
            });
            self.next += 1;
        }
    }
}

impl Iterator for Generator {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.pending.is_empty() {
            self.refill();
        }
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn numbers_count_up_and_resources_are_complete_and_shuffled() {
        let all: Vec<Planned> = Generator::new("p1", 5, Some(200), true, 8).collect();
        let numbers: Vec<u64> = all.iter().map(|p| p.number).collect();
        assert_eq!(numbers, (5..205).collect::<Vec<_>>());
        let mut by_resource: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
        for p in &all {
            let r = p.resource.as_ref().unwrap();
            assert!(r.resource_id.starts_with("p1-r"));
            by_resource
                .entry(r.resource_id.clone())
                .or_default()
                .push((r.seq, r.total));
        }
        let mut multi = 0;
        for parts in by_resource.values() {
            let total = parts[0].1;
            assert!((1..=5).contains(&total));
            assert_eq!(parts.len() as u32, total);
            let mut seqs: Vec<u32> = parts.iter().map(|(s, _)| *s).collect();
            if total > 1 {
                multi += 1;
                assert!(
                    seqs.windows(2).any(|w| w[0] > w[1]),
                    "sent out of order: {seqs:?}"
                );
            }
            seqs.sort();
            assert_eq!(seqs, (0..total).collect::<Vec<_>>());
        }
        assert!(multi > 0);
    }

    #[test]
    fn body_has_the_packet_fields() {
        let p = Generator::new("bench", 0, Some(1), false, 3)
            .next()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.render()).unwrap();
        assert_eq!(v["number"], 0);
        assert_eq!(v["producer"], "bench");
        assert!(v.get("resource_id").is_none());
        let words = v["text"].as_str().unwrap().split_whitespace().count();
        assert!((1..=3).contains(&words));
        let sent = v["sent_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(sent).is_ok(), "{sent}");
        let batch: serde_json::Value =
            serde_json::from_slice(&render_batch(&[p.clone(), p])).unwrap();
        assert_eq!(batch.as_array().unwrap().len(), 2);
    }
}
