//! The battery's rows for the webhook service: the signature first (401 before the body is
//! read), then the body of a correctly signed delivery, then the reads.

use chrono::{DateTime, Utc};
use pipeline::signing::sign;
use serde_json::json;

use super::{nested, request, Expect, To, JSON};

/// The webhook service's rows: the signature first, then the body, then the reads.
pub(super) fn rows(
    add: &mut impl FnMut(To, &str, Vec<u8>, Expect),
    now: DateTime<Utc>,
    secret: &[u8],
) {
    use Expect::Problem;
    use To::Webhook;
    let t = now.timestamp();
    let path = "/webhooks/resources";
    let at = now.to_rfc3339();
    let resource = |id: &str| {
        json!({"resource_id": id, "packets": 1, "word_lengths": [[3]],
               "first_received_at": at, "last_received_at": at, "completed_at": at})
        .to_string()
    };
    let good = resource("hostile-1");
    let signed = |body: &[u8], extra: &[(&str, &str)]| {
        let sig = sign(secret, t, body);
        let mut headers = vec![("x-conveyor-signature", sig.as_str()), JSON];
        headers.extend_from_slice(extra);
        request("POST", path, &headers, body)
    };
    let unauthorized = Problem(401, "unauthorized");
    let stale = sign(secret, t - 3600, good.as_bytes());
    let wrong = sign(b"guessed", t, good.as_bytes());
    for (name, header) in [
        ("no signature", None),
        ("a garbled signature", Some("t=abc,v1=zz".to_string())),
        ("a stale signature", Some(stale)),
        ("a wrong secret", Some(wrong)),
        (
            "a signature of 10 KB",
            Some(format!("t={t},v1={}", "a".repeat(10_000))),
        ),
    ] {
        let mut headers = vec![JSON];
        if let Some(h) = header.as_deref() {
            headers.push(("x-conveyor-signature", h));
        }
        add(
            Webhook,
            &format!("POST {path} {name}"),
            request("POST", path, &headers, good.as_bytes()),
            unauthorized,
        );
    }
    add(
        Webhook,
        "POST 100 MB declared without a signature (head only)",
        request("POST", path, &[JSON, ("content-length", "100000000")], b""),
        unauthorized,
    );
    let sig = sign(secret, t, b"x");
    add(
        Webhook,
        "POST 100 MB declared, signed (head only)",
        request(
            "POST",
            path,
            &[
                JSON,
                ("x-conveyor-signature", &sig),
                ("content-length", "100000000"),
            ],
            b"",
        ),
        Problem(413, "too-large"),
    );
    let body = good.as_bytes();
    let plain = request(
        "POST",
        path,
        &[
            ("x-conveyor-signature", &sign(secret, t, body)),
            ("content-type", "text/plain"),
        ],
        body,
    );
    add(
        Webhook,
        "POST signed, text/plain",
        plain,
        Problem(415, "unsupported-media-type"),
    );
    let malformed = Problem(400, "malformed-json");
    add(
        Webhook,
        "POST signed, truncated JSON",
        signed(b"{\"resource_id\":", &[]),
        malformed,
    );
    add(
        Webhook,
        "POST signed, invalid UTF-8",
        signed(b"{\"resource_id\":\"\xff\"}", &[]),
        malformed,
    );
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(body);
    add(
        Webhook,
        "POST signed, UTF-8 BOM",
        signed(&bom, &[]),
        malformed,
    );
    add(
        Webhook,
        "POST signed, 100k-deep nesting",
        signed(nested(100_000).as_bytes(), &[]),
        malformed,
    );
    let invalid = Problem(422, "validation");
    add(
        Webhook,
        "POST signed, packets a string",
        signed(
            good.replace("\"packets\":1", "\"packets\":\"1\"")
                .as_bytes(),
            &[],
        ),
        invalid,
    );
    add(
        Webhook,
        "POST signed, resource_id with a slash",
        signed(resource("../x").as_bytes(), &[]),
        invalid,
    );
    add(
        Webhook,
        "POST signed, Idempotency-Key of another resource",
        signed(body, &[("idempotency-key", "other")]),
        invalid,
    );
    add(
        Webhook,
        "POST signed, an array",
        signed(b"[]", &[]),
        invalid,
    );
    let mut slow = request(
        "POST",
        path,
        &[
            JSON,
            ("x-conveyor-signature", &sign(secret, t, body)),
            ("content-length", "500"),
        ],
        b"",
    );
    slow.extend_from_slice(b"{\"resource_id\":");
    add(
        Webhook,
        "POST signed, body never completes",
        slow,
        Problem(408, "body-timeout"),
    );
    for (name, query) in [
        ("size 0", "size=0"),
        ("from negative", "from=-1"),
        ("fields unknown", "fields=text"),
        ("unknown parameter", "admin=1"),
        ("size past u64", "size=99999999999999999999999"),
    ] {
        add(
            Webhook,
            &format!("GET /resources {name}"),
            request("GET", &format!("/resources?{query}"), &[], b""),
            invalid,
        );
    }
    let not_found = Problem(404, "not-found");
    for (name, id) in [
        ("not UTF-8", "%FF".to_string()),
        ("of 200 chars", "r".repeat(200)),
        ("with a space", "a%20b".to_string()),
        ("dot dot", "..%2F..%2Fetc".to_string()),
    ] {
        add(
            Webhook,
            &format!("GET /resources/ id {name}"),
            request("GET", &format!("/resources/{id}"), &[], b""),
            not_found,
        );
    }
    add(
        Webhook,
        "DELETE /resources",
        request("DELETE", "/resources", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        Webhook,
        "GET /webhooks/resources",
        request("GET", path, &[], b""),
        Problem(405, "method-not-allowed"),
    );
}
