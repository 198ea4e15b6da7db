//! Fifty real SSE clients on `/events` for ~5 s: every client gets about one `stats` event per
//! second, while Elasticsearch is searched about once per second in total — counted by the
//! dashboard's own `/metrics` counter and, independently, by Elasticsearch's per-index
//! `query_total` for this test's indices.

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use support::*;
use testkit::TestEnv;

const CLIENTS: usize = 50;
const WINDOW: Duration = Duration::from_secs(5);

/// Reads `/events` for `WINDOW`; returns how many `stats` events arrived and the last payload.
async fn sse_client(url: String) -> (usize, serde_json::Value) {
    let client = reqwest::Client::new();
    let resp = client.get(url).send().await.expect("GET /events");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WINDOW;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("event stream chunk"),
        ));
    }
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.contains("event: stats"))
        .collect();
    let last = events
        .last()
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).expect("event data is JSON"))
        .unwrap_or(serde_json::Value::Null);
    (events.len(), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_viewers_cost_one_elasticsearch_query_per_second() {
    let env = TestEnv::new("dash_fanout").await;
    let now = Utc::now();
    feed_messages(
        &env,
        &(0..20)
            .map(|n| message(n, now - TimeDelta::seconds(1), 2.0))
            .collect::<Vec<_>>(),
    )
    .await;
    feed_resources(&env, &[(now, 12.0)]).await;
    let dash = start_dashboard(&env, &env.elasticsearch_url).await;
    dash.stats_until(&env.http, Duration::from_secs(10), "first good poll", |s| {
        s["elasticsearch"]["status"] == "up"
    })
    .await;

    let es_before = query_totals(&env).await;
    let ours_before = dash
        .metric(&env.http, "conveyor_dashboard_es_queries_total")
        .await;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(sse_client(format!("{}/events", dash.base))))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = dash
        .metric(&env.http, "conveyor_dashboard_sse_clients")
        .await;
    assert_eq!(connected, CLIENTS as f64, "open /events connections");
    let mut received = Vec::new();
    for c in clients {
        received.push(c.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ours = dash
        .metric(&env.http, "conveyor_dashboard_es_queries_total")
        .await
        - ours_before;
    let es_after = query_totals(&env).await;

    for (events, last) in &received {
        // One at connect + one per poll: 5 s of reading gives 5 or 6 (fewer only if
        // Elasticsearch answers slowly on a loaded machine; never one per viewer).
        assert!(
            (3..=7).contains(events),
            "a client got {events} events in {WINDOW:?}"
        );
        assert_eq!(last["max_number"], 19, "event payload: {last}");
    }
    let ours_rate = ours / elapsed;
    assert!(
        (0.3..=1.5).contains(&ours_rate),
        "dashboard counted {ours} ES queries in {elapsed:.1} s"
    );
    // Index stats are per concrete index: the messages' are their daily indices behind the alias.
    let searches = |totals: &std::collections::HashMap<String, u64>, index: &str| -> u64 {
        totals
            .iter()
            .filter(|(name, _)| name.starts_with(index))
            .map(|(_, n)| n)
            .sum()
    };
    for index in [env.index("messages"), env.index("resources")] {
        let delta = searches(&es_after, &index) - searches(&es_before, &index);
        let rate = delta as f64 / elapsed;
        println!("{index}: {delta} searches in {elapsed:.1} s with {CLIENTS} viewers = {rate:.2}/s; dashboard counter {ours} = {ours_rate:.2}/s");
        assert!(
            (0.3..=1.5).contains(&rate),
            "Elasticsearch saw {delta} searches on {index} in {elapsed:.1} s"
        );
    }
    // The server notices a closed connection at its next write (within a second).
    let closing = Instant::now();
    while dash
        .metric(&env.http, "conveyor_dashboard_sse_clients")
        .await
        > 0.0
    {
        assert!(
            closing.elapsed() < Duration::from_secs(5),
            "closed /events connections still counted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams() {
    let env = TestEnv::new("dash_shutdown").await;
    let dash = start_dashboard(&env, &env.elasticsearch_url).await;
    let resp = env
        .http
        .get(format!("{}/events", dash.base))
        .send()
        .await
        .expect("GET /events");
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(3), body.next())
        .await
        .expect("first event in time");
    assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("event: stats"));
    let stopping = tokio::spawn(dash.stop());
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "event stream still open 5 s after shutdown");
    stopping.await.expect("stop");
}
