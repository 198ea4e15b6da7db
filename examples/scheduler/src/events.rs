//! The event log: one Redis stream, `<ns>:scheduler:events`, capped near 10,000 entries, where
//! every role appends what it did as one JSON field. It is the example's output (besides the
//! logs) and what its end-to-end test reads. Also the once-per-occurrence guard of decisions.

use queue::RedisPool as Pool;

use crate::model::Event;

/// Entries the event stream keeps (approximately).
const EVENTS_MAX: u64 = 10_000;

/// Writes and reads the event log.
#[derive(Clone)]
pub struct EventLog {
    pool: Pool,
    namespace: String,
}

impl EventLog {
    pub fn new(pool: Pool, namespace: &str) -> EventLog {
        EventLog {
            pool,
            namespace: namespace.to_string(),
        }
    }

    /// The stream's key.
    pub fn key(&self) -> String {
        format!("{}:scheduler:events", self.namespace)
    }

    /// Appends `event` (and logs it). A Redis error is logged, not returned: the log is a
    /// report, and a service must answer even when it cannot write it.
    pub async fn record(&self, event: &Event) {
        let json = serde_json::to_string(event).unwrap_or_default();
        tracing::info!(event = %json, "scheduler event");
        let written: anyhow::Result<()> = async {
            let mut conn = self.pool.get().await?;
            let _: String = redis::cmd("XADD")
                .arg(self.key())
                .arg("MAXLEN")
                .arg("~")
                .arg(EVENTS_MAX)
                .arg("*")
                .arg("event")
                .arg(&json)
                .query_async(&mut conn)
                .await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not append to the event log");
        }
    }

    /// Claims occurrence `n` for one decision: true for the first caller only (SET NX with a
    /// TTL), so a tick that runs twice (a scheduler killed mid-decision) decides once.
    pub async fn claim_decision(&self, n: u64, ttl_ms: u64) -> anyhow::Result<bool> {
        let mut conn = self.pool.get().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:scheduler:decided:{n}", self.namespace))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Every event in the log, oldest first.
    pub async fn read_all(&self) -> anyhow::Result<Vec<Event>> {
        let mut conn = self.pool.get().await?;
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.key())
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries {
            for (name, value) in fields {
                if name == "event" {
                    out.push(serde_json::from_str(&value)?);
                }
            }
        }
        Ok(out)
    }
}
