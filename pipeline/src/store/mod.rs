//! The Elasticsearch store: one client built from `ELASTICSEARCH_URL` (+ CA file, API key or basic
//! auth: service-kit's `ElasticArgs`), the messages' daily
//! indices `{prefix}messages-YYYY.MM.DD` behind the alias `{prefix}messages` (strict mapping
//! through an index template, set up at start-up, race-safe), idempotent bulk indexing
//! (`_id = "{producer}:{number}"`, into the index of the message's `sent_at` day) and the reads
//! the consumer serves (one message, recent messages, stats in one search) through the alias.
//!
//! It owns index names and mappings of `messages` only; other indices (e.g. `resources`) bring
//! their own mapping through [`Store::ensure_index`]. It never refreshes per write and never
//! retries a rejected document (only 429/5xx items, a few times).
//!
//! Modules: `client` (the client over one node or several, and the one request path,
//! [`Store::call`]), [`pool`] (the multi-node pool), [`daily`] (the layout: names, template,
//! start-up), `legacy` (the upgrade from a single `messages` index), [`retention`] (which daily
//! indices are past the retention), `bulk` (writes), `query` (reads).

mod bulk;
mod client;
pub mod daily;
mod legacy;
pub mod pool;
mod query;
pub mod retention;
pub use daily::DAY_FORMAT;
pub use query::{exact_number, Fields, MessagesPage, MAX_HEAVY_PAGE};

use std::time::Duration;

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use service_kit::config::{ElasticArgs, IndexSettings};

/// Largest page a list read returns.
pub use service_kit::http::body::MAX_PAGE;

/// Base name of the alias over the stored messages' daily indices (prefixed with
/// `ES_INDEX_PREFIX`); the daily indices are `{alias}-YYYY.MM.DD`.
pub const MESSAGES_INDEX: &str = "messages";
/// Base name of the index of delivered resources (written by the webhook service).
pub const RESOURCES_INDEX: &str = "resources";

/// What a store call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Elasticsearch could not be reached or did not answer in time.
    #[error("elasticsearch unavailable: {0}")]
    Unavailable(String),
    /// Elasticsearch answered with an error status (whole request or some bulk item).
    #[error("elasticsearch rejected the request ({status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// The answer was not what the Elasticsearch API promises.
    #[error("unexpected elasticsearch answer: {0}")]
    Decode(String),
}

impl StoreError {
    /// Whether trying again later may succeed (unreachable, overloaded, or a server error).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Rejected { status, .. } => *status == 429 || *status >= 500,
            StoreError::Decode(_) => false,
        }
    }
}

/// Highest number, transit average and count over the last 10 s, and the total stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MessageStats {
    pub max_number: Option<u64>,
    pub avg_transit_ms_10s: Option<f64>,
    pub count_10s: u64,
    pub total: u64,
}

/// A cheap-to-clone handle on Elasticsearch and this deployment's index names.
#[derive(Clone)]
pub struct Store {
    client: Elasticsearch,
    /// The multi-node pool the client uses (several node URLs); None for one node.
    pool: Option<pool::NodePool>,
    /// Shards and replicas of the indices this store creates.
    settings: IndexSettings,
    messages: String,
    resources: String,
    /// Daily indices this process created or saw created (so a write does not ask again).
    days: daily::KnownDays,
}

impl Store {
    /// Builds the one Elasticsearch client every binary uses from `args` (no request is made):
    /// the URL(s), `ELASTICSEARCH_CA_FILE` trusted for https, and the API key or basic auth.
    pub fn new(args: &ElasticArgs) -> anyhow::Result<Store> {
        let (client, pool) = client::build(args)?;
        Ok(Store {
            client,
            pool,
            settings: args.index_settings(),
            messages: args.index(MESSAGES_INDEX),
            resources: args.index(RESOURCES_INDEX),
            days: daily::KnownDays::default(),
        })
    }

    /// The underlying client, for queries that live elsewhere (e.g. the dashboard); send them
    /// through [`Store::call`] so that a dead node is skipped and a refused connection retried.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// With several node URLs: (nodes live now, nodes); None for one node.
    pub fn nodes(&self) -> Option<(usize, usize)> {
        self.pool.as_ref().map(|p| (p.live(), p.len()))
    }

    /// Shards and replicas of the indices this store creates (`ES_SHARDS`, `ES_REPLICAS`).
    pub fn index_settings(&self) -> IndexSettings {
        self.settings
    }

    /// The alias every reader uses (`{prefix}messages`); writes go to the daily indices.
    pub fn messages_index(&self) -> &str {
        &self.messages
    }

    pub fn resources_index(&self) -> &str {
        &self.resources
    }

    /// Sets up the messages' layout: migrates a `messages` index of an earlier release, puts the
    /// index template, and creates today's daily index (so the alias exists for readers). Safe
    /// when several processes run it at once.
    pub async fn ensure_indices(&self) -> Result<(), StoreError> {
        self.ensure_messages().await
    }

    /// Creates index `name` with `body` (settings + mappings) unless it exists. Safe when several
    /// processes start at once: "already exists" counts as success.
    pub async fn ensure_index(&self, name: &str, body: Value) -> Result<(), StoreError> {
        let (status, _) = self
            .send(Method::Head, &format!("/{name}"), None, None)
            .await?;
        if status == 200 {
            return Ok(());
        }
        let (status, answer) = self
            .send(Method::Put, &format!("/{name}"), None, Some(body))
            .await?;
        if (200..300).contains(&status)
            || error_type(&answer) == Some("resource_already_exists_exception")
        {
            tracing::info!(index = name, "elasticsearch index ready");
            return Ok(());
        }
        Err(rejected(status, &answer))
    }

