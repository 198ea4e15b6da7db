//! Failover under load: the real binaries (consumer, two workers, webhook service) on a private
//! Redis Cluster (3 masters + 3 replicas, cluster-node-timeout 2 s) with the replication wait on
//! (`REDIS_WAIT_REPLICAS=1`). Senders POST numbered packets (resources of three) and send again
//! whatever is not answered 202, as the producer does; mid-load the master of the `messages`
//! partition is SIGKILLed, its replica is promoted, and the killed node is started again (it
//! rejoins as a replica, so `WAIT 1` can be met again). The services follow the new topology by
//! themselves. Every number answered 202 is stored in Elasticsearch exactly once (counted per
//! number), every resource is delivered once (one document at version 1, one file), and the
//! recovery time — kill → first 202 of a POST sent after the kill; kill → first document stored
//! from such a POST — is printed and checked against cluster-node-timeout + 3 s (asserted with a
//! margin for a loaded CI machine).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::es::{all_docs, wait_for_count};
use e2e::Stack;
use serde_json::{json, Value};
use testkit::{RedisCluster, TestEnv, CLUSTER_NODE_TIMEOUT_MS};

const PACKETS_PER_RESOURCE: u64 = 3;
const SENDERS: usize = 4;

/// When each number was first answered 202 and when the POST that got it began; POST answers
/// other than 202, by status.
#[derive(Default)]
struct Sent {
    accepted: HashMap<u64, (Instant, Instant)>,
    refused: HashMap<u16, usize>,
}

