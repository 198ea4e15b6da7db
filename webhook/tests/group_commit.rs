//! Deliveries that arrive together share `_bulk` requests (`webhook::group`), and each still gets
//! its own answer: 201 for a new resource, 200 `duplicate` for a key already stored — also when
//! both copies of a key travel in the same `_bulk` — and their output files share syncs
//! (`webhook::files`). Real Elasticsearch, real HTTP, a real file system.

mod support;

use std::collections::HashMap;

use chrono::Utc;
use pipeline::resource::CollatedResource;
use pipeline::signing::sign;
use support::{Service, SECRET};
use testkit::TestEnv;

fn resource(id: &str) -> CollatedResource {
    CollatedResource {
        resource_id: id.to_string(),
        producer: pipeline::ids::ProducerName::default_producer(),
        packets: 1,
        word_lengths: vec![vec![3, 1]],
        first_received_at: Utc::now(),
        last_received_at: Utc::now(),
        completed_at: Utc::now(),
    }
}

/// The `_count` of histogram `name` on the service's /metrics (`_bulk` requests sent, file groups
/// written).
async fn groups(svc: &Service, name: &str) -> u64 {
    let text = svc
        .http
        .get(format!("{}/metrics", svc.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_bulk_requests_and_each_gets_its_own_answer() {
    let env = TestEnv::new("webhook_group").await;
    let svc = Service::start(&env).await;
    const N: usize = 200;
    // Every id twice: 400 deliveries at once, 200 distinct resources.
    let mut sends = Vec::new();
    for copy in 0..2 {
        for i in 0..N {
            let svc = &svc;
            sends.push(async move {
                let id = format!("g-{i}");
                let body = serde_json::to_vec(&resource(&id)).unwrap();
                let sig = sign(SECRET.as_bytes(), Utc::now().timestamp(), &body);
                let (status, answer) = svc.deliver(&body, &sig, &id).await;
                (copy, id, status, answer)
            });
        }
    }
    let (bulk, files) = (
        "conveyor_webhook_bulk_size",
        "conveyor_webhook_file_group_size",
    );
    let before = (groups(&svc, bulk).await, groups(&svc, files).await);
    let answers = futures::future::join_all(sends).await;
    let bulks = groups(&svc, bulk).await - before.0;
    let file_groups = groups(&svc, files).await - before.1;

    let mut per_id: HashMap<String, (u32, u32)> = HashMap::new();
    for (_, id, status, answer) in &answers {
        let entry = per_id.entry(id.clone()).or_default();
        match status {
            201 => entry.0 += 1,
            200 => {
                assert_eq!(answer["status"], "duplicate", "{answer}");
                entry.1 += 1;
            }
            other => panic!("{id}: status {other}: {answer}"),
        }
    }
    assert_eq!(per_id.len(), N);
    for (id, (stored, duplicate)) in &per_id {
        assert_eq!(
            (*stored, *duplicate),
            (1, 1),
            "{id}: stored once, refused once"
        );
    }
    env.refresh("resources").await;
    let count = env
        .search(
            "resources",
            serde_json::json!({"size": 0, "track_total_hits": true}),
        )
        .await["hits"]["total"]["value"]
        .as_u64()
        .unwrap();
    assert_eq!(count, N as u64);
    assert_eq!(svc.files().len(), N, "one file per resource");
    println!(
        "{} deliveries in {bulks} _bulk requests; {N} files in {file_groups} groups",
        2 * N
    );
    assert!(
        file_groups > 0 && file_groups < N as u64,
        "files of deliveries arriving together share their syncs: {file_groups} groups for {N}"
    );
    assert!(
        bulks > 0 && bulks < (2 * N) as u64,
        "deliveries arriving together share requests: {bulks} _bulk requests for {} deliveries",
        2 * N
    );
}
