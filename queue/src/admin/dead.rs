//! Dead letters for an operator: list them with where they live ([`DeadEntry`]), find one by job
//! id, and retry or delete one or all. Retry makes a dead letter a new first attempt in its
//! partition's stream (its error history travels along); each letter is moved or deleted in the
//! same `admin_dead.lua` step that removes it from the dead-letter stream, so a retried letter
//! runs once per retry and is never both dead and queued.

use redis::streams::StreamRangeReply;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::fanout::Fanout;
use crate::job::DeadLetter;
use crate::queue::Queue;
use crate::scripts;

/// Dead letters handled per script call when retrying or deleting all (each call is atomic).
const PAGE: usize = 500;

/// A dead letter and where it lives: its partition and its entry id in that partition's
/// dead-letter stream (the handle of [`Queue::retry_dead`] and [`Queue::delete_dead`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadEntry {
    pub partition: u16,
    pub entry_id: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// The newest `limit` dead letters over all partitions, newest first, with their handles.
    pub async fn dead_entries(&self, limit: usize) -> Result<Vec<DeadEntry>, QueueError> {
        let keys = self.keys();
        let mut pipes = Fanout::new(self.pool().is_cluster(), self.keys());
        for p in 0..keys.partitions() {
            pipes
                .partition(p)
                .cmd("XREVRANGE")
                .arg(keys.dead(p))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit.max(1));
        }
        let mut conn = self.conn().await?;
        let replies: Vec<StreamRangeReply> = pipes
            .query(&mut conn)
            .await?
            .into_iter()
            .map(crate::admin::view::parse)
            .collect::<Result<_, _>>()?;
        let mut out: Vec<DeadEntry> = replies
            .into_iter()
            .enumerate()
            .flat_map(|(p, reply)| {
                reply.ids.into_iter().filter_map(move |e| {
                    Some(DeadEntry {
                        partition: p as u16,
                        letter: DeadLetter::from_map(&e.map)?,
                        entry_id: e.id,
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (b.letter.dead_at_ms, &b.entry_id).cmp(&(a.letter.dead_at_ms, &a.entry_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// The dead letter at `partition` / `entry_id` (its handle), if it is there.
    pub async fn dead_entry(
        &self,
        partition: u16,
        entry_id: &str,
    ) -> Result<Option<DeadEntry>, QueueError> {
        if partition >= self.keys().partitions() || !is_entry_id(entry_id) {
            return Ok(None);
        }
        let mut conn = self.conn().await?;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys().dead(partition))
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut conn)
            .await?;
        Ok(reply.ids.into_iter().next().and_then(|e| {
            Some(DeadEntry {
                partition,
                letter: DeadLetter::from_map(&e.map)?,
                entry_id: e.id,
            })
        }))
    }

    /// The dead letters of job `job_id` (usually one; more if the job died again after a
    /// retry), newest first. Reads every dead-letter stream in pages: O(dead letters).
    pub async fn find_dead(&self, job_id: &str) -> Result<Vec<DeadEntry>, QueueError> {
        let keys = self.keys();
        let mut conn = self.conn().await?;
        let mut out = Vec::new();
        for p in 0..keys.partitions() {
            let dead = keys.dead(p);
            let mut from = "-".to_string();
            loop {
                let page: StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&dead)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut conn)
                    .await?;
                let full = page.ids.len() == PAGE;
                if let Some(last) = page.ids.last() {
                    from = format!("({}", last.id);
                }
                for e in page.ids {
                    if let Some(letter) = DeadLetter::from_map(&e.map) {
                        if letter.job_id.0 == job_id {
                            out.push(DeadEntry {
                                partition: p,
                                entry_id: e.id,
                                letter,
                            });
                        }
                    }
                }
                if !full {
                    break;
                }
            }
        }
        out.sort_by_key(|d| std::cmp::Reverse(d.letter.dead_at_ms));
        Ok(out)
    }

    /// Retries one dead letter: it becomes attempt 1 of a new run in its partition's stream.
    /// [`QueueError::Refused`] if it is not there (retried or deleted meanwhile).
    pub async fn retry_dead(&self, partition: u16, entry_id: &str) -> Result<(), QueueError> {
        self.one_dead("retry", partition, entry_id).await
    }

    /// Deletes one dead letter for good. [`QueueError::Refused`] if it is not there.
    pub async fn delete_dead(&self, partition: u16, entry_id: &str) -> Result<(), QueueError> {
        self.one_dead("delete", partition, entry_id).await
    }

    /// Retries every dead letter of every partition, oldest first; returns how many. Atomic per
    /// page of letters: a letter is either still dead or queued again, never both, never lost.
    /// Stops early at a letter that holds no job (not written by the queue).
    pub async fn retry_all_dead(&self) -> Result<u64, QueueError> {
        self.all_dead("retry").await
    }

    /// Deletes every dead letter of every partition; returns how many.
    pub async fn delete_all_dead(&self) -> Result<u64, QueueError> {
        self.all_dead("delete").await
    }

    async fn one_dead(
        &self,
        action: &str,
        partition: u16,
        entry_id: &str,
    ) -> Result<(), QueueError> {
        if partition >= self.keys().partitions() || !is_entry_id(entry_id) {
            return Err(QueueError::Refused(format!(
                "no dead letter {partition}/{entry_id} in queue {}",
                self.config().name
            )));
        }
        let (handled, _) = self.invoke_dead(action, partition, entry_id).await?;
        if handled == 0 {
            return Err(QueueError::Refused(format!(
                "no dead letter {partition}/{entry_id} in queue {} (retried or deleted meanwhile?)",
                self.config().name
            )));
        }
        self.count_admin(action, 1);
        Ok(())
    }

    async fn all_dead(&self, action: &str) -> Result<u64, QueueError> {
        let mut total = 0;
        for p in 0..self.keys().partitions() {
            loop {
                let (handled, left) = self.invoke_dead(action, p, "").await?;
                total += handled;
                if handled == 0 || left == 0 {
                    break;
                }
            }
        }
        self.count_admin(action, total);
        Ok(total)
    }

    /// `conveyor_dead_letters_admin_total{queue, action}`: dead letters retried or deleted.
    fn count_admin(&self, action: &str, n: u64) {
        let (queue, action) = (self.config().name.clone(), action.to_string());
        let counter = "conveyor_dead_letters_admin_total";
        metrics::counter!(counter, "queue" => queue, "action" => action).increment(n);
    }

    async fn invoke_dead(
        &self,
        action: &str,
        p: u16,
        entry_id: &str,
    ) -> Result<(u64, u64), QueueError> {
        let keys = self.keys();
        let mut conn = self.conn().await?;
        let mut inv = scripts::ADMIN_DEAD.prepare_invoke();
        inv.key(keys.stream(p))
            .key(keys.dead(p))
            .arg(action)
            .arg(entry_id)
            .arg(PAGE);
        Ok(inv.invoke_async(&mut conn).await?)
    }
}

/// Whether `id` looks like a stream entry id (`<ms>-<seq>`), so a typo is refused before Redis
/// answers it with an error.
fn is_entry_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let num =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    num(parts.next()) && num(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_ids_are_checked() {
        assert!(super::is_entry_id("1733212345678-0"));
        for bad in ["", "-", "12", "12-", "a-1", "1-2-3", "+", "(1-0"] {
            assert!(!super::is_entry_id(bad), "{bad}");
        }
    }
}
