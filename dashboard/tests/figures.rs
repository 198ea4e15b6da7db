//! The dashboard's figures against documents written to the real Elasticsearch: exact max
//! number, the 10-s transit window, the 60-s per-second series, webhook latency percentiles, and
//! empty windows reported as null (the page shows "—").

mod support;

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use support::*;
use testkit::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_equal_what_elasticsearch_holds() {
    let env = TestEnv::new("dash_figures").await;
    let now = Utc::now();
    let recent = now - TimeDelta::milliseconds(1500);
    let older = now - TimeDelta::seconds(40);
    let ancient = now - TimeDelta::hours(2);
    let big = (1u64 << 53) - 1; // the largest number the edge accepts: a double holds it exactly
    let mut docs = vec![
        message(1, recent, 1.0),
        message(2, recent, 2.0),
        message(3, recent, 6.0),
        message(big, ancient, 100.0),
    ];
    docs.extend((10..15).map(|n| message(n, older, 50.0)));
    feed_messages(&env, &docs).await;
    feed_resources(
        &env,
        &(1..=100)
            .map(|i| (now - TimeDelta::seconds(3), i as f64))
            .collect::<Vec<_>>(),
    )
    .await;

    let dash = start_dashboard(&env, &env.elasticsearch_url).await;
    let s = dash
        .stats_until(&env.http, Duration::from_secs(10), "first good poll", |s| {
            s["elasticsearch"]["status"] == "up" && s["redis"]["status"] == "up"
        })
        .await;

    // Straight from Elasticsearch, for comparison.
    let direct = env
        .search(
            "messages",
            serde_json::json!({"size": 1, "sort": [{"number": "desc"}], "_source": ["number"]}),
        )
        .await;
    assert_eq!(
        direct["hits"]["hits"][0]["_source"]["number"].as_u64(),
        Some(big)
    );
    assert_eq!(s["max_number"].as_u64(), Some(big), "{s}");
    assert_eq!(s["total"], 9);
    assert_eq!(s["count_10s"], 3);
    assert!(
        (s["avg_transit_ms_10s"].as_f64().unwrap() - 3.0).abs() < 1e-9,
        "{s}"
    );
    assert_eq!(s["stale"], false);

    // The 60-s series: 3 messages in the second of `recent`, 5 in the second of `older`.
    let series: Vec<u64> = s["messages_per_second_60s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(series.len(), 60);
    let updated: chrono::DateTime<Utc> = s["updated_at"].as_str().unwrap().parse().unwrap();
    let chart_start =
        updated.duration_trunc(TimeDelta::seconds(1)).unwrap() - TimeDelta::seconds(60);
    let slot =
        |t: chrono::DateTime<Utc>| ((t - chart_start).num_milliseconds().div_euclid(1000)) as usize;
    let mut expected = vec![0u64; 60];
    for (t, n) in [(recent, 3), (older, 5)] {
        if let Some(cell) = expected.get_mut(slot(t)) {
            *cell += n;
        }
    }
    assert_eq!(series, expected, "per-second counts, updated_at {updated}");

    assert_eq!(s["resources_completed"], 100);
    let p50 = s["webhook_latency_ms"]["p50"].as_f64().unwrap();
    let p99 = s["webhook_latency_ms"]["p99"].as_f64().unwrap();
    assert!((49.0..=52.0).contains(&p50), "p50 {p50}");
    assert!((98.0..=100.0).contains(&p99), "p99 {p99}");

    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_windows_are_null_and_a_missing_resources_index_is_zero() {
    let env = TestEnv::new("dash_empty").await;
    let long_ago = Utc::now() - TimeDelta::minutes(30);
    feed_messages(
        &env,
        &[message(7, long_ago, 3.0), message(8, long_ago, 4.0)],
    )
    .await;

    let dash = start_dashboard(&env, &env.elasticsearch_url).await;
    let s = dash
        .stats_until(&env.http, Duration::from_secs(10), "first good poll", |s| {
            s["elasticsearch"]["status"] == "up"
        })
        .await;
    assert_eq!(s["max_number"], 8);
    assert_eq!(s["total"], 2);
    assert_eq!(s["count_10s"], 0);
    assert!(
        s["avg_transit_ms_10s"].is_null(),
        "empty window must be null, not 0: {s}"
    );
    assert!(s["messages_per_second_60s"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v == 0));
    assert_eq!(s["resources_completed"], 0);
    assert!(s["webhook_latency_ms"]["p50"].is_null());
    assert!(s["webhook_latency_ms"]["p99"].is_null());
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_index_at_all_answers_empty_figures_not_an_error() {
    let env = TestEnv::new("dash_noindex").await;
    let dash = start_dashboard(&env, &env.elasticsearch_url).await;
    let s = dash
        .stats_until(&env.http, Duration::from_secs(10), "first poll", |s| {
            s["elasticsearch"]["status"] != "starting"
        })
        .await;
    assert_eq!(s["elasticsearch"]["status"], "up", "{s}");
    assert!(s["max_number"].is_null());
    assert_eq!(s["total"], 0);
    assert!(s["avg_transit_ms_10s"].is_null());

    let page = env
        .http
        .get(format!("{}/", dash.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"max-number\"") && html.contains("new EventSource(\"/events\")"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must load nothing from elsewhere"
    );
    let health = env
        .http
        .get(format!("{}/healthz", dash.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    dash.stop().await;
}
