//! The worker's retention task against the real Elasticsearch: two workers started with
//! `--message-retention-days 30` delete, in their first sweep (a few seconds after start-up),
//! exactly the daily message indices older than 30 days — each once between them — and keep
//! the rest, another deployment's indices included. A retention not longer than
//! MAX_MESSAGE_AGE stops the worker before it does anything.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use clap::Parser;
use pipeline::store::Store;
use service_kit::config::ElasticArgs;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

fn config(env: &TestEnv, extra: &[&str]) -> worker::Config {
    let base = [
        "worker",
        "--webhook-secret",
        "retention-test-secret-of-at-least-32-bytes",
        "--redis-url",
        &env.redis_url,
        "--queue-namespace",
        &env.namespace,
        "--elasticsearch-url",
        &env.elasticsearch_url,
        "--es-index-prefix",
        &env.index_prefix,
    ];
    worker::Config::try_parse_from(base.iter().chain(extra)).unwrap()
}

async fn exists(env: &TestEnv, index: &str) -> bool {
    let url = format!("{}/{index}", env.elasticsearch_url);
    env.http.head(url).send().await.unwrap().status() == 200
}

#[tokio::test]
async fn workers_delete_exactly_the_expired_days_at_start_up() {
    let env = TestEnv::new("worker_retention").await;
    let store = Store::new(&ElasticArgs::new(
        env.elasticsearch_url.clone(),
        env.index_prefix.clone(),
    ))
    .unwrap();
    let today = Utc::now().date_naive();
    let ago = |days: u64| store.daily_index(today.checked_sub_days(Days::new(days)).unwrap());
    let expired = [ago(45), ago(31)];
    let kept = [ago(30), ago(8), ago(1)];
    // Another deployment's daily index of the same day: not ours, whatever its age.
    let foreign = format!(
        "{}other-messages-{}",
        env.index_prefix,
        today
            .checked_sub_days(Days::new(45))
            .unwrap()
            .format("%Y.%m.%d")
    );
    for index in expired.iter().chain(&kept).chain([&foreign]) {
        let resp = env
            .http
            .put(format!("{}/{index}", env.elasticsearch_url))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "creating {index}: {}",
            resp.text().await.unwrap()
        );
    }

    let shutdown = CancellationToken::new();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(worker::run(
                config(&env, &["--message-retention-days", "30"]),
                shutdown.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut gone = true;
        for index in &expired {
            gone &= !exists(&env, index).await;
        }
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired indices still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for index in kept.iter().chain([&foreign]) {
        assert!(exists(&env, index).await, "{index} was kept");
    }
    assert!(
        exists(&env, &store.daily_index(today)).await,
        "today's index made at start-up"
    );
    shutdown.cancel();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_retention_within_the_message_age_refuses_to_start() {
    let env = TestEnv::new("worker_retention_refused").await;
    let config = config(
        &env,
        &["--message-retention-days", "7", "--max-message-age", "7d"],
    );
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        worker::run(config, CancellationToken::new()),
    )
    .await
    .expect("refused at once")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MESSAGE_RETENTION_DAYS=7 must be greater than MAX_MESSAGE_AGE"),
        "{err}"
    );
    let indices = env
        .http
        .get(format!(
            "{}/_cat/indices/{}*?format=json",
            env.elasticsearch_url, env.index_prefix
        ))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(indices, serde_json::json!([]), "nothing created");
}
