//! The battery's rows for the dashboard's admin API: the key first (401 / 403 before the body is
//! read; the admin key as Basic is refused too, CSRF-safe), then bad queues, handles, bodies and
//! queries with the admin key. No row names an existing dead letter or pauses a queue that
//! exists, so the stack's holdings stay as they were.

use base64::Engine;

use super::{request, Expect, To, JSON};

/// The dashboard's keys in the battery (its `API_KEYS`).
pub const ADMIN_KEY: &str = "hostile-battery-admin-key-0123456789";
pub const READ_KEY: &str = "hostile-battery-read-key-01234567890";

/// `API_KEYS` for the dashboard.
pub fn api_keys() -> String {
    format!("{ADMIN_KEY} admin;{READ_KEY} read")
}

pub(super) fn rows(add: &mut impl FnMut(To, &str, Vec<u8>, Expect)) {
    use Expect::Problem;
    use To::Dashboard;
    let admin = format!("Bearer {ADMIN_KEY}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{ADMIN_KEY}"))
    );
    let retry = "/api/admin/queues/messages/dead/retry";
    let one = br#"{"handle":"0/1-0"}"#;
    let unauthorized = Problem(401, "unauthorized");
    for (name, auth) in [
        ("admin POST without a key", None),
        (
            "admin POST with a wrong key",
            Some("Bearer not-a-key-of-this-dashboard-0123"),
        ),
        (
            "admin POST with the admin key as Basic",
            Some(basic.as_str()),
        ),
        ("admin POST with a garbled Authorization", Some("Bearer")),
    ] {
        let mut headers = vec![JSON];
        headers.extend(auth.map(|a| ("authorization", a)));
        add(
            Dashboard,
            name,
            request("POST", retry, &headers, one),
            unauthorized,
        );
    }
    add(
        Dashboard,
        "pause without a key",
        request("POST", "/api/admin/queues/messages/pause", &[], b""),
        unauthorized,
    );
    let read = format!("Bearer {READ_KEY}");
    add(
        Dashboard,
        "admin POST with a read key",
        request("POST", retry, &[JSON, ("authorization", &read)], one),
        Problem(403, "forbidden"),
    );
    let with_key = |body: &[u8], content_type: &str| {
        request(
            "POST",
            retry,
            &[("content-type", content_type), ("authorization", &admin)],
            body,
        )
    };
    let json = "application/json";
    let validation = Problem(422, "validation");
    for (name, body) in [
        ("a handle that is not one", &br#"{"handle":"zero"}"#[..]),
        (
            "a handle with a 6-digit partition",
            br#"{"handle":"999999/1-0"}"#,
        ),
        ("neither handle nor all", br#"{}"#),
        ("all as a string", br#"{"all":"yes"}"#),
        ("handle and all", br#"{"handle":"0/1-0","all":true}"#),
        ("an unknown field", br#"{"handle":"0/1-0","force":true}"#),
        ("an array body", br#"["0/1-0"]"#),
    ] {
        add(Dashboard, name, with_key(body, json), validation);
    }
    add(
        Dashboard,
        "a dead letter that is not there",
        with_key(one, json),
        Problem(404, "not-found"),
    );
    add(
        Dashboard,
        "admin malformed JSON",
        with_key(b"{\"handle\":", json),
        Problem(400, "malformed-json"),
    );
    let big = format!(r#"{{"handle":"{}"}}"#, "7".repeat(10_000));
    add(
        Dashboard,
        "admin oversized body",
        with_key(big.as_bytes(), json),
        Problem(413, "too-large"),
    );
    add(
        Dashboard,
        "admin body as text",
        with_key(one, "text/plain"),
        Problem(415, "unsupported-media-type"),
    );
    let not_found = Problem(404, "not-found");
    for (name, path) in [
        (
            "pause an unknown queue",
            "/api/admin/queues/no-such-queue/pause",
        ),
        (
            "resume an unknown queue",
            "/api/admin/queues/no-such-queue/resume",
        ),
        (
            "retry in a queue named by bad UTF-8",
            "/api/admin/queues/%FF%FE/dead/retry",
        ),
    ] {
        add(
            Dashboard,
            name,
            request(
                "POST",
                path,
                &[JSON, ("authorization", &admin)],
                br#"{"all":true}"#,
            ),
            not_found,
        );
    }
    for (name, target, expect) in [
        (
            "an unknown queue's detail",
            "/api/admin/queues/no-such-queue",
            not_found,
        ),
        (
            "a queue name of 300 bytes",
            &*format!("/api/admin/queues/{}", "q".repeat(300)),
            not_found,
        ),
        (
            "a limit of zero",
            "/api/admin/queues/messages?limit=0",
            validation,
        ),
        (
            "a limit that is not a number",
            "/api/admin/queues/messages?limit=all",
            validation,
        ),
        (
            "a limit above 500",
            "/api/admin/queues/messages?limit=501",
            validation,
        ),
    ] {
        add(Dashboard, name, request("GET", target, &[], b""), expect);
    }
    for (name, method, target) in [
        ("DELETE the queue list", "DELETE", "/api/admin/queues"),
        ("GET an action", "GET", "/api/admin/queues/messages/pause"),
        ("PUT a queue", "PUT", "/api/admin/queues/messages"),
    ] {
        add(
            Dashboard,
            name,
            request(method, target, &[], b""),
            Problem(405, "method-not-allowed"),
        );
    }
}
