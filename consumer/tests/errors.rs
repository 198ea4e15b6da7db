//! Every error status of the HTTP contract, produced against the real consumer, real Redis and
//! real Elasticsearch: each is problem+json and leaves the queue exactly as it was.

use crate::support;

use serde_json::json;
use support::{packet, spawn};
use testkit::{assert_problem, TestEnv};

#[tokio::test]
async fn client_errors_are_problems_and_enqueue_nothing() {
    let env = TestEnv::new("consumer_errors").await;
    let app = spawn(&env, &["--max-body-bytes", "2048"]).await;
    let before = app.stats().await;
    assert_eq!(before.backlog, 0);

    // 400: malformed JSON.
    let v = assert_problem(
        app.post_raw(
            "/messages",
            Some("application/json"),
            b"{\"number\": 1,".to_vec(),
        )
        .await,
        400,
    )
    .await;
    assert!(
        v["detail"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    assert_problem(
        app.post_raw("/messages/batch", Some("application/json"), b"[{]".to_vec())
            .await,
        400,
    )
    .await;

    // 413: over MAX_BODY_BYTES, declared (Content-Length) and streamed (chunked, no length).
    let big = serde_json::to_vec(&packet(1, json!({"text": "a".repeat(4000)}))).unwrap();
    assert_problem(
        app.post_raw("/messages", Some("application/json"), big.clone())
            .await,
        413,
    )
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(500).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .http
        .post(app.at("/messages"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(streamed, 413).await;

    // 415: not JSON, or no content type at all.
    let body = serde_json::to_vec(&packet(1, json!({}))).unwrap();
    assert_problem(
        app.post_raw("/messages", Some("text/plain"), body.clone())
            .await,
        415,
    )
    .await;
    assert_problem(app.post_raw("/messages", None, body.clone()).await, 415).await;
    assert_problem(
        app.post_raw(
            "/messages/batch",
            Some("application/x-www-form-urlencoded"),
            body,
        )
        .await,
        415,
    )
    .await;

    // 422: per-field errors.
    let v = assert_problem(
        app.post_json(
            "/messages",
            &json!({"number": -1, "sent_at": "soon", "colour": 1}),
        )
        .await,
        422,
    )
    .await;
    let mut names: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["colour", "number", "sent_at"]);
    assert!(v["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let v = assert_problem(
        app.post_json("/messages?wait=true&timeout_ms=0", &packet(1, json!({})))
            .await,
        422,
    )
    .await;
    assert_eq!(v["errors"][0]["name"], "timeout_ms");
    let v = assert_problem(
        app.post_json("/messages?wait=maybe", &packet(1, json!({})))
            .await,
        422,
    )
    .await;
    assert_eq!(v["errors"][0]["name"], "query");
    let v = assert_problem(
        app.post_json("/messages", &json!([packet(1, json!({}))]))
            .await,
        422,
    )
    .await;
    assert_eq!(v["errors"][0]["name"], "$");
    let v = assert_problem(
        app.http
            .get(app.at("/messages?size=0"))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(v["errors"][0]["name"], "size");
    let v = assert_problem(
        app.http
            .get(app.at("/messages?size=1000&from=9500"))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(v["errors"][0]["name"], "from");

    // 404: absent message, non-numeric number, unknown route. 405: wrong method.
    app.messages_index_ready().await;
    assert_problem(
        app.http
            .get(app.at("/messages/nobody/1"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(
        app.http
            .get(app.at("/messages/nobody/abc"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(app.http.get(app.at("/nowhere")).send().await.unwrap(), 404).await;
    assert_problem(
        app.http.delete(app.at("/messages")).send().await.unwrap(),
        405,
    )
    .await;

    assert_eq!(app.stats().await, before, "no rejection enqueued anything");
    assert!(app.jobs().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn backlog_over_limit_is_429_with_retry_after() {
    let env = TestEnv::new("consumer_429").await;
    let app = spawn(&env, &["--backlog-limit", "2", "--backlog-cache-ms", "0"]).await;
    for n in 0..3 {
        let resp = app.post_json("/messages", &packet(n, json!({}))).await;
        assert_eq!(resp.status(), 202);
    }
    assert_eq!(app.stats().await.backlog, 3);
    let resp = app.post_json("/messages", &packet(3, json!({}))).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v = assert_problem(resp, 429).await;
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 jobs are waiting") && detail.contains("limit of 2"),
        "{detail}"
    );
    let resp = app
        .post_json("/messages/batch", &json!([packet(4, json!({}))]))
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 429).await;
    assert_eq!(app.stats().await.backlog, 3, "429 enqueued nothing");
    assert_eq!(app.jobs().await.len(), 3);
    app.stop().await;
}

/// A few large messages pass the byte budget long before the job count limit: 429 too, and
/// nothing of the refused one is enqueued.
#[tokio::test]
async fn backlog_over_its_byte_budget_is_429_whatever_the_count() {
    let env = TestEnv::new("consumer_429_bytes").await;
    let app = spawn(
        &env,
        &[
            "--backlog-limit-bytes",
            "1000000",
            "--backlog-cache-ms",
            "0",
        ],
    )
    .await;
    let text = "word ".repeat(12_000); // 60 kB, near the 64 KiB text limit
    let mut accepted = 0u64;
    let refusal = loop {
        let resp = app
            .post_json("/messages", &packet(accepted, json!({ "text": text })))
            .await;
        if resp.status() != 202 {
            break resp;
        }
        accepted += 1;
        assert!(accepted < 40, "no refusal past twice the budget");
    };
    // 1 MB of 60 kB jobs: refused once about 17 are stored, far below BACKLOG_LIMIT.
    assert!((14..=18).contains(&accepted), "{accepted} accepted");
    let stats = app.stats().await;
    assert_eq!(stats.backlog, accepted);
    assert!(stats.bytes > 1_000_000, "{stats:?}");
    assert!(refusal.headers().contains_key("retry-after"));
    let v = assert_problem(refusal, 429).await;
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("BACKLOG_LIMIT_BYTES") && detail.contains("budget of 1000000"),
        "{detail}"
    );
    assert_eq!(
        app.jobs().await.len() as u64,
        accepted,
        "429 enqueued nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_input_panics_or_breaks_the_server() {
    let env = TestEnv::new("consumer_fuzz").await;
    let app = spawn(&env, &[]).await;
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"null".to_vec(),
        vec![0xff, 0xfe, 0x00],
        nested.into_bytes(),
        b"{\"number\": 1e400, \"sent_at\": 0}".to_vec(),
        b"{\"number\": 18446744073709551616, \"sent_at\": -99999999999999999}".to_vec(),
        "{\"number\": 1, \"sent_at\": 0, \"producer\": \"\u{1F980}\"}"
            .as_bytes()
            .to_vec(),
    ];
    for body in bodies {
        for path in ["/messages", "/messages/batch"] {
            let resp = app
                .post_raw(path, Some("application/json"), body.clone())
                .await;
            let status = resp.status().as_u16();
            assert!(status == 400 || status == 422, "{path} answered {status}");
        }
    }
    assert_eq!(
        app.http
            .get(app.at("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.stats().await.backlog, 0);
    app.stop().await;
}