/// POSTs packet `number` until it is answered 202 (other answers and errors: again after 100 ms),
/// giving up at `deadline`.
async fn post_until_accepted(
    http: &reqwest::Client,
    url: &str,
    number: u64,
    sent: &Mutex<Sent>,
    deadline: Instant,
) {
    let resource = number / PACKETS_PER_RESOURCE;
    let seq = number % PACKETS_PER_RESOURCE;
    while Instant::now() < deadline {
        let began = Instant::now();
        let packet = json!({
            "number": number,
            "sent_at": chrono::Utc::now().to_rfc3339(),
            "producer": "fo",
            "resource_id": format!("res-{resource}"),
            "seq": seq,
            "total": PACKETS_PER_RESOURCE,
            "text": "one three fives",
        });
        let answer = http
            .post(url)
            .timeout(Duration::from_secs(15))
            .json(&packet)
            .send()
            .await;
        let status = answer.map(|a| a.status().as_u16()).unwrap_or(0);
        {
            let mut s = sent.lock().unwrap();
            if status == 202 {
                s.accepted.insert(number, (began, Instant::now()));
                return;
            }
            *s.refused.entry(status).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sender: takes the next resource and sends its packets (in reverse order, as late packets
/// come) until `stop`; a resource begun is finished.
async fn sender(
    http: reqwest::Client,
    url: String,
    next: Arc<AtomicU64>,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop.load(Ordering::Relaxed) {
        let resource = next.fetch_add(1, Ordering::Relaxed);
        for seq in (0..PACKETS_PER_RESOURCE).rev() {
            let number = resource * PACKETS_PER_RESOURCE + seq;
            post_until_accepted(&http, &url, number, &sent, deadline).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_master_killed_under_load_loses_nothing_and_runs_nothing_twice() {
    let test_start = Instant::now();
    let env = TestEnv::new("cluster_failover").await;
    let mut cluster = RedisCluster::start().await;
    let stack = Stack::builder(&env)
        .redis_url(cluster.url())
        .workers(2)
        .webhook(true)
        .env("REDIS_WAIT_REPLICAS", "1")
        .env("REDIS_WAIT_TIMEOUT_MS", "500")
        .start()
        .await
        .unwrap();
    // The stream of the `messages` queue's one partition, with the cluster's spread tag.
    let messages_key =
        queue::Keys::spread(stack.namespace(), pipeline::queues::MESSAGES, 1).stream(0);

    let sent = Arc::new(Mutex::new(Sent::default()));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("{}/messages", stack.consumer_url());
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            tokio::spawn(sender(
                env.http.clone(),
                url.clone(),
                next.clone(),
                sent.clone(),
                stop.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = cluster.master_of(&messages_key).await.expect("a master");
    let before = sent.lock().unwrap().accepted.len();
    cluster.kill(victim);
    let killed_at = Instant::now();
    let killed_wall = chrono::Utc::now();
    println!("killed node {victim}, master of {messages_key}, after {before} packets accepted");
    let promoted = cluster.promoted_for(&messages_key, victim).await;
    println!(
        "node {promoted} promoted after {:.2} s; restarting node {victim}",
        killed_at.elapsed().as_secs_f64()
    );
    cluster.restart(victim);

    let recovered = loop {
        let first = sent
            .lock()
            .unwrap()
            .accepted
            .values()
            .filter(|(began, _)| *began > killed_at)
            .map(|(_, at)| *at)
            .min();
        if let Some(at) = first {
            break at - killed_at;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no POST was accepted within 60 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let (accepted, after_kill, refused) = {
        let s = sent.lock().unwrap();
        let after: Vec<u64> = s
            .accepted
            .iter()
            .filter(|(_, (began, _))| *began > killed_at)
            .map(|(n, _)| *n)
            .collect();
        (
            s.accepted.keys().copied().collect::<Vec<u64>>(),
            after,
            s.refused.clone(),
        )
    };
    println!(
        "accepted {} packets ({} sent after the kill); answers other than 202 (0 = no answer): {refused:?}",
        accepted.len(),
        after_kill.len()
    );
    let consumer_log = stack.consumer().map(|c| c.output()).unwrap_or_default();
    for line in consumer_log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("dependency"))
        .take(10)
    {
        println!("consumer: {line}");
    }
    let want = accepted.len() as u64;
    let stored = wait_for_count(&env, "messages", want, Duration::from_secs(60)).await;

    // Counted per number: each accepted number exactly once, nothing else.
    let docs = all_docs(&env, "messages", "number").await;
    let mut per_number: HashMap<u64, usize> = HashMap::new();
    let mut first_stored_after_kill: Option<chrono::DateTime<chrono::Utc>> = None;
    for (_, doc) in &docs {
        let n = doc["number"].as_u64().unwrap();
        *per_number.entry(n).or_insert(0) += 1;
        if after_kill.contains(&n) {
            let at: chrono::DateTime<chrono::Utc> =
                doc["stored_at"].as_str().unwrap().parse().unwrap();
            first_stored_after_kill = Some(first_stored_after_kill.map_or(at, |f| f.min(at)));
        }
    }
    let lost: Vec<u64> = accepted
        .iter()
        .copied()
        .filter(|n| !per_number.contains_key(n))
        .collect();
    let dup: Vec<(u64, usize)> = per_number
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    let target = Duration::from_millis(CLUSTER_NODE_TIMEOUT_MS) + Duration::from_secs(3);
    let settled = first_stored_after_kill
        .map(|at| (at - killed_wall).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(f64::NAN);
    println!(
        "RESULT cluster failover: accepted {}, stored {stored}, lost {}, duplicates {}; recovery \
         {:.2} s to the first 202, {settled:.2} s to the first stored message sent after the kill \
         (target cluster-node-timeout + 3 s = {:.1} s)",
        accepted.len(),
        lost.len(),
        dup.len(),
        recovered.as_secs_f64(),
        target.as_secs_f64()
    );
    assert!(
        accepted.len() > before,
        "packets were accepted after the kill"
    );
    assert!(
        refused.keys().all(|status| matches!(status, 0 | 503)),
        "a failover answers 503 (or not at all), never anything else: {refused:?}"
    );
    assert!(lost.is_empty(), "accepted but not stored: {lost:?}");
    assert!(dup.is_empty(), "stored more than once: {dup:?}");
    assert_eq!(
        docs.len(),
        accepted.len(),
        "nothing stored that was not accepted"
    );
    assert!(
        recovered < target + Duration::from_secs(10),
        "recovery took {recovered:?}"
    );

    // Every resource complete (its three packets accepted) is delivered once: one document at
    // version 1 and one file each.
    let complete: Vec<u64> = {
        let mut by_resource: HashMap<u64, u64> = HashMap::new();
        for n in &accepted {
            *by_resource.entry(n / PACKETS_PER_RESOURCE).or_insert(0) += 1;
        }
        by_resource
            .into_iter()
            .filter(|(_, c)| *c == PACKETS_PER_RESOURCE)
            .map(|(r, _)| r)
            .collect()
    };
    let start = Instant::now();
    while std::fs::read_dir(stack.output_dir()).unwrap().count() < complete.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {} resources delivered",
            std::fs::read_dir(stack.output_dir()).unwrap().count(),
            complete.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.refresh("resources").await;
    let stored = env
        .search(
            "resources",
            json!({"size": 10000, "version": true, "query": {"match_all": {}}}),
        )
        .await;
    let hits = stored["hits"]["hits"].as_array().unwrap();
    let files = std::fs::read_dir(stack.output_dir()).unwrap().count();
    println!(
        "RESULT cluster failover: resources complete {}, delivered documents {}, files {files}",
        complete.len(),
        hits.len()
    );
    assert_eq!(
        hits.len(),
        complete.len(),
        "one document per complete resource"
    );
    assert_eq!(files, complete.len(), "one file per complete resource");
    let mut ids: Vec<String> = Vec::new();
    for hit in hits {
        assert_eq!(hit["_version"], 1, "written once: {hit}");
        let body: &Value = &hit["_source"];
        ids.push(body["resource_id"].as_str().unwrap_or_default().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), complete.len(), "each resource once");
    println!("test took {:.1} s", test_start.elapsed().as_secs_f64());
}
