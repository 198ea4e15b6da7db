//! The consumer's connections are bounded (the kit's `serve`), on the real consumer against real
//! Redis and Elasticsearch: 2,000 connections that send half a request line do not stop a new
//! `/healthz` from answering within 1 s, and are all closed after the header timeout; past
//! `MAX_CONCURRENT_REQUESTS` a request is answered 503 problem+json with `Retry-After` at once,
//! while `/healthz` still answers.

use crate::support;

use std::time::{Duration, Instant};

use support::{packet, spawn};
use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HALF_OPEN: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_neither_block_healthz_nor_stay_open() {
    let env = TestEnv::new("consumer_halfopen").await;
    let app = spawn(&env, &["--http-header-timeout", "1s"]).await;
    let t0 = Instant::now();
    let mut sockets = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        s.write_all(b"POST /messa")
            .await
            .expect("half a request line");
        sockets.push(s);
    }
    let opened = t0.elapsed();
    // A fresh client, a fresh connection: answered within 1 s while the 2,000 are held.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let asked = Instant::now();
    let health = http
        .get(app.at("/healthz"))
        .send()
        .await
        .expect("/healthz within 1 s");
    let took = asked.elapsed();
    assert_eq!(health.status(), 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    // Each one is closed by the server (EOF), none before the timeout could have run out.
    let reads = sockets.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) => Some(t0.elapsed()),
            _ => None,
        }
    });
    let closed: Vec<Option<Duration>> = futures::future::join_all(reads).await;
    let eof = closed.iter().flatten().count();
    assert_eq!(eof, HALF_OPEN, "connections closed with EOF within 10 s");
    let first = closed.iter().flatten().min().copied().unwrap();
    assert!(
        first >= Duration::from_millis(900),
        "the first one closed after {first:?}, before the 1 s header timeout"
    );
    println!(
        "{HALF_OPEN} half-open connections opened in {opened:?}; /healthz answered in {took:?}; \
         all closed by {:?} (first at {first:?})",
        closed.iter().flatten().max().unwrap()
    );
    // A new connection: the pooled one from before was closed by the idle/header timeout.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let again = fresh.get(app.at("/healthz")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_the_api_answers_503_overloaded_at_once() {
    let env = TestEnv::new("consumer_overload").await;
    let app = spawn(&env, &["--max-concurrent-requests", "2"]).await;
    // No worker runs: each `?wait=true` holds its request until its 3 s timeout (504).
    let waiting: Vec<_> = (0..2)
        .map(|n| {
            let (http, url) = (
                app.http.clone(),
                app.at("/messages?wait=true&timeout_ms=3000"),
            );
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .json(&packet(n, serde_json::json!({})))
                    .send()
                    .await;
                resp.unwrap().status().as_u16()
            })
        })
        .collect();
    // Until both are in flight (enqueued), then one more of each kind is shed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.stats().await.backlog < 2 {
        assert!(
            Instant::now() < deadline,
            "the two waiting requests were not enqueued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut shed = 0;
    for (method, path) in [
        ("POST", "/messages"),
        ("GET", "/stats"),
        ("GET", "/messages"),
    ] {
        let t0 = Instant::now();
        let req = match method {
            "POST" => app
                .http
                .post(app.at(path))
                .json(&packet(9, serde_json::json!({}))),
            _ => app.http.get(app.at(path)),
        };
        let resp = req.send().await.unwrap();
        let took = t0.elapsed();
        assert_eq!(resp.headers()["retry-after"], "1", "{method} {path}");
        let p = testkit::assert_problem(resp, 503).await;
        assert_eq!(
            p["type"], "urn:conveyor:problem:overloaded",
            "{method} {path}: {p}"
        );
        assert!(
            took < Duration::from_millis(500),
            "{method} {path} shed after {took:?}"
        );
        shed += 1;
    }
    assert_eq!(shed, 3);
    let health = app.http.get(app.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz answers past the limit");
    assert_eq!(
        app.stats().await.backlog,
        2,
        "the shed POST enqueued nothing"
    );
    for task in waiting {
        assert_eq!(
            task.await.unwrap(),
            504,
            "admitted requests run to their own end"
        );
    }
    assert_eq!(
        app.post_number(10).await,
        202,
        "admitted again once they finished"
    );
    app.stop().await;
}
