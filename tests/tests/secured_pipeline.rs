//! The pipeline once against secured servers: a TLS-only Redis with an ACL user (default user
//! off) and an Elasticsearch with security on, over HTTPS, with a role-restricted API key — both
//! real, started by `scripts/lib/secured.sh` (`./setup.sh test`, step "pipeline against secured
//! servers"), which sets REDIS_URL=rediss://…, REDIS_PASSWORD_FILE, REDIS_CA_FILE,
//! ELASTICSEARCH_URL=https://…, ELASTICSEARCH_CA_FILE and ELASTICSEARCH_API_KEY_FILE (the key
//! it created, allowed only the indices of these tests), plus SECURED_ES_USERNAME and
//! SECURED_ES_PASSWORD_FILE (the elastic user, to make keys here). The services get the same
//! variables through the launcher. Not part of `cargo test --workspace` (`test = false` in
//! Cargo.toml): it needs those servers, and fails loudly without them.
//!
//! It shows: the servers really refuse anonymous clients; POST → worker → Elasticsearch (HTTPS,
//! API key) → webhook delivery → the webhook service's index and file; `?wait=true` (the result
//! subscriber over TLS with the ACL user); a key whose role lacks the index is refused, said so
//! in the worker's log, and loses nothing; the consumer with basic auth; the `.security` index's
//! analyzer built from the analysis plugin (scripts/es-analysis/); and a made-up key
//! reaching Elasticsearch as an API key.

use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_redis::redis;
use e2e::es::{count_docs, wait_for_count};
use e2e::{Service, Stack};
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
    // The services and the tests authenticate with the script's API key, not as a user.
    required("ELASTICSEARCH_API_KEY_FILE");
    for basic in ["ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD_FILE"] {
        assert!(
            std::env::var(basic).map_or(true, |v| v.is_empty()),
            "{basic} must not be set: the secured step runs with the API key"
        );
    }
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
/// API key (Elasticsearch looks the key id up in its `.security` index and names it in its
/// refusal).
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
        body.contains(&format!("unable to find apikey with id {key_id}")),
        "{body}"
    );
    // The refusal is reported without the key.
    let err = store.ping().await.unwrap_err().to_string();
    assert!(!err.contains(&encoded), "{err}");
}

/// A client of the secured Elasticsearch as the elastic user (basic auth), to make API keys.
fn elastic_user_client() -> reqwest::Client {
    let ca = std::fs::read(required("ELASTICSEARCH_CA_FILE")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An API key (its `encoded` form, in a private temp file) whose role has every privilege the
/// script's key has, on the index patterns `names` only.
async fn api_key_for(names: &[String]) -> tempfile::NamedTempFile {
    let password = std::fs::read_to_string(required("SECURED_ES_PASSWORD_FILE")).unwrap();
    let body = json!({
        "name": "conveyor-test-narrow", "expiration": "1h",
        "role_descriptors": {"narrow": {
            "cluster": ["manage_index_templates", "monitor"],
            "indices": [{"names": names, "privileges": ["manage", "write", "read"]}]
        }}
    });
    let resp = elastic_user_client()
        .post(format!(
            "{}/_security/api_key",
            required("ELASTICSEARCH_URL")
        ))
        .basic_auth(required("SECURED_ES_USERNAME"), Some(password.trim_end()))
        .json(&body)
        .send()
        .await
        .expect("POST /_security/api_key");
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), answer["encoded"].as_str().unwrap()).unwrap();
    file
}