    /// [`Store::ensure_index`], retried with backoff (200 ms doubling to 5 s, each failure logged)
    /// until it succeeds (true) or `shutdown` is cancelled (false). For services that start
    /// before Elasticsearch is up and create their index in the background.
    pub async fn ensure_until(
        &self,
        name: &str,
        body: Value,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        retry_until(name, shutdown, || self.ensure_index(name, body.clone())).await
    }

    /// [`Store::ensure_indices`] (the messages' layout), retried like [`Store::ensure_until`].
    pub async fn ensure_messages_until(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        retry_until(&self.messages, shutdown, || self.ensure_messages()).await
    }

    /// Answers Ok when `_cluster/health` answers and the cluster is not red.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let response = self
            .call(|| {
                self.client.send(
                    Method::Get,
                    "/_cluster/health",
                    HeaderMap::new(),
                    None::<&[(&str, &str)]>,
                    None::<JsonBody<Value>>,
                    Some(Duration::from_secs(2)),
                )
            })
            .await?;
        let status = response.status_code().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if status != 200 {
            return Err(rejected(status, &body));
        }
        match body.get("status").and_then(Value::as_str) {
            Some("green") | Some("yellow") => Ok(()),
            other => Err(StoreError::Unavailable(format!(
                "cluster health is {}",
                other.unwrap_or("unknown")
            ))),
        }
    }

    /// Sends one request built by `request` (called once per attempt; it borrows the client,
    /// e.g. `|| store.client().bulk(…).body(&body).send()`) and answers its response, or
    /// `Unavailable` when no node answered. With several nodes, dead nodes are skipped and a
    /// request that could not connect goes to the next node (`client::failover` says why that
    /// is safe and why nothing else is repeated); with one, it is sent once.
    pub async fn call<F, Fut>(
        &self,
        request: F,
    ) -> Result<elasticsearch::http::response::Response, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<elasticsearch::http::response::Response, elasticsearch::Error>,
        >,
    {
        let result = match &self.pool {
            None => request().await,
            Some(pool) => client::failover(pool, request).await,
        };
        result.map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// One request with a JSON body (or none); returns the status and the JSON answer
    /// (`Value::Null` for an empty body, e.g. HEAD). Transport failures are `Unavailable`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&[(&str, &str)]>,
        body: Option<Value>,
    ) -> Result<(u16, Value), StoreError> {
        let body = body.map(JsonBody::new);
        let response = self
            .call(|| {
                self.client
                    .send(method, path, HeaderMap::new(), query, body.as_ref(), None)
            })
            .await?;
        read_answer(response).await
    }
}

/// Runs `attempt` until it succeeds (true) or `shutdown` is cancelled (false), pausing 200 ms
/// doubling to 5 s after each failure, which is logged with `index`.
async fn retry_until<F, Fut>(
    index: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    attempt: F,
) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut backoff = queue::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return false,
            result = attempt() => result,
        };
        match result {
            Ok(()) => return true,
            Err(e) => tracing::warn!(index, error = %e, "setting up the index; retrying"),
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

/// Status + JSON of an answer; an empty body reads as `Null`.
async fn read_answer(
    response: elasticsearch::http::response::Response,
) -> Result<(u16, Value), StoreError> {
    let (status, bytes) = read_bytes(response).await?;
    if bytes.is_empty() {
        return Ok((status, Value::Null));
    }
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Decode(format!("status {status}, body is not JSON: {e}")))?;
    Ok((status, value))
}

/// Status + body bytes of an answer, for callers that decode into their own types.
async fn read_bytes(
    response: elasticsearch::http::response::Response,
) -> Result<(u16, bytes::Bytes), StoreError> {
    let status = response.status_code().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok((status, bytes))
}

/// `error.type` of an Elasticsearch error answer.
fn error_type(answer: &Value) -> Option<&str> {
    answer.pointer("/error/type").and_then(Value::as_str)
}

fn rejected(status: u16, answer: &Value) -> StoreError {
    let reason = match (error_type(answer), answer.pointer("/error/reason")) {
        (Some(t), Some(Value::String(r))) => format!("{t}: {r}"),
        (Some(t), _) => t.to_string(),
        _ => answer.to_string().chars().take(300).collect(),
    };
    StoreError::Rejected { status, reason }
}

/// Settings (shards and replicas from `settings`) and the strict mapping of the `messages`
/// index. Fields no query of ours filters on (`stored_at`, `transit_ms`, which is only averaged,
/// `word_lengths`, `seq`, `total`) keep doc values but no search index (`"index": false`):
/// Elasticsearch still answers term and range queries on them (from the doc values, slower) and
/// aggregates and sorts them, and indexing a message costs it ~2 µs less of its ~16
/// (bench/README.md, "The stack"). `number` and `sent_at` stay indexed although only their
/// maximum is asked for: over a whole index the points answer that without reading every
/// document.
pub fn messages_index_body(settings: IndexSettings) -> Value {
    let date = json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"});
    let doc_values_only_date = json!({"type": "date", "format": "strict_date_optional_time||epoch_millis", "index": false});
    json!({
        "settings": {
            "number_of_shards": settings.shards,
            "number_of_replicas": settings.replicas,
            "refresh_interval": "1s"
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "producer": {"type": "keyword"},
                "number": {"type": "long"},
                "sent_at": date,
                "received_at": date,
                "stored_at": doc_values_only_date,
                "transit_ms": {"type": "double", "index": false},
                "word_lengths": {"type": "integer", "index": false},
                "text": {"type": "text", "index": false},
                "resource_id": {"type": "keyword"},
                "seq": {"type": "integer", "index": false},
                "total": {"type": "integer", "index": false}
            }
        }
    })
}
