//! The `{prefix}resources` index on top of `pipeline::store::Store` (its client, timeouts,
//! `ensure_index` and `ping`): the explicit mapping, create-only writes (a second delivery of a
//! resource is a conflict, i.e. a duplicate) and the reads of the GET routes. Owns no HTTP routing
//! and no files.
//!
//! Documents are keyed by the resource key (`<resource_id>` for the default producer,
//! `<producer>@<resource_id>` otherwise: `pipeline::ids::ResourceKey`).
//!
//! Resource ids never go into a URL path: "." and ".." are valid ids, and URL normalisation would
//! turn `/_create/..` into another path. Writes use `_bulk` (id in the body), reads `_mget`.

use chrono::{DateTime, Utc};
use elasticsearch::{MgetParts, SearchParts};
use pipeline::ids::{ProducerName, ResourceKey};
use pipeline::resource::CollatedResource;
use pipeline::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use service_kit::config::IndexSettings;

/// A delivered resource as stored (document in ES and content of the output file).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeliveredResource {
    #[serde(flatten)]
    pub resource: CollatedResource,
    /// The instant the webhook service received the delivery.
    pub delivered_at: DateTime<Utc>,
    /// `delivered_at - last_received_at` in fractional milliseconds.
    pub latency_ms: f64,
}

impl DeliveredResource {
    pub fn new(resource: CollatedResource, delivered_at: DateTime<Utc>) -> Self {
        let latency_ms = pipeline::task::millis_between(resource.last_received_at, delivered_at);
        DeliveredResource {
            resource,
            delivered_at,
            latency_ms,
        }
    }
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Duplicate,
}

/// The resources index of one deployment (cheap to clone).
#[derive(Clone)]
pub struct ResourceStore {
    store: Store,
    index: String,
}

fn unavailable(e: elasticsearch::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Status and JSON body of an answer; a non-2xx status is `Rejected` with ES's reason.
async fn answer(resp: elasticsearch::http::response::Response) -> Result<Value, StoreError> {
    let status = resp.status_code().as_u16();
    let body: Value = resp.json().await.map_err(unavailable)?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(StoreError::Rejected {
            status,
            reason: body.to_string().chars().take(500).collect(),
        })
    }
}

impl ResourceStore {
    pub fn new(store: Store) -> Self {
        let index = store.resources_index().to_string();
        ResourceStore { store, index }
    }

    pub fn index(&self) -> &str {
        &self.index
    }

