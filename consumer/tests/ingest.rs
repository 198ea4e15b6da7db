//! The 202 paths: one POST enqueues exactly one job stamped with `received_at`; a batch is
//! all-or-nothing and enqueues every packet in one call.

use crate::support;

use chrono::{DateTime, Utc};
use serde_json::json;
use support::{packet, spawn};
use testkit::{assert_problem, TestEnv};

#[tokio::test]
async fn post_enqueues_exactly_one_stamped_job() {
    let env = TestEnv::new("consumer_post").await;
    let app = spawn(&env, &[]).await;
    let before = Utc::now();
    let sent_ms = before.timestamp_millis() - 1_500;
    let body = json!({"number": 42, "sent_at": sent_ms, "producer": "p1",
        "resource_id": "r:1", "seq": 0, "total": 2, "text": "héllo wörld"});
    let resp = app.post_json("/messages", &body).await;
    assert_eq!(resp.status(), 202);
    let answer: serde_json::Value = resp.json().await.unwrap();
    let after = Utc::now();

    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "exactly one job");
    let (id, job) = &jobs[0];
    assert_eq!(answer["id"], id.as_str());
    let received_at: DateTime<Utc> = answer["received_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(job.received_at, received_at);
    assert!(before <= received_at && received_at <= after);
    assert_eq!(job.packet.number, 42);
    assert_eq!(job.packet.producer, "p1");
    assert_eq!(
        job.packet.sent_at,
        DateTime::from_timestamp_millis(sent_ms).unwrap()
    );
    let part = job
        .packet
        .part
        .as_ref()
        .expect("the job keeps the resource part");
    assert_eq!(
        (part.id().as_str(), part.seq(), part.total()),
        ("r:1", 0, 2)
    );
    assert_eq!(job.packet.text, "héllo wörld");
    assert_eq!(app.stats().await.backlog, 1);
    app.stop().await;
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let env = TestEnv::new("consumer_batch").await;
    let app = spawn(&env, &[]).await;

    let mut items: Vec<_> = (0..5)
        .map(|n| packet(n, json!({"producer": "b"})))
        .collect();
    items[3] = json!({"number": "three", "sent_at": Utc::now().to_rfc3339()});
    items[4]["colour"] = json!("red");
    let v = assert_problem(app.post_json("/messages/batch", &json!(items)).await, 422).await;
    let names: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["[3].number", "[4].colour"]);
    assert_eq!(
        app.stats().await.backlog,
        0,
        "an invalid batch enqueues nothing"
    );

    let too_many: Vec<_> = (0..1001).map(|n| packet(n, json!({}))).collect();
    assert_problem(
        app.post_json("/messages/batch", &json!(too_many)).await,
        422,
    )
    .await;
    assert_problem(app.post_json("/messages/batch", &json!([])).await, 422).await;
    assert_eq!(app.stats().await.backlog, 0);

    let good: Vec<_> = (0..1000)
        .map(|n| packet(n, json!({"producer": "b", "text": "a bb"})))
        .collect();
    let resp = app.post_json("/messages/batch", &json!(good)).await;
    assert_eq!(resp.status(), 202);
    let answer: serde_json::Value = resp.json().await.unwrap();
    let ids: Vec<&str> = answer["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000);
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1000);
    let mut numbers: Vec<u64> = jobs.iter().map(|(_, j)| j.packet.number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..1000).collect::<Vec<_>>());
    let mut job_ids: Vec<&str> = jobs.iter().map(|(id, _)| id.as_str()).collect();
    let mut answered = ids.clone();
    job_ids.sort_unstable();
    answered.sort_unstable();
    assert_eq!(job_ids, answered, "answered ids are the enqueued jobs");
    assert_eq!(app.stats().await.backlog, 1000);
    app.stop().await;
}
