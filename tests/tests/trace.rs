//! One message followed from POST to Elasticsearch to webhook by its trace id, in the real
//! binaries' logs: a resource posted with a known W3C `traceparent` shows that trace id on the
//! consumer's line for its enqueue, the worker's lines for its store and its delivery, and the
//! webhook service's line for storing the resource; a batch of two packets (one resource) posted
//! with another `traceparent` shows it on both packets' store lines and on the resource's
//! delivery; a message posted without one gets a fresh trace id, found the same way in all three
//! services. Each trace id stays on its own message's lines, and each resource is stored once.
//! The worker logs JSON (every line must parse), the others text. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, each service exports the message's spans (OTLP/HTTP,
//! protobuf) to a collector, the last of them flushed when it stops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{Service, Stack};
use serde_json::{json, Value};
use testkit::TestEnv;

/// The trace id of the client's `traceparent` for the single packet, and of the batch's.
const KNOWN: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const BATCH: &str = "0af7651916cd43dd8448eb211c80319c";

fn packet(number: u64, resource: &str, seq: u32, total: u32) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    json!({"number": number, "sent_at": now, "text": "follow this message",
        "resource_id": resource, "seq": seq, "total": total})
}

/// The log lines one trace must have in each service (each line given by what it contains; the
/// trace id is added), exactly one of each.
struct Expected<'a> {
    trace: &'a str,
    consumer: &'a [&'a [&'a str]],
    worker: &'a [&'a [&'a str]],
    webhook: &'a [&'a [&'a str]],
}

/// The lines of `log` that contain every one of `needles`.
fn lines<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// A JSON log as searchable text: one line per JSON object, each value written `key=value`
/// (nested objects and the span list included, keys in sorted order). Panics on a line that is
/// not a JSON object (a complete last line only: a line being written is left out).
fn flatten_json_log(log: &str) -> String {
    fn walk(key: &str, v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(k, v, out)),
            Value::Array(items) => items.iter().for_each(|v| walk(key, v, out)),
            Value::String(s) => out.push_str(&format!(" {key}={s}")),
            other => out.push_str(&format!(" {key}={other}")),
        }
    }
    let complete = log.rfind('\n').map_or("", |end| &log[..end]);
    let mut text = String::new();
    for line in complete.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("worker log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        walk("", &v, &mut text);
        text.push('\n');
    }
    text
}

/// The `trace_id=` of a log line.
fn trace_id_of(line: &str) -> Option<&str> {
    let at = line.find("trace_id=")? + "trace_id=".len();
    line.get(at..at + 32)
}