/// A worker whose key's role lacks the messages' indices: Elasticsearch refuses it, the worker
/// says so in its log (security_exception naming the index, no panic, still running) and takes
/// no job, so the message waits in the stream; a worker with the right key then stores it once.
/// The consumer here authenticates as the elastic user (basic auth) and reads it back.
#[tokio::test]
async fn a_key_whose_role_lacks_the_index_is_refused_and_loses_nothing() {
    assert_secured_environment();
    let env = TestEnv::new("secured").await;
    // Same privileges as the pipeline's key, on another prefix only.
    let wrong = api_key_for(&[format!("{}other-*", env.index_prefix)]).await;
    let wrong_key = std::fs::read_to_string(wrong.path()).unwrap();

    let mut stack = Stack::builder(&env)
        .workers(0)
        .env_for(Service::Consumer, "ELASTICSEARCH_API_KEY_FILE", "")
        .env_for(
            Service::Consumer,
            "ELASTICSEARCH_USERNAME",
            required("SECURED_ES_USERNAME"),
        )
        .env_for(
            Service::Consumer,
            "ELASTICSEARCH_PASSWORD_FILE",
            required("SECURED_ES_PASSWORD_FILE"),
        )
        .start()
        .await
        .expect("the consumer starts with basic auth");
    let bad = stack
        .start_worker_with(&[("ELASTICSEARCH_API_KEY_FILE", wrong.path().to_str().unwrap())])
        .await
        .expect("the worker starts (and waits for its indices)");

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/messages", stack.consumer_url()))
        .json(
            &json!({"number": 7, "sent_at": Utc::now().to_rfc3339(), "producer": "keyed",
                      "text": "held back"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    // The refusal, in the worker's own log.
    let start = Instant::now();
    let log = loop {
        let log = stack.worker(bad).unwrap().guard.output();
        if log.contains("security_exception") || start.elapsed() > Duration::from_secs(30) {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(log.contains("security_exception"), "{log}");
    assert!(log.contains("unauthorized for API key"), "{log}");
    assert!(log.contains(&env.index("messages")), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains(wrong_key.trim()),
        "the key leaked into the log"
    );
    assert_eq!(
        stack.running_workers(),
        1,
        "the refused worker keeps running"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_docs(&env, "messages").await, 0, "nothing was stored");

    // Nothing was lost: a worker with the pipeline's key stores the waiting message, once.
    stack.kill_worker(bad);
    stack
        .start_worker()
        .await
        .expect("a worker with the right key");
    assert_eq!(
        wait_for_count(&env, "messages", 1, Duration::from_secs(30)).await,
        1
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_docs(&env, "messages").await, 1, "stored once");
    let read = http
        .get(format!("{}/messages/keyed/7", stack.consumer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the consumer reads with basic auth");
    let doc: Value = read.json().await.unwrap();
    assert_eq!(doc["word_lengths"], json!([4, 4]), "{doc}");
}

/// The analysis plugin the secured Elasticsearch runs with (scripts/es-analysis/): an index with
/// the `.security` index's own `email` analyzer (pattern_capture with its four patterns,
/// uax_url_email, lowercase, unique) splits an address as analysis-common would: the address
/// whole, then each captured group once, and a repeated term only once in the whole stream.
#[tokio::test]
async fn the_security_index_email_analyzer_works_with_the_plugin() {
    assert_secured_environment();
    let env = TestEnv::new("secured").await;
    let index = format!("{}/{}", env.elasticsearch_url, env.index("analysis"));
    let settings = json!({"settings": {"number_of_replicas": 0, "analysis": {
        "filter": {"email": {"type": "pattern_capture", "preserve_original": true,
                             "patterns": ["([^@]+)", "(\\p{L}+)", "(\\d+)", "@(.+)"]}},
        "analyzer": {"email": {"tokenizer": "uax_url_email",
                               "filter": ["email", "lowercase", "unique"]}}
    }}});
    let resp = env.es.put(&index).json(&settings).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let resp = env
        .es
        .post(format!("{index}/_analyze"))
        .json(&json!({"analyzer": "email", "text": "John.Smith42@Example.com john"}))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    let tokens: Vec<&str> = answer["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        [
            "john.smith42@example.com",
            "john.smith42",
            "john",
            "smith",
            "42",
            "example.com",
            "example",
            "com"
        ]
    );
    // A pattern_capture filter without patterns is refused when an analyzer uses it, not later.
    let empty = json!({"settings": {"analysis": {
        "filter": {"bare": {"type": "pattern_capture"}},
        "analyzer": {"bare": {"tokenizer": "uax_url_email", "filter": ["bare"]}}
    }}});
    let resp = env
        .es
        .put(format!("{index}-bare"))
        .json(&empty)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {body}"
    );
    assert!(
        body.contains("pattern_capture needs at least one entry in [patterns]"),
        "{body}"
    );
}
