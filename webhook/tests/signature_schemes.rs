//! The webhook service accepts the Standard Webhooks headers beside `X-Conveyor-Signature`, the
//! previous secret during a rotation, and keys resources by producer: against the real
//! Elasticsearch, in-process on port 0.

mod support;

use chrono::Utc;
use pipeline::ids::ProducerName;
use pipeline::resource::CollatedResource;
use pipeline::signing::{sign, standard, Secrets, WebhookSecret};
use serde_json::Value;
use support::{Service, PREVIOUS_SECRET, SECRET};
use testkit::TestEnv;

fn resource(producer: &str, id: &str) -> CollatedResource {
    let t = Utc::now();
    CollatedResource {
        resource_id: id.to_string(),
        producer: ProducerName::parse(producer).unwrap(),
        packets: 1,
        word_lengths: vec![vec![3, 1]],
        first_received_at: t,
        last_received_at: t,
        completed_at: t,
    }
}

fn secrets(value: &str) -> Secrets {
    Secrets::new(WebhookSecret::parse(value).unwrap(), None)
}

/// The three Standard Webhooks headers for `body` sent as `id` at `t` under `secret`.
fn standard_headers(secret: &str, id: &str, t: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (standard::ID_HEADER, id.to_string()),
        (standard::TIMESTAMP_HEADER, t.to_string()),
        (
            standard::SIGNATURE_HEADER,
            standard::sign(&secrets(secret), id, t, body),
        ),
    ]
}

/// What is sent, how, and the status expected.
type Case = (&'static str, Vec<u8>, Vec<(&'static str, String)>, u16);

async fn get(svc: &Service, key: &str) -> (u16, Value) {
    let resp = svc
        .http
        .get(format!("{}/resources/{key}", svc.url))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn standard_webhooks_headers_alone_verify_and_every_scheme_present_must_match() {
    let env = TestEnv::new("webhook_standard").await;
    let svc = Service::start(&env).await;
    let now = Utc::now().timestamp();

    let body = serde_json::to_vec(&resource("default", "std-1")).unwrap();
    let (status, answer) = svc
        .deliver_with(&body, &standard_headers(SECRET, "std-1", now, &body))
        .await;
    assert_eq!(status, 201, "{answer}");

    // Tampered body, a replayed old timestamp, another id, the wrong secret: 401 / 422, nothing stored.
    let body2 = serde_json::to_vec(&resource("default", "std-2")).unwrap();
    let mut tampered = body2.clone();
    tampered[2] ^= 0x01;
    let cases: Vec<Case> = vec![
        (
            "tampered body",
            tampered,
            standard_headers(SECRET, "std-2", now, &body2),
            401,
        ),
        (
            "old timestamp",
            body2.clone(),
            standard_headers(SECRET, "std-2", now - 3600, &body2),
            401,
        ),
        (
            "wrong secret",
            body2.clone(),
            standard_headers(&"w".repeat(40), "std-2", now, &body2),
            401,
        ),
        (
            "id of another resource",
            body2.clone(),
            standard_headers(SECRET, "std-9", now, &body2),
            422,
        ),
        (
            "no id header",
            body2.clone(),
            standard_headers(SECRET, "std-2", now, &body2)[1..].to_vec(),
            401,
        ),
        (
            "a valid Conveyor signature beside a bad standard one",
            body2.clone(),
            {
                let mut h = standard_headers(&"w".repeat(40), "std-2", now, &body2);
                h.push(("X-Conveyor-Signature", sign(SECRET.as_bytes(), now, &body2)));
                h
            },
            401,
        ),
    ];
    for (what, body, headers, expected) in cases {
        let (status, answer) = svc.deliver_with(&body, &headers).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert_eq!(answer["status"], expected, "{what}: problem body {answer}");
    }
    assert_eq!(get(&svc, "std-2").await.0, 404);
    assert_eq!(svc.files(), vec!["std-1.json".to_string()]);
}

#[tokio::test]
async fn the_previous_secret_is_accepted_during_a_rotation() {
    let env = TestEnv::new("webhook_rotation").await;
    let svc = Service::start(&env).await;
    let now = Utc::now().timestamp();
    let body = serde_json::to_vec(&resource("default", "rot-1")).unwrap();
    let (status, answer) = svc
        .deliver_with(
            &body,
            &[(
                "X-Conveyor-Signature",
                sign(PREVIOUS_SECRET.as_bytes(), now, &body),
            )],
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let body = serde_json::to_vec(&resource("default", "rot-2")).unwrap();
    let (status, answer) = svc
        .deliver_with(
            &body,
            &standard_headers(PREVIOUS_SECRET, "rot-2", now, &body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn resources_of_two_producers_with_one_id_are_two_resources() {
    let env = TestEnv::new("webhook_producers").await;
    let svc = Service::start(&env).await;
    let now = Utc::now().timestamp();
    for (producer, key) in [("default", "shared:1"), ("acme", "acme@shared:1")] {
        let body = serde_json::to_vec(&resource(producer, "shared:1")).unwrap();
        let mut headers = standard_headers(SECRET, key, now, &body);
        headers.push(("Idempotency-Key", key.to_string()));
        let (status, answer) = svc.deliver_with(&body, &headers).await;
        assert_eq!(status, 201, "{producer}: {answer}");
    }
    let mut files = svc.files();
    files.sort();
    assert_eq!(files, vec!["acme@shared:1.json", "shared:1.json"]);
    let (status, acme) = get(&svc, "acme@shared:1").await;
    assert_eq!(status, 200, "{acme}");
    assert_eq!(
        (acme["producer"].as_str(), acme["resource_id"].as_str()),
        (Some("acme"), Some("shared:1"))
    );
    let (status, default) = get(&svc, "shared:1").await;
    assert_eq!(status, 200);
    assert!(default.get("producer").is_none(), "{default}");
    // An Idempotency-Key naming the other producer's resource is refused.
    let body = serde_json::to_vec(&resource("acme", "shared:2")).unwrap();
    let (status, answer) = svc
        .deliver_with(
            &body,
            &[
                ("X-Conveyor-Signature", sign(SECRET.as_bytes(), now, &body)),
                ("Idempotency-Key", "shared:2".to_string()),
            ],
        )
        .await;
    assert_eq!(status, 422, "{answer}");
}
