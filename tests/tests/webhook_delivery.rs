//! End to end through the real binaries: packets of 200 resources (shuffled across resources, 10%
//! sent twice) go through the consumer and two workers; each resource reaches our own webhook
//! service exactly once, with word lengths in seq order equal to the lengths the test chose. A
//! second run stops the webhook service for 10 s mid-run, ten times RESOURCE_TTL_SECS: every
//! resource is still stored once (undelivered data does not expire). A third run starts the
//! webhook with a wrong secret (every delivery answered 401), then fixes it: nothing is lost.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Service, Stack, WEBHOOK_SECRET};
use serde_json::{json, Value};
use testkit::{bin_path, free_port, ChildGuard, TestEnv};

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The resources of a run: `expected[id][seq]` = the word lengths the test chose for that packet.
struct Plan {
    packets: Vec<Value>,
    expected: HashMap<String, Vec<Vec<u64>>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Builds `resources` resources of 1–20 packets each. A word of length n is n characters drawn
/// from ASCII and multi-byte letters; words are separated by varied whitespace.
fn plan(resources: usize, seed: u64) -> Plan {
    let mut rng = Rng(seed);
    let alphabet = ['a', 'Z', 'é', '漢', 'ß', '7', 'ø'];
    let spaces = [" ", "  ", "\t", " \n "];
    let mut packets = Vec::new();
    let mut expected = HashMap::new();
    let mut number = 0u64;
    for r in 0..resources {
        let id = format!("res-{r}:{seed}");
        let total = 1 + rng.below(20);
        let mut lengths = Vec::new();
        for seq in 0..total {
            let words: Vec<u64> = (0..rng.below(6)).map(|_| 1 + rng.below(12)).collect();
            let mut text = String::new();
            for (i, len) in words.iter().enumerate() {
                if i > 0 || rng.below(3) == 0 {
                    text.push_str(spaces[rng.below(spaces.len() as u64) as usize]);
                }
                for _ in 0..*len {
                    text.push(alphabet[rng.below(alphabet.len() as u64) as usize]);
                }
            }
            packets.push(json!({
                "number": number, "sent_at": now_ms(), "producer": "wh",
                "resource_id": id, "seq": seq, "total": total, "text": text,
            }));
            number += 1;
            lengths.push(words);
        }
        // Keyed as the webhook names it: producer "wh" @ resource id.
        expected.insert(format!("wh@{id}"), lengths);
    }
    // 10% of the packets twice, then everything shuffled across resources.
    let dups: Vec<Value> = packets
        .iter()
        .filter(|_| rng.below(10) == 0)
        .cloned()
        .collect();
    packets.extend(dups);
    for i in (1..packets.len()).rev() {
        packets.swap(i, rng.below(i as u64 + 1) as usize);
    }
    Plan { packets, expected }
}

async fn send(http: &reqwest::Client, consumer: &str, packets: &[Value]) {
    for chunk in packets.chunks(400) {
        let resp = http
            .post(format!("{consumer}/messages/batch"))
            .json(&chunk)
            .send()
            .await
            .expect("POST /messages/batch");
        let status = resp.status();
        assert_eq!(
            status.as_u16(),
            202,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }
}

async fn resources_count(env: &TestEnv) -> u64 {
    let url = format!(
        "{}/{}/_count",
        env.elasticsearch_url,
        env.index("resources")
    );
    let _ = env
        .http
        .post(format!(
            "{}/{}/_refresh",
            env.elasticsearch_url,
            env.index("resources")
        ))
        .send()
        .await;
    match env.http.get(url).send().await {
        Ok(r) if r.status().is_success() => r
            .json::<Value>()
            .await
            .map(|v| v["count"].as_u64().unwrap_or(0))
            .unwrap_or(0),
        _ => 0,
    }
}

async fn wait_for_resources(env: &TestEnv, want: u64, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let n = resources_count(env).await;
        if n >= want || start.elapsed() > within {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every stored resource document with its `_version`.
async fn stored_docs(env: &TestEnv) -> HashMap<String, (u64, Value)> {
    let url = format!(
        "{}/{}/_search",
        env.elasticsearch_url,
        env.index("resources")
    );
    let body = json!({"size": 1000, "version": true, "query": {"match_all": {}}});
    let v: Value = env
        .http
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["_id"].as_str().unwrap().to_string(),
                (h["_version"].as_u64().unwrap(), h["_source"].clone()),
            )
        })
        .collect()
}

/// Asserts the webhook's effects: one document (never rewritten) and one file per resource, both
/// holding the word lengths the plan chose, in seq order.
async fn assert_each_resource_stored_once(env: &TestEnv, output: &Path, plan: &Plan) {
    let docs = stored_docs(env).await;
    assert_eq!(docs.len(), plan.expected.len(), "one document per resource");
    let files: Vec<_> = std::fs::read_dir(output)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files.len(),
        plan.expected.len(),
        "one file per resource, no temp files: {files:?}"
    );
    for (id, lengths) in &plan.expected {
        let (version, doc) = docs.get(id).unwrap_or_else(|| panic!("{id} not stored"));
        assert_eq!(*version, 1, "{id} was written once");
        assert_eq!(
            doc["word_lengths"],
            json!(lengths),
            "{id}: word lengths in seq order"
        );
        assert_eq!(doc["packets"], json!(lengths.len()));
        let file: Value =
            serde_json::from_slice(&std::fs::read(output.join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(&file, doc, "{id}: file and document agree");
        assert!(doc["latency_ms"].as_f64().unwrap() >= 0.0);
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn every_resource_is_delivered_exactly_once_in_seq_order() {
    every_resource_once_with_partitions("webhook_e2e", 1).await;
}

/// The same run with the stack's queues in 4 partitions (`QUEUE_PARTITIONS=4`, one Redis):
/// packets, collation and deliveries spread over them, and still every message is stored and
/// every resource delivered once.
#[tokio::test]
async fn with_four_queue_partitions_every_message_and_resource_is_stored_once() {
    let env = every_resource_once_with_partitions("webhook_e2e4", 4).await;
    // Every partition of both queues took part (their streams exist), and Redis keeps the count.
    let mut conn = env.redis.get().await.unwrap();
    for name in ["messages", "webhooks"] {
        let keys = queue::Keys::new(&env.namespace, name, 4);
        for p in 0..4 {
            let exists: bool = redis::cmd("EXISTS")
                .arg(keys.stream(p))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(exists, "{name} partition {p} was used");
        }
        let stored: String = redis::cmd("GET")
            .arg(keys.partitions_key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, "4", "{name}");
    }
}

/// 200 resources through a stack with `partitions` queue partitions: every message stored once,
/// every resource delivered once in seq order. Returns the environment for further checks.
async fn every_resource_once_with_partitions(test: &str, partitions: u16) -> TestEnv {
    let env = TestEnv::new(test).await;
    let stack = Stack::builder(&env)
        .workers(2)
        .webhook(true)
        .env("QUEUE_PARTITIONS", partitions.to_string())
        .start()
        .await
        .unwrap();
    let plan = plan(200, 0x5eed_0001);
    send(&env.http, &stack.consumer_url(), &plan.packets).await;
    let n = wait_for_resources(&env, 200, Duration::from_secs(120)).await;
    assert_eq!(n, 200, "all resources delivered");
    tokio::time::sleep(Duration::from_secs(2)).await; // late duplicates would show up now
    assert_eq!(resources_count(&env).await, 200);
    assert_each_resource_stored_once(&env, stack.output_dir(), &plan).await;
    let numbers: std::collections::BTreeSet<u64> = plan
        .packets
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    let want = numbers.len() as u64;
    let stored = e2e::es::wait_for_count(&env, "messages", want, Duration::from_secs(60)).await;
    assert_eq!(stored, want, "every message stored once");

    let metrics = testkit::get_text(&env.http, &format!("{}/metrics", stack.webhook_url())).await;
    let stored = metric(
        &metrics,
        "conveyor_webhook_deliveries_total{outcome=\"stored\"}",
    );
    let duplicates = metric(
        &metrics,
        "conveyor_webhook_deliveries_total{outcome=\"duplicate\"}",
    );
    assert_eq!(
        stored, 200.0,
        "the webhook service stored 200 deliveries:\n{metrics}"
    );
    assert_eq!(duplicates, 0.0, "no resource was delivered twice");
    env
}

fn spawn_webhook(env: &TestEnv, port: u16, output: &Path) -> ChildGuard {
    spawn_webhook_with_secret(env, port, output, WEBHOOK_SECRET)
}

fn spawn_webhook_with_secret(env: &TestEnv, port: u16, output: &Path, secret: &str) -> ChildGuard {
    let mut cmd = Command::new(bin_path("webhook"));
    cmd.env("ELASTICSEARCH_URL", &env.elasticsearch_url)
        .env("ES_INDEX_PREFIX", &env.index_prefix)
        .env("WEBHOOK_SECRET", secret)
        .env("WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
        .env("OUTPUT_DIR", output)
        .env("RUST_LOG", "info");
    ChildGuard::spawn("webhook", cmd).unwrap()
}

#[tokio::test]
async fn a_webhook_outage_of_ten_seconds_loses_and_duplicates_nothing() {
    let env = TestEnv::new("webhook_outage").await;
    let output = std::env::temp_dir().join(testkit::unique_name("wh-out"));
    std::fs::create_dir_all(&output).unwrap();
    let port = free_port();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut webhook = spawn_webhook(&env, port, &output);
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let stack = Stack::builder(&env)
        .workers(2)
        .env_for(
            Service::Worker,
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/webhooks/resources"),
        )
        // Far shorter than the outage: data of undelivered resources must not expire with it.
        .env_for(Service::Worker, "RESOURCE_TTL_SECS", "1")
        .start()
        .await
        .unwrap();

    let plan = plan(200, 0x5eed_0002);
    let (first, second) = plan.packets.split_at(plan.packets.len() / 2);
    send(&env.http, &stack.consumer_url(), first).await;
    let before = wait_for_resources(&env, 10, Duration::from_secs(60)).await;
    assert!(before >= 10, "deliveries flow before the outage ({before})");
    webhook.kill();
    send(&env.http, &stack.consumer_url(), second).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = resources_count(&env).await;
    assert!(during < 200, "the outage held deliveries back ({during})");

    let _webhook = spawn_webhook(&env, port, &output);
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let n = wait_for_resources(&env, 200, Duration::from_secs(120)).await;
    assert_eq!(n, 200, "every resource delivered after the outage");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_each_resource_stored_once(&env, &output, &plan).await;

    let dead = webhooks_dead_letters(&env).await;
    assert!(dead.is_empty(), "no delivery was given up: {dead:?}");
    let _ = std::fs::remove_dir_all(&output);
}

async fn webhooks_dead_letters(env: &TestEnv) -> Vec<queue::DeadLetter> {
    queue::Queue::<pipeline::resource::DeliveryJob>::new(
        env.redis.clone(),
        queue::QueueConfig::new(env.namespace.clone(), "webhooks"),
    )
    .dead_letters(10)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_refused_signature_is_retried_until_the_secret_is_fixed() {
    let env = TestEnv::new("webhook_secret_fix").await;
    let output = std::env::temp_dir().join(testkit::unique_name("wh-sec"));
    std::fs::create_dir_all(&output).unwrap();
    let port = free_port();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut webhook =
        spawn_webhook_with_secret(&env, port, &output, "a-rotated-secret-of-at-least-32-bytes");
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let stack = Stack::builder(&env)
        .workers(1)
        .env_for(
            Service::Worker,
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/webhooks/resources"),
        )
        .start()
        .await
        .unwrap();

    let plan = plan(20, 0x5eed_0003);
    send(&env.http, &stack.consumer_url(), &plan.packets).await;
    // Every delivery is refused (401) for a while: nothing stored, nothing given up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics = testkit::get_text(&env.http, &format!("http://127.0.0.1:{port}/metrics")).await;
    let refused = metric(
        &metrics,
        "conveyor_webhook_deliveries_total{outcome=\"unauthorized\"}",
    );
    assert!(refused >= 1.0, "the webhook refused deliveries:\n{metrics}");
    assert_eq!(resources_count(&env).await, 0);
    let dead = webhooks_dead_letters(&env).await;
    assert!(dead.is_empty(), "a 401 is not final: {dead:?}");

    webhook.kill();
    let _webhook = spawn_webhook(&env, port, &output);
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let n = wait_for_resources(&env, 20, Duration::from_secs(60)).await;
    assert_eq!(n, 20, "every resource delivered once the secrets agree");
    assert_each_resource_stored_once(&env, &output, &plan).await;
    assert!(webhooks_dead_letters(&env).await.is_empty());
    let _ = std::fs::remove_dir_all(&output);
}
