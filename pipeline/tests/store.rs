//! The Elasticsearch store against the real Elasticsearch: index creation (strict mapping,
//! race-safe), idempotent bulk indexing, reads, and stats equal to a direct query.

use chrono::{DateTime, Duration, Utc};
use pipeline::ids::{ProducerName, ResourceId, ResourcePart};
use pipeline::packet::wire::StoredMessageFields;
use pipeline::packet::StoredMessage;
use pipeline::store::{Fields, Store, StoreError, MAX_HEAVY_PAGE};
use serde_json::json;
use service_kit::config::ElasticArgs;
use testkit::TestEnv;

fn store(env: &TestEnv) -> Store {
    Store::new(&ElasticArgs::new(
        env.elasticsearch_url.clone(),
        env.index_prefix.clone(),
    ))
    .expect("store")
}

fn message(
    producer: &str,
    number: u64,
    received_at: DateTime<Utc>,
    transit_ms: f64,
) -> StoredMessage {
    let sent_at = received_at - Duration::microseconds((transit_ms * 1000.0) as i64);
    StoredMessage {
        producer: ProducerName::parse(producer).unwrap(),
        number,
        sent_at,
        received_at,
        stored_at: received_at + Duration::milliseconds(3),
        transit_ms,
        word_lengths: vec![5, 5],
        text: "héllo wörld".into(),
        part: None,
    }
}

fn name(s: &str) -> ProducerName {
    ProducerName::parse(s).unwrap()
}

#[tokio::test]
async fn bulk_then_get_and_list() {
    let env = TestEnv::new("store_bulk").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    let now = Utc::now();
    let mut a = message("alpha", 1, now - Duration::seconds(2), 12.5);
    a.part = ResourcePart::new(ResourceId::parse("res:1").unwrap(), 0, 2).ok();
    let b = message("beta", 2, now, 7.25);
    store.index_messages(&[a.clone(), b.clone()]).await.unwrap();

    // Get is real-time: no refresh needed.
    let got = store
        .get_message(&name("alpha"), 1)
        .await
        .unwrap()
        .expect("alpha:1 stored");
    assert_eq!(got, a);
    assert_eq!(
        store.get_message(&name("beta"), 2).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.get_message(&name("alpha"), 2).await.unwrap(), None);
    assert_eq!(store.get_message(&name("nobody"), 1).await.unwrap(), None);

    env.refresh("messages").await;
    let both = Fields {
        text: true,
        word_lengths: true,
    };
    let listed = |m: &StoredMessage| StoredMessageFields {
        producer: m.producer.clone(),
        number: m.number,
        sent_at: m.sent_at,
        received_at: m.received_at,
        stored_at: m.stored_at,
        transit_ms: m.transit_ms,
        word_lengths: Some(m.word_lengths.clone()),
        text: Some(m.text.clone()),
        resource_id: m.part.as_ref().map(|p| p.id().clone()),
        seq: m.part.as_ref().map(|p| p.seq()),
        total: m.part.as_ref().map(|p| p.total()),
    };
    let all = store.list_messages(None, 10, 0, both).await.unwrap();
    assert_eq!(all.messages, vec![listed(&b), listed(&a)], "newest first");
    assert_eq!(all.next_from, None, "fewer than asked: the last page");
    let alpha = store
        .list_messages(Some(&name("alpha")), 10, 0, both)
        .await
        .unwrap();
    assert_eq!(alpha.messages, vec![listed(&a)]);
    let second = store.list_messages(None, 1, 1, both).await.unwrap();
    assert_eq!(second.messages, vec![listed(&a)]);
    assert_eq!(second.next_from, Some(2), "a full page may have a next one");
    // Without `fields`, the large ones stay in Elasticsearch.
    let light = store
        .list_messages(None, 10, 0, Fields::default())
        .await
        .unwrap();
    let mut expected = listed(&b);
    expected.text = None;
    expected.word_lengths = None;
    assert_eq!(light.messages[0], expected);
    // A page with the large fields holds at most MAX_HEAVY_PAGE messages.
    assert_eq!(both.page_limit(), MAX_HEAVY_PAGE);
}

#[tokio::test]
async fn same_id_twice_is_one_document() {
    let env = TestEnv::new("store_idem").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    let first = message("p", 5, Utc::now(), 1.0);
    let mut second = first.clone();
    second.word_lengths = vec![1];
    store.index_messages(&[first]).await.unwrap();
    store
        .index_messages(&[second.clone(), second.clone()])
        .await
        .unwrap();
    env.refresh("messages").await;
    let answer = env
        .search("messages", json!({"query": {"match_all": {}}}))
        .await;
    assert_eq!(answer["hits"]["total"]["value"], 1);
    assert_eq!(answer["hits"]["hits"][0]["_id"], "p:5");
    assert_eq!(
        answer["hits"]["hits"][0]["_source"]["word_lengths"],
        json!([1])
    );
}

