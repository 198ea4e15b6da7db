//! Shared by the hostile-input tests (`hostile_battery.rs`, `memory_bounds.rs`): a raw HTTP/1.1
//! exchange over TCP (so a test can send exactly the bytes it means, malformed ones included),
//! the battery's table of requests ([`rows`]), a `/healthz` poller that counts failures while a
//! test runs, what a stack holds (Redis lengths, documents per index, output files) to compare
//! before and after, and a service's resident memory from `/proc`. Sends and reads; the tests
//! assert.

#![allow(dead_code)]

pub mod rows;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back for one raw request.
#[derive(Debug)]
pub enum Outcome {
    /// A complete answer.
    Answer(Answer),
    /// The server closed the connection without a byte of answer.
    Closed,
    /// Nothing (or not all of an answer) within the wait.
    TimedOut(Vec<u8>),
    /// The connection failed (refused, reset before any answer).
    Failed(String),
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is on a new connection to `addr`, then reads until the server closes it,
/// a complete answer is in, or `wait` passes. A failed write (the server may answer and close
/// before a large body is out) still reads the answer.
pub async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Outcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("connect: {e}")),
    };
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if parse(&got).is_some() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match (read, parse(&got)) {
        (_, Some(answer)) => Outcome::Answer(answer),
        (Ok(Ok(())), None) if got.is_empty() => Outcome::Closed,
        (Ok(Err(e)), None) if got.is_empty() => Outcome::Failed(format!("read: {e}")),
        _ => Outcome::TimedOut(got),
    }
}

/// A complete HTTP/1.1 answer in `bytes` (content-length or chunked body), if there is one.
fn parse(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &bytes[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else {
        return None; // read to EOF: complete only when the caller saw the close
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// One service's poll: answers, and what went wrong otherwise.
type Polled = tokio::task::JoinHandle<(u64, Vec<String>)>;

/// Polls `GET /healthz` of every named service until stopped, counting answers and failures
/// (anything but a 200 within 2 s).
pub struct HealthPoller {
    stop: Arc<AtomicBool>,
    tasks: Vec<(String, Polled)>,
}

impl HealthPoller {
    pub fn start(services: &[(&str, String)]) -> HealthPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let tasks = services
            .iter()
            .map(|(name, base)| {
                let (stop, http, url) = (stop.clone(), http.clone(), format!("{base}/healthz"));
                let task = tokio::spawn(async move {
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match http.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(e.to_string()),
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    (ok, failures)
                });
                (name.to_string(), task)
            })
            .collect();
        HealthPoller { stop, tasks }
    }

    /// Stops polling; per service, the answers and the failures.
    pub async fn finish(self) -> Vec<(String, u64, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for (name, task) in self.tasks {
            let (ok, failures) = task.await.expect("poller");
            out.push((name, ok, failures));
        }
        out
    }
}

/// What the stack holds, to compare before and after: every Redis key of the namespace with
/// its type and length, documents per index of the test's prefix, files in the output dir.
#[derive(Debug, PartialEq, Eq)]
pub struct Holdings {
    pub redis: BTreeMap<String, (String, u64)>,
    pub indices: BTreeMap<String, u64>,
    pub files: Vec<String>,
}

pub async fn holdings(env: &TestEnv, output_dir: &std::path::Path) -> Holdings {
    let mut conn = env.redis.get().await.expect("redis");
    let mut redis = BTreeMap::new();
    for key in env.redis_keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let command = match kind.as_str() {
            "stream" => "XLEN",
            "zset" => "ZCARD",
            "hash" => "HLEN",
            "set" => "SCARD",
            "list" => "LLEN",
            _ => "STRLEN",
        };
        let len: u64 = redis::cmd(command)
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or(0);
        redis.insert(key, (kind, len));
    }
    let url = &env.elasticsearch_url;
    let prefix = &env.index_prefix;
    let _ = env
        .http
        .post(format!("{url}/{prefix}*/_refresh"))
        .send()
        .await;
    let listed: Value = env
        .http
        .get(format!(
            "{url}/_cat/indices/{prefix}*?format=json&h=index,docs.count"
        ))
        .send()
        .await
        .expect("_cat/indices")
        .json()
        .await
        .expect("_cat/indices JSON");
    let indices = listed
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let docs = i["docs.count"].as_str().and_then(|d| d.parse().ok());
            (
                i["index"].as_str().unwrap_or("").to_string(),
                docs.unwrap_or(0),
            )
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(output_dir)
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    Holdings {
        redis,
        indices,
        files,
    }
}

/// The pid a service reports on `/healthz`.
pub async fn pid_of(base: &str) -> u32 {
    let v: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("/healthz")
        .json()
        .await
        .expect("/healthz JSON");
    v["pid"].as_u64().expect("pid") as u32
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
