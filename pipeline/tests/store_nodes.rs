//! The store over several node URLs against the real Elasticsearch (the one test server, reached
//! through different addresses): a node that refuses connections is skipped and every request
//! still succeeds at once (sent again to the next node); a node cut off mid-run costs at most
//! the requests under way and is then skipped; one URL keeps the single-node client. And
//! `ES_SHARDS` / `ES_REPLICAS` reach the indices the store creates.

use chrono::{Duration, Utc};
use pipeline::ids::ProducerName;
use pipeline::packet::StoredMessage;
use pipeline::store::Store;
use serde_json::{json, Value};
use service_kit::config::ElasticArgs;
use testkit::{TcpProxy, TestEnv};

fn message(number: u64) -> StoredMessage {
    let received_at = Utc::now();
    StoredMessage {
        producer: ProducerName::parse("nodes").unwrap(),
        number,
        sent_at: received_at - Duration::milliseconds(3),
        received_at,
        stored_at: received_at,
        transit_ms: 3.0,
        word_lengths: vec![5],
        text: "hello".into(),
        part: None,
    }
}

/// A loopback port nothing listens on (connections to it are refused).
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn count(env: &TestEnv) -> u64 {
    env.refresh("messages").await;
    let answer = env
        .search("messages", json!({"size": 0, "track_total_hits": true}))
        .await;
    answer["hits"]["total"]["value"].as_u64().unwrap()
}

#[tokio::test]
async fn a_refusing_node_is_skipped_and_no_request_fails() {
    let env = TestEnv::new("store_nodes_refused").await;
    let mut args = ElasticArgs::new(
        format!("{},{}", refused_url(), env.elasticsearch_url),
        env.index_prefix.clone(),
    );
    args.es_shards = 2;
    let store = Store::new(&args).unwrap();
    assert_eq!(store.nodes(), Some((2, 2)));
    store
        .ensure_indices()
        .await
        .expect("set-up through the live node");
    for batch in 0..20u64 {
        let docs: Vec<StoredMessage> = (0..5).map(|i| message(batch * 5 + i)).collect();
        store
            .index_messages(&docs)
            .await
            .unwrap_or_else(|e| panic!("batch {batch}: {e}"));
    }
    assert_eq!(store.nodes(), Some((1, 2)), "the refusing node is dead");
    assert_eq!(count(&env).await, 100, "100 messages, each once");

    // The created daily index has the configured shards.
    let url = format!(
        "{}/{}-*/_settings",
        env.elasticsearch_url,
        env.index("messages")
    );
    let settings: Value = env.es.get(url).send().await.unwrap().json().await.unwrap();
    let (name, index) = settings.as_object().unwrap().iter().next().unwrap();
    assert_eq!(
        index["settings"]["index"]["number_of_shards"], "2",
        "{name}"
    );
    assert_eq!(
        index["settings"]["index"]["number_of_replicas"], "0",
        "{name}"
    );
    println!("20 bulk requests over a refusing node and a live one: 0 failed, 100 stored once");
}

#[tokio::test]
async fn a_node_cut_off_is_marked_dead_and_the_other_serves() {
    let env = TestEnv::new("store_nodes_cut").await;
    let proxy = TcpProxy::start(env.elasticsearch_addr()).await;
    let args = ElasticArgs::new(
        format!("{},{}", proxy.http_url(), env.elasticsearch_url),
        env.index_prefix.clone(),
    );
    let store = Store::new(&args).unwrap();
    store.ensure_indices().await.unwrap();
    store.index_messages(&[message(0)]).await.unwrap();
    proxy.set_enabled(false);
    let mut failed = 0;
    for n in 1..=20u64 {
        if store.index_messages(&[message(n)]).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed <= 1,
        "only a request under way when the node went may fail: {failed}"
    );
    assert_eq!(store.nodes(), Some((1, 2)));
    let stored = count(&env).await;
    assert_eq!(stored, 21 - failed, "every acknowledged write stored once");
    // Back: after its backoff (1 s) the node is tried again, answers, and is live.
    proxy.set_enabled(true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for n in 21..=24u64 {
        store.index_messages(&[message(n)]).await.unwrap();
    }
    assert_eq!(store.nodes(), Some((2, 2)), "the node answers again");
    println!(
        "node cut off: {failed} request(s) failed out of 20, then skipped; back after its backoff"
    );
}

#[tokio::test]
async fn one_url_keeps_the_single_node_client() {
    let store = Store::new(&ElasticArgs::new("http://127.0.0.1:9200", "x-")).unwrap();
    assert_eq!(store.nodes(), None);
}
