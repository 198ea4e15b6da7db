//! Reads of the `messages` index: one message by natural key, a page of recent messages, and
//! the stats (exact max number, 10 s transit average and count, total) in ONE search request.
//! A missing index reads as empty, not as an error.

use elasticsearch::http::Method;
use elasticsearch::GetParts;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{read_answer, rejected, MessageStats, Store, StoreError};
use crate::ids::ProducerName;
use crate::packet::StoredMessage;
use crate::packet::MAX_NUMBER;

use service_kit::http::body::MAX_PAGE;

/// A `max` aggregation's value over `number` as the packet number it is: numbers are integers
/// ≤ 2^53 − 1 ([`MAX_NUMBER`]), which a double holds exactly; `None` for no documents (`null`).
pub fn exact_number(value: &Value) -> Option<u64> {
    value
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0 && *f <= MAX_NUMBER as f64)
        .map(|f| f as u64)
}

impl Store {
    /// The stored message `{producer}:{number}`, or None.
    pub async fn get_message(
        &self,
        producer: &ProducerName,
        number: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let id = format!("{producer}:{number}");
        let response = self
            .client
            .get(GetParts::IndexId(&self.messages, &id))
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (status, answer) = read_answer(response).await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(rejected(status, &answer));
        }
        if answer.get("found").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        decode_source(&answer).map(Some)
    }

    /// Most recent messages first (by `received_at`), optionally of one producer. `size` is
    /// capped at [`MAX_PAGE`]; `from + size` must stay within 10000 (Elasticsearch's window).
    pub async fn list_messages(
        &self,
        producer: Option<&ProducerName>,
        size: usize,
        from: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let query = match producer {
            Some(p) => json!({"term": {"producer": p.as_str()}}),
            None => json!({"match_all": {}}),
        };
        let body = json!({
            "size": size.min(MAX_PAGE),
            "from": from,
            "query": query,
            "sort": [{"received_at": "desc"}, {"number": "desc"}],
        });
        let Some(answer) = self.search(body).await? else {
            return Ok(Vec::new());
        };
        let hits = required(&answer, "/hits/hits", Value::as_array)?;
        hits.iter().map(decode_source).collect()
    }

    /// Max number (exact: sort desc, size 1), average transit and count over
    /// `received_at >= now-10s`, and the total — one search request.
    pub async fn stats(&self) -> Result<MessageStats, StoreError> {
        let body = json!({
            "size": 0,
            "track_total_hits": true,
            "aggs": {
                // Over a match-all query Elasticsearch answers a top-level max from the index's
                // points: constant cost however many documents (a sort costs more as the index
                // grows); exact because the edge keeps numbers ≤ 2^53 − 1.
                "max_number": {"max": {"field": "number"}},
                "recent": {
                    "filter": {"range": {"received_at": {"gte": "now-10s"}}},
                    "aggs": {"avg_transit": {"avg": {"field": "transit_ms"}}}
                }
            }
        });
        let Some(answer) = self.search(body).await? else {
            return Ok(MessageStats::default());
        };
        let total = required(&answer, "/hits/total/value", Value::as_u64)?;
        Ok(MessageStats {
            max_number: exact_number(&answer["aggregations"]["max_number"]["value"]),
            avg_transit_ms_10s: answer
                .pointer("/aggregations/recent/avg_transit/value")
                .and_then(Value::as_f64),
            count_10s: answer
                .pointer("/aggregations/recent/doc_count")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            total,
        })
    }

    /// `_search` on the messages index; None when the index does not exist.
    async fn search(&self, body: Value) -> Result<Option<Value>, StoreError> {
        let (status, answer) = self
            .send(
                Method::Post,
                &format!("/{}/_search", self.messages),
                None,
                Some(body),
            )
            .await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(rejected(status, &answer));
        }
        Ok(Some(answer))
    }
}

fn decode_source(hit: &Value) -> Result<StoredMessage, StoreError> {
    let source = hit
        .get("_source")
        .ok_or_else(|| StoreError::Decode("hit without _source".into()))?;
    StoredMessage::deserialize(source)
        .map_err(|e| StoreError::Decode(format!("stored message does not decode: {e}")))
}

/// The value at `pointer` of a search answer, read by `read`; a missing or mistyped value is a
/// decode error naming the pointer.
fn required<'a, T>(
    answer: &'a Value,
    pointer: &str,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<T, StoreError> {
    answer
        .pointer(pointer)
        .and_then(read)
        .ok_or_else(|| StoreError::Decode(format!("search answer without {pointer}")))
}
