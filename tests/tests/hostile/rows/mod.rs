//! The battery's table: one row per hostile request, each naming the service it goes to, the
//! exact bytes sent and the answer it must get — a status and problem `type` as documented in
//! the README's error table, or a connection closed without an answer (a request head that
//! never completes). Built fresh for each run (timestamps and signatures are made at `now`).

mod consumer;
pub mod dashboard;
mod protocol;
mod webhook;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Which service a row goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    Consumer,
    Worker,
    Webhook,
    Dashboard,
}

/// The answer a row must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// This status, `application/problem+json`, `type` = `urn:conveyor:problem:<slug>`.
    Problem(u16, &'static str),
    /// The connection is closed without an answer.
    Closed,
}

pub struct Row {
    pub name: String,
    pub to: To,
    pub request: Vec<u8>,
    pub expect: Expect,
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A request with `Host` and `Connection: close`, and `Content-Length` for the body unless the
/// headers set their own framing.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed && (!body.is_empty() || method == "POST") {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A packet valid at `now`, with `changes` merged over it (`null` removes a field).
fn packet(now: DateTime<Utc>, changes: Value) -> Vec<u8> {
    let mut p = json!({"number": 1, "sent_at": now.to_rfc3339(), "producer": "hostile"});
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v.clone();
        }
    }
    p.to_string().into_bytes()
}

/// An object of `n` unknown keys followed by a valid packet's fields.
pub fn unknown_keys(now: DateTime<Utc>, n: usize) -> Vec<u8> {
    let mut body = String::with_capacity(n * 12);
    body.push('{');
    for i in 0..n {
        body.push_str(&format!("\"k{i}\":0,"));
    }
    body.push_str(&format!(
        "\"number\":1,\"sent_at\":\"{}\"}}",
        now.to_rfc3339()
    ));
    body.into_bytes()
}

/// `[0,0,0,…]` of about `bytes` bytes.
pub fn zeros(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes);
    out.push(b'[');
    while out.len() < bytes - 2 {
        out.extend_from_slice(b"0,");
    }
    out.extend_from_slice(b"0]");
    out
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every row of the battery. `secret` signs the webhook rows that get past the signature.
pub fn all(now: DateTime<Utc>, secret: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut add = |to: To, name: &str, request: Vec<u8>, expect: Expect| {
        rows.push(Row {
            name: name.to_string(),
            to,
            request,
            expect,
        })
    };
    consumer::rows(&mut add, now);
    protocol::rows(&mut add);
    webhook::rows(&mut add, now, secret);
    dashboard::rows(&mut add);
    rows
}
