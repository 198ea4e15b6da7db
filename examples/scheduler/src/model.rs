//! What travels on the three queues and what the event log records. Plain data, no I/O.

use serde::{Deserialize, Serialize};

/// One occurrence of the recurring schedule: `occurrence = due_ms / period_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tick {
    pub occurrence: u64,
    pub due_ms: u64,
}

/// A question to the data service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRequest {
    pub occurrence: u64,
    /// Unix ms after which nobody waits for the answer (the service drops it).
    pub deadline_ms: u64,
}

/// The data service's answer: the latest values of the series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataAnswer {
    pub latest: f64,
    pub received_at_ms: u64,
}

/// A job for the API service: a question, or the follow-up with a decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiRequest {
    Parameters { occurrence: u64, deadline_ms: u64 },
    FollowUp { decision: Decision },
}

/// The API service's answer: the current parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiAnswer {
    pub margin: f64,
    pub received_at_ms: u64,
}

/// What one occurrence decided.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub occurrence: u64,
    pub due_ms: u64,
    pub decided_at_ms: u64,
    /// `buy_at` with a price, or `hold` when the data did not arrive.
    pub action: String,
    pub price: Option<f64>,
    /// Services that did not answer within the answer timeout (`data-service`, `api-service`).
    pub missing: Vec<String>,
    /// When the follow-up is due (unix ms).
    pub follow_up_at_ms: u64,
    /// Consumer name of the scheduler replica that decided.
    pub decided_by: String,
}

/// Margin used when the API service did not answer.
pub const DEFAULT_MARGIN: f64 = 0.05;

impl Decision {
    /// Combines what arrived into a decision (the timeout policy, see the crate docs).
    pub fn combine(
        tick: &Tick,
        data: Option<&DataAnswer>,
        api: Option<&ApiAnswer>,
        decided_at_ms: u64,
        follow_up_ms: u64,
        decided_by: String,
    ) -> Decision {
        let mut missing = Vec::new();
        if data.is_none() {
            missing.push("data-service".to_string());
        }
        if api.is_none() {
            missing.push("api-service".to_string());
        }
        let margin = api.map_or(DEFAULT_MARGIN, |a| a.margin);
        let price = data.map(|d| ((d.latest * (1.0 + margin)) * 100.0).round() / 100.0);
        Decision {
            occurrence: tick.occurrence,
            due_ms: tick.due_ms,
            decided_at_ms,
            action: if price.is_some() { "buy_at" } else { "hold" }.to_string(),
            price,
            missing,
            follow_up_at_ms: decided_at_ms + follow_up_ms,
            decided_by,
        }
    }
}

/// One line of the event log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A service received a question of occurrence `occurrence`.
    Request {
        service: String,
        occurrence: u64,
        received_at_ms: u64,
    },
    /// A scheduler decided.
    Decision(Decision),
    /// The API service received the follow-up of a decision.
    FollowUp {
        occurrence: u64,
        received_at_ms: u64,
        decided_at_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_answer_is_named_and_the_decision_uses_what_arrived() {
        let tick = Tick {
            occurrence: 7,
            due_ms: 14_000,
        };
        let data = DataAnswer {
            latest: 100.0,
            received_at_ms: 1,
        };
        let api = ApiAnswer {
            margin: 0.1,
            received_at_ms: 1,
        };
        let full = Decision::combine(&tick, Some(&data), Some(&api), 14_100, 3_000, "a".into());
        assert_eq!(full.price, Some(110.0));
        assert!(full.missing.is_empty());
        assert_eq!(full.follow_up_at_ms, 17_100);
        let no_data = Decision::combine(&tick, None, Some(&api), 14_100, 3_000, "a".into());
        assert_eq!((no_data.action.as_str(), no_data.price), ("hold", None));
        assert_eq!(no_data.missing, ["data-service"]);
        let no_api = Decision::combine(&tick, Some(&data), None, 14_100, 3_000, "a".into());
        assert_eq!(no_api.price, Some(105.0));
        assert_eq!(no_api.missing, ["api-service"]);
    }
}
