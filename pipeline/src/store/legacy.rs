//! The upgrade from a release that stored every message in one concrete index
//! `{prefix}messages`: an alias cannot share a name with an index, so at start-up that index is
//! moved behind the alias without losing a document. Elasticsearch here has no `_reindex`, so
//! the move is a clone:
//!
//! 1. block writes on `{prefix}messages` (`_block/write`, which also flushes);
//! 2. `_clone` it into `{prefix}messages-legacy` (hard-linked segments: fast, same documents;
//!    only one process can create the clone, the others find it and go on);
//! 3. check that the copy holds as many documents as the original;
//! 4. in ONE `_aliases` request, delete the original and put the alias on the copy.
//!
//! Several processes (the consumer, every worker replica) may run this at once; every step is
//! idempotent and the state is read again after each attempt. The one interleaving to repair: a
//! process that saw the concrete index and blocked "it" after another finished the swap has
//! blocked the indices behind the alias; it lifts the block from every daily index it finds.
//! The copy stays read-only; the retention deletes it once its newest message is past the
//! retention ([`super::retention`]).

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{error_type, rejected, Store, StoreError};

/// What the name `{prefix}messages` is now.
#[derive(Debug, PartialEq)]
enum Layout {
    /// Nothing: a fresh deployment.
    Missing,
    /// The alias of this release.
    Alias,
    /// A concrete index of an earlier release.
    Concrete,
}

/// Rounds of "read the layout, take the next step" before giving up (the caller retries).
const ROUNDS: usize = 6;

impl Store {
    /// The index a legacy `messages` index is cloned into.
    pub fn legacy_index(&self) -> String {
        format!("{}-legacy", self.messages)
    }

    /// Moves a concrete `{prefix}messages` index behind the alias (see the module doc); does
    /// nothing when there is none.
    pub(super) async fn migrate_legacy(&self) -> Result<(), StoreError> {
        let mut blocked = false;
        for _ in 0..ROUNDS {
            match self.layout().await? {
                Layout::Missing | Layout::Alias => {
                    if blocked {
                        self.unblock_daily_indices().await?;
                    }
                    return Ok(());
                }
                Layout::Concrete => {
                    blocked = true;
                    if let Err(e) = self.migrate_step().await {
                        // Failed because another process swapped meanwhile: the next round
                        // sees the alias (and lifts any block this one put behind it).
                        if self.layout().await? == Layout::Concrete {
                            return Err(e);
                        }
                    }
                }
            }
        }
        Err(StoreError::Rejected {
            status: 409,
            reason: format!(
                "{} is still a concrete index after {ROUNDS} migration rounds",
                self.messages
            ),
        })
    }

    async fn layout(&self) -> Result<Layout, StoreError> {
        let (status, answer) = self
            .send(
                Method::Get,
                &format!("/{}/_alias", self.messages),
                None,
                None,
            )
            .await?;
        match status {
            404 => Ok(Layout::Missing),
            200 if answer.get(&self.messages).is_some() => Ok(Layout::Concrete),
            200 => Ok(Layout::Alias),
            _ => Err(rejected(status, &answer)),
        }
    }

    /// One pass of block → clone → count → swap. A step that fails because another process got
    /// there first is not an error: the caller reads the layout again.
    async fn migrate_step(&self) -> Result<(), StoreError> {
        let (old, copy) = (self.messages.as_str(), self.legacy_index());
        tracing::warn!(index = old, copy = %copy,
            "an index of an earlier release holds the messages; moving it behind the alias");
        let (status, answer) = self
            .send(Method::Put, &format!("/{old}/_block/write"), None, None)
            .await?;
        if status == 404 {
            return Ok(());
        }
        ok(status, &answer)?;
        let settings = json!({"settings": {
            "index.number_of_replicas": self.settings.replicas,
            "index.refresh_interval": "1s"
        }});
        let (status, answer) = self
            .send(
                Method::Post,
                &format!("/{old}/_clone/{copy}"),
                Some(&[("wait_for_active_shards", "1")]),
                Some(settings),
            )
            .await?;
        match error_type(&answer) {
            // Another process cloned it (or is cloning it): wait for its shard below.
            Some("resource_already_exists_exception") => {}
            // Already swapped by another process.
            Some("index_not_found_exception") => return Ok(()),
            _ => ok(status, &answer)?,
        }
        let health = format!("/_cluster/health/{copy}");
        let query = [("wait_for_status", "yellow"), ("timeout", "60s")];
        let (status, answer) = self.send(Method::Get, &health, Some(&query), None).await?;
        ok(status, &answer)?;
        let (Some(before), Some(after)) = (self.count(old).await?, self.count(&copy).await?) else {
            return Ok(()); // one of them is gone: another process swapped; read the layout again
        };
        if before != after {
            return Err(StoreError::Rejected {
                status: 409,
                reason: format!(
                    "the copy {copy} holds {after} documents, {old} holds {before}: not deleting \
                     {old}; check both, delete {copy} and start again"
                ),
            });
        }
        let swap = json!({"actions": [
            {"remove_index": {"index": old}},
            {"add": {"index": copy, "alias": old}}
        ]});
        let (status, answer) = self
            .send(Method::Post, "/_aliases", None, Some(swap))
            .await?;
        if (200..300).contains(&status) {
            tracing::warn!(index = old, copy = %copy, documents = after,
                "legacy messages index moved behind the alias");
            return Ok(());
        }
        // Another process swapped first: `old` is gone or is now the alias.
        match error_type(&answer) {
            Some("index_not_found_exception") | Some("illegal_argument_exception") => Ok(()),
            _ => Err(rejected(status, &answer)),
        }
    }

    /// Documents in `index` after a refresh; None when it does not exist.
    async fn count(&self, index: &str) -> Result<Option<u64>, StoreError> {
        let (status, answer) = self
            .send(Method::Post, &format!("/{index}/_refresh"), None, None)
            .await?;
        if status == 404 {
            return Ok(None);
        }
        ok(status, &answer)?;
        let (status, answer) = self
            .send(Method::Get, &format!("/{index}/_count"), None, None)
            .await?;
        if status == 404 {
            return Ok(None);
        }
        ok(status, &answer)?;
        answer
            .get("count")
            .and_then(Value::as_u64)
            .map(Some)
            .ok_or_else(|| StoreError::Decode(format!("_count of {index} without a count")))
    }

    /// Lifts a write block from every daily index (see the module doc: the one race to repair).
    async fn unblock_daily_indices(&self) -> Result<(), StoreError> {
        let days: Vec<String> = self
            .message_indices()
            .await?
            .into_iter()
            .filter(|name| self.day_of_index(name).is_some())
            .collect();
        if days.is_empty() {
            return Ok(());
        }
        let body = json!({"index.blocks.write": null});
        let path = format!("/{}/_settings", days.join(","));
        let (status, answer) = self.send(Method::Put, &path, None, Some(body)).await?;
        ok(status, &answer)
    }
}

fn ok(status: u16, answer: &Value) -> Result<(), StoreError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(rejected(status, answer))
    }
}
