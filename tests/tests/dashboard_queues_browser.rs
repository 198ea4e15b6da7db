//! The Queues page in a real headless Chromium against the real stack (consumer, a worker, the
//! dashboard with an admin key, and a webhook service started here with another secret, so a
//! delivery is dead-lettered on purpose: every attempt answered 401, WEBHOOK_MAX_ATTEMPTS 2).
//! The page shows the dead letter with its error history; without the key its buttons are
//! disabled and a POST without the key is refused; with the key typed in, clicking Retry (once
//! the secrets agree) makes the delivery run and the resource get stored, once; Pause from the
//! page stops consumption and Resume restarts it, every message stored once; the page's figures
//! equal the consumer's `/stats`. Ends with a screenshot under load
//! (`QUEUES_SCREENSHOT=$PWD/docs/queues.png` writes the committed one).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::es::{count_docs, wait_for_count};
use e2e::{Service, Stack, WEBHOOK_SECRET};
use fantoccini::Locator;
use serde_json::{json, Value};
use support::Browser;
use testkit::{bin_path, free_port, ChildGuard, TestEnv};

const ADMIN_KEY: &str = "queues-page-admin-key-0123456789abcdef";
const WRONG_SECRET: &str = "another-secret-of-at-least-32-bytes!";

fn spawn_webhook(env: &TestEnv, port: u16, output: &Path, secret: &str) -> ChildGuard {
    let mut cmd = Command::new(bin_path("webhook"));
    cmd.env("ELASTICSEARCH_URL", &env.elasticsearch_url)
        .env("ES_INDEX_PREFIX", &env.index_prefix)
        .env("WEBHOOK_SECRET", secret)
        .env("WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
        .env("OUTPUT_DIR", output)
        .env("RUST_LOG", "warn");
    ChildGuard::spawn("webhook", cmd).unwrap()
}

async fn start_webhook(env: &TestEnv, port: u16, output: &Path, secret: &str) -> ChildGuard {
    let guard = spawn_webhook(env, port, output, secret);
    testkit::wait_for_http(
        &format!("http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    guard
}

fn packet(number: u64, resource: Option<(&str, u64, u64)>) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let mut p =
        json!({"number": number, "sent_at": now, "producer": "page", "text": "to be or not"});
    if let Some((id, seq, total)) = resource {
        p["resource_id"] = json!(id);
        p["seq"] = json!(seq);
        p["total"] = json!(total);
    }
    p
}

async fn post(env: &TestEnv, consumer: &str, packets: &[Value]) {
    let resp = env
        .http
        .post(format!("{consumer}/messages/batch"))
        .json(&packets)
        .send()
        .await
        .expect("POST /messages/batch");
    assert_eq!(resp.status().as_u16(), 202);
}

async fn get_json(env: &TestEnv, url: &str) -> Value {
    let resp = env.http.get(url).send().await.expect(url);
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("JSON")
}

/// What the page shows of queue `name`, read in one script evaluation.
async fn card(browser: &Browser, name: &str) -> Value {
    let script = r#"
        const card = document.querySelector('[data-queue="' + arguments[0] + '"]');
        if (!card) return null;
        const v = (k) => card.querySelector('[data-k="' + k + '"]').innerText.trim();
        const status = document.getElementById("action-status");
        return {
          paused: card.dataset.paused, backlog: v("backlog"), pending: v("pending"),
          delayed: v("delayed"), dead: v("dead"), workers: v("workers"),
          dead_rows: [...card.querySelectorAll('[data-part="dead"] tbody tr')].map((r) => ({
            handle: r.dataset.handle, job: r.dataset.job,
            error: r.querySelector('[data-role="error"]').innerText,
            history: [...r.querySelectorAll("ol.history li")].map((li) => li.innerText),
            retry_disabled: r.querySelector('[data-action="retry"]').disabled,
          })),
          pause_disabled: card.querySelector('[data-action="pause"]').disabled,
          admin: document.body.dataset.admin, updated: document.body.dataset.updatedAt,
          status: status.hidden ? "" : status.innerText,
          worker_rows: card.querySelectorAll('[data-part="workers"] tbody tr').length,
        };"#;
    browser
        .client
        .execute(script, vec![json!(name)])
        .await
        .expect("read the page")
}

async fn card_until(
    browser: &Browser,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let c = card(browser, name).await;
        if !c.is_null() && done(&c) {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}; {name} card: {c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shown figure as a number (thousands separators dropped).
fn shown(c: &Value, k: &str) -> u64 {
    let text = c[k].as_str().unwrap_or_default();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{k} shown as {text:?}"))
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The page's messages figures equal the consumer's `/stats` (read before and after the page;
/// the figures are still while the test compares them).
async fn page_agrees_with_stats(browser: &Browser, env: &TestEnv, consumer: &str) -> Value {
    let before = get_json(env, &format!("{consumer}/stats")).await;
    let updated = card(browser, "messages").await["updated"].clone();
    let c = card_until(browser, "messages", "a page update", |c| {
        c["updated"] != updated
    })
    .await;
    let after = get_json(env, &format!("{consumer}/stats")).await;
    for k in ["backlog", "pending", "delayed", "dead", "workers"] {
        let page = shown(&c, k);
        assert!(
            page == before["queue"][k] || page == after["queue"][k],
            "{k}: page {page}, /stats {} then {}",
            before["queue"][k],
            after["queue"][k]
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_retried_from_the_page_and_pause_and_resume_work_from_it() {
    let env = TestEnv::new("queues_page").await;
    let output = std::env::temp_dir().join(testkit::unique_name("page-out"));
    std::fs::create_dir_all(&output).unwrap();
    let port = free_port();
    let mut webhook = start_webhook(&env, port, &output, WRONG_SECRET).await;
    let stack = Stack::builder(&env)
        .workers(1)
        .dashboard(true)
        .env_for(
            Service::Worker,
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/webhooks/resources"),
        )
        .env_for(Service::Worker, "WEBHOOK_MAX_ATTEMPTS", "2")
        .env_for(Service::Dashboard, "API_KEYS", format!("{ADMIN_KEY} admin"))
        .start()
        .await
        .unwrap();
    let consumer = stack.consumer_url();
    let dash = stack.dashboard_url();

    // A resource of two packets: stored, collated, its delivery refused twice: dead.
    post(
        &env,
        &consumer,
        &[
            packet(0, Some(("res-page", 0, 2))),
            packet(1, Some(("res-page", 1, 2))),
        ],
    )
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{dash}/queues"))
        .await
        .expect("open the Queues page");
    let c = card_until(&browser, "webhooks", "the dead letter on the page", |c| {
        c["dead_rows"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    let row = &c["dead_rows"][0];
    assert!(row["error"].as_str().unwrap().contains("401"), "{c}");
    assert_eq!(
        row["history"].as_array().map(Vec::len),
        Some(2),
        "both attempts' errors: {c}"
    );
    assert_eq!(shown(&c, "dead"), 1);
    // Read-only without the key: buttons disabled, and a POST without it is refused.
    assert_eq!(c["admin"], "off", "{c}");
    assert_eq!(row["retry_disabled"], true, "{c}");
    assert_eq!(c["pause_disabled"], true, "{c}");
    let handle = row["handle"].as_str().unwrap().to_string();
    let refused = env
        .http
        .post(format!("{dash}/api/admin/queues/webhooks/dead/retry"))
        .json(&json!({"handle": handle}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(count_docs(&env, "resources").await, 0);
    let messages = page_agrees_with_stats(&browser, &env, &consumer).await;
    assert_eq!(shown(&messages, "workers"), 1);

    // The secrets agree again; with the key typed in, Retry runs the delivery: stored once.
    webhook.kill();
    let _webhook = start_webhook(&env, port, &output, WEBHOOK_SECRET).await;
    browser
        .client
        .find(Locator::Id("admin-key"))
        .await
        .unwrap()
        .send_keys(ADMIN_KEY)
        .await
        .unwrap();
    click(&browser, "#key-use").await;
    let c = card_until(&browser, "webhooks", "buttons enabled by the key", |c| {
        c["admin"] == "on" && c["dead_rows"][0]["retry_disabled"] == false
    })
    .await;
    assert_eq!(c["pause_disabled"], false);
    let stored_key: Value = browser
        .client
        .execute(
            "return [sessionStorage.getItem('conveyor-admin-key'), document.cookie];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        stored_key,
        json!([ADMIN_KEY, ""]),
        "the key is in sessionStorage, no cookie"
    );
    click(
        &browser,
        &format!("[data-queue=\"webhooks\"] tr[data-handle=\"{handle}\"] [data-action=\"retry\"]"),
    )
    .await;
    assert_eq!(
        wait_for_count(&env, "resources", 1, Duration::from_secs(30)).await,
        1
    );
    let c = card_until(&browser, "webhooks", "no dead letter left", |c| {
        c["dead_rows"].as_array().is_some_and(Vec::is_empty) && c["dead"] == "0"
    })
    .await;
    assert!(
        c["status"]
            .as_str()
            .unwrap()
            .contains("Retried dead letter"),
        "{c}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count_docs(&env, "resources").await, 1, "stored once");
    let files: Vec<_> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "one output file: {files:?}");
    assert!(files[0].to_string_lossy().contains("res-page"), "{files:?}");

    // Pause from the page: nothing new is read; the backlog is what was posted; the page agrees
    // with /stats. Resume: every message stored, each once.
    click(
        &browser,
        "[data-queue=\"messages\"] [data-action=\"pause\"]",
    )
    .await;
    card_until(&browser, "messages", "paused", |c| c["paused"] == "true").await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // one read block and the pause check
    let batch: Vec<Value> = (0..150).map(|i| packet(2 + i, None)).collect();
    post(&env, &consumer, &batch).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count_docs(&env, "messages").await,
        2,
        "nothing consumed while paused"
    );
    let c = page_agrees_with_stats(&browser, &env, &consumer).await;
    assert_eq!(
        (shown(&c, "backlog"), shown(&c, "pending")),
        (150, 0),
        "{c}"
    );
    click(
        &browser,
        "[data-queue=\"messages\"] [data-action=\"resume\"]",
    )
    .await;
    card_until(&browser, "messages", "resumed", |c| c["paused"] == "false").await;
    assert_eq!(
        wait_for_count(&env, "messages", 152, Duration::from_secs(60)).await,
        152
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count_docs(&env, "messages").await, 152, "each stored once");
    card_until(&browser, "messages", "an empty backlog", |c| {
        c["backlog"] == "0"
    })
    .await;

    // Under load, with deliveries failing again: the screenshot of the page.
    drop(_webhook);
    let _wrong = start_webhook(&env, port, &output, WRONG_SECRET).await;
    let _producer = stack.spawn_producer(&["--rate", "1000"]).expect("producer");
    let load_for = if std::env::var("QUEUES_SCREENSHOT").is_ok() {
        25
    } else {
        6
    };
    tokio::time::sleep(Duration::from_secs(load_for)).await;
    let chrome = browser
        .client
        .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
        .await
        .expect("window chrome size");
    let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
    browser
        .client
        .set_window_size(1280 + extra(0), 1500 + extra(1))
        .await
        .expect("resize");
    browser
        .client
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .expect("scroll to the top");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = card(&browser, "messages").await;
    assert_eq!(c["workers"], "1", "{c}");
    let png = browser.client.screenshot().await.expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real PNG"
    );
    let path = std::env::var("QUEUES_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(testkit::unique_name("queues") + ".png"));
    std::fs::write(&path, &png).expect("write screenshot");
    println!("screenshot: {} ({} bytes)", path.display(), png.len());

    browser.close().await;
    drop(stack);
    let _ = std::fs::remove_dir_all(&output);
}
