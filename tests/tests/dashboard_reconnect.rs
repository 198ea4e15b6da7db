//! The dashboard page in headless Chromium with an empty 10-s window (only old messages): dashes,
//! never 0 or NaN; then the dashboard process is killed and restarted on the same port, and the
//! page shows the lost connection and reconnects by itself.

mod support;

use std::time::Duration;

use support::{start_dashboard_binary, Browser};
use testkit::{free_port, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_dashes_for_an_empty_window_and_reconnects_by_itself() {
    let env = TestEnv::new("dash_browser_empty").await;
    // Only messages received an hour ago: the 10-s window is empty.
    let store = pipeline::store::Store::new(&service_kit::config::ElasticArgs::new(
        env.elasticsearch_url.clone(),
        env.index_prefix.clone(),
    ))
    .expect("store");
    store.ensure_indices().await.expect("messages index");
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let docs: Vec<_> = (40..=42)
        .map(|number| pipeline::packet::StoredMessage {
            producer: pipeline::ids::ProducerName::parse("old").unwrap(),
            number,
            sent_at: long_ago,
            received_at: long_ago,
            stored_at: long_ago,
            transit_ms: 3.0,
            word_lengths: vec![],
            text: String::new(),
            part: None,
        })
        .collect();
    store.index_messages(&docs).await.expect("index messages");
    env.refresh("messages").await;

    let port = free_port();
    let mut dashboard = start_dashboard_binary(&env, port).await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect("open");
    let page = browser
        .until(Duration::from_secs(15), "live page", |p| {
            p.conn == "live" && p.es == "up"
        })
        .await;
    assert_eq!(page.max, "42");
    assert_eq!(page.avg, "\u{2014}", "empty window shows a dash: {page:?}");
    assert_eq!(page.transit_note, "no messages received in the last 10 s");
    assert_eq!(
        page.rate_now, "0",
        "the chart's latest second is a real zero"
    );
    assert!(
        !page.body.contains("NaN") && !page.title.contains("NaN"),
        "{page:?}"
    );
    assert!(page.title.contains("#42"), "title {:?}", page.title);

    // The dashboard process dies: the page says it lost the connection and keeps its values.
    dashboard.kill();
    let lost = browser
        .until(
            Duration::from_secs(10),
            "connection lost on the page",
            |p| p.conn == "reconnecting" || p.conn == "stale",
        )
        .await;
    assert!(
        lost.banner.contains("Lost the live connection"),
        "banner {:?}",
        lost.banner
    );
    assert_eq!(lost.max, "42");
    // It comes back on the same port: the page reconnects by itself.
    let _dashboard = start_dashboard_binary(&env, port).await;
    let back = browser
        .until(Duration::from_secs(20), "page live again", |p| {
            p.conn == "live"
        })
        .await;
    assert_eq!(back.banner, "");
    assert_eq!(back.max, "42");

    browser.close().await;
}
