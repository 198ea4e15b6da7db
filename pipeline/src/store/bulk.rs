//! Bulk indexing: one NDJSON `_bulk` request per call, every item checked (HTTP 200 does not
//! mean success), only 429/5xx items retried with backoff, anything else is an error. Fixed
//! `_id`s make every retry idempotent. No refresh is requested.
//!
//! This is the worker's hot path, so the body is written straight from the typed documents into
//! one byte buffer (no `serde_json::Value` per document), the index goes in the URL (short
//! action lines), and Elasticsearch is asked to answer only `errors` and each item's `status` /
//! `error` (`filter_path`); the items are only read when `errors` is true.

use std::io::Write;
use std::time::Duration;

use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{rejected, Store, StoreError};
use crate::packet::StoredMessage;

/// Attempts per item for 429/5xx answers (the first try included).
const ATTEMPTS: u32 = 4;
/// First backoff between attempts; doubles each time.
const BACKOFF: Duration = Duration::from_millis(100);
/// Only what the item check needs: Elasticsearch then neither renders nor sends the rest.
const FILTER_PATH: &str = "errors,items.*.status,items.*.error";

/// A document the bulk writer can render: its `_id` (as a JSON string) and its source.
trait BulkDoc {
    /// Writes the `_id` as a JSON string literal, quotes included.
    fn write_id(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    /// Writes the document source as one line of JSON.
    fn write_source(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    /// The `_id`, for logs and errors.
    fn id(&self) -> String;
}

impl BulkDoc for StoredMessage {
    fn write_id(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        // A producer name has nothing to escape (its type checked its charset): no JSON encoder.
        write!(out, "\"{}:{}\"", self.producer, self.number).map_err(serde_json::Error::io)
    }

    fn write_source(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }

    fn id(&self) -> String {
        self.doc_id()
    }
}

impl BulkDoc for (String, Value) {
    fn write_id(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, &self.0)
    }

    fn write_source(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, &self.1)
    }

    fn id(&self) -> String {
        self.0.clone()
    }
}

/// The top of a `_bulk` answer; the items are skipped unless `errors` is true.
#[derive(Deserialize)]
struct BulkSummary {
    errors: bool,
}

impl Store {
    /// Indexes processed messages (`_id = "{producer}:{number}"`) in one `_bulk` request; Ok only
    /// when every item succeeded.
    pub async fn index_messages(&self, docs: &[StoredMessage]) -> Result<(), StoreError> {
        self.index_bulk(&self.messages, docs).await
    }

    /// Indexes `(_id, document)` pairs into `index`; retries 429/5xx items (and whole-request
    /// 429/5xx answers) up to a few times, fails on any other item error.
    pub async fn index_docs(
        &self,
        index: &str,
        docs: &[(String, Value)],
    ) -> Result<(), StoreError> {
        self.index_bulk(index, docs).await
    }

    async fn index_bulk<D: BulkDoc>(&self, index: &str, docs: &[D]) -> Result<(), StoreError> {
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        let mut last = StoreError::Unavailable("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            match self.bulk_once(index, docs, &pending).await {
                Ok(retry) => {
                    if !retry.is_empty() {
                        tracing::warn!(index, items = retry.len(), attempt, "bulk items to retry");
                        last = StoreError::Rejected {
                            status: 429,
                            reason: format!("{} items still failing after retries", retry.len()),
                        };
                    }
                    pending = retry;
                }
                Err(e) if e.is_transient() && !matches!(e, StoreError::Unavailable(_)) => {
                    tracing::warn!(index, error = %e, attempt, "bulk request to retry");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(last)
        }
    }

    /// One `_bulk` request for `docs[pending]`; returns the indices that should be retried.
    async fn bulk_once<D: BulkDoc>(
        &self,
        index: &str,
        docs: &[D],
        pending: &[usize],
    ) -> Result<Vec<usize>, StoreError> {
        let body = ndjson(docs, pending)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let response = self
            .client
            .send(
                Method::Post,
                &format!("/{index}/_bulk"),
                headers,
                Some(&[("filter_path", FILTER_PATH)]),
                Some(body),
                None,
            )
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let decode = |e: serde_json::Error| {
            StoreError::Decode(format!("status {status}, bulk answer is not JSON: {e}"))
        };
        if !(200..300).contains(&status) {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(rejected(status, &answer));
        }
        if !serde_json::from_slice::<BulkSummary>(&bytes)
            .map_err(decode)?
            .errors
        {
            return Ok(Vec::new());
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(decode)?;
        item_failures(index, docs, pending, &answer)
    }
}

/// The NDJSON body for `docs[pending]`: `{"index":{"_id":…}}` then the source, per document.
fn ndjson<D: BulkDoc>(docs: &[D], pending: &[usize]) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::with_capacity(pending.len() * 512);
    for &i in pending {
        let doc = &docs[i];
        let encode =
            |e: serde_json::Error| StoreError::Decode(format!("encoding {}: {e}", doc.id()));
        body.extend_from_slice(b"{\"index\":{\"_id\":");
        doc.write_id(&mut body).map_err(encode)?;
        body.extend_from_slice(b"}}\n");
        doc.write_source(&mut body).map_err(encode)?;
        body.push(b'\n');
    }
    Ok(body)
}

/// Reads the items of an answer with `errors: true`: the indices to retry (429/5xx), or the
/// first permanent rejection as an error.
fn item_failures<D: BulkDoc>(
    index: &str,
    docs: &[D],
    pending: &[usize],
    answer: &Value,
) -> Result<Vec<usize>, StoreError> {
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .filter(|items| items.len() == pending.len())
        .ok_or_else(|| StoreError::Decode("bulk answer without one item per document".into()))?;
    let mut retry = Vec::new();
    for (item, &i) in items.iter().zip(pending) {
        let result = item.get("index").unwrap_or(item);
        let item_status = result.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
        match item_status {
            200..=299 => {}
            429 | 500..=599 => retry.push(i),
            _ => {
                let err = rejected(item_status, result);
                tracing::error!(index, id = %docs[i].id(), error = %err, "bulk item rejected");
                return Err(err);
            }
        }
    }
    Ok(retry)
}

#[cfg(test)]
mod tests {
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
        let body = ndjson(&docs, &[0, 1]).unwrap();
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
        let text = String::from_utf8(ndjson(&docs, &[2]).unwrap()).unwrap();
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
            vec![1, 2]
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
}
