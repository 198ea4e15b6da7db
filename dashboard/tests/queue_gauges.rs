//! The queue gauges on the dashboard's `/metrics`, scraped over HTTP against the real Redis:
//! jobs per state, the oldest job's age and the workers per queue, read by the one poller (a
//! scrape never reads Redis: with a long poll interval the figures stay those of the last poll);
//! and the queue library's wait-time and run-time histograms of jobs a worker in this process ran.

mod support;

use std::time::{Duration, Instant};

use queue::{Handler, Job, Outcome, Queue, Worker, WorkerConfig};
use serde_json::{json, Value};
use support::*;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

struct Slow;

impl Handler<Value> for Slow {
    async fn handle(&self, jobs: Vec<Job<Value>>) -> Vec<Outcome> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        jobs.iter().map(|_| Outcome::Done(Value::Null)).collect()
    }
}

/// The value of the sample `line_start` (metric name with labels) on `/metrics`.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_and_job_histograms_are_scraped_from_metrics() {
    // The process's recorder, before any job records into it.
    service_kit::telemetry::prometheus();
    let env = TestEnv::new("dash_gauges").await;
    let messages: Queue<Value> = Queue::new(
        env.redis.clone(),
        pipeline::queues::messages(&env.namespace),
    );
    let webhooks: Queue<Value> = Queue::new(
        env.redis.clone(),
        pipeline::queues::webhooks(&env.namespace),
    );
    messages
        .enqueue_batch(&(0..5).map(|n| json!(n)).collect::<Vec<_>>())
        .await
        .unwrap();
    messages
        .enqueue_in(&json!("later"), Duration::from_secs(600))
        .await
        .unwrap();
    for n in 0..2 {
        messages.dead_letter(&json!(n), "given up").await.unwrap();
    }
    // Three webhook jobs wait at least 300 ms before a worker starts.
    webhooks
        .enqueue_batch(&[json!(1), json!(2), json!(3)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = CancellationToken::new();
    let config = WorkerConfig {
        consumer: "gauge-worker".into(),
        block: Duration::from_millis(100),
        ..WorkerConfig::default()
    };
    tokio::spawn(Worker::new(webhooks.clone(), Slow, config).run(stop.clone()));
    let start = Instant::now();
    while webhooks.stats().await.unwrap().backlog + webhooks.stats().await.unwrap().pending > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "webhook jobs ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A long poll interval: the first poll happens at start, the next in a minute.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dash = start_dashboard_with(&env, &env.elasticsearch_url, &["--poll-ms", "60000"]).await;
    let url = format!("{}/metrics", dash.base);
    let start = Instant::now();
    let text = loop {
        let text = testkit::get_text(&env.http, &url).await;
        if sample(
            &text,
            r#"conveyor_queue_jobs{queue="messages",state="backlog"}"#,
        ) == Some(5.0)
        {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "first poll:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (line, want) in [
        (
            r#"conveyor_queue_jobs{queue="messages",state="pending"}"#,
            0.0,
        ),
        (
            r#"conveyor_queue_jobs{queue="messages",state="delayed"}"#,
            1.0,
        ),
        (r#"conveyor_queue_jobs{queue="messages",state="dead"}"#, 2.0),
        (
            r#"conveyor_queue_jobs{queue="webhooks",state="backlog"}"#,
            0.0,
        ),
        (r#"conveyor_queue_workers{queue="webhooks"}"#, 1.0),
        (r#"conveyor_queue_workers{queue="messages"}"#, 0.0),
        (
            r#"conveyor_queue_oldest_job_age_seconds{queue="webhooks"}"#,
            0.0,
        ),
        (r#"conveyor_job_wait_seconds_count{queue="webhooks"}"#, 3.0),
        (
            r#"conveyor_job_duration_seconds_count{queue="webhooks"}"#,
            3.0,
        ),
    ] {
        assert_eq!(sample(&text, line), Some(want), "{line} in:\n{text}");
    }
    let age = sample(
        &text,
        r#"conveyor_queue_oldest_job_age_seconds{queue="messages"}"#,
    )
    .unwrap();
    assert!((1.5..30.0).contains(&age), "oldest messages job age {age}");
    let waited = sample(&text, r#"conveyor_job_wait_seconds_sum{queue="webhooks"}"#).unwrap();
    assert!(
        waited >= 0.9,
        "three jobs waited at least 300 ms each: {waited}"
    );
    let ran = sample(
        &text,
        r#"conveyor_job_duration_seconds_sum{queue="webhooks"}"#,
    )
    .unwrap();
    assert!(ran >= 0.15, "three jobs ran at least 50 ms each: {ran}");

    // Scrapes never read Redis: more jobs now, and the gauges still show the last poll.
    messages
        .enqueue_batch(&(0..10).map(|n| json!(n)).collect::<Vec<_>>())
        .await
        .unwrap();
    for _ in 0..5 {
        let text = testkit::get_text(&env.http, &url).await;
        assert_eq!(
            sample(
                &text,
                r#"conveyor_queue_jobs{queue="messages",state="backlog"}"#
            ),
            Some(5.0)
        );
    }
    stop.cancel();
    dash.stop().await;
}
