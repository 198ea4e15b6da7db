//! The dashboard page in headless Chromium while Elasticsearch is cut off from the dashboard (a
//! TCP proxy switched off) and the real stack + producer keep going: the page says Elasticsearch
//! is down, marks the figures stale and keeps the last values; when it is back, fresh figures.

mod support;

use std::time::Duration;

use e2e::{Service, Stack};
use serde_json::Value;
use support::{es_headline, wait_for_messages, Browser};
use testkit::{TcpProxy, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_marks_figures_stale_while_elasticsearch_is_down() {
    let env = TestEnv::new("dash_browser_down").await;
    let target = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    let stack = Stack::builder(&env)
        .workers(1)
        .dashboard(true)
        .env_for(Service::Dashboard, "ELASTICSEARCH_URL", proxy.http_url())
        .start()
        .await
        .expect("stack");
    let _producer = stack
        .spawn_producer(&["--resources", "off"])
        .expect("producer");
    assert!(wait_for_messages(&env, 10, Duration::from_secs(30)).await >= 10);

    let browser = Browser::start().await;
    browser
        .client
        .goto(&stack.dashboard_url())
        .await
        .expect("open the dashboard");
    let live = browser
        .until(Duration::from_secs(15), "live page", |p| {
            p.es == "up" && p.max_number().is_some()
        })
        .await;
    assert_eq!(live.banner, "");

    proxy.set_enabled(false);
    let down = browser
        .until(
            Duration::from_secs(10),
            "Elasticsearch down on the page",
            |p| p.es == "down",
        )
        .await;
    assert!(
        down.banner.contains("Elasticsearch is unreachable"),
        "banner: {:?}",
        down.banner
    );
    assert!(down.banner.contains("stale"), "banner: {:?}", down.banner);
    assert_eq!(down.max_stale, "true");
    assert_eq!(down.transit_stale, "true");
    assert_eq!(down.conn, "live", "the page itself is still connected");
    // 3 s later: the producer went on (Elasticsearch has more), the page keeps its last values.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = browser.read().await;
    let (es_max, _) = es_headline(&env).await;
    assert_eq!(still.es, "down");
    assert_eq!(still.max, down.max, "last value kept");
    assert!(
        es_max > down.max_number(),
        "Elasticsearch moved on ({es_max:?}) while the page kept {}",
        down.max
    );
    let api: Value = env
        .http
        .get(format!("{}/api/stats", stack.dashboard_url()))
        .send()
        .await
        .expect("GET /api/stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(api["stale"], true);
    assert_eq!(api["elasticsearch"]["status"], "down");
    assert_eq!(api["max_number"].as_u64(), down.max_number());

    let png = browser.client.screenshot().await.expect("screenshot");
    let path = std::env::temp_dir().join(testkit::unique_name("dashboard-es-down") + ".png");
    std::fs::write(&path, &png).expect("write screenshot");
    println!("screenshot while Elasticsearch is down: {}", path.display());

    proxy.set_enabled(true);
    let back = browser
        .until(
            Duration::from_secs(10),
            "Elasticsearch back on the page",
            |p| p.es == "up",
        )
        .await;
    assert_eq!(back.banner, "");
    assert_eq!(back.max_stale, "false");
    assert!(back.max_number() > down.max_number());

    browser.close().await;
    drop(stack);
}
