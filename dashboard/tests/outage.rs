//! Elasticsearch cut off (a TCP proxy between the dashboard and the real server, switched off):
//! `/api/stats` says so, marks the figures stale and keeps the last values; when the proxy is
//! back on, fresh figures return.

mod support;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use support::*;
use testkit::{TcpProxy, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_down_keeps_last_values_marked_stale() {
    let env = TestEnv::new("dash_outage").await;
    let now = Utc::now();
    feed_messages(
        &env,
        &(0..5).map(|n| message(n, now, 4.0)).collect::<Vec<_>>(),
    )
    .await;
    let target = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    let dash = start_dashboard(&env, &proxy.http_url()).await;
    let up = dash
        .stats_until(
            &env.http,
            Duration::from_secs(10),
            "figures through the proxy",
            |s| s["elasticsearch"]["status"] == "up" && s["max_number"] == 4,
        )
        .await;
    assert_eq!(up["stale"], false);

    proxy.set_enabled(false);
    // Written while the dashboard cannot see Elasticsearch: must not show up until it can.
    feed_messages(&env, &[message(99, now - TimeDelta::seconds(30), 4.0)]).await;
    let down = dash
        .stats_until(
            &env.http,
            Duration::from_secs(10),
            "elasticsearch reported down",
            |s| s["elasticsearch"]["status"] == "down",
        )
        .await;
    assert_eq!(down["stale"], true);
    assert_eq!(down["max_number"], 4, "last values are kept: {down}");
    assert_eq!(down["total"], 5);
    assert_eq!(
        down["elasticsearch"]["last_ok_at"],
        down["elasticsearch"]["last_ok_at"]
    );
    assert!(down["elasticsearch"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert!(down["elasticsearch"]["last_ok_at"].is_string());
    assert_eq!(down["redis"]["status"], "up", "Redis is still reachable");
    let errors = dash
        .metric(&env.http, "conveyor_dashboard_es_errors_total")
        .await;
    assert!(errors >= 1.0);
    // Still publishing (updated_at moves on) while keeping the old figures.
    let later = dash
        .stats_until(
            &env.http,
            Duration::from_secs(5),
            "a later stale snapshot",
            |s| s["updated_at"] != down["updated_at"],
        )
        .await;
    assert_eq!(later["stale"], true);
    assert_eq!(later["max_number"], 4);

    proxy.set_enabled(true);
    let back = dash
        .stats_until(
            &env.http,
            Duration::from_secs(10),
            "elasticsearch back",
            |s| s["elasticsearch"]["status"] == "up",
        )
        .await;
    assert_eq!(back["stale"], false);
    assert_eq!(back["max_number"], 99);
    assert_eq!(back["total"], 6);
    dash.stop().await;
}
