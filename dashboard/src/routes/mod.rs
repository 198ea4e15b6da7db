//! The dashboard's HTTP surface: the page and `/api/stats` ([`page`]), `/events` ([`events`]),
//! and the kit's `/healthz` and `/metrics` (with the poller's counters): these handlers only
//! read the latest published snapshot, they never query Elasticsearch or Redis. The Queues page
//! ([`queues_page`]) and its admin API ([`admin`]) read and change queues through
//! `queue_admin`.

pub mod admin;
pub mod events;
pub mod page;
pub mod queues_page;

use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::Router;
use service_kit::http::HttpKit;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let counters = state.clone();
    let kit = HttpKit::new("dashboard")
        .access(state.access.clone())
        .extra_metrics(move || own_metrics(&counters));
    let app = Router::new()
        .route("/", get(page::page))
        .route("/events", get(events::events))
        .route("/api/stats", get(page::api_stats))
        .route("/queues", get(queues_page::page))
        .merge(admin::routes())
        .with_state(state);
    kit.mount(app)
}

/// The dashboard's own counters, appended to the kit's `/metrics`.
fn own_metrics(state: &AppState) -> String {
    let c = &state.counters;
    let mut text = String::new();
    let own = [
        (
            "conveyor_dashboard_es_queries_total",
            "counter",
            "Elasticsearch stats round trips made by the poller",
            c.es_queries.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_es_errors_total",
            "counter",
            "Elasticsearch stats round trips that failed",
            c.es_errors.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_redis_errors_total",
            "counter",
            "Queue stats reads that failed",
            c.redis_errors.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_sse_clients",
            "gauge",
            "Open /events connections",
            state.sse_clients.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in own {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    // Read from Redis by the poller (the count lives there: every worker's scripts trim).
    let published = state.snapshots.borrow().clone();
    let queues = [
        ("messages", &published.snapshot.queue),
        ("webhooks", &published.snapshot.webhooks_queue),
    ];
    queue_gauges(&mut text, &published);
    let name = "conveyor_dead_letters_trimmed_total";
    text.push_str(&format!(
        "# HELP {name} Dead letters trimmed away (oldest first) to keep each dead-letter stream \
         near DEAD_LETTER_MAX, as last read from Redis\n# TYPE {name} counter\n"
    ));
    for (queue, stats) in queues {
        text.push_str(&format!(
            "{name}{{queue=\"{queue}\"}} {}\n",
            stats.dead_trimmed
        ));
    }
    text
}

/// The queue gauges, from what the poller last read (once per poll for the whole process, never
/// per scrape or viewer): jobs per state, the oldest job's age and the live workers per queue.
fn queue_gauges(text: &mut String, published: &crate::poller::Published) {
    let s = &published.snapshot;
    let queues = [
        ("messages", &s.queue, published.oldest_ms.0),
        ("webhooks", &s.webhooks_queue, published.oldest_ms.1),
    ];
    let name = "conveyor_queue_jobs";
    text.push_str(&format!(
        "# HELP {name} Jobs in a queue by state (backlog: not yet delivered; pending: held by a \
         worker; delayed: scheduled or retrying; dead: dead letters), as last read from Redis\n\
         # TYPE {name} gauge\n"
    ));
    for (queue, stats, _) in queues {
        for (state, value) in [
            ("backlog", stats.backlog),
            ("pending", stats.pending),
            ("delayed", stats.delayed),
            ("dead", stats.dead),
        ] {
            text.push_str(&format!(
                "{name}{{queue=\"{queue}\",state=\"{state}\"}} {value}\n"
            ));
        }
    }
    let name = "conveyor_queue_oldest_job_age_seconds";
    text.push_str(&format!(
        "# HELP {name} Age of the oldest job waiting or running (0 when there is none)\n\
         # TYPE {name} gauge\n"
    ));
    for (queue, _, oldest) in queues {
        let age = oldest.unwrap_or(0) as f64 / 1000.0;
        text.push_str(&format!("{name}{{queue=\"{queue}\"}} {age}\n"));
    }
    let name = "conveyor_queue_workers";
    text.push_str(&format!(
        "# HELP {name} Workers with a heartbeat in the last 15 s\n# TYPE {name} gauge\n"
    ));
    for (queue, stats, _) in queues {
        text.push_str(&format!("{name}{{queue=\"{queue}\"}} {}\n", stats.workers));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::poller::{PollCounters, Published};
    use crate::snapshot::Snapshot;

    /// An admin source whose pool never connects (these tests do not reach Redis).
    fn unconnected_admin() -> crate::queue_admin::QueueAdmin {
        let args = service_kit::config::RedisArgs::new("redis://127.0.0.1:1", "unit");
        let pool = args.pool().unwrap();
        crate::queue_admin::QueueAdmin::new(pool, "unit", std::time::Duration::from_millis(200))
    }

    /// The router on a real port 0 listener, with the snapshot before the first poll.
    async fn serve() -> (String, CancellationToken) {
        let (_tx, rx) = watch::channel(Published::new(Snapshot::initial(chrono::Utc::now())));
        let shutdown = CancellationToken::new();
        let state = AppState {
            snapshots: rx,
            counters: Arc::new(PollCounters::default()),
            sse_clients: Arc::new(AtomicU64::new(0)),
            max_sse_clients: 8,
            shutdown: shutdown.clone(),
            access: service_kit::http::Access::open(),
            admin: unconnected_admin(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        (url, shutdown)
    }

    #[test]
    fn trimmed_dead_letters_are_exported_per_queue() {
        let mut snapshot = Snapshot::initial(chrono::Utc::now());
        snapshot.queue.dead_trimmed = 300;
        snapshot.webhooks_queue.dead_trimmed = 7;
        let (_tx, rx) = watch::channel(Published::new(snapshot));
        let state = AppState {
            snapshots: rx,
            counters: Arc::new(PollCounters::default()),
            sse_clients: Arc::new(AtomicU64::new(0)),
            max_sse_clients: 8,
            shutdown: CancellationToken::new(),
            access: service_kit::http::Access::open(),
            admin: unconnected_admin(),
        };
        let text = own_metrics(&state);
        assert!(text.contains("# TYPE conveyor_dead_letters_trimmed_total counter\n"));
        assert!(text.contains("conveyor_dead_letters_trimmed_total{queue=\"messages\"} 300\n"));
        assert!(text.contains("conveyor_dead_letters_trimmed_total{queue=\"webhooks\"} 7\n"));
    }

    #[test]
    fn queue_gauges_come_from_the_published_snapshot() {
        let mut snapshot = Snapshot::initial(chrono::Utc::now());
        snapshot.queue.backlog = 12;
        snapshot.queue.dead = 2;
        snapshot.webhooks_queue.workers = 3;
        let published = Published::with_ages(snapshot, (Some(1500), None));
        let mut text = String::new();
        queue_gauges(&mut text, &published);
        for line in [
            "# TYPE conveyor_queue_jobs gauge",
            "conveyor_queue_jobs{queue=\"messages\",state=\"backlog\"} 12",
            "conveyor_queue_jobs{queue=\"messages\",state=\"dead\"} 2",
            "conveyor_queue_jobs{queue=\"webhooks\",state=\"pending\"} 0",
            "conveyor_queue_oldest_job_age_seconds{queue=\"messages\"} 1.5",
            "conveyor_queue_oldest_job_age_seconds{queue=\"webhooks\"} 0",
            "conveyor_queue_workers{queue=\"webhooks\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn the_queues_page_is_served_self_contained_and_linked_both_ways() {
        let (url, shutdown) = serve().await;
        let resp = reqwest::get(format!("{url}/queues")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = resp.text().await.unwrap();
        assert!(html.contains("<title>Conveyor · queues</title>"));
        assert!(
            html.contains(r#"href="./""#),
            "a link back to the main page"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched from elsewhere"
        );
        assert!(
            !html.contains("document.cookie"),
            "the key is never a cookie"
        );
        let main = reqwest::get(format!("{url}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            main.contains(r#"href="queues""#),
            "the main page links to it"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_answer_problem_json() {
        let (url, shutdown) = serve().await;
        let http = reqwest::Client::new();
        for (method, path, status) in [
            (reqwest::Method::GET, "/nope", 404),
            (reqwest::Method::POST, "/api/stats", 405),
            (reqwest::Method::DELETE, "/", 405),
        ] {
            let resp = http
                .request(method.clone(), format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                resp.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["status"], status, "{body}");
            assert!(body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:conveyor:problem:"));
        }
        let metrics = http.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(
            metrics.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        let text = metrics.text().await.unwrap();
        assert!(text.contains("conveyor_dashboard_sse_clients 0"), "{text}");
        shutdown.cancel();
    }
}
