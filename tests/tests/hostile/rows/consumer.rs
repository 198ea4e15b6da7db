//! The battery's rows for the consumer's routes: `POST /messages` (types, ranges, dates,
//! fields, encodings, nesting, duplicate keys, content types, sizes, query strings),
//! `POST /messages/batch`, `GET /messages` and the message path ids, wrong methods.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::{nested, packet, request, unknown_keys, zeros, Expect, To, JSON};

pub(super) fn rows(add: &mut impl FnMut(To, &str, Vec<u8>, Expect), now: DateTime<Utc>) {
    use Expect::Problem;
    use To::*;
    let invalid = Problem(422, "validation");
    let malformed = Problem(400, "malformed-json");
    let post = |body: Vec<u8>| request("POST", "/messages", &[JSON], &body);
    let post_p = |changes: Value| post(packet(now, changes));

    // POST /messages: types, ranges, dates, fields.
    for (name, changes) in [
        ("number as a string", json!({"number": "1"})),
        ("number negative", json!({"number": -1})),
        ("number 2^53", json!({"number": 9_007_199_254_740_992_u64})),
        ("number i64::MAX", json!({"number": i64::MAX})),
        ("number fractional", json!({"number": 1.5})),
        ("number missing", json!({"number": null})),
        (
            "sent_at year 9999",
            json!({"sent_at": "9999-01-01T00:00:00Z"}),
        ),
        (
            "sent_at year 2001",
            json!({"sent_at": "2001-01-01T00:00:00Z"}),
        ),
        (
            "sent_at leap second",
            json!({"sent_at": (now - TimeDelta::minutes(1)).format("%Y-%m-%dT%H:%M:60Z").to_string()}),
        ),
        (
            "sent_at month 13",
            json!({"sent_at": "2026-13-01T00:00:00Z"}),
        ),
        (
            "sent_at no zone",
            json!({"sent_at": now.format("%Y-%m-%dT%H:%M:%S").to_string()}),
        ),
        ("sent_at epoch ms negative", json!({"sent_at": -1})),
        ("sent_at epoch ms 1e20", json!({"sent_at": 1e20})),
        ("sent_at a boolean", json!({"sent_at": true})),
        (
            "sent_at 1 minute ahead",
            json!({"sent_at": (now + TimeDelta::minutes(1)).to_rfc3339()}),
        ),
        ("producer with bad chars", json!({"producer": "bad name!"})),
        ("producer of 65 chars", json!({"producer": "p".repeat(65)})),
        ("producer empty", json!({"producer": ""})),
        (
            "resource_id without seq and total",
            json!({"resource_id": "r1"}),
        ),
        (
            "seq not below total",
            json!({"resource_id": "r1", "seq": 3, "total": 3}),
        ),
        (
            "total over 10000",
            json!({"resource_id": "r1", "seq": 0, "total": 10_001}),
        ),
        (
            "resource_id with a slash",
            json!({"resource_id": "../etc", "seq": 0, "total": 1}),
        ),
        ("text over 64 KiB", json!({"text": "a".repeat(70_000)})),
        ("text a number", json!({"text": 5})),
        ("unknown field", json!({"admin": true})),
    ] {
        add(
            Consumer,
            &format!("POST /messages {name}"),
            post_p(changes),
            invalid,
        );
    }
    let now_s = now.to_rfc3339();
    let deep_text = format!(
        r#"{{"number":1,"sent_at":"{now_s}","text":{}}}"#,
        nested(100_000)
    );
    add(
        Consumer,
        "POST /messages 100k-deep array as text",
        post(deep_text.into_bytes()),
        invalid,
    );
    let deep_unknown = format!(
        r#"{{"x":{},"number":1,"sent_at":"{now_s}"}}"#,
        nested(100_000)
    );
    add(
        Consumer,
        "POST /messages 100k-deep unknown field",
        post(deep_unknown.into_bytes()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages null",
        post(b"null".to_vec()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages an array",
        post(b"[]".to_vec()),
        invalid,
    );
    let dup = format!(r#"{{"number":1,"number":2,"sent_at":"{now_s}"}}"#);
    add(
        Consumer,
        "POST /messages duplicate key",
        post(dup.into_bytes()),
        malformed,
    );
    let mut bad_utf8 = packet(now, json!({"text": "ab"}));
    let at = bad_utf8.windows(2).position(|w| w == b"ab").unwrap();
    bad_utf8[at] = 0xff;
    add(
        Consumer,
        "POST /messages invalid UTF-8",
        post(bad_utf8),
        malformed,
    );
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend(packet(now, json!({})));
    add(Consumer, "POST /messages UTF-8 BOM", post(bom), malformed);
    let utf16: Vec<u8> = String::from_utf8(packet(now, json!({})))
        .unwrap()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    add(
        Consumer,
        "POST /messages UTF-16",
        request(
            "POST",
            "/messages",
            &[("content-type", "application/json; charset=utf-16")],
            &utf16,
        ),
        malformed,
    );
    add(
        Consumer,
        "POST /messages empty body",
        post(Vec::new()),
        malformed,
    );
    add(
        Consumer,
        "POST /messages truncated JSON",
        post(b"{\"number\":1,".to_vec()),
        malformed,
    );
    let body = packet(now, json!({}));
    add(
        Consumer,
        "POST /messages no content type",
        request("POST", "/messages", &[], &body),
        Problem(415, "unsupported-media-type"),
    );
    add(
        Consumer,
        "POST /messages text/plain",
        request(
            "POST",
            "/messages",
            &[("content-type", "text/plain")],
            &body,
        ),
        Problem(415, "unsupported-media-type"),
    );
    add(
        Consumer,
        "POST /messages form",
        request(
            "POST",
            "/messages",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"number=1",
        ),
        Problem(415, "unsupported-media-type"),
    );
    add(
        Consumer,
        "POST /messages 600 KiB declared (head only)",
        request(
            "POST",
            "/messages",
            &[JSON, ("content-length", "614400")],
            b"",
        ),
        Problem(413, "too-large"),
    );
    add(
        Consumer,
        "POST /messages 100 MB with Expect: 100-continue",
        request(
            "POST",
            "/messages",
            &[
                JSON,
                ("expect", "100-continue"),
                ("content-length", "100000000"),
            ],
            b"",
        ),
        Problem(413, "too-large"),
    );
    // Query strings of POST /messages (each with a valid packet: only the query is wrong).
    for (name, query) in [
        ("unknown parameter", "?admin=1"),
        ("wait not a boolean", "?wait=maybe"),
        ("timeout_ms 0", "?wait=true&timeout_ms=0"),
        ("timeout_ms negative", "?wait=true&timeout_ms=-5"),
        (
            "timeout_ms past u64",
            "?wait=true&timeout_ms=99999999999999999999999",
        ),
        ("wait given twice", "?wait=true&wait=false"),
    ] {
        add(
            Consumer,
            &format!("POST /messages {name}"),
            request("POST", &format!("/messages{query}"), &[JSON], &body),
            invalid,
        );
    }

    // POST /messages/batch.
    let batch = |body: Vec<u8>| request("POST", "/messages/batch", &[JSON], &body);
    let good = String::from_utf8(packet(now, json!({}))).unwrap();
    let bad = String::from_utf8(packet(now, json!({"number": -1}))).unwrap();
    add(
        Consumer,
        "POST /messages/batch an object",
        batch(b"{}".to_vec()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages/batch empty",
        batch(b"[]".to_vec()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages/batch of strings",
        batch(b"[\"a\"]".to_vec()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages/batch one bad among good",
        batch(format!("[{good},{bad},{good}]").into_bytes()),
        invalid,
    );
    let over = vec![good.as_str(); 1001].join(",");
    add(
        Consumer,
        "POST /messages/batch 1001 packets",
        batch(format!("[{over}]").into_bytes()),
        invalid,
    );
    add(
        Consumer,
        "POST /messages/batch 8 MB of zeros",
        batch(zeros((8 << 20) - 16)),
        invalid,
    );
    let mut many = b"[".to_vec();
    many.extend(unknown_keys(now, 600_000));
    many.push(b']');
    add(
        Consumer,
        "POST /messages/batch 600k unknown keys",
        batch(many),
        invalid,
    );
    add(
        Consumer,
        "POST /messages/batch 9 MB declared (head only)",
        request(
            "POST",
            "/messages/batch",
            &[JSON, ("content-length", "9437184")],
            b"",
        ),
        Problem(413, "too-large"),
    );
    add(
        Consumer,
        "POST /messages/batch 100k-deep nesting",
        batch(nested(100_000).into_bytes()),
        invalid,
    );

    // GET /messages and GET /messages/{producer}/{number}.
    for (name, query) in [
        ("size 0", "size=0"),
        ("size 1001", "size=1001"),
        ("size negative", "size=-1"),
        ("size past u64", "size=99999999999999999999999"),
        ("from negative", "from=-1"),
        ("from past the window", "from=9999&size=2"),
        ("producer with bad chars", "producer=bad%21name"),
        ("producer not UTF-8", "producer=%FF"),
        ("fields unknown", "fields=secret"),
        ("unknown parameter", "admin=1"),
        ("size given twice", "size=1&size=2"),
    ] {
        add(
            Consumer,
            &format!("GET /messages {name}"),
            request("GET", &format!("/messages?{query}"), &[], b""),
            invalid,
        );
    }
    let not_found = Problem(404, "not-found");
    let long = "a".repeat(5_000);
    for (name, path) in [
        ("producer not UTF-8", "/messages/%FF/1".to_string()),
        ("producer of 5000 chars", format!("/messages/{long}/1")),
        (
            "producer with an encoded slash",
            "/messages/a%2Fb/1".to_string(),
        ),
        ("number negative", "/messages/p/-1".to_string()),
        (
            "number past u64",
            "/messages/p/99999999999999999999999".to_string(),
        ),
        ("an extra segment", "/messages/p/1/x".to_string()),
        ("unknown route", "/admin".to_string()),
    ] {
        add(
            Consumer,
            &format!("GET {name}"),
            request("GET", &path, &[], b""),
            not_found,
        );
    }
    let not_allowed = Problem(405, "method-not-allowed");
    add(
        Consumer,
        "POST /stats",
        request("POST", "/stats", &[JSON], b"{}"),
        not_allowed,
    );
    add(
        Consumer,
        "DELETE /messages",
        request("DELETE", "/messages", &[], b""),
        not_allowed,
    );
    add(
        Consumer,
        "PUT /openapi.json",
        request("PUT", "/openapi.json", &[JSON], b"{}"),
        not_allowed,
    );
}
