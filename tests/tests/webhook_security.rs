//! End to end, the webhook's refusals: the real webhook binary answers 401 to a wrong secret, a
//! stale timestamp and a tampered body and stores nothing; and a resource that never completes is
//! dead-lettered by a real worker after RESOURCE_TIMEOUT_MS with its missing seqs named.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Service, Stack, WEBHOOK_SECRET};
use pipeline::resource::DeliveryJob;
use pipeline::signing::sign;
use serde_json::{json, Value};
use testkit::{bin_path, free_port, ChildGuard, TestEnv};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn count(env: &TestEnv) -> u64 {
    let base = format!("{}/{}", env.elasticsearch_url, env.index("resources"));
    let _ = env.http.post(format!("{base}/_refresh")).send().await;
    let v: Value = env
        .http
        .get(format!("{base}/_count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["count"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn bad_signatures_get_401_and_leave_no_trace() {
    let env = TestEnv::new("webhook_sig_e2e").await;
    let output = tempfile_dir();
    let port = free_port();
    let mut cmd = Command::new(bin_path("webhook"));
    cmd.env("ELASTICSEARCH_URL", &env.elasticsearch_url)
        .env("ES_INDEX_PREFIX", &env.index_prefix)
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
        .env("OUTPUT_DIR", &output);
    let _webhook = ChildGuard::spawn("webhook", cmd).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .unwrap();

    let t = rfc3339_now();
    let body = json!({
        "resource_id": "sig-1", "packets": 1, "word_lengths": [[3, 1]],
        "first_received_at": t, "last_received_at": t, "completed_at": t,
    })
    .to_string();
    let tampered = body.replace("[[3,1]]", "[[3,2]]");
    assert_ne!(tampered, body);
    let secret = WEBHOOK_SECRET.as_bytes();
    let cases = [
        (
            "wrong secret",
            body.clone(),
            sign(b"guess", unix_now(), body.as_bytes()),
        ),
        (
            "stale timestamp",
            body.clone(),
            sign(secret, unix_now() - 600, body.as_bytes()),
        ),
        (
            "tampered body",
            tampered,
            sign(secret, unix_now(), body.as_bytes()),
        ),
        ("no v1", body.clone(), format!("t={}", unix_now())),
    ];
    for (what, payload, signature) in cases {
        let resp = env
            .http
            .post(format!("{base}/webhooks/resources"))
            .header("content-type", "application/json")
            .header("X-Conveyor-Signature", signature)
            .header("Idempotency-Key", "sig-1")
            .body(payload)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
    }
    assert_eq!(count(&env).await, 0, "nothing stored");
    assert_eq!(
        std::fs::read_dir(&output).unwrap().count(),
        0,
        "no file written"
    );

    // The same body correctly signed is accepted: the refusals above were about the signature.
    let resp = env
        .http
        .post(format!("{base}/webhooks/resources"))
        .header("content-type", "application/json")
        .header(
            "X-Conveyor-Signature",
            sign(secret, unix_now(), body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(output.join("sig-1.json").exists());
    let metrics = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("conveyor_webhook_deliveries_total{outcome=\"unauthorized\"} 4"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&output);
    env.cleanup().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(testkit::unique_name("wh-sig"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// RFC 3339 "now" without a date library: the webhook accepts any RFC 3339 instant.
fn rfc3339_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn an_incomplete_resource_is_dead_lettered_with_its_missing_seqs() {
    let env = TestEnv::new("webhook_timeout").await;
    let stack = Stack::builder(&env)
        .workers(2)
        .webhook(true)
        .env_for(Service::Worker, "RESOURCE_TIMEOUT_MS", "800")
        .start()
        .await
        .unwrap();
    let packet = |n: u64, seq: u64, total: u64, id: &str| json!({"number": n, "sent_at": 0, "producer": "to", "resource_id": id, "seq": seq, "total": total, "text": "a bc"});
    let batch = vec![
        packet(0, 0, 4, "gappy"),
        packet(1, 3, 4, "gappy"),
        packet(2, 1, 4, "gappy"),
        packet(3, 0, 1, "whole"),
    ];
    let resp = env
        .http
        .post(format!("{}/messages/batch", stack.consumer_url()))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    let webhooks = queue::Queue::<DeliveryJob>::new(
        env.redis.clone(),
        queue::QueueConfig::new(env.namespace.clone(), "webhooks"),
    );
    let start = Instant::now();
    let dead = loop {
        let dead = webhooks.dead_letters(10).await.unwrap();
        if !dead.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload["resource_id"], "gappy");
    assert!(
        dead[0].error.contains("missing seqs [2]"),
        "{}",
        dead[0].error
    );
    assert!(
        dead[0].error.contains("received 3 of 4"),
        "{}",
        dead[0].error
    );

    // The complete one was delivered; the missing packet arriving late changes nothing.
    let late = vec![packet(4, 2, 4, "gappy")];
    let resp = env
        .http
        .post(format!("{}/messages/batch", stack.consumer_url()))
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&env).await, 1);
    assert!(stack.output_dir().join("whole.json").exists());
    assert!(!stack.output_dir().join("gappy.json").exists());
    assert_eq!(
        webhooks.dead_letters(10).await.unwrap().len(),
        1,
        "reported once"
    );
    let leftovers: Vec<String> = env
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| k.contains("gappy:parts"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "packets of a timed-out resource are dropped: {leftovers:?}"
    );
    env.cleanup().await;
}
