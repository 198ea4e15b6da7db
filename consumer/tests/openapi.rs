//! The OpenAPI document and the metrics endpoint. The document is checked both in-process
//! (`router(state).oneshot`, no socket) and over real HTTP: it is OpenAPI 3, documents every
//! route of the router with its method, and every documented route is really served.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use consumer::{router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::{packet, spawn};
use testkit::TestEnv;
use tower::ServiceExt;

/// Every route of the API (method, path template), as the README and DESIGN promise them.
const ROUTES: [(&str, &str); 9] = [
    ("post", "/messages"),
    ("get", "/messages"),
    ("post", "/messages/batch"),
    ("get", "/messages/{producer}/{number}"),
    ("get", "/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn openapi_documents_every_route_in_process() {
    let env = TestEnv::new("consumer_oapi").await;
    let cfg = support::config(&env, &env.redis_url, &env.elasticsearch_url, &[]);
    let app = router(AppState::new(&cfg).unwrap());
    let resp = app
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "no undocumented extras, no missing routes"
    );
    let post = &doc["paths"]["/messages"]["post"]["responses"];
    for status in [
        "200", "202", "400", "408", "413", "415", "422", "429", "503", "504",
    ] {
        assert!(
            post[status].is_object(),
            "POST /messages documents {status}"
        );
    }
    let batch = &doc["paths"]["/messages/batch"]["post"]["responses"];
    for status in ["202", "400", "408", "413", "415", "422", "429", "503"] {
        assert_eq!(
            batch[status]["content"].as_object().map(|c| c.len()),
            Some(1),
            "POST /messages/batch documents {status} with one content type"
        );
    }
    assert!(
        batch["503"]["content"]["application/problem+json"]["schema"].is_object(),
        "shared rejections keep their problem+json schema: {batch}"
    );
    // Every route but the exempt /healthz and /metrics may be shed with 503 (the concurrency
    // limit), and says so.
    for (method, path) in ROUTES {
        let shed = doc["paths"][path][method]["responses"]["503"].is_object();
        let exempt = matches!(path, "/healthz" | "/metrics");
        assert_eq!(
            shed, !exempt,
            "{method} {path} documents 503 iff it can be shed"
        );
    }
    let readyz = &doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"];
    assert!(
        readyz["application/json"].is_object() && readyz["application/problem+json"].is_object(),
        "/readyz 503: a Readiness body or the overloaded problem: {readyz}"
    );
    for schema in [
        "PacketInput",
        "StoredMessage",
        "Problem",
        "FieldError",
        "StatsAnswer",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    // The stored message keeps its flat wire form (the resource part as three fields).
    let mut props: Vec<&str> = doc["components"]["schemas"]["StoredMessage"]["properties"]
        .as_object()
        .expect("StoredMessage properties")
        .keys()
        .map(String::as_str)
        .collect();
    props.sort_unstable();
    assert_eq!(
        props,
        [
            "number",
            "producer",
            "received_at",
            "resource_id",
            "sent_at",
            "seq",
            "stored_at",
            "text",
            "total",
            "transit_ms",
            "word_lengths"
        ]
    );
}

#[tokio::test]
async fn every_documented_route_is_served_and_metrics_count_requests() {
    let env = TestEnv::new("consumer_routes").await;
    let app = spawn(&env, &[]).await;
    let doc: Value = app
        .http
        .get(app.at("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = app.at(&path.replace("{producer}", "p").replace("{number}", "1"));
            let req = match method.as_str() {
                "get" => app.http.get(url),
                "post" => app.http.post(url).json(&json!([packet(1, json!({}))])),
                other => panic!("unexpected method {other}"),
            };
            let status = req.send().await.unwrap().status().as_u16();
            // Served means the route matched: never the 404/405 of the fallbacks (the message
            // lookup may 404 as problem+json only for `/messages/p/1`, which does not exist).
            assert_ne!(status, 405, "{method} {path}");
            if path != "/messages/{producer}/{number}" {
                assert_ne!(status, 404, "{method} {path}");
            }
        }
    }
    assert_eq!(
        app.post_json("/messages", &packet(9, json!({})))
            .await
            .status(),
        202
    );
    let metrics = testkit::get_text(&app.http, &app.at("/metrics")).await;
    assert!(
        metrics.contains(r#"conveyor_http_requests_total{route="/messages",status="202"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("conveyor_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    app.stop().await;
}
