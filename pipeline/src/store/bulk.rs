//! Bulk indexing: one NDJSON `_bulk` request per call, every item checked (HTTP 200 does not
//! mean success), only 429/5xx items retried with backoff, anything else is an error. Fixed
//! `_id`s make every retry idempotent. No refresh is requested.

use std::time::Duration;

use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{read_answer, rejected, Store, StoreError};
use crate::packet::StoredMessage;

/// Attempts per item for 429/5xx answers (the first try included).
const ATTEMPTS: u32 = 4;
/// First backoff between attempts; doubles each time.
const BACKOFF: Duration = Duration::from_millis(100);

impl Store {
    /// Indexes processed messages (`_id = "{producer}:{number}"`) in one `_bulk` request; Ok only
    /// when every item succeeded.
    pub async fn index_messages(&self, docs: &[StoredMessage]) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(docs.len());
        for doc in docs {
            let value = serde_json::to_value(doc)
                .map_err(|e| StoreError::Decode(format!("encoding {}: {e}", doc.doc_id())))?;
            items.push((doc.doc_id(), value));
        }
        let index = self.messages.clone();
        self.index_docs(&index, &items).await
    }

    /// Indexes `(_id, document)` pairs into `index`; retries 429/5xx items (and whole-request
    /// 429/5xx answers) up to a few times, fails on any other item error.
    pub async fn index_docs(
        &self,
        index: &str,
        docs: &[(String, Value)],
    ) -> Result<(), StoreError> {
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
    async fn bulk_once(
        &self,
        index: &str,
        docs: &[(String, Value)],
        pending: &[usize],
    ) -> Result<Vec<usize>, StoreError> {
        let mut body = String::new();
        for &i in pending {
            let (id, doc) = &docs[i];
            body.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
            body.push('\n');
            body.push_str(&doc.to_string());
            body.push('\n');
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                None::<&[(&str, &str)]>,
                Some(body),
                None,
            )
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (status, answer) = read_answer(response).await?;
        if !(200..300).contains(&status) {
            return Err(rejected(status, &answer));
        }
        if answer.get("errors").and_then(Value::as_bool) == Some(false) {
            return Ok(Vec::new());
        }
        let items = answer
            .get("items")
            .and_then(Value::as_array)
            .filter(|items| items.len() == pending.len())
            .ok_or_else(|| {
                StoreError::Decode("bulk answer without one item per document".into())
            })?;
        let mut retry = Vec::new();
        for (item, &i) in items.iter().zip(pending) {
            let result = item.get("index").unwrap_or(item);
            let item_status = result.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            match item_status {
                200..=299 => {}
                429 | 500..=599 => retry.push(i),
                _ => {
                    let err = rejected(item_status, result);
                    tracing::error!(index, id = %docs[i].0, error = %err, "bulk item rejected");
                    return Err(err);
                }
            }
        }
        Ok(retry)
    }
}