    /// Settings (shards and replicas from `ES_SHARDS` / `ES_REPLICAS`) and the explicit mapping
    /// of the index (strict: unknown fields are refused). The fields no query of ours filters on
    /// (all but `resource_id`, `producer` and `delivered_at`; `latency_ms` is only aggregated)
    /// have doc values but no search index, as in the messages' mapping
    /// (`pipeline::store::messages_index_body`).
    pub fn mapping(settings: IndexSettings) -> Value {
        json!({
            "settings": {
                "number_of_shards": settings.shards,
                "number_of_replicas": settings.replicas,
                "refresh_interval": "1s"
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "resource_id": { "type": "keyword" },
                    "producer": { "type": "keyword" },
                    "packets": { "type": "integer", "index": false },
                    "word_lengths": { "type": "integer", "index": false },
                    "first_received_at": { "type": "date", "index": false },
                    "last_received_at": { "type": "date", "index": false },
                    "completed_at": { "type": "date", "index": false },
                    "delivered_at": { "type": "date" },
                    "latency_ms": { "type": "double", "index": false }
                }
            }
        })
    }

    /// Creates the index with [`Self::mapping`] unless it already exists, and adds the fields
    /// later versions introduced (`producer`) to an index an older version created.
    pub async fn ensure_index(&self) -> Result<(), StoreError> {
        self.store
            .ensure_index(&self.index, Self::mapping(self.store.index_settings()))
            .await?;
        self.add_new_fields().await
    }

    async fn add_new_fields(&self) -> Result<(), StoreError> {
        let (api, index) = (self.store.client().indices(), [self.index.as_str()]);
        let resp = self
            .store
            .call(|| {
                api.put_mapping(elasticsearch::indices::IndicesPutMappingParts::Index(
                    &index,
                ))
                .body(json!({ "properties": { "producer": { "type": "keyword" } } }))
                .send()
            })
            .await?;
        answer(resp).await.map(|_| ())
    }

    /// Creates the index, retrying with backoff until it exists (true) or `shutdown` (false).
    pub async fn ensure_until(&self, shutdown: &tokio_util::sync::CancellationToken) -> bool {
        if !self
            .store
            .ensure_until(
                &self.index,
                Self::mapping(self.store.index_settings()),
                shutdown,
            )
            .await
        {
            return false;
        }
        let mut backoff = service_kit::Backoff::new(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(5),
        );
        loop {
            match self.add_new_fields().await {
                Ok(()) => return true,
                Err(e) => tracing::warn!(error = %e, "updating the resources mapping; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Elasticsearch answers and the cluster is not red.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Creates every `(id, source)` (create-only; `source` is the document's JSON) in one
    /// `_bulk`: one result per document, in order (`Duplicate` for an id already stored); `Err`
    /// when the request as a whole failed. The body is written as NDJSON bytes directly, and
    /// Elasticsearch answers only each item's status and error (`filter_path`).
    pub async fn create_many(
        &self,
        docs: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<Result<Created, StoreError>>, StoreError> {
        let n = docs.len();
        let mut body = Vec::with_capacity(docs.iter().map(|(_, s)| s.len() + 64).sum());
        for (id, source) in &docs {
            body.extend_from_slice(b"{\"create\":{\"_id\":");
            serde_json::to_writer(&mut body, id)
                .map_err(|e| StoreError::Decode(format!("encoding the id {id}: {e}")))?;
            body.extend_from_slice(b"}}\n");
            body.extend_from_slice(source);
            body.push(b'\n');
        }
        drop(docs);
        // Sent again only when the connection was refused (`Store::post_ndjson`): a create
        // applied twice would read as a duplicate, and a refused one was never applied.
        let path = format!("/{}/_bulk", self.index);
        let resp = self
            .store
            .post_ndjson(&path, "items.*.status,items.*.error", &body)
            .await?;
        let answer = answer(resp).await?;
        let items = answer["items"].as_array().map_or(&[][..], Vec::as_slice);
        if items.len() != n {
            return Err(StoreError::Decode(format!(
                "bulk answer with {} items for {n} documents",
                items.len()
            )));
        }
        Ok(items
            .iter()
            .map(|item| item_result(&item["create"]))
            .collect())
    }

    /// The stored resource, `None` when absent (or when nothing was ever delivered).
    pub async fn get(&self, key: &ResourceKey) -> Result<Option<DeliveredResource>, StoreError> {
        let ids = json!({ "ids": [key.to_string()] });
        let resp = self
            .store
            .call(|| {
                self.store
                    .client()
                    .mget(MgetParts::Index(&self.index))
                    .body(&ids)
                    .send()
            })
            .await?;
        let body = match answer(resp).await {
            Ok(body) => body,
            Err(StoreError::Rejected { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let doc = &body["docs"][0];
        if doc["found"].as_bool() == Some(true) {
            decode(&doc["_source"]).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Most recently delivered first; empty when nothing was delivered yet. `word_lengths`
    /// (up to `MAX_WORD_LENGTHS` numbers, megabytes) only when asked, and then one resource per
    /// page; decoded straight into [`ListedResource`]s.
    pub async fn list(
        &self,
        size: usize,
        from: usize,
        with_word_lengths: bool,
    ) -> Result<Vec<ListedResource>, StoreError> {
        let (size, excludes) = if with_word_lengths {
            (size.min(1), json!([]))
        } else {
            (size, json!(["word_lengths"]))
        };
        let query = json!({
            "from": from, "size": size,
            "_source": { "excludes": excludes },
            "sort": [{ "delivered_at": "desc" }, { "resource_id": "asc" }],
            "query": { "match_all": {} }
        });
        let index = [self.index.as_str()];
        let resp = self
            .store
            .call(|| {
                self.store
                    .client()
                    .search(SearchParts::Index(&index))
                    .body(&query)
                    .send()
            })
            .await?;
        let status = resp.status_code().as_u16();
        let bytes = resp.bytes().await.map_err(unavailable)?;
        match status {
            404 => Ok(Vec::new()),
            200..=299 => serde_json::from_slice::<Listing>(&bytes)
                .map(|l| l.hits.hits.into_iter().map(|h| h.source).collect())
                .map_err(|e| {
                    StoreError::Decode(format!("a page of resources does not decode: {e}"))
                }),
            _ => Err(StoreError::Rejected {
                status,
                reason: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
        }
    }
}

/// A delivered resource as `GET /resources` lists it: `word_lengths` only when asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ListedResource {
    pub resource_id: String,
    #[serde(
        default = "ProducerName::default_producer",
        skip_serializing_if = "ProducerName::is_default"
    )]
    pub producer: ProducerName,
    pub packets: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_lengths: Option<Vec<Vec<u32>>>,
    pub first_received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub delivered_at: DateTime<Utc>,
    pub latency_ms: f64,
}

#[derive(Deserialize)]
struct Listing {
    hits: ListingHits,
}

#[derive(Deserialize)]
struct ListingHits {
    hits: Vec<ListingHit>,
}

#[derive(Deserialize)]
struct ListingHit {
    #[serde(rename = "_source")]
    source: ListedResource,
}

/// One `_bulk` create item's outcome.
fn item_result(item: &Value) -> Result<Created, StoreError> {
    match item["status"].as_u64() {
        Some(200 | 201) => Ok(Created::New),
        Some(409) => Ok(Created::Duplicate),
        Some(status) => Err(StoreError::Rejected {
            status: u16::try_from(status).unwrap_or(500),
            reason: item["error"].to_string().chars().take(500).collect(),
        }),
        None => Err(StoreError::Decode(format!(
            "bulk item without a status: {item}"
        ))),
    }
}

fn decode(source: &Value) -> Result<DeliveredResource, StoreError> {
    serde_json::from_value(source.clone())
        .map_err(|e| StoreError::Decode(format!("stored document does not decode: {e}")))
}
