//! Reads of the messages through their alias: one message by natural key, a page of recent
//! messages, and the stats (exact max number, 10 s transit average and count, total) in ONE
//! search request. A missing alias reads as empty, not as an error.
//!
//! One message by id: Elasticsearch refuses a GET through an alias of several indices, and a
//! search is only near-real-time (a message stored a moment ago would read as 404 until the
//! next refresh). So the read lists the indices behind the alias and asks each of them for the
//! id in one real-time `_mget` (one small get per day of retention).

use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;

use super::{read_bytes, rejected, MessageStats, Store, StoreError};
use crate::ids::ProducerName;
use crate::packet::wire::StoredMessageFields;
use crate::packet::{StoredMessage, MAX_NUMBER};
use service_kit::http::body::{MAX_PAGE, MAX_WINDOW};

/// Most messages on a page that carries `text` or `word_lengths`.
pub const MAX_HEAVY_PAGE: usize = 8;

/// Which of a message's two large fields a listing carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub text: bool,
    pub word_lengths: bool,
}

impl Fields {
    /// The largest page these fields allow.
    pub fn page_limit(self) -> usize {
        if self.text || self.word_lengths {
            MAX_HEAVY_PAGE
        } else {
            MAX_PAGE
        }
    }
}

/// A page of messages and where the next one starts (`None` when this one was the last, or
/// the window of 10000 is used up).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct MessagesPage {
    pub messages: Vec<StoredMessageFields>,
    /// `from` of the next page, when there may be one.
    pub next_from: Option<usize>,
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: SearchHits,
}

#[derive(Deserialize)]
struct SearchHits {
    hits: Vec<SearchHit>,
}

#[derive(Deserialize)]
struct SearchHit {
    #[serde(rename = "_source")]
    source: StoredMessageFields,
}

/// A `max` aggregation's value over `number` as the packet number it is: numbers are integers
/// ≤ 2^53 − 1 ([`MAX_NUMBER`]), which a double holds exactly; `None` for no documents (`null`).
pub fn exact_number(value: &Value) -> Option<u64> {
    value
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0 && *f <= MAX_NUMBER as f64)
        .map(|f| f as u64)
}

impl Store {
    /// The stored message `{producer}:{number}`, or None (real-time: see the module doc).
    pub async fn get_message(
        &self,
        producer: &ProducerName,
        number: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let id = format!("{producer}:{number}");
        let indices = self.indices_behind_alias().await?;
        if indices.is_empty() {
            return Ok(None);
        }
        let docs: Vec<Value> = indices
            .iter()
            .map(|index| json!({"_index": index, "_id": id}))
            .collect();
        let (status, answer) = self
            .send(Method::Post, "/_mget", None, Some(json!({ "docs": docs })))
            .await?;
        if status != 200 {
            return Err(rejected(status, &answer));
        }
        let found = answer
            .get("docs")
            .and_then(Value::as_array)
            .ok_or_else(|| StoreError::Decode("_mget answer without docs".into()))?
            .iter()
            // An index deleted since it was listed answers an error item: not found there.
            .find(|doc| doc.get("found").and_then(Value::as_bool) == Some(true));
        found.map(decode_source).transpose()
    }

    /// The concrete indices the messages alias points at (the alias's own name when it is still
    /// a concrete index of an earlier release); empty when it does not exist yet.
    async fn indices_behind_alias(&self) -> Result<Vec<String>, StoreError> {
        let (status, answer) = self
            .send(
                Method::Get,
                &format!("/{}/_alias", self.messages),
                None,
                None,
            )
            .await?;
        match status {
            404 => Ok(Vec::new()),
            200 => Ok(answer
                .as_object()
                .map(|indices| indices.keys().cloned().collect())
                .unwrap_or_default()),
            _ => Err(rejected(status, &answer)),
        }
    }

    /// A page of the most recent messages (by `received_at`), optionally of one producer, with
    /// `text` and `word_lengths` only when `fields` asks for them. Bounded by count and so by
    /// bytes: at most [`MAX_PAGE`] light messages (~0.5 KB each) or [`MAX_HEAVY_PAGE`] with
    /// the large fields (up to ~600 KB each in the worst case); `from + size` stays within
    /// Elasticsearch's window of 10000. The answer is decoded straight into typed messages.
    pub async fn list_messages(
        &self,
        producer: Option<&ProducerName>,
        size: usize,
        from: usize,
        fields: Fields,
    ) -> Result<MessagesPage, StoreError> {
        let size = size.min(fields.page_limit());
        let query = match producer {
            Some(p) => json!({"term": {"producer": p.as_str()}}),
            None => json!({"match_all": {}}),
        };
        let mut excludes = Vec::new();
        if !fields.text {
            excludes.push("text");
        }
        if !fields.word_lengths {
            excludes.push("word_lengths");
        }
        let body = json!({
            "size": size,
            "from": from,
            "query": query,
            "track_total_hits": false,
            "_source": {"excludes": excludes},
            "sort": [{"received_at": "desc"}, {"number": "desc"}],
        });
        let (status, bytes) = self.search_bytes(body).await?;
        if status == 404 {
            return Ok(MessagesPage::default());
        }
        if status != 200 {
            let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(rejected(status, &answer));
        }
        let answer: SearchAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Decode(format!("a page of messages does not decode: {e}")))?;
        let messages: Vec<StoredMessageFields> =
            answer.hits.hits.into_iter().map(|h| h.source).collect();
        let next = from + messages.len();
        let next_from = (messages.len() == size && next < MAX_WINDOW).then_some(next);
        Ok(MessagesPage {
            messages,
            next_from,
        })
    }

    /// Max number (a max aggregation, exact for numbers ≤ 2^53 − 1), average transit and count over
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

    /// `_search` on the messages index, answered as bytes (404 when the index does not exist).
    async fn search_bytes(&self, body: Value) -> Result<(u16, bytes::Bytes), StoreError> {
        let (path, body) = (format!("/{}/_search", self.messages), JsonBody::new(body));
        let response = self
            .call(|| {
                self.client.send(
                    Method::Post,
                    &path,
                    HeaderMap::new(),
                    None::<&()>,
                    Some(&body),
                    None,
                )
            })
            .await?;
        read_bytes(response).await
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
