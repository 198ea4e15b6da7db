//! `/events` is capped at `MAX_SSE_CLIENTS` open streams: one more is answered 503 problem+json
//! (`overloaded`) with `Retry-After` at once, the page and `/healthz` still answer, and a stream
//! that closes frees its place.

mod support;

use std::time::{Duration, Instant};

use support::*;
use testkit::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_sse_clients_events_answers_503_and_a_closed_stream_frees_a_place() {
    let env = TestEnv::new("dash_ssecap").await;
    let dash =
        start_dashboard_with(&env, &env.elasticsearch_url, &["--max-sse-clients", "2"]).await;
    testkit::wait_for_http(&format!("{}/healthz", dash.base), Duration::from_secs(10))
        .await
        .unwrap();
    let events = format!("{}/events", dash.base);
    let open = |http: reqwest::Client, url: String| async move {
        let resp = http.get(url).send().await.expect("GET /events");
        assert_eq!(resp.status(), 200);
        resp
    };
    // Each stream on its own client (its own connection).
    let first = open(reqwest::Client::new(), events.clone()).await;
    let _second = open(reqwest::Client::new(), events.clone()).await;
    assert_eq!(
        dash.metric(&env.http, "conveyor_dashboard_sse_clients")
            .await,
        2.0
    );

    let mut refused = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let resp = reqwest::Client::new().get(&events).send().await.unwrap();
        assert!(t0.elapsed() < Duration::from_millis(500), "refused at once");
        assert_eq!(resp.headers()["retry-after"], "5");
        let p = testkit::assert_problem(resp, 503).await;
        assert_eq!(p["type"], "urn:conveyor:problem:overloaded", "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("MAX_SSE_CLIENTS"),
            "{p}"
        );
        refused += 1;
    }
    assert_eq!(refused, 3);
    assert_eq!(
        dash.metric(&env.http, "conveyor_dashboard_sse_clients")
            .await,
        2.0,
        "refused streams are not counted"
    );
    for path in ["/healthz", "/", "/api/stats"] {
        let resp = env
            .http
            .get(format!("{}{path}", dash.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} answers while /events is full");
    }

    drop(first);
    // The server notices the closed stream at its next write (an event each poll, 1 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        let resp = reqwest::Client::new().get(&events).send().await.unwrap();
        if resp.status() == 200 {
            break resp;
        }
        assert_eq!(resp.status(), 503);
        assert!(
            Instant::now() < deadline,
            "the closed stream's place was not freed in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(third.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    dash.stop().await;
}
