//! The connection bounds of `serve`, on a real server with the kit's whole stack: a request head
//! that never completes (or never starts) is cut after the header timeout, a trickling body is
//! answered 408 after the body timeout, an idle keep-alive connection is closed after the idle
//! timeout while a slow request is not, and past the concurrency limit requests are shed at once
//! with 503 + Retry-After while `/healthz` and `/metrics` still answer; an HTTP/1 connection
//! waiting for its next request is under the header clock as well (hyper's rule, documented).

mod support;

use std::time::{Duration, Instant};

use support::{is_open, read_head, relaxed, send, start, until_eof};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_silent_connections_are_closed_after_the_header_timeout() {
    let mut limits = relaxed();
    limits.http_header_timeout = Duration::from_secs(1);
    let server = start(limits).await;
    let t0 = Instant::now();
    let mut partial = send(server.addr, b"GET /hea").await;
    let mut headers_only = send(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let mut silent = send(server.addr, b"").await;
    for s in [&mut partial, &mut headers_only, &mut silent] {
        assert!(
            is_open(s, Duration::from_millis(300)).await,
            "held open before the timeout"
        );
    }
    let mut checked = 0;
    for (what, s) in [
        ("half a request line", &mut partial),
        ("a head without its blank line", &mut headers_only),
        ("nothing", &mut silent),
    ] {
        let (got, at) = until_eof(s, t0, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: still open 5 s after connecting"));
        assert!(got.is_empty(), "{what}: no answer, only the close: {got:?}");
        assert!(
            at >= Duration::from_millis(900),
            "{what}: closed after {at:?}, before the timeout"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_answered_408_after_the_body_timeout() {
    let mut limits = relaxed();
    limits.http_body_timeout = Duration::from_secs(1);
    let server = start(limits).await;
    let s = send(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
    )
    .await;
    let t0 = Instant::now();
    let (mut read, mut write) = s.into_split();
    // One byte every 200 ms: the bytes keep coming, the whole body never does.
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < 20 && write.write_all(b"x").await.is_ok() {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let at = loop {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf))
            .await
            .expect("answered and closed within 5 s")
            .unwrap_or(0);
        if n == 0 {
            break t0.elapsed();
        }
        got.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("urn:conveyor:problem:body-timeout"), "{text}");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(4),
        "{at:?}"
    );
    let sent = writer.await.unwrap();
    assert!(
        sent < 20,
        "the server stopped reading: {sent} bytes went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_but_a_slow_request_is_not() {
    let mut limits = relaxed();
    limits.http_idle_timeout = Duration::from_secs(1);
    let server = start(limits).await;
    let mut s = send(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = read_head(&mut s, Duration::from_secs(2)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let t0 = Instant::now();
    assert!(
        is_open(&mut s, Duration::from_millis(500)).await,
        "kept alive at first"
    );
    let (_, at) = until_eof(&mut s, t0, Duration::from_secs(5))
        .await
        .expect("closed within 5 s of going idle");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(3),
        "closed {at:?} after its last response"
    );
    // A request that takes longer than the idle timeout is in flight, not idle.
    let http = reqwest::Client::new();
    let slow = http
        .get(format!("{}/slow?ms=2500", server.url))
        .send()
        .await
        .expect("a slow request is answered");
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.text().await.unwrap(), "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_shed_at_once_with_503() {
    let mut limits = relaxed();
    limits.max_concurrent_requests = 2;
    let server = start(limits).await;
    let http = reqwest::Client::new();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{}/slow?ms=2000", server.url));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut shed = 0;
    for path in ["/slow?ms=1", "/readyz", "/nope"] {
        let t0 = Instant::now();
        let resp = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(resp.headers()["retry-after"], "1", "{path}");
        let p = testkit::assert_problem(resp, 503).await;
        assert_eq!(p["type"], "urn:conveyor:problem:overloaded", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("MAX_CONCURRENT_REQUESTS"),
            "{p}"
        );
        assert!(
            took < Duration::from_millis(500),
            "{path}: shed after {took:?}, not at once"
        );
        shed += 1;
    }
    for path in ["/healthz", "/metrics"] {
        let resp = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} is exempt");
    }
    let metrics = testkit::get_text(&http, &format!("{}/metrics", server.url)).await;
    assert!(
        metrics.contains("conveyor_http_requests_shed_total"),
        "{metrics}"
    );
    for task in slow {
        assert_eq!(task.await.unwrap(), 200, "admitted requests complete");
    }
    let after = http
        .get(format!("{}/slow?ms=1", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "permits come back");
    assert_eq!(shed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_connection_waiting_for_its_next_request_is_under_the_header_clock_too() {
    // As documented for HTTP_IDLE_TIMEOUT: hyper starts the header clock as soon as an HTTP/1
    // connection waits for its next request, so the shorter of the two closes it.
    let mut limits = relaxed();
    limits.http_header_timeout = Duration::from_secs(1);
    let server = start(limits).await;
    let mut s = send(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = read_head(&mut s, Duration::from_secs(2)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let t0 = Instant::now();
    let (_, at) = until_eof(&mut s, t0, Duration::from_secs(5))
        .await
        .expect("closed within 5 s although the idle timeout is a minute");
    assert!(at >= Duration::from_millis(900), "closed after {at:?}");
}
