//! End to end, the webhook's refusals: the real webhook binary answers 401 to a wrong secret, a
//! stale timestamp and a tampered body and stores nothing; neither the webhook nor the worker
//! starts without WEBHOOK_SECRET (no built-in fallback secret); a resource that never completes is
//! dead-lettered by a real worker after RESOURCE_TIMEOUT_MS with its missing seqs named; and the
//! resource ids "." and ".." (valid packet ids) go all the way to plain files in OUTPUT_DIR.

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
        .env("OUTPUT_DIR", &output)
        // the assertions below read info-level lines; ./setup.sh test exports RUST_LOG=warn
        .env("RUST_LOG", "info");
    let webhook = ChildGuard::spawn("webhook", cmd).unwrap();
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
    let metrics = testkit::get_text(&env.http, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("conveyor_webhook_deliveries_total{outcome=\"unauthorized\"} 4"),
        "{metrics}"
    );
    // Logs go to a file here, not a terminal: plain text, no ANSI color codes.
    let logs = webhook.output();
    assert!(logs.contains("webhook service listening"), "{logs}");
    assert!(logs.contains("delivery refused"), "{logs}");
    assert!(
        !logs.contains('\x1b'),
        "ANSI escapes in a log file: {logs:?}"
    );
    let _ = std::fs::remove_dir_all(&output);
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
    let packet = |n: u64, seq: u64, total: u64, id: &str| json!({"number": n, "sent_at": chrono::Utc::now().to_rfc3339(), "producer": "to", "resource_id": id, "seq": seq, "total": total, "text": "a bc"});
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
    assert_eq!(
        dead[0].payload["resource_id"], "to@gappy",
        "the resource key: producer @ id"
    );
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
    assert!(stack.output_dir().join("to@whole.json").exists());
    assert!(!stack.output_dir().join("to@gappy.json").exists());
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
}

/// Runs `bin` with `envs` and without WEBHOOK_SECRET (or with `secret`); returns its exit status
/// and stderr, or fails when it is still running after 20 s (it started without a secret).
fn run_without_secret(
    bin: &str,
    envs: &[(&str, String)],
    secret: Option<&str>,
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(bin_path(bin));
    cmd.env_remove("WEBHOOK_SECRET")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(s) = secret {
        cmd.env("WEBHOOK_SECRET", s);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status, err);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} kept running without a usable WEBHOOK_SECRET");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn webhook_and_worker_refuse_to_start_without_a_secret() {
    let env = TestEnv::new("webhook_nosecret").await;
    let output = tempfile_dir();
    let webhook_env = vec![
        ("ELASTICSEARCH_URL", env.elasticsearch_url.clone()),
        ("ES_INDEX_PREFIX", env.index_prefix.clone()),
        ("WEBHOOK_ADDR", "127.0.0.1:0".to_string()),
        ("OUTPUT_DIR", output.display().to_string()),
    ];
    let worker_env = vec![
        ("REDIS_URL", env.redis_url.clone()),
        ("QUEUE_NAMESPACE", env.namespace.clone()),
        ("ELASTICSEARCH_URL", env.elasticsearch_url.clone()),
        ("ES_INDEX_PREFIX", env.index_prefix.clone()),
    ];
    for (bin, envs) in [("webhook", &webhook_env), ("worker", &worker_env)] {
        for secret in [None, Some(""), Some("   ")] {
            let (status, stderr) = run_without_secret(bin, envs, secret);
            assert!(!status.success(), "{bin} {secret:?}: {status}");
            assert!(
                stderr.contains("WEBHOOK_SECRET is required"),
                "{bin} {secret:?}: {stderr}"
            );
            assert!(
                stderr.contains("export WEBHOOK_SECRET="),
                "{bin} {secret:?}: says how to set it: {stderr}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&output);
}

#[tokio::test]
async fn dot_resource_ids_are_delivered_to_plain_files_in_output_dir() {
    let env = TestEnv::new("webhook_dots_e2e").await;
    let stack = Stack::builder(&env)
        .workers(1)
        .webhook(true)
        .start()
        .await
        .unwrap();
    let packet = |n: u64, id: &str, seq: u64, total: u64, text: &str| json!({"number": n, "sent_at": chrono::Utc::now().to_rfc3339(), "producer": "default", "resource_id": id, "seq": seq, "total": total, "text": text});
    let batch = vec![
        packet(0, ".", 1, 2, "abc de"),
        packet(1, "..", 0, 1, "four"),
        packet(2, ".", 0, 2, "x"),
    ];
    let resp = env
        .http
        .post(format!("{}/messages/batch", stack.consumer_url()))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "the consumer accepts both ids");

    let dir = stack.output_dir().to_path_buf();
    let wanted = [dir.join("..json"), dir.join("...json")];
    let start = Instant::now();
    while !wanted.iter().all(|p| p.exists()) && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let one: Value = serde_json::from_slice(&std::fs::read(&wanted[0]).unwrap()).unwrap();
    assert_eq!(one["resource_id"], ".");
    assert_eq!(one["word_lengths"], json!([[1], [3, 2]]));
    let two: Value = serde_json::from_slice(&std::fs::read(&wanted[1]).unwrap()).unwrap();
    assert_eq!(two["resource_id"], "..");
    assert_eq!(two["word_lengths"], json!([[4]]));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["...json".to_string(), "..json".to_string()]);
    assert_eq!(count(&env).await, 2);

    let webhooks = queue::Queue::<DeliveryJob>::new(
        env.redis.clone(),
        queue::QueueConfig::new(env.namespace.clone(), "webhooks"),
    );
    assert!(
        webhooks.dead_letters(10).await.unwrap().is_empty(),
        "nothing dead-lettered"
    );
}
