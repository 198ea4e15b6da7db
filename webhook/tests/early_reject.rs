//! The signature header is judged before the body is read: a delivery whose header is missing,
//! garbled or stale is answered 401 at once although it declares a body (1 kB or 1 GB) and sends
//! none of it,
//! and a well-signed one declaring more than the largest possible delivery is answered 413 at
//! once. Raw sockets, so the test controls exactly which bytes were sent.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use pipeline::signing::sign;
use support::{Service, SECRET};
use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a delivery head declaring `length` bytes (and none of them); returns the answer's text
/// and how long it took to arrive, and whether the server then closed the connection.
async fn head_only(
    svc: &Service,
    signature: Option<&str>,
    length: u64,
) -> (String, Duration, bool) {
    let mut s = TcpStream::connect(svc.addr()).await.unwrap();
    let mut head = format!(
        "POST /webhooks/resources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Idempotency-Key: r-1\r\nContent-Length: {length}\r\n"
    );
    if let Some(sig) = signature {
        head.push_str(&format!("X-Conveyor-Signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    // Read the answer, then up to 2 s more for the close (the unread body is not waited for).
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        if n == 0 {
            closed = true;
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let took = t0.elapsed();
    (String::from_utf8_lossy(&got).into_owned(), took, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_before_the_body_is_read() {
    let env = TestEnv::new("webhook_early").await;
    let svc = Service::start(&env).await;
    let now = Utc::now().timestamp();
    let stale = sign(SECRET.as_bytes(), now - 3600, b"");
    let future = sign(SECRET.as_bytes(), now + 3600, b"");
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("missing", None, "missing X-Conveyor-Signature"),
        ("garbled", Some("garbage"), "malformed"),
        ("no MAC", Some("t=1700000000"), "malformed"),
        ("an hour old", Some(&stale), "outside the allowed window"),
        ("an hour ahead", Some(&future), "outside the allowed window"),
    ];
    let mut refused = 0;
    // Declared lengths under and far over the body limit: neither is waited for.
    for ((what, signature, detail), length) in cases
        .iter()
        .flat_map(|c| [(*c, 1_000u64), (*c, 1_000_000_000)])
    {
        let what = format!("{what}, {length} bytes declared");
        let (answer, took, closed) = head_only(&svc, signature, length).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{what}: {answer}");
        assert!(
            answer.contains("application/problem+json"),
            "{what}: {answer}"
        );
        assert!(answer.contains(detail), "{what}: {answer}");
        assert!(
            closed,
            "{what}: the connection is closed, its body never read"
        );
        assert!(
            took < Duration::from_secs(1),
            "{what}: answered and closed after {took:?}"
        );
        refused += 1;
    }
    assert_eq!(refused, 10);

    // A good, fresh signature: now the declared size is judged, still without reading.
    let fresh = sign(SECRET.as_bytes(), now, b"");
    let too_big = webhook::routes::BODY_LIMIT as u64 + 1;
    let (answer, took, _) = head_only(&svc, Some(&fresh), too_big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:conveyor:problem:too-large"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(1), "413 after {took:?}");

    assert!(svc.files().is_empty(), "nothing written");
    let health = svc
        .http
        .get(format!("{}/healthz", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    svc.shutdown.cancel();
}