#[tokio::test]
async fn stats_match_a_direct_query() {
    let env = TestEnv::new("store_stats").await;
    let store = store(&env);
    // Empty (and even missing) index: nothing, not an error.
    let empty = store.stats().await.unwrap();
    assert_eq!(
        (
            empty.max_number,
            empty.avg_transit_ms_10s,
            empty.count_10s,
            empty.total
        ),
        (None, None, 0, 0)
    );
    store.ensure_indices().await.unwrap();
    let now = Utc::now();
    let big = (1u64 << 53) - 1; // the largest number the edge accepts: a double holds it exactly
    let docs = vec![
        message("p", big, now - Duration::minutes(5), 100.0),
        message("p", 3, now, 10.0),
        message("q", 4, now - Duration::seconds(1), 20.5),
    ];
    store.index_messages(&docs).await.unwrap();
    env.refresh("messages").await;
    let stats = store.stats().await.unwrap();

    let direct = env
        .search(
            "messages",
            json!({
                "size": 0,
                "track_total_hits": true,
                "query": {"range": {"received_at": {"gte": "now-10s"}}},
                "aggs": {"avg": {"avg": {"field": "transit_ms"}}}
            }),
        )
        .await;
    let total = env
        .search("messages", json!({"size": 0, "track_total_hits": true}))
        .await;
    assert_eq!(stats.max_number, Some(big));
    assert_eq!(
        stats.total,
        total["hits"]["total"]["value"].as_u64().unwrap()
    );
    assert_eq!(stats.total, 3);
    assert_eq!(
        stats.count_10s,
        direct["hits"]["total"]["value"].as_u64().unwrap()
    );
    assert_eq!(stats.count_10s, 2);
    assert_eq!(
        stats.avg_transit_ms_10s,
        direct["aggregations"]["avg"]["value"].as_f64()
    );
    assert_eq!(stats.avg_transit_ms_10s, Some(15.25));
}

#[tokio::test]
async fn mapping_is_strict_and_creation_is_race_safe() {
    let env = TestEnv::new("store_mapping").await;
    let store = store(&env);
    let (a, b, c) = tokio::join!(
        store.ensure_indices(),
        store.ensure_indices(),
        store.ensure_indices()
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    store.ensure_indices().await.unwrap();

    // The alias's settings are keyed by the daily index behind it (today's, made at start-up).
    let today = store.daily_index(Utc::now().date_naive());
    let url = format!(
        "{}/{}/_settings",
        env.elasticsearch_url,
        store.messages_index()
    );
    let settings: serde_json::Value = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let idx = &settings[&today]["settings"]["index"];
    assert_eq!(idx["refresh_interval"], "1s");
    assert_eq!(idx["number_of_replicas"], "0");

    let err = store
        .index_docs(
            &today,
            &[(
                "x:1".into(),
                json!({"producer": "x", "number": 1, "colour": "red"}),
            )],
        )
        .await
        .unwrap_err();
    match err {
        StoreError::Rejected { status, reason } => {
            assert_eq!(status, 400);
            assert!(
                reason.contains("strict_dynamic_mapping_exception"),
                "{reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    env.refresh("messages").await;
    let answer = env
        .search("messages", json!({"size": 0, "track_total_hits": true}))
        .await;
    assert_eq!(answer["hits"]["total"]["value"], 0);
}

#[tokio::test]
async fn unreachable_elasticsearch_is_unavailable() {
    let port = testkit::free_port();
    let store = Store::new(&ElasticArgs::new(
        format!("http://127.0.0.1:{port}"),
        "unused-",
    ))
    .unwrap();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    let err = store
        .index_messages(&[message("p", 1, Utc::now(), 1.0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
}

/// `word_lengths`, `seq`, `total`, `transit_ms` and `stored_at` have doc values but no search
/// index (cheaper to index):
/// term and range queries and aggregations on them still answer, from the doc values.
#[tokio::test]
async fn doc_value_only_fields_still_answer_queries_and_aggregations() {
    let env = TestEnv::new("store_doc_values").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    let now = Utc::now();
    let mut a = message("alpha", 1, now, 1.0);
    a.word_lengths = vec![3, 11];
    a.part = ResourcePart::new(ResourceId::parse("res:dv").unwrap(), 1, 4).ok();
    let mut b = message("alpha", 2, now, 1.0);
    b.word_lengths = vec![4];
    b.part = ResourcePart::new(ResourceId::parse("res:dv").unwrap(), 2, 4).ok();
    store.index_messages(&[a, b]).await.unwrap();
    env.refresh("messages").await;

    let count = |query: serde_json::Value| {
        let env = &env;
        async move {
            let answer = env
                .search(
                    "messages",
                    json!({"size": 0, "track_total_hits": true, "query": query}),
                )
                .await;
            answer["hits"]["total"]["value"].as_u64().unwrap()
        }
    };
    assert_eq!(count(json!({"term": {"word_lengths": 11}})).await, 1);
    assert_eq!(
        count(json!({"range": {"word_lengths": {"gte": 4}}})).await,
        2
    );
    assert_eq!(count(json!({"term": {"seq": 2}})).await, 1);
    assert_eq!(count(json!({"term": {"total": 4}})).await, 2);
    assert_eq!(count(json!({"term": {"total": 5}})).await, 0);
    assert_eq!(
        count(json!({"range": {"transit_ms": {"lte": 1.0}}})).await,
        2
    );
    assert_eq!(
        count(json!({"range": {"stored_at": {"gte": "now-1h"}}})).await,
        2
    );
    let answer = env
        .search(
            "messages",
            json!({"size": 0, "aggs": {"longest": {"max": {"field": "word_lengths"}}}}),
        )
        .await;
    assert_eq!(answer["aggregations"]["longest"]["value"], 11.0);
}
