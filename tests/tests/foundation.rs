//! The ground every other test stands on: the suite really talks to Redis and Elasticsearch.

use serde_json::json;
use testkit::TestEnv;

/// XPENDING summary: count, lowest id, highest id, per-consumer counts.
type XPendingSummary = (
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

#[tokio::test]
async fn redis_stream_round_trip_xadd_xreadgroup_xack() {
    let env = TestEnv::new("foundation_redis").await;
    let mut conn = env.redis.get().await.unwrap();
    let stream = format!("{}:roundtrip", env.namespace);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let id: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("payload")
        .arg("hello conveyor")
        .query_async(&mut conn)
        .await
        .unwrap();
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("c1")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let entries = &read.keys[0].ids;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, id);
    let payload: String = entries[0].get("payload").unwrap();
    assert_eq!(payload, "hello conveyor");
    let acked: i64 = redis::cmd("XACK")
        .arg(&stream)
        .arg("workers")
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let pending: XPendingSummary = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "nothing pending after XACK");
    env.cleanup().await;
    assert!(
        env.redis_keys().await.is_empty(),
        "cleanup removes the test's keys"
    );
}

#[tokio::test]
async fn elasticsearch_bulk_index_two_documents_and_search_them_back() {
    let env = TestEnv::new("foundation_es").await;
    let index = env.index("docs");
    let body = format!(
        "{}\n{}\n{}\n{}\n",
        json!({"index": {"_index": index, "_id": "a"}}),
        json!({"word": "alpha", "n": 1}),
        json!({"index": {"_index": index, "_id": "b"}}),
        json!({"word": "beta", "n": 2}),
    );
    let resp = env
        .http
        .post(format!("{}/_bulk?refresh=wait_for", env.elasticsearch_url))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let bulk: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(bulk["errors"], false, "bulk answer: {bulk}");
    assert_eq!(bulk["items"].as_array().unwrap().len(), 2);

    let found = env
        .search(
            "docs",
            json!({"query": {"match_all": {}}, "sort": [{"n": "asc"}]}),
        )
        .await;
    let hits = found["hits"]["hits"].as_array().unwrap();
    let words: Vec<&str> = hits
        .iter()
        .map(|h| h["_source"]["word"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["alpha", "beta"]);
    assert_eq!(found["hits"]["total"]["value"], 2);
}
