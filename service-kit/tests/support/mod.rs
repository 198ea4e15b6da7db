//! Helpers for the kit's connection tests: the kit's own stack (`HttpKit::mount`) around a few
//! test routes, served by the real `serve` on a port-0 listener, and raw TCP sockets that send
//! exactly the bytes a test wants (half a request head, a trickling body) and time what comes
//! back.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use service_kit::http::{HttpArgs, HttpKit, RawBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A served test router; cancelled (and drained) on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub url: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

/// `GET /slow?ms=N` answers after N ms; `POST /echo` answers the length of the body it read.
fn routes() -> Router {
    Router::new()
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                "done"
            }),
        )
        .route(
            "/echo",
            post(|RawBody(body): RawBody| async move { body.len().to_string() }),
        )
}

/// The kit's whole stack around the test routes, served under `limits`.
pub async fn start(limits: HttpArgs) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    service_kit::telemetry::prometheus();
    let router = HttpKit::new("kit-test").mount(routes());
    let stop = shutdown.clone();
    tokio::spawn(async move { service_kit::http::serve(listener, router, &limits, stop).await });
    Server {
        addr,
        url: format!("http://{addr}"),
        shutdown,
    }
}

/// Limits with every timeout long (a minute) and room for many requests; tests shorten one.
pub fn relaxed() -> HttpArgs {
    HttpArgs {
        http_header_timeout: Duration::from_secs(60),
        http_body_timeout: Duration::from_secs(60),
        http_idle_timeout: Duration::from_secs(60),
        max_concurrent_requests: 1000,
        ..HttpArgs::default()
    }
}

/// A socket that has sent `bytes`.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        s.write_all(bytes).await.unwrap();
    }
    s
}

/// What a socket received until the server closed it, and when (after `since`); `None` if it
/// was still open after `limit`.
pub async fn until_eof(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> Option<(Vec<u8>, Duration)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = since + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, since.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the socket is still open and silent: nothing to read within `wait`.
pub async fn is_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .is_err()
}

/// Reads one HTTP/1.1 response head (up to the blank line) and returns it as text.
pub async fn read_head(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("a response head in time")
            .expect("reading the response");
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