/// Polls until `check` holds (it returns what is missing otherwise).
async fn until(within: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(missing) if start.elapsed() > within => panic!("within {within:?}: {missing}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_a_message_through_consumer_worker_and_webhook() {
    let env = TestEnv::new("e2e_trace").await;
    let stack = Stack::builder(&env)
        .webhook(true)
        .env("RUST_LOG", "info,consumer=debug,worker=debug,webhook=debug")
        // The worker logs JSON (as in compose): its ids must be there too, in valid JSON.
        .env_for(Service::Worker, "LOG_FORMAT", "json")
        .start()
        .await
        .unwrap();
    let consumer = stack.consumer_url();

    // A one-packet resource with the client's trace context.
    let resp = env
        .http
        .post(format!("{consumer}/messages"))
        .header("traceparent", format!("00-{KNOWN}-00f067aa0ba902b7-01"))
        .json(&packet(1, "traced-known", 0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap()
    );
    // One resource of two packets in one batch request, with another trace context.
    let resp = env
        .http
        .post(format!("{consumer}/messages/batch"))
        .header("traceparent", format!("00-{BATCH}-b7ad6b7169203331-01"))
        .json(&[
            packet(2, "traced-batch", 1, 2),
            packet(3, "traced-batch", 0, 2),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap()
    );
    // A one-packet resource without a trace context (and a malformed one is no context either).
    let resp = env
        .http
        .post(format!("{consumer}/messages"))
        .header("traceparent", "not-a-traceparent")
        .json(&packet(4, "traced-fresh", 0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap()
    );

    let consumer_log = || stack.consumer().unwrap().output();
    let worker_log = || flatten_json_log(&stack.worker(0).unwrap().guard.output());
    let webhook_log = || stack.webhook().unwrap().output();

    // The fresh trace id, read from the consumer's line for message 4.
    let fresh = {
        let log = consumer_log();
        let enqueued = lines(&log, &["message enqueued", "doc_id=default:4"]);
        assert_eq!(enqueued.len(), 1, "one enqueue line for message 4:\n{log}");
        let id = trace_id_of(enqueued[0]).expect("the enqueue line has a trace id");
        assert!(id != KNOWN && id != BATCH, "{id} is a new trace");
        id.to_string()
    };

    // What each service must show, per trace: the lines (each given by what it contains) of
    // the consumer, the worker and the webhook service.
    let expected: [Expected; 3] = [
        Expected {
            trace: KNOWN,
            consumer: &[&["message enqueued", "doc_id=default:1"]],
            worker: &[
                &["message stored", "doc_id=default:1"],
                &["delivered", "resource_id=traced-known"],
            ],
            webhook: &[&["resource stored", "resource_id=traced-known"]],
        },
        Expected {
            trace: BATCH,
            consumer: &[&["batch enqueued", "jobs=2"]],
            worker: &[
                &["message stored", "doc_id=default:2"],
                &["message stored", "doc_id=default:3"],
                &["delivered", "resource_id=traced-batch"],
            ],
            webhook: &[&["resource stored", "resource_id=traced-batch"]],
        },
        Expected {
            trace: &fresh,
            consumer: &[&["message enqueued", "doc_id=default:4"]],
            worker: &[
                &["message stored", "doc_id=default:4"],
                &["delivered", "resource_id=traced-fresh"],
            ],
            webhook: &[&["resource stored", "resource_id=traced-fresh"]],
        },
    ];
    until(Duration::from_secs(60), || {
        for e in &expected {
            let tag = format!("trace_id={}", e.trace);
            for (service, log, wanted) in [
                ("consumer", consumer_log(), e.consumer),
                ("worker", worker_log(), e.worker),
                ("webhook", webhook_log(), e.webhook),
            ] {
                for needles in wanted {
                    let mut all: Vec<&str> = needles.to_vec();
                    all.push(&tag);
                    if lines(&log, &all).len() != 1 {
                        return Err(format!(
                            "{service}: one line with {all:?}, found {}\n{log}",
                            lines(&log, &all).len()
                        ));
                    }
                }
            }
        }
        Ok(())
    })
    .await;

    // Shown with --nocapture: the lines of the known trace, service by service.
    for (service, log) in [
        ("consumer", consumer_log()),
        ("worker", worker_log()),
        ("webhook", webhook_log()),
    ] {
        for line in lines(&log, &[&format!("trace_id={KNOWN}")]) {
            eprintln!("{service}: {line}");
        }
    }

    // Each trace id stays on its own message's lines: a line naming one of the test's messages
    // or resources names no other trace.
    let subjects = [
        ("doc_id=default:1", KNOWN),
        ("resource_id=traced-known", KNOWN),
        ("doc_id=default:2", BATCH),
        ("doc_id=default:3", BATCH),
        ("resource_id=traced-batch", BATCH),
        ("doc_id=default:4", fresh.as_str()),
        ("resource_id=traced-fresh", fresh.as_str()),
    ];
    for (service, log) in [
        ("consumer", consumer_log()),
        ("worker", worker_log()),
        ("webhook", webhook_log()),
    ] {
        for (subject, trace) in subjects {
            for line in lines(&log, &[subject, "trace_id="]) {
                // `doc_id=default:1` is a prefix of no other test doc id (numbers 1..=4).
                assert_eq!(
                    trace_id_of(line),
                    Some(trace),
                    "{service}: {subject} logged under another trace: {line}"
                );
            }
        }
    }
}

/// What the collector received: (path, content type, body) per request.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An OTLP/HTTP collector on a free port that keeps every request and answers 200 (an empty
/// `ExportTraceServiceResponse`); returns its base URL.
async fn collector(received: Received) -> String {
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let kind = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                received
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), kind, body.to_vec()));
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_every_service_exports_the_messages_spans() {
    const EXPORTED: &str = "5e1f2b8a9c3d4e6f708192a3b4c5d6e7";
    let env = TestEnv::new("e2e_trace_otlp").await;
    let received: Received = Arc::default();
    let endpoint = collector(received.clone()).await;
    let mut stack = Stack::builder(&env)
        .webhook(true)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .start()
        .await
        .unwrap();
    let resp = env
        .http
        .post(format!("{}/messages", stack.consumer_url()))
        .header("traceparent", format!("00-{EXPORTED}-00f067aa0ba902b7-01"))
        .json(&packet(1, "exported", 0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap()
    );
    let webhook_log = || stack.webhook().unwrap().output();
    until(Duration::from_secs(60), || {
        let log = webhook_log();
        match lines(&log, &["resource stored", "resource_id=exported"]).len() {
            1 => Ok(()),
            n => Err(format!("{n} 'resource stored' lines:\n{log}")),
        }
    })
    .await;
    // SIGTERM: each service flushes its last spans on the way out.
    assert!(
        stack.stop(Duration::from_secs(20)),
        "every service exits by itself"
    );

    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&EXPORTED[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector received nothing");
    for (path, kind, _) in &received {
        assert_eq!(path, "/v1/traces");
        assert_eq!(kind, "application/x-protobuf");
    }
    for service in ["consumer", "worker", "webhook"] {
        // The resource attribute `service.name = <service>` as protobuf: the key, then the
        // AnyValue (field 2) holding the string (field 1).
        let n = service.len() as u8;
        let mut name = b"service.name".to_vec();
        name.extend([0x12, n + 2, 0x0a, n]);
        name.extend(service.as_bytes());
        let with_trace = received
            .iter()
            .filter(|(_, _, body)| contains(body, &trace_bytes) && contains(body, &name))
            .count();
        assert!(
            with_trace >= 1,
            "{service}: no exported batch holds the message's trace ({} requests)",
            received.len()
        );
    }
}
