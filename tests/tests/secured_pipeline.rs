//! The pipeline once against secured servers: a TLS-only Redis with an ACL user (default user
//! off) and an Elasticsearch with security on, over HTTPS, with an API key or basic auth — both
//! real, started by `scripts/lib/secured.sh` (`./setup.sh test`, step "pipeline against secured
//! servers"), which sets REDIS_URL=rediss://…, REDIS_PASSWORD_FILE, REDIS_CA_FILE,
//! ELASTICSEARCH_URL=https://…, ELASTICSEARCH_CA_FILE and the Elasticsearch credentials. The
//! services get the same variables through the launcher. Not part of `cargo test --workspace`
//! (`test = false` in Cargo.toml): it needs those servers, and fails loudly without them.
//!
//! It shows: the servers really refuse anonymous clients; POST → worker → Elasticsearch (HTTPS,
//! credentials) → webhook delivery → the webhook service's index and file; `?wait=true` (the
//! result subscriber over TLS with the ACL user); and an API key reaching Elasticsearch as one.

use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_redis::redis;
use e2e::es::{count_docs, wait_for_count};
use e2e::Stack;
use serde_json::{json, Value};
use testkit::TestEnv;

fn required(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: this test runs in the secured step of ./setup.sh test (scripts/lib/secured.sh)")
    })
}

/// The environment describes secured servers, not the plain ones of the main run.
fn assert_secured_environment() {
    assert!(
        required("REDIS_URL").starts_with("rediss://"),
        "REDIS_URL must be rediss://"
    );
    assert!(
        required("ELASTICSEARCH_URL").starts_with("https://"),
        "ELASTICSEARCH_URL must be https://"
    );
    required("REDIS_CA_FILE");
    required("ELASTICSEARCH_CA_FILE");
    let es_auth = [
        "ELASTICSEARCH_API_KEY_FILE",
        "ELASTICSEARCH_API_KEY",
        "ELASTICSEARCH_USERNAME",
    ];
    assert!(
        es_auth
            .iter()
            .any(|n| std::env::var(n).is_ok_and(|v| !v.is_empty())),
        "Elasticsearch credentials must be set"
    );
}

/// Anonymous clients are refused by both servers (so the pipeline below had to authenticate).
async fn assert_servers_refuse_anonymous_clients(env: &TestEnv) {
    let ca = std::fs::read(required("ELASTICSEARCH_CA_FILE")).unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = anonymous
        .get(format!("{}/_cluster/health", env.elasticsearch_url))
        .send()
        .await
        .expect("HTTPS with the CA file works");
    assert_eq!(resp.status(), 401, "Elasticsearch must require credentials");
    // Without the CA, the server's certificate is not trusted.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = untrusting
        .get(format!("{}/_cluster/health", env.elasticsearch_url))
        .send()
        .await
        .expect_err("an unknown CA is refused");
    assert!(err.is_connect(), "{err:?}");

    // Redis: TLS with the right CA, but no user/password → the default user is off.
    let mut info = testkit::transport::redis_connection_info(&env.redis_url).unwrap();
    let settings = info.redis_settings().clone();
    let no_auth = redis::RedisConnectionInfo::default()
        .set_db(settings.db())
        .set_protocol(settings.protocol());
    info = info.set_redis_settings(no_auth);
    let client = redis::Client::open(info).unwrap();
    let refused = match client.get_multiplexed_async_connection().await {
        Err(_) => true,
        Ok(mut conn) => redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_err(),
    };
    assert!(refused, "Redis must refuse a client without credentials");
}

#[tokio::test]
async fn post_to_worker_to_https_elasticsearch_to_webhook_over_tls_redis_with_acl() {
    assert_secured_environment();
    let env = TestEnv::new("secured").await;
    assert_servers_refuse_anonymous_clients(&env).await;

    let stack = Stack::builder(&env)
        .workers(1)
        .webhook(true)
        .start()
        .await
        .expect("the services start against the secured servers");
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", stack.consumer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "{}",
        ready.text().await.unwrap_or_default()
    );

    // One resource of three packets, sent out of order (by the default producer, whose
    // resources keep their plain id as key: the webhook file is `<id>.json`).
    let resource = format!("sec-{}", &env.namespace[env.namespace.len() - 8..]);
    let texts = ["alpha beta", "gamma", "delta epsilon zeta"];
    let packets: Vec<Value> = [2usize, 0, 1]
        .iter()
        .map(|&seq| {
            json!({"number": seq, "sent_at": Utc::now().to_rfc3339(),
                   "resource_id": resource, "seq": seq, "total": 3, "text": texts[seq]})
        })
        .collect();
    let resp = http
        .post(format!("{}/messages/batch", stack.consumer_url()))
        .json(&packets)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    // Request/reply: the result comes back through the pub/sub subscriber (TLS + ACL user).
    let resp = http
        .post(format!(
            "{}/messages?wait=true&timeout_ms=10000",
            stack.consumer_url()
        ))
        .json(
            &json!({"number": 10, "sent_at": Utc::now().to_rfc3339(), "producer": "secured",
                      "text": "over tls"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["word_lengths"], json!([4, 3]), "{result}");

    // Stored in Elasticsearch (read back by the test over HTTPS with the same credentials).
    assert_eq!(
        wait_for_count(&env, "messages", 4, Duration::from_secs(30)).await,
        4
    );
    // Delivered to the webhook service once, which stored it in its index and wrote its file.
    let file = stack.output_dir().join(format!("{resource}.json"));
    let start = Instant::now();
    while !file.exists() && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the webhook wrote the resource"))
            .unwrap();
    assert_eq!(delivered["resource_id"], resource.as_str(), "{delivered}");
    assert_eq!(
        delivered["word_lengths"],
        json!([[5, 4], [5], [5, 7, 4]]),
        "{delivered}"
    );
    assert_eq!(
        wait_for_count(&env, "resources", 1, Duration::from_secs(15)).await,
        1
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_docs(&env, "messages").await, 4, "each message once");
    assert_eq!(count_docs(&env, "resources").await, 1, "the resource once");
}

/// The API-key path of the one client constructor: a made-up key reaches Elasticsearch as an
/// API key (Elasticsearch names the key id in its refusal). When the servers were set up with an
/// API key, the test above used a real one.
#[tokio::test]
async fn an_api_key_is_sent_as_an_api_key() {
    assert_secured_environment();
    let mut args = service_kit::config::ElasticArgs::new(required("ELASTICSEARCH_URL"), "unused-");
    args.elasticsearch_ca_file = Some(required("ELASTICSEARCH_CA_FILE").into());
    let key_id = "conveyor-made-up-id";
    let encoded = testkit::transport::base64(format!("{key_id}:not-a-real-key").as_bytes());
    args.elasticsearch_api_key = Some(service_kit::secret::Secret::new(&encoded));
    let store = pipeline::store::Store::new(&args).unwrap();
    let resp = store
        .client()
        .cluster()
        .health(elasticsearch::cluster::ClusterHealthParts::None)
        .send()
        .await
        .expect("HTTPS with the CA file works");
    assert_eq!(resp.status_code().as_u16(), 401);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("apikey authentication for id {key_id}")),
        "{body}"
    );
    // The refusal is reported without the key.
    let err = store.ping().await.unwrap_err().to_string();
    assert!(!err.contains(&encoded), "{err}");
}
