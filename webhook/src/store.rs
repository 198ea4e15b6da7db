//! The `{prefix}resources` index: explicit mapping created at start-up, create-only writes
//! (a second delivery of a resource is a conflict, i.e. a duplicate), reads for the GET routes.
//! Owns no HTTP routing and no files.

use chrono::{DateTime, Utc};
use elasticsearch::http::transport::Transport;
use elasticsearch::indices::IndicesCreateParts;
use elasticsearch::{CreateParts, Elasticsearch, GetParts, SearchParts};
use pipeline::resource::CollatedResource;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
        let latency = delivered_at - resource.last_received_at;
        let latency_ms = latency
            .num_microseconds()
            .map(|us| us as f64 / 1000.0)
            .unwrap_or_else(|| latency.num_milliseconds() as f64);
        DeliveredResource {
            resource,
            delivered_at,
            latency_ms,
        }
    }
}

/// Failure talking to Elasticsearch; every variant is retryable from the sender's point of view.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("elasticsearch unavailable: {0}")]
    Unavailable(String),
    #[error("elasticsearch answered {status}: {reason}")]
    Rejected { status: u16, reason: String },
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Duplicate,
}

#[derive(Clone)]
pub struct ResourceStore {
    client: Elasticsearch,
    index: String,
}

fn unavailable(e: elasticsearch::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

async fn rejected(resp: elasticsearch::http::response::Response) -> StoreError {
    let status = resp.status_code().as_u16();
    let reason = resp.text().await.unwrap_or_default();
    StoreError::Rejected {
        status,
        reason: reason.chars().take(500).collect(),
    }
}

impl ResourceStore {
    pub fn new(url: &str, index: String) -> anyhow::Result<Self> {
        let transport = Transport::single_node(url)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_URL {url:?}: {e}"))?;
        Ok(ResourceStore {
            client: Elasticsearch::new(transport),
            index,
        })
    }

    pub fn index(&self) -> &str {
        &self.index
    }

    /// The explicit mapping of the index (strict: unknown fields are refused).
    pub fn mapping() -> Value {
        json!({
            "settings": { "number_of_replicas": 0, "refresh_interval": "1s" },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "resource_id": { "type": "keyword" },
                    "packets": { "type": "integer" },
                    "word_lengths": { "type": "integer" },
                    "first_received_at": { "type": "date" },
                    "last_received_at": { "type": "date" },
                    "completed_at": { "type": "date" },
                    "delivered_at": { "type": "date" },
                    "latency_ms": { "type": "double" }
                }
            }
        })
    }

    /// Creates the index with [`Self::mapping`] unless it already exists.
    pub async fn ensure_index(&self) -> Result<(), StoreError> {
        let resp = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&self.index))
            .body(Self::mapping())
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status_code().is_success() {
            return Ok(());
        }
        let status = resp.status_code().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        let kind = body["error"]["type"].as_str().unwrap_or_default();
        if status == 400 && kind == "resource_already_exists_exception" {
            Ok(())
        } else {
            Err(StoreError::Rejected {
                status,
                reason: body.to_string(),
            })
        }
    }

    /// Create-only write: `Duplicate` when a document with this resource id already exists.
    pub async fn create(&self, doc: &DeliveredResource) -> Result<Created, StoreError> {
        let resp = self
            .client
            .create(CreateParts::IndexId(&self.index, &doc.resource.resource_id))
            .body(doc)
            .send()
            .await
            .map_err(unavailable)?;
        match resp.status_code().as_u16() {
            200 | 201 => Ok(Created::New),
            409 => Ok(Created::Duplicate),
            _ => Err(rejected(resp).await),
        }
    }

    pub async fn get(&self, resource_id: &str) -> Result<Option<DeliveredResource>, StoreError> {
        let resp = self
            .client
            .get(GetParts::IndexId(&self.index, resource_id))
            .send()
            .await
            .map_err(unavailable)?;
        match resp.status_code().as_u16() {
            200 => {
                let body: Value = resp.json().await.map_err(unavailable)?;
                decode(&body["_source"]).map(Some)
            }
            404 => Ok(None),
            _ => Err(rejected(resp).await),
        }
    }

    /// Most recently delivered first.
    pub async fn list(
        &self,
        size: usize,
        from: usize,
    ) -> Result<Vec<DeliveredResource>, StoreError> {
        let resp = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(json!({
                "from": from, "size": size,
                "sort": [{ "delivered_at": "desc" }, { "resource_id": "asc" }],
                "query": { "match_all": {} }
            }))
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status_code().is_success() {
            return Err(rejected(resp).await);
        }
        let body: Value = resp.json().await.map_err(unavailable)?;
        body["hits"]["hits"]
            .as_array()
            .map(|hits| hits.iter().map(|h| decode(&h["_source"])).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// `_cluster/health` answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let resp = self
            .client
            .cluster()
            .health(elasticsearch::cluster::ClusterHealthParts::None)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status_code().is_success() {
            Ok(())
        } else {
            Err(rejected(resp).await)
        }
    }
}

fn decode(source: &Value) -> Result<DeliveredResource, StoreError> {
    serde_json::from_value(source.clone()).map_err(|e| StoreError::Rejected {
        status: 200,
        reason: format!("stored document does not decode: {e}"),
    })
}
