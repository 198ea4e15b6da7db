//! Bulk indexing: one NDJSON `_bulk` request per call, every item checked (HTTP 200 does not
//! mean success), only 429/5xx items retried with backoff, anything else is an error. Fixed
//! `_id`s make every retry idempotent. No refresh is requested.
//!
//! Messages go to the daily index of their `sent_at` day (`daily.rs`), named in each action
//! line; a day this process has not written yet is created first. Two item errors are retried
//! as well: a daily index deleted meanwhile (`index_not_found_exception`: created again) and a
//! write block (`cluster_block_exception`: an operator's block, or one a legacy migration put
//! for a moment) — neither says anything about the document, so neither may dead-letter it.
//!
//! This is the worker's hot path, so the body is written straight from the typed documents into
//! one byte buffer (no `serde_json::Value` per document), each day's action prefix is encoded
//! once per request, and Elasticsearch is asked to answer only `errors` and each item's
//! `status` / `error` (`filter_path`); the items are only read when `errors` is true.

use std::io::Write;
use std::time::Duration;

use chrono::NaiveDate;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{error_type, rejected, Store, StoreError};
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
    /// The day whose daily index holds the document, for documents written by day.
    fn day(&self) -> Option<NaiveDate> {
        None
    }
}

/// Where a bulk request writes.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// One named index (in the URL).
    Index(&'a str),
    /// The daily index of each document's day under this alias (in each action line).
    Daily(&'a str),
}

impl Target<'_> {
    fn name(&self) -> &str {
        match self {
            Target::Index(name) | Target::Daily(name) => name,
        }
    }
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

    fn day(&self) -> Option<NaiveDate> {
        Some(self.sent_at.date_naive())
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
    /// Indexes processed messages (`_id = "{producer}:{number}"`) into the daily index of their
    /// `sent_at` day in one `_bulk` request; Ok only when every item succeeded.
    pub async fn index_messages(&self, docs: &[StoredMessage]) -> Result<(), StoreError> {
        self.index_bulk(Target::Daily(&self.messages), docs).await
    }

    /// Indexes `(_id, document)` pairs into `index`; retries 429/5xx items (and whole-request
    /// 429/5xx answers) up to a few times, fails on any other item error.
    pub async fn index_docs(
        &self,
        index: &str,
        docs: &[(String, Value)],
    ) -> Result<(), StoreError> {
        self.index_bulk(Target::Index(index), docs).await
    }

    async fn index_bulk<D: BulkDoc>(
        &self,
        target: Target<'_>,
        docs: &[D],
    ) -> Result<(), StoreError> {
        let index = target.name();
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        let mut last = StoreError::Unavailable("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            match self.bulk_once(target, docs, &pending).await {
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

    /// POSTs the NDJSON `body` to `path` (a `_bulk` endpoint), Elasticsearch's answer cut to
    /// `filter_path`. Through [`Store::call`]: sent again to another node only when the
    /// connection was refused (the request was never applied).
    pub async fn post_ndjson(
        &self,
        path: &str,
        filter_path: &str,
        body: &[u8],
    ) -> Result<elasticsearch::http::response::Response, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let query = [("filter_path", filter_path)];
        self.call(|| {
            self.client.send(
                Method::Post,
                path,
                headers.clone(),
                Some(&query),
                Some(body),
                None,
            )
        })
        .await
    }

    /// One `_bulk` request for `docs[pending]`; returns the indices that should be retried.
    async fn bulk_once<D: BulkDoc>(
        &self,
        target: Target<'_>,
        docs: &[D],
        pending: &[usize],
    ) -> Result<Vec<usize>, StoreError> {
        let (path, daily) = match target {
            Target::Index(index) => (format!("/{index}/_bulk"), None),
            Target::Daily(alias) => {
                let mut days: Vec<NaiveDate> =
                    pending.iter().filter_map(|&i| docs[i].day()).collect();
                days.sort_unstable();
                days.dedup();
                self.ensure_days(days).await?;
                ("/_bulk".to_string(), Some(alias))
            }
        };
        let index = target.name();
        let body = ndjson(docs, pending, daily)?;
        // An `index` action with an explicit `_id` writes the same document however often it is
        // applied.
        let response = self.post_ndjson(&path, FILTER_PATH, &body).await?;
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
        let failures = item_failures(index, docs, pending, &answer)?;
        for day in failures.missing_days {
            self.days.forget(day);
        }
        Ok(failures.retry)
    }
}

/// The NDJSON body for `docs[pending]`: `{"index":{"_id":…}}` then the source, per document;
/// with `daily` (the alias), each action also names the document's daily index.
fn ndjson<D: BulkDoc>(
    docs: &[D],
    pending: &[usize],
    daily: Option<&str>,
) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::with_capacity(pending.len() * 512);
    // The action prefix of each day, encoded once: a batch spans one day, rarely two.
    let mut prefixes: Vec<(Option<NaiveDate>, Vec<u8>)> = Vec::new();
    for &i in pending {
        let doc = &docs[i];
        let encode =
            |e: serde_json::Error| StoreError::Decode(format!("encoding {}: {e}", doc.id()));
        let day = daily.and(doc.day());
        let at = match prefixes.iter().position(|(d, _)| *d == day) {
            Some(at) => at,
            None => {
                prefixes.push((day, action_prefix(daily, day).map_err(encode)?));
                prefixes.len() - 1
            }
        };
        body.extend_from_slice(&prefixes[at].1);
        doc.write_id(&mut body).map_err(encode)?;
        body.extend_from_slice(b"}}\n");
        doc.write_source(&mut body).map_err(encode)?;
        body.push(b'\n');
    }
    Ok(body)
}

/// `{"index":{"_id":` or, for a document of `day` under the alias `daily`,
/// `{"index":{"_index":"<alias>-<day>","_id":`.
fn action_prefix(
    daily: Option<&str>,
    day: Option<NaiveDate>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = b"{\"index\":{".to_vec();
    if let (Some(alias), Some(day)) = (daily, day) {
        out.extend_from_slice(b"\"_index\":");
        let name = format!("{alias}-{}", day.format(super::DAY_FORMAT));
        serde_json::to_writer(&mut out, &name)?;
        out.push(b',');
    }
    out.extend_from_slice(b"\"_id\":");
    Ok(out)
}

/// What the items of an answer with `errors: true` ask for.
#[derive(Debug, Default, PartialEq)]
struct ItemFailures {
    /// Documents to send again (429/5xx, a missing daily index, a write block).
    retry: Vec<usize>,
    /// Days whose index was missing: created again before the retry.
    missing_days: Vec<NaiveDate>,
}

/// Reads the items of an answer with `errors: true`: what to retry, or the first permanent
/// rejection as an error.
fn item_failures<D: BulkDoc>(
    index: &str,
    docs: &[D],
    pending: &[usize],
    answer: &Value,
) -> Result<ItemFailures, StoreError> {
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .filter(|items| items.len() == pending.len())
        .ok_or_else(|| StoreError::Decode("bulk answer without one item per document".into()))?;
    let mut failures = ItemFailures::default();
    for (item, &i) in items.iter().zip(pending) {
        let result = item.get("index").unwrap_or(item);
        let item_status = result.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
        match (item_status, error_type(result)) {
            (200..=299, _) => {}
            (429 | 500..=599, _) | (_, Some("cluster_block_exception")) => failures.retry.push(i),
            (_, Some("index_not_found_exception")) => {
                failures.retry.push(i);
                failures.missing_days.extend(docs[i].day());
            }
            _ => {
                let err = rejected(item_status, result);
                tracing::error!(index, id = %docs[i].id(), error = %err, "bulk item rejected");
                return Err(err);
            }
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests;
