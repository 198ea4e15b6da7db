//! Memory stays bounded under the hostile requests of issue 13, measured on the real binaries
//! (started through the launcher, default settings) from `/proc/<pid>/status`: after the
//! consumer stored 300 messages of 60 KB text, an 8 MB `POST /messages/batch` of zeros, a
//! 600,000-unknown-keys body (to `POST /messages` and inside a batch) and maximal
//! `GET /messages` pages (`size=1000`, with and without `fields=text,word_lengths`), every
//! service's resident memory is below 60 MB. Each figure is printed.

mod hostile;

use std::time::{Duration, Instant};

use e2e::es::wait_for_count;
use e2e::Stack;
use hostile::rows::{unknown_keys, zeros};
use hostile::{pid_of, rss_kib};
use serde_json::{json, Value};
use testkit::TestEnv;

/// Messages of [`TEXT_BYTES`] stored before the hostile requests.
const STORED: u64 = 300;
const TEXT_BYTES: usize = 60_000;
/// The bound on every service's resident memory.
const LIMIT_KIB: u64 = 60 * 1024;

/// About `bytes` of words of 1 to 12 letters.
fn text(seed: u64, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    let mut n = seed;
    while out.len() < bytes {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (n >> 33) as usize % 12;
        out.push_str(&"w".repeat(len));
        out.push(' ');
    }
    out
}

async fn rss_report(services: &[(&str, String)], when: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (name, url) in services {
        let kib = rss_kib(pid_of(url).await);
        println!("{when}: {name} VmRSS {:.1} MB", kib as f64 / 1024.0);
        out.push((name.to_string(), kib));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_stays_below_60_mb_after_the_hostile_requests() {
    let env = TestEnv::new("memory_bounds").await;
    let stack = Stack::builder(&env)
        .workers(1)
        .webhook(true)
        .dashboard(true)
        .start()
        .await
        .unwrap();
    let consumer = stack.consumer_url();
    let services = [
        ("consumer", consumer.clone()),
        (
            "worker",
            format!("http://127.0.0.1:{}", stack.worker(0).unwrap().metrics_port),
        ),
        ("webhook", stack.webhook_url()),
        ("dashboard", stack.dashboard_url()),
    ];
    rss_report(&services, "at start").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // 300 messages of 60 KB text, in batches of 100 (6 MB each, under the batch body limit).
    let now = chrono::Utc::now();
    for chunk in 0..STORED / 100 {
        let packets: Vec<Value> = (chunk * 100..(chunk + 1) * 100)
            .map(|n| {
                json!({"number": n, "producer": "big", "sent_at": now.to_rfc3339(),
                            "text": text(n, TEXT_BYTES)})
            })
            .collect();
        let resp = http
            .post(format!("{consumer}/messages/batch"))
            .json(&packets)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    }
    let stored = wait_for_count(&env, "messages", STORED, Duration::from_secs(180)).await;
    assert_eq!(stored, STORED, "the large messages were stored");
    rss_report(&services, "after storing 300 × 60 KB").await;

    // The hostile requests.
    let started = Instant::now();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{consumer}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = post("/messages/batch", zeros((8 << 20) - 16))
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "8 MB of zeros");
    let keys = unknown_keys(now, 600_000);
    println!("600k-key body: {} bytes", keys.len());
    // Over the one-packet limit: refused (413) on its declared length; the server may close
    // before the client has sent it all, so a failed send counts as refused too.
    if let Ok(resp) = post("/messages", keys.clone()).await {
        assert_eq!(resp.status(), 413, "600k keys to POST /messages");
    }
    let mut batch = b"[".to_vec();
    batch.extend(keys);
    batch.push(b']');
    let resp = post("/messages/batch", batch).await.unwrap();
    assert_eq!(resp.status(), 422, "600k keys in a batch");
    let body = resp.bytes().await.unwrap();
    assert!(body.len() < 8 * 1024, "a 422 of {} bytes", body.len());
    // Maximal pages: the largest page with both large fields, followed through next_from, and
    // the largest page without them.
    let mut from = Some(0u64);
    let (mut pages, mut bytes) = (0, 0);
    while let Some(f) = from.filter(|_| pages < 6) {
        let url =
            format!("{consumer}/messages?producer=big&size=1000&from={f}&fields=text,word_lengths");
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let page: Value = resp.json().await.unwrap();
        bytes += page.to_string().len();
        pages += 1;
        assert!(!page["messages"].as_array().unwrap().is_empty(), "{f}");
        from = page["next_from"].as_u64();
    }
    let resp = http
        .get(format!("{consumer}/messages?producer=big&size=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = resp.json().await.unwrap();
    println!(
        "hostile requests done in {:?}: {pages} full pages ({bytes} bytes), one page of {} \
         messages without large fields",
        started.elapsed(),
        listed["messages"].as_array().unwrap().len()
    );
    // The dashboard and webhook reads while at it.
    for url in [
        format!("{}/api/stats", stack.dashboard_url()),
        format!("{}/resources?size=1000", stack.webhook_url()),
    ] {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200, "{url}");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_report(&services, "after the hostile requests").await;
    for (name, kib) in after {
        assert!(
            kib < LIMIT_KIB,
            "{name} holds {:.1} MB, over 60 MB",
            kib as f64 / 1024.0
        );
    }
}
