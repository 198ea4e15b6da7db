//! The dashboard's one Elasticsearch round trip per poll: a single `_search` over the messages
//! and resources indices with filter aggregations, and the parsing of its answer into
//! [`EsFigures`]. Builds its own client from `ElasticArgs`; never writes to Elasticsearch.

use std::time::Duration;

use elasticsearch::SearchParts;
use pipeline::store::{exact_number, MessageStats, Store};
use serde_json::{json, Value};
use service_kit::config::ElasticArgs;

use crate::error::SourceError;
use crate::snapshot::{EsFigures, Latency, SECONDS_IN_CHART};

/// Reads the dashboard figures; cheap to clone.
#[derive(Clone)]
pub struct StatsReader {
    /// The pipeline store: its client, and its request path (dead nodes skipped).
    store: Store,
    messages: String,
    resources: String,
    timeout: Duration,
}

impl StatsReader {
    /// Uses the pipeline store's client for `args` (opens no connection); every request made
    /// here is limited to `timeout`.
    pub fn new(args: &ElasticArgs, timeout: Duration) -> anyhow::Result<StatsReader> {
        let store = Store::new(args)?;
        Ok(StatsReader {
            messages: store.messages_index().to_string(),
            resources: store.resources_index().to_string(),
            store,
            timeout,
        })
    }

    /// One `_search` request; `now_ms` (Unix ms) anchors every time window.
    pub async fn read(&self, now_ms: i64) -> Result<EsFigures, SourceError> {
        let indices = [self.messages.as_str(), self.resources.as_str()];
        let body = query_body(&self.messages, &self.resources, now_ms);
        let response = self
            .store
            .call(|| {
                self.store
                    .client()
                    .search(SearchParts::Index(&indices))
                    .ignore_unavailable(true)
                    .allow_no_indices(true)
                    .request_timeout(self.timeout)
                    .body(&body)
                    .send()
            })
            .await
            .map_err(|e| match e {
                pipeline::store::StoreError::Unavailable(why) => SourceError::EsUnreachable(why),
                other => SourceError::EsUnreachable(other.to_string()),
            })?;
        let status = response.status_code().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| SourceError::EsUnreachable(e.to_string()))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let reason = body["error"]["reason"]
                .as_str()
                .or_else(|| body["error"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(SourceError::EsRejected { status, reason });
        }
        parse_answer(&body, now_ms)
    }
}

/// Start (Unix ms) of the oldest bucket of the chart: 60 whole seconds ending at `now`'s second.
fn chart_start_ms(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000) * 1000 - (SECONDS_IN_CHART as i64) * 1000
}

/// The search body. Every aggregation is top level, so its cost follows the documents it
/// covers, not the size of the indices: the max is read from the index's points, a filter
/// without sub-aggregations is counted per segment without visiting documents, and a filter
/// with sub-aggregations visits only the documents its range matches (Elasticsearch's
/// filter-by-filter execution — which a filter NESTED in another filter does not get: it would
/// test every message of the indices, once a second). The time-window filters need no `_index`
/// term: only messages have `received_at`, only resources `delivered_at`.
pub fn query_body(messages: &str, resources: &str, now_ms: i64) -> Value {
    let chart_start = chart_start_ms(now_ms);
    let chart_end = chart_start + SECONDS_IN_CHART as i64 * 1000;
    json!({
        "size": 0,
        "track_total_hits": false,
        "aggs": {
            // Exact since numbers are ≤ 2^53 − 1. Only messages have a `number`.
            "max_number": { "max": { "field": "number" } },
            // `messages` is the alias: a term on `_index` matches the indices behind it.
            "messages": { "filter": { "term": { "_index": messages } } },
            "messages_10s": {
                "filter": { "range": { "received_at": {
                    "gte": now_ms - 10_000, "lte": now_ms, "format": "epoch_millis" } } },
                "aggs": { "avg_transit": { "avg": { "field": "transit_ms" } } }
            },
            "messages_60s": {
                "filter": { "range": { "received_at": {
                    "gte": chart_start, "lt": chart_end, "format": "epoch_millis" } } },
                "aggs": { "per_second": { "date_histogram": {
                    "field": "received_at", "fixed_interval": "1s", "min_doc_count": 1 } } }
            },
            "resources": { "filter": { "term": { "_index": resources } } },
            "resources_60s": {
                "filter": { "range": { "delivered_at": {
                    "gte": now_ms - 60_000, "lte": now_ms, "format": "epoch_millis" } } },
                "aggs": { "latency": { "percentiles": {
                    "field": "latency_ms", "percents": [50, 99] } } }
            }
        }
    })
}

fn count(v: &Value) -> u64 {
    v["doc_count"].as_u64().unwrap_or(0)
}

