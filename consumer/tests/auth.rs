//! API keys on the real consumer (real Redis, real Elasticsearch): writes without a key, with a
//! wrong key or with another producer's key are refused (401/403 problem+json with a
//! WWW-Authenticate challenge where due) and enqueue nothing; the right key is 202; reads stay
//! public on loopback and need a read key when PUBLIC_READS is off; an API beyond loopback
//! without keys refuses to start.

use crate::support;

use serde_json::json;
use support::{config, packet, spawn};
use testkit::{assert_problem, TestEnv};

const KEY_A: &str = "producer-a-key-0123456789abcdef";
const KEY_B: &str = "producer-b-key-0123456789abcdef";
const KEY_READ: &str = "reader-key-0123456789abcdef0123";

fn keys() -> String {
    format!("{KEY_A} producer:alpha;{KEY_B} producer:beta,producer:gamma;{KEY_READ} read")
}

async fn post(
    app: &support::App,
    path: &str,
    body: &serde_json::Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = app.http.post(app.at(path)).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn writes_need_a_key_that_grants_every_packets_producer() {
    let env = TestEnv::new("consumer_auth").await;
    let keys = keys();
    let app = spawn(&env, &["--api-keys", &keys]).await;
    let a = packet(1, json!({"producer": "alpha"}));
    let batch = json!([
        packet(2, json!({"producer": "beta"})),
        packet(3, json!({"producer": "alpha"}))
    ]);

    let mut checked = 0;
    for (what, path, body, key, status) in [
        ("no key", "/messages", &a, None, 401),
        (
            "a wrong key",
            "/messages",
            &a,
            Some("not-a-key-0123456789abcdef01"),
            401,
        ),
        ("another producer's key", "/messages", &a, Some(KEY_B), 403),
        ("a read key", "/messages", &a, Some(KEY_READ), 403),
        (
            "a batch with one foreign producer",
            "/messages/batch",
            &batch,
            Some(KEY_B),
            403,
        ),
        (
            "a batch without a key",
            "/messages/batch",
            &batch,
            None,
            401,
        ),
    ] {
        let resp = post(&app, path, body, key).await;
        let challenge = resp.headers().get_all("www-authenticate").iter().count();
        let v = assert_problem(resp, status).await;
        let expected_type = if status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert!(
            v["type"].as_str().unwrap().ends_with(expected_type),
            "{what}: {v}"
        );
        assert_eq!(
            challenge > 0,
            status == 401,
            "{what}: WWW-Authenticate only on 401"
        );
        assert!(
            !v.to_string().contains("0123456789abcdef"),
            "{what}: a key echoed: {v}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
    assert_eq!(
        app.stats().await.backlog,
        0,
        "nothing enqueued by a refused write"
    );
    assert!(app.jobs().await.is_empty());

    // The right keys: 202, and exactly those jobs are queued with their producers.
    assert_eq!(post(&app, "/messages", &a, Some(KEY_A)).await.status(), 202);
    let own = json!([
        packet(2, json!({"producer": "beta"})),
        packet(3, json!({"producer": "gamma"}))
    ]);
    assert_eq!(
        post(&app, "/messages/batch", &own, Some(KEY_B))
            .await
            .status(),
        202
    );
    let mut queued: Vec<(String, u64)> = app
        .jobs()
        .await
        .into_iter()
        .map(|(_, j)| (j.packet.producer.to_string(), j.packet.number))
        .collect();
    queued.sort();
    assert_eq!(
        queued,
        vec![("alpha".into(), 1), ("beta".into(), 2), ("gamma".into(), 3)]
    );

    // Reads stay public on loopback (PUBLIC_READS unset); /openapi.json needs no dependency.
    let resp = app.http.get(app.at("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn with_public_reads_off_reads_need_a_read_key_and_health_does_not() {
    let env = TestEnv::new("consumer_reads").await;
    let keys = keys();
    let app = spawn(&env, &["--api-keys", &keys, "--public-reads", "false"]).await;
    for path in [
        "/stats",
        "/messages",
        "/metrics",
        "/openapi.json",
        "/messages/alpha/1",
    ] {
        let resp = app.http.get(app.at(path)).send().await.unwrap();
        assert_problem(resp, 401).await;
        let resp = app
            .http
            .get(app.at(path))
            .bearer_auth(KEY_A)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403).await;
        let resp = app
            .http
            .get(app.at(path))
            .bearer_auth(KEY_READ)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 200 || resp.status() == 404,
            "{path}: {}",
            resp.status()
        );
        let resp = app
            .http
            .get(app.at(path))
            .basic_auth("browser", Some(KEY_READ))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 200 || resp.status() == 404,
            "{path} (basic): {}",
            resp.status()
        );
    }
    for path in ["/healthz", "/readyz"] {
        let resp = app.http.get(app.at(path)).send().await.unwrap();
        assert_ne!(resp.status(), 401, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_api_beyond_loopback_without_keys_refuses_to_start() {
    let env = TestEnv::new("consumer_open").await;
    let mut c = config(&env, &env.redis_url, &env.elasticsearch_url, &[]);
    c.addr = "0.0.0.0:8000".parse().unwrap();
    let err = consumer::AppState::new(&c)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("API_KEYS") && err.contains("0.0.0.0:8000"),
        "{err}"
    );
    let keys = keys();
    let mut c = config(
        &env,
        &env.redis_url,
        &env.elasticsearch_url,
        &["--api-keys", &keys],
    );
    c.addr = "0.0.0.0:8000".parse().unwrap();
    assert!(consumer::AppState::new(&c).is_ok());
}
