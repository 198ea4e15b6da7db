//! The battery's rows below and around the routes, on every service: what the HTTP parser
//! refuses before any handler (oversized heads, garbled request lines, bad framing), unknown
//! paths and wrong methods, and slow or partial requests (the stack runs with short
//! `HTTP_HEADER_TIMEOUT` and `HTTP_BODY_TIMEOUT`).

use super::{request, Expect, To, JSON};

pub(super) fn rows(add: &mut impl FnMut(To, &str, Vec<u8>, Expect)) {
    use Expect::{Closed, Problem};
    use To::*;
    let not_found = Problem(404, "not-found");
    let not_allowed = Problem(405, "method-not-allowed");
    let malformed = Problem(400, "malformed-json");
    // Below HTTP: what hyper refuses before any route, on every service.
    for to in [Consumer, Worker, Webhook, Dashboard] {
        // Past hyper's read buffer; past the kit's 64 KiB but within that buffer (the kit's
        // own check).
        for (label, size) in [("a 500 KB header", 500_000), ("an 80 KB header", 80_000)] {
            let big = "a".repeat(size);
            add(
                to,
                label,
                request("GET", "/healthz", &[("x-big", &big)], b""),
                Problem(431, "headers-too-large"),
            );
        }
        let many: Vec<(String, String)> =
            (0..200).map(|i| (format!("x-h{i}"), "1".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        add(
            to,
            "200 headers",
            request("GET", "/healthz", &many, b""),
            Problem(431, "headers-too-large"),
        );
        add(
            to,
            "a 70 KB URI",
            request("GET", &format!("/{}", "a".repeat(70_000)), &[], b""),
            Problem(414, "uri-too-long"),
        );
        add(
            to,
            "a garbage request line",
            b"HELLO\r\n\r\n".to_vec(),
            Problem(400, "malformed-request"),
        );
        add(
            to,
            "a bad Content-Length",
            request("POST", "/healthz", &[("content-length", "abc")], b""),
            Problem(400, "malformed-request"),
        );
        add(
            to,
            "half a request line, then silence",
            b"GET /hea".to_vec(),
            Closed,
        );
        add(
            to,
            "an unknown path",
            request("GET", "/nope", &[], b""),
            not_found,
        );
        add(
            to,
            "POST /healthz",
            request("POST", "/healthz", &[JSON], b"{}"),
            not_allowed,
        );
    }
    // Slow and partial bodies (the stack runs with a short HTTP_BODY_TIMEOUT).
    let mut slow = request("POST", "/messages", &[JSON, ("content-length", "200")], b"");
    slow.extend_from_slice(b"{\"number\":");
    add(
        Consumer,
        "POST /messages body never completes",
        slow,
        Problem(408, "body-timeout"),
    );
    let bad_chunk = request(
        "POST",
        "/messages",
        &[JSON, ("transfer-encoding", "chunked")],
        b"zz\r\nabc\r\n0\r\n\r\n",
    );
    add(
        Consumer,
        "POST /messages bad chunk size",
        bad_chunk,
        malformed,
    );

    // The dashboard's few routes.
    add(
        Dashboard,
        "POST /api/stats",
        request("POST", "/api/stats", &[JSON], b"{}"),
        not_allowed,
    );
    add(
        Dashboard,
        "DELETE /",
        request("DELETE", "/", &[], b""),
        not_allowed,
    );
    add(
        Dashboard,
        "POST /events",
        request("POST", "/events", &[JSON], b"{}"),
        not_allowed,
    );
    add(
        Worker,
        "PUT /metrics",
        request("PUT", "/metrics", &[JSON], b"{}"),
        not_allowed,
    );
}
