//! The dashboard's one Elasticsearch round trip per poll: a single `_search` over the messages
//! and resources indices with filter aggregations, and the parsing of its answer into
//! [`EsFigures`]. Builds its own client from `ElasticArgs`; never writes to Elasticsearch.

use std::time::Duration;

use elasticsearch::{Elasticsearch, SearchParts};
use pipeline::config::ElasticArgs;
use pipeline::store::Store;
use serde_json::{json, Value};

use crate::snapshot::{EsFigures, Latency, SECONDS_IN_CHART};

/// Why a stats round trip failed; the text is shown on the page, so it names no secrets.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("elasticsearch unreachable: {0}")]
    Unreachable(String),
    #[error("elasticsearch answered {status}: {reason}")]
    Rejected { status: u16, reason: String },
    #[error("elasticsearch answer not understood: {0}")]
    Decode(String),
}

/// Reads the dashboard figures; cheap to clone.
#[derive(Clone)]
pub struct StatsReader {
    client: Elasticsearch,
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
            client: store.client().clone(),
            messages: store.messages_index().to_string(),
            resources: store.resources_index().to_string(),
            timeout,
        })
    }

    /// One `_search` request; `now_ms` (Unix ms) anchors every time window.
    pub async fn read(&self, now_ms: i64) -> Result<EsFigures, EsError> {
        let indices = [self.messages.as_str(), self.resources.as_str()];
        let response = self
            .client
            .search(SearchParts::Index(&indices))
            .ignore_unavailable(true)
            .allow_no_indices(true)
            .request_timeout(self.timeout)
            .body(query_body(&self.messages, &self.resources, now_ms))
            .send()
            .await
            .map_err(|e| EsError::Unreachable(e.to_string()))?;
        let status = response.status_code().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| EsError::Decode(e.to_string()))?;
        if !(200..300).contains(&status) {
            let reason = body["error"]["reason"]
                .as_str()
                .or_else(|| body["error"].as_str())
                .unwrap_or("no reason given")
                .to_string();
            return Err(EsError::Rejected { status, reason });
        }
        parse_answer(&body, now_ms)
    }
}

/// Start (Unix ms) of the oldest bucket of the chart: 60 whole seconds ending at `now`'s second.
fn chart_start_ms(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000) * 1000 - (SECONDS_IN_CHART as i64) * 1000
}

/// The search body: newest `number` by sort (exact for longs), and per-index filter aggregations.
pub fn query_body(messages: &str, resources: &str, now_ms: i64) -> Value {
    let chart_start = chart_start_ms(now_ms);
    let chart_end = chart_start + SECONDS_IN_CHART as i64 * 1000;
    json!({
        "size": 1,
        "track_total_hits": false,
        "_source": ["number"],
        "sort": [{ "number": { "order": "desc", "unmapped_type": "long", "missing": "_last" } }],
        "post_filter": { "term": { "_index": messages } },
        "aggs": {
            "messages": {
                "filter": { "term": { "_index": messages } },
                "aggs": {
                    "last_10s": {
                        "filter": { "range": { "received_at": {
                            "gte": now_ms - 10_000, "lte": now_ms, "format": "epoch_millis" } } },
                        "aggs": { "avg_transit": { "avg": { "field": "transit_ms" } } }
                    },
                    "last_60s": {
                        "filter": { "range": { "received_at": {
                            "gte": chart_start, "lt": chart_end, "format": "epoch_millis" } } },
                        "aggs": { "per_second": { "date_histogram": {
                            "field": "received_at", "fixed_interval": "1s", "min_doc_count": 1 } } }
                    }
                }
            },
            "resources": {
                "filter": { "term": { "_index": resources } },
                "aggs": {
                    "last_60s": {
                        "filter": { "range": { "delivered_at": {
                            "gte": now_ms - 60_000, "lte": now_ms, "format": "epoch_millis" } } },
                        "aggs": { "latency": { "percentiles": {
                            "field": "latency_ms", "percents": [50, 99] } } }
                    }
                }
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
pub fn parse_answer(body: &Value, now_ms: i64) -> Result<EsFigures, EsError> {
    if !body.is_object() || body.get("hits").is_none() {
        return Err(EsError::Decode("no `hits` in search answer".into()));
    }
    let max_number = body["hits"]["hits"]
        .as_array()
        .and_then(|hits| hits.first())
        .and_then(|hit| {
            hit["sort"][0]
                .as_u64()
                .or_else(|| hit["_source"]["number"].as_u64())
        });
    let aggs = &body["aggregations"];
    let messages = &aggs["messages"];
    let window = &messages["last_10s"];
    let count_10s = count(window);
    let avg_transit_ms_10s = if count_10s == 0 {
        None
    } else {
        finite(&window["avg_transit"]["value"])
    };
    let start = chart_start_ms(now_ms);
    let mut per_second = vec![0u64; SECONDS_IN_CHART];
    if let Some(buckets) = messages["last_60s"]["per_second"]["buckets"].as_array() {
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
    let resources = &aggs["resources"];
    let values = &resources["last_60s"]["latency"]["values"];
    Ok(EsFigures {
        max_number,
        avg_transit_ms_10s,
        count_10s,
        total: count(messages),
        messages_per_second_60s: per_second,
        resources_completed: count(resources),
        webhook_latency_ms: Latency {
            p50: finite(&values["50.0"]),
            p99: finite(&values["99.0"]),
        },
    })
}
