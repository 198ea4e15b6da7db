//! The messages' layout: one index per UTC day of `sent_at`, `{alias}-YYYY.MM.DD`, all behind
//! the alias `{prefix}messages` that every reader uses (the consumer, the dashboard, the
//! notebook). An index template for `{alias}-*` carries the strict mapping and the alias, so
//! an index created by any path (ours, or Elasticsearch's auto-create) has both.
//!
//! Why `sent_at` and not the time of processing: a re-delivered job (worker crash, reclaim,
//! retry) has the same `sent_at`, so it targets the same index and its natural `_id` overwrites
//! the first copy instead of adding a second one in the next day's index.
//!
//! Writes name the concrete daily index; a day this process has not seen yet is created first
//! (explicitly, so writes work whatever `action.auto_create_index` says). Reads go through the
//! alias; a read by id cannot (Elasticsearch refuses a GET through an alias of several indices),
//! see `query.rs`. Nothing here deletes: the retention does ([`super::retention`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{error_type, messages_index_body, rejected, Store, StoreError};

/// How a day is written in a daily index's name: `2026.12.02`.
pub const DAY_FORMAT: &str = "%Y.%m.%d";

/// A process forgets the days it knows past this many (one per day: years of uptime).
const KNOWN_DAYS_CAP: usize = 1000;

/// The days whose index this process created or found existing; shared by clones of a store.
#[derive(Clone, Default)]
pub(super) struct KnownDays(Arc<Mutex<HashSet<NaiveDate>>>);

impl KnownDays {
    fn contains(&self, day: NaiveDate) -> bool {
        self.lock().contains(&day)
    }

    fn insert(&self, day: NaiveDate) {
        let mut days = self.lock();
        if days.len() >= KNOWN_DAYS_CAP {
            days.clear();
        }
        days.insert(day);
    }

    /// Forgets `day` (its index was deleted): the next write to it creates it again.
    pub(super) fn forget(&self, day: NaiveDate) {
        self.lock().remove(&day);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        // A panic while holding this lock cannot leave the set inconsistent: take it anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store {
    /// The daily index of `day`: `{prefix}messages-2026.12.02`.
    pub fn daily_index(&self, day: NaiveDate) -> String {
        format!("{}-{}", self.messages, day.format(DAY_FORMAT))
    }

    /// The day of a daily index of this store, or None for any other name (the legacy copy,
    /// another deployment's index, anything not exactly `{alias}-YYYY.MM.DD`).
    pub fn day_of_index(&self, name: &str) -> Option<NaiveDate> {
        let day = name.strip_prefix(&self.messages)?.strip_prefix('-')?;
        // Exactly ten characters: `parse_from_str` alone would take `2026.1.2` too.
        if day.len() != 10 {
            return None;
        }
        NaiveDate::parse_from_str(day, DAY_FORMAT).ok()
    }

    /// Name of the index template of the daily indices (the alias's name).
    pub fn messages_template(&self) -> &str {
        &self.messages
    }

    /// The index template: pattern `{alias}-*`, the settings, strict mapping and the alias.
    /// Its priority is the pattern's length: two deployments' patterns (`{p}messages-*`) of the
    /// same length never match the same name, and Elasticsearch refuses overlapping templates
    /// only at equal priority.
    pub fn messages_template_body(&self) -> Value {
        let mut template = messages_index_body(self.settings);
        template["aliases"] = json!({ self.messages.as_str(): {} });
        json!({
            "index_patterns": [format!("{}-*", self.messages)],
            "priority": self.messages.len() + 2,
            "template": template,
            "_meta": {"owner": "conveyor", "what": "daily indices of stored messages"}
        })
    }

    /// The whole start-up step: migrate a legacy `messages` index, put the template, create
    /// today's index (so the alias exists and readers find it before the first message).
    pub(super) async fn ensure_messages(&self) -> Result<(), StoreError> {
        self.migrate_legacy().await?;
        let template = format!("/_index_template/{}", self.messages_template());
        let (status, answer) = self
            .send(
                Method::Put,
                &template,
                None,
                Some(self.messages_template_body()),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(rejected(status, &answer));
        }
        self.ensure_days([Utc::now().date_naive()]).await?;
        tracing::info!(alias = %self.messages, "elasticsearch daily message indices ready");
        Ok(())
    }

    /// Creates the daily index of each of `days` this process does not know yet. The body
    /// repeats what the template holds, so the index is right even if the template was removed.
    pub(super) async fn ensure_days(
        &self,
        days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<(), StoreError> {
        for day in days {
            if self.days.contains(day) {
                continue;
            }
            let name = self.daily_index(day);
            let mut body = messages_index_body(self.settings);
            body["aliases"] = json!({ self.messages.as_str(): {} });
            let (status, answer) = self
                .send(Method::Put, &format!("/{name}"), None, Some(body))
                .await?;
            let exists = error_type(&answer) == Some("resource_already_exists_exception");
            if !(200..300).contains(&status) && !exists {
                return Err(rejected(status, &answer));
            }
            if !exists {
                tracing::info!(index = %name, "daily message index created");
            }
            self.days.insert(day);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::config::ElasticArgs;

    fn store(prefix: &str) -> Store {
        Store::new(&ElasticArgs::new("http://127.0.0.1:9", prefix)).unwrap()
    }

    #[test]
    fn daily_names_round_trip_and_nothing_else_parses() {
        let s = store("t1-");
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        assert_eq!(s.daily_index(day), "t1-messages-2026.12.02");
        assert_eq!(s.day_of_index("t1-messages-2026.12.02"), Some(day));
        for other in [
            "t1-messages",
            "t1-messages-legacy",
            "t1-messages-2026.1.2",
            "t1-messages-2026.12.02x",
            "t1-messages2026.12.02",
            "t2-messages-2026.12.02",
            "messages-2026.12.02",
            "t1-messages-2026.13.01",
        ] {
            assert_eq!(s.day_of_index(other), None, "{other}");
        }
        assert_eq!(
            store("").day_of_index("messages-2026.12.02"),
            Some(day),
            "no prefix"
        );
    }

    #[test]
    fn the_template_carries_pattern_alias_and_strict_mapping() {
        let body = store("p-").messages_template_body();
        assert_eq!(body["index_patterns"], json!(["p-messages-*"]));
        assert_eq!(body["template"]["aliases"], json!({"p-messages": {}}));
        assert_eq!(body["template"]["mappings"]["dynamic"], "strict");
        assert_eq!(body["priority"], "p-messages-*".len());
    }
}