fn finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// Turns the search answer into figures. Missing indices answer without aggregations: zeros.
pub fn parse_answer(body: &Value, now_ms: i64) -> Result<EsFigures, SourceError> {
    if !body.is_object() || body.get("hits").is_none() {
        return Err(SourceError::EsDecode("no `hits` in search answer".into()));
    }
    let aggs = &body["aggregations"];
    let max_number = exact_number(&aggs["max_number"]["value"]);
    let window = &aggs["messages_10s"];
    let count_10s = count(window);
    let avg_transit_ms_10s = if count_10s == 0 {
        None
    } else {
        finite(&window["avg_transit"]["value"])
    };
    let start = chart_start_ms(now_ms);
    let mut per_second = vec![0u64; SECONDS_IN_CHART];
    if let Some(buckets) = aggs["messages_60s"]["per_second"]["buckets"].as_array() {
        for bucket in buckets {
            let key = bucket["key"].as_i64().unwrap_or(i64::MIN);
            let slot = (key - start).div_euclid(1000);
            if let Ok(i) = usize::try_from(slot) {
                if let Some(cell) = per_second.get_mut(i) {
                    *cell += count(bucket);
                }
            }
        }
    }
    let values = &aggs["resources_60s"]["latency"]["values"];
    Ok(EsFigures {
        messages: MessageStats {
            max_number,
            avg_transit_ms_10s,
            count_10s,
            total: count(&aggs["messages"]),
        },
        messages_per_second_60s: per_second,
        resources_completed: count(&aggs["resources"]),
        webhook_latency_ms: Latency {
            p50: finite(&values["50.0"]),
            p99: finite(&values["99.0"]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_500; // .5 s into a second

    #[test]
    fn an_answer_without_indices_reads_as_empty_figures() {
        let body = json!({"hits": {"hits": []}});
        let f = parse_answer(&body, NOW).unwrap();
        assert_eq!(f.messages.max_number, None);
        assert_eq!(f.messages.avg_transit_ms_10s, None);
        assert_eq!(
            (
                f.messages.count_10s,
                f.messages.total,
                f.resources_completed
            ),
            (0, 0, 0)
        );
        assert_eq!(f.messages_per_second_60s, vec![0; SECONDS_IN_CHART]);
    }

    #[test]
    fn buckets_land_in_their_second_and_outsiders_are_dropped() {
        let start = chart_start_ms(NOW);
        let body = json!({
            "hits": {"hits": []},
            "aggregations": {"max_number": {"value": 9_007_199_254_740_991.0_f64},
                "messages": {"doc_count": 12},
                "messages_10s": {"doc_count": 2, "avg_transit": {"value": 1.5}},
                "messages_60s": {"per_second": {"buckets": [
                    {"key": start, "doc_count": 3},
                    {"key": start + 59_000, "doc_count": 4},
                    {"key": start + 60_000, "doc_count": 9},
                    {"key": start - 1_000, "doc_count": 9}
                ]}},
                "resources": {"doc_count": 2},
                "resources_60s": {"latency": {"values": {"50.0": 10.0, "99.0": null}}}}
        });
        let f = parse_answer(&body, NOW).unwrap();
        assert_eq!(
            f.messages.max_number,
            Some(9_007_199_254_740_991),
            "2^53 - 1 comes back exact"
        );
        assert_eq!(f.messages.avg_transit_ms_10s, Some(1.5));
        assert_eq!(f.messages_per_second_60s[0], 3);
        assert_eq!(f.messages_per_second_60s[59], 4);
        assert_eq!(f.messages_per_second_60s.iter().sum::<u64>(), 7);
        assert_eq!(
            f.webhook_latency_ms,
            Latency {
                p50: Some(10.0),
                p99: None
            }
        );
    }

    #[test]
    fn an_empty_window_is_none_even_if_an_average_is_reported() {
        let body = json!({"hits": {"hits": []}, "aggregations": {"messages": {"doc_count": 1},
            "messages_10s": {"doc_count": 0, "avg_transit": {"value": 0.0}}}});
        assert_eq!(
            parse_answer(&body, NOW)
                .unwrap()
                .messages
                .avg_transit_ms_10s,
            None
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(
            parse_answer(&json!([1, 2]), NOW),
            Err(SourceError::EsDecode(_))
        ));
        assert!(matches!(
            parse_answer(&Value::Null, NOW),
            Err(SourceError::EsDecode(_))
        ));
    }

    #[test]
    fn the_chart_covers_the_sixty_whole_seconds_before_now() {
        let body = query_body("m", "r", NOW);
        let range = &body["aggs"]["messages_60s"]["filter"]["range"]["received_at"];
        assert_eq!(range["gte"], 1_700_000_000_000i64 - 60_000);
        assert_eq!(range["lt"], 1_700_000_000_000i64);
        assert_eq!(body["aggs"]["max_number"]["max"]["field"], "number");
        assert_eq!(body["size"], 0);
        // Flat cost: no aggregation is nested in a filter that matches every message.
        for (name, agg) in body["aggs"].as_object().unwrap() {
            if agg["filter"].get("term").is_some() {
                assert!(
                    agg.get("aggs").is_none(),
                    "{name} nests aggregations under a term"
                );
            }
        }
    }
}
