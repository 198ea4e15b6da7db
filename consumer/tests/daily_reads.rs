//! The HTTP contract over the messages' daily indices: messages stored on three different
//! `sent_at` days (each in its own daily index) are all served, unchanged, by
//! `GET /messages/{producer}/{number}` (right after the write, no refresh), `GET /messages` and
//! `GET /stats`; an absent one is still 404 problem+json.

use crate::support;

use chrono::{Duration, Utc};
use pipeline::ids::ProducerName;
use pipeline::packet::StoredMessage;
use pipeline::store::Store;
use serde_json::json;
use support::spawn;
use testkit::{assert_problem, TestEnv};

fn stored(number: u64, sent_at: chrono::DateTime<Utc>) -> StoredMessage {
    let received_at = sent_at + Duration::milliseconds(4);
    StoredMessage {
        producer: ProducerName::parse("days").unwrap(),
        number,
        sent_at,
        received_at,
        stored_at: received_at,
        transit_ms: 4.0,
        word_lengths: vec![2],
        text: "hi".into(),
        part: None,
    }
}

#[tokio::test]
async fn every_day_reads_through_the_same_endpoints() {
    let env = TestEnv::new("consumer_days").await;
    let app = spawn(&env, &[]).await;
    let store = Store::new(&app.config.common.elastic).unwrap();
    store.ensure_indices().await.unwrap();
    let now = Utc::now();
    let docs = [
        stored(1, now - Duration::days(6)),
        stored(2, now - Duration::days(2)),
        stored(3, now - Duration::milliseconds(10)),
    ];
    store.index_messages(&docs).await.unwrap();
    let days: std::collections::BTreeSet<_> = docs.iter().map(|d| d.sent_at.date_naive()).collect();
    assert_eq!(days.len(), 3, "three daily indices");

    for doc in &docs {
        let resp = app
            .http
            .get(app.at(&format!("/messages/days/{}", doc.number)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "message {}", doc.number);
        let got: StoredMessage = resp.json().await.unwrap();
        assert_eq!(&got, doc);
    }
    let missing = app
        .http
        .get(app.at("/messages/days/4"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(missing, 404).await;
    assert_eq!(problem["status"], 404, "{problem}");

    env.refresh("messages").await;
    let page = app.get_json("/messages?producer=days&size=10").await;
    let numbers: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2, 1], "{page}");
    let stats = app.get_json("/stats").await;
    assert_eq!(stats["total"], json!(3), "{stats}");
    assert_eq!(stats["max_number"], json!(3), "{stats}");
    assert_eq!(stats["count_10s"], json!(1), "{stats}");
    app.stop().await;
}
