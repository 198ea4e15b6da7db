//! Reading a test's Elasticsearch indices directly (never through Conveyor's code), so tests can
//! compare what the services say with what is really stored. A missing index reads as empty.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::TestEnv;

/// Refreshes `base` and counts its documents (0 when the index does not exist yet).
pub async fn count_docs(env: &TestEnv, base: &str) -> u64 {
    let url = format!("{}/{}", env.elasticsearch_url, env.index(base));
    let Ok(refreshed) = env.es.post(format!("{url}/_refresh")).send().await else {
        return 0;
    };
    if !refreshed.status().is_success() {
        return 0;
    }
    let Ok(resp) = env.es.get(format!("{url}/_count")).send().await else {
        return 0;
    };
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    answer["count"].as_u64().unwrap_or(0)
}

/// Polls until `base` holds at least `want` documents or `within` passes; returns the last count.
pub async fn wait_for_count(env: &TestEnv, base: &str, want: u64, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let n = count_docs(env, base).await;
        if n >= want || start.elapsed() > within {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every document of `base` (up to 10 000) as `(_id, _source)`, sorted by `sort_field` ascending.
pub async fn all_docs(env: &TestEnv, base: &str, sort_field: &str) -> Vec<(String, Value)> {
    env.refresh(base).await;
    let answer = env
        .search(
            base,
            json!({"size": 10000, "query": {"match_all": {}}, "sort": [{sort_field: "asc"}]}),
        )
        .await;
    answer["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    (
                        h["_id"].as_str().unwrap_or("").to_string(),
                        h["_source"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
