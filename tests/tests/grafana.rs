//! The Grafana dashboard in `docs/grafana/conveyor.json` against the real stack: every metric a
//! query (or the queue variable) names is exported by one of the running services — consumer,
//! worker, webhook service, dashboard — after packets flowed through the pipeline; and the file
//! is a dashboard Grafana can import (unique panel ids, every target on the datasource
//! variable, panels inside the 24-column grid).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Stack;
use serde_json::Value;
use testkit::TestEnv;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/conveyor.json");
    let text = std::fs::read_to_string(&path).expect("docs/grafana/conveyor.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard, with where it is (panel title or variable name).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            out.push((
                panel["title"].as_str().unwrap().to_string(),
                expr.to_string(),
            ));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if var["type"] == "query" {
            let expr = var["definition"]
                .as_str()
                .expect("a query variable's definition");
            out.push((
                format!("${}", var["name"].as_str().unwrap()),
                expr.to_string(),
            ));
        }
    }
    out
}

/// The metric names in `expr` (ours all start with `conveyor_`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("conveyor_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The metric names (without labels) of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_dashboard_file_is_importable() {
    let d = dashboard();
    assert_eq!(d["uid"], "conveyor");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut ids = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        let id = p["id"].as_u64().expect("numeric panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{}: {grid}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!metric_names(t["expr"].as_str().unwrap()).is_empty());
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "queue"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_by_the_stack() {
    let env = TestEnv::new("grafana").await;
    let stack = Stack::builder(&env)
        .workers(1)
        .webhook(true)
        .dashboard(true)
        .start()
        .await
        .expect("stack");
    let _producer = stack.spawn_producer(&[]).expect("producer");
    let worker = format!(
        "http://127.0.0.1:{}",
        stack.worker(0).expect("worker").metrics_port
    );
    let services = [
        ("consumer", stack.consumer_url()),
        ("worker", worker),
        ("webhook", stack.webhook_url()),
        ("dashboard", stack.dashboard_url()),
    ];

    let wanted: BTreeMap<String, Vec<String>> =
        queries(&dashboard())
            .into_iter()
            .fold(BTreeMap::new(), |mut acc, (place, expr)| {
                for name in metric_names(&expr) {
                    acc.entry(name).or_default().push(place.clone());
                }
                acc
            });
    assert!(wanted.len() >= 15, "{} metrics named", wanted.len());

    // Packets flow until a resource was delivered and every named metric is out (or 90 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    let (found, missing) = loop {
        let mut found: BTreeMap<String, &str> = BTreeMap::new();
        for (service, url) in &services {
            let resp = env
                .http
                .get(format!("{url}/metrics"))
                .send()
                .await
                .expect("GET /metrics");
            assert_eq!(resp.status(), 200, "{service} /metrics");
            for name in exported(&resp.text().await.unwrap()) {
                found.entry(name).or_insert(service);
            }
        }
        let missing: Vec<&String> = wanted.keys().filter(|n| !found.contains_key(*n)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            let missing: Vec<String> = missing.into_iter().cloned().collect();
            break (found, missing);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "metrics the dashboard queries but no service exports: {:?}",
        missing.iter().map(|m| (m, &wanted[m])).collect::<Vec<_>>()
    );
    for (name, places) in &wanted {
        println!(
            "{name:55} from {:9} used by {}",
            found[name],
            places.join("; ")
        );
    }
}
