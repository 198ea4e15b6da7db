//! Unit tests of the bulk body and the item check (no server).

use super::*;
use crate::ids::{ProducerName, ResourceId, ResourcePart};
use chrono::{TimeZone, Utc};

fn message(producer: &str, number: u64) -> StoredMessage {
    let t = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
    StoredMessage {
        producer: ProducerName::parse(producer).unwrap(),
        number,
        sent_at: t,
        received_at: t,
        stored_at: t,
        transit_ms: 1.5,
        word_lengths: vec![1, 3],
        text: "a \"b\"".into(),
        part: Some(ResourcePart::new(ResourceId::parse("r1").unwrap(), 0, 1).unwrap()),
    }
}

#[test]
fn body_lines_are_the_action_then_the_typed_document() {
    let docs = [message("p-1", 7), message("p_2.x-y", 8)];
    let body = ndjson(&docs, &[0, 1], None).unwrap();
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(text.ends_with('\n'));
    assert_eq!(lines[0], serde_json::json!({"index": {"_id": "p-1:7"}}));
    assert_eq!(lines[1], serde_json::to_value(&docs[0]).unwrap());
    assert_eq!(lines[2], serde_json::json!({"index": {"_id": "p_2.x-y:8"}}));
    assert_eq!(lines[3]["text"], "a \"b\"");
}

#[test]
fn only_pending_documents_are_written() {
    let docs = [message("p", 1), message("p", 2), message("p", 3)];
    let text = String::from_utf8(ndjson(&docs, &[2], None).unwrap()).unwrap();
    assert_eq!(text.lines().next(), Some(r#"{"index":{"_id":"p:3"}}"#));
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn items_split_into_retries_and_rejections() {
    let docs = [message("p", 1), message("p", 2), message("p", 3)];
    let answer = serde_json::json!({"errors": true, "items": [
        {"index": {"status": 201}},
        {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
        {"index": {"status": 503}}
    ]});
    assert_eq!(
        item_failures("i", &docs, &[0, 1, 2], &answer).unwrap(),
        ItemFailures {
            retry: vec![1, 2],
            missing_days: vec![]
        }
    );
    let answer = serde_json::json!({"errors": true, "items": [
        {"index": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "bad"}}}
    ]});
    let err = item_failures("i", &docs, &[2], &answer).unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("document_parsing_exception"),
        "{err}"
    );
    let short = serde_json::json!({"errors": true, "items": []});
    assert!(item_failures("i", &docs, &[0], &short).is_err());
}

#[test]
fn a_missing_daily_index_and_a_write_block_are_retried_not_rejected() {
    let docs = [message("p", 1), message("p", 2)];
    let answer = serde_json::json!({"errors": true, "items": [
        {"index": {"status": 404, "error": {"type": "index_not_found_exception"}}},
        {"index": {"status": 403, "error": {"type": "cluster_block_exception"}}}
    ]});
    let failures = item_failures("i", &docs, &[0, 1], &answer).unwrap();
    assert_eq!(failures.retry, vec![0, 1]);
    assert_eq!(failures.missing_days, vec![docs[0].sent_at.date_naive()]);
}

#[test]
fn daily_actions_name_the_index_of_the_sent_at_day() {
    let mut late = message("p", 2);
    late.sent_at = Utc.with_ymd_and_hms(2026, 12, 2, 23, 59, 59).unwrap();
    late.received_at = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 1).unwrap();
    let docs = [message("p", 1), late, message("p", 3)];
    let text = String::from_utf8(ndjson(&docs, &[0, 1, 2], Some("x-messages")).unwrap()).unwrap();
    let actions: Vec<Value> = text
        .lines()
        .step_by(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let day0 = format!("x-messages-{}", docs[0].sent_at.format("%Y.%m.%d"));
    assert_eq!(
        actions[0],
        serde_json::json!({"index": {"_index": day0, "_id": "p:1"}})
    );
    assert_eq!(
        actions[1],
        serde_json::json!({"index": {"_index": "x-messages-2026.12.02", "_id": "p:2"}}),
        "the day of sent_at, not of received_at"
    );
    assert_eq!(actions[2]["index"]["_index"], actions[0]["index"]["_index"]);
}
