//! Message retention without ILM (the distribution has no ILM module): whole daily indices are
//! deleted once every message they can hold is older than the retention. The index of day `D`
//! holds messages sent on `D` (UTC), so with a retention of `N` days it goes when `D < today − N`.
//! The legacy copy (see `legacy.rs`) goes when its newest `sent_at` is before that same day.
//!
//! Deletes name each index exactly (Elasticsearch 9 refuses wildcard deletes) and only names
//! this store recognises as its own; an index already deleted (another replica ran the same
//! sweep a moment earlier) is not an error. The schedule lives in the worker.

use chrono::{Days, NaiveDate, NaiveTime};
use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{rejected, Store, StoreError};

#[derive(Deserialize)]
struct Resolved {
    indices: Vec<ResolvedIndex>,
}

#[derive(Deserialize)]
struct ResolvedIndex {
    name: String,
}

impl Store {
    /// Every index named `{alias}-*` (open or closed), sorted: the daily indices, the legacy
    /// copy, and anything else that happens to match (callers filter by name).
    pub async fn message_indices(&self) -> Result<Vec<String>, StoreError> {
        let path = format!("/_resolve/index/{}-*", self.messages);
        let query = [("expand_wildcards", "all")];
        let (status, answer) = self.send(Method::Get, &path, Some(&query), None).await?;
        if status != 200 {
            return Err(rejected(status, &answer));
        }
        let resolved = Resolved::deserialize(&answer)
            .map_err(|e| StoreError::Decode(format!("_resolve/index answer: {e}")))?;
        let mut names: Vec<String> = resolved.indices.into_iter().map(|i| i.name).collect();
        names.sort();
        Ok(names)
    }

    /// The indices past a retention of `keep_days` on `today`: daily indices of a day before
    /// `today − keep_days`, and the legacy copy when its newest message is older than that day.
    pub async fn expired_indices(
        &self,
        keep_days: u32,
        today: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        let first_kept = today
            .checked_sub_days(Days::new(u64::from(keep_days)))
            .unwrap_or(NaiveDate::MIN);
        let mut expired = Vec::new();
        for name in self.message_indices().await? {
            if let Some(day) = self.day_of_index(&name) {
                if day < first_kept {
                    expired.push(name);
                }
            } else if name == self.legacy_index() && self.legacy_expired(first_kept).await? {
                expired.push(name);
            }
        }
        Ok(expired)
    }

    /// Whether every message of the legacy copy was sent before `first_kept` (an empty copy too).
    async fn legacy_expired(&self, first_kept: NaiveDate) -> Result<bool, StoreError> {
        let body = json!({"size": 0, "aggs": {"newest": {"max": {"field": "sent_at"}}}});
        let path = format!("/{}/_search", self.legacy_index());
        let (status, answer) = self.send(Method::Post, &path, None, Some(body)).await?;
        if status != 200 {
            return Err(rejected(status, &answer));
        }
        let cutoff = first_kept
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_millis() as f64;
        Ok(answer
            .pointer("/aggregations/newest/value")
            .and_then(Value::as_f64)
            .is_none_or(|newest| newest < cutoff))
    }

    /// Deletes one index of this store's messages by its exact name: true when this call deleted
    /// it, false when it was already gone. Refuses a name that is not a daily index or the legacy
    /// copy of this store.
    pub async fn delete_message_index(&self, name: &str) -> Result<bool, StoreError> {
        let day = self.day_of_index(name);
        if day.is_none() && name != self.legacy_index() {
            return Err(StoreError::Rejected {
                status: 400,
                reason: format!("{name} is not a message index of {}", self.messages),
            });
        }
        let (status, answer) = self
            .send(Method::Delete, &format!("/{name}"), None, None)
            .await?;
        if let Some(day) = day {
            self.days.forget(day);
        }
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(rejected(status, &answer)),
        }
    }

    /// One retention sweep: deletes every index [`Store::expired_indices`] names; returns those
    /// this call deleted (another process may have deleted some of them first).
    pub async fn delete_expired(
        &self,
        keep_days: u32,
        today: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        let mut deleted = Vec::new();
        for name in self.expired_indices(keep_days, today).await? {
            if self.delete_message_index(&name).await? {
                deleted.push(name);
            }
        }
        Ok(deleted)
    }
}
