//! An order (as posted and as queued) with its rules, and what the executor answers for it.
//! Plain data, no I/O.

use serde::{Deserialize, Serialize};
use service_kit::problem::FieldError;

/// An order as `POST /orders` takes it; unknown fields are refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The client's id of the order, `[A-Za-z0-9_.:-]{1,64}`; echoed in the answer.
    pub order_id: String,
    /// What to order, 1..=64 characters. The item `fail` makes its whole batch fail (to show
    /// how a failed batch is answered).
    pub item: String,
    /// 1..=1000.
    pub quantity: u32,
}

/// The item that makes a batch fail.
pub const FAILING_ITEM: &str = "fail";

impl Order {
    /// Every rule the order breaks (empty when it is valid).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let id_ok = (1..=64).contains(&self.order_id.len())
            && self
                .order_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !id_ok {
            errors.push(FieldError::new(
                "order_id",
                "must match [A-Za-z0-9_.:-]{1,64}",
            ));
        }
        if !(1..=64).contains(&self.item.chars().count()) {
            errors.push(FieldError::new("item", "must be 1 to 64 characters"));
        }
        if !(1..=1000).contains(&self.quantity) {
            errors.push(FieldError::new("quantity", "must be 1 to 1000"));
        }
        errors
    }
}

/// What the executor answers for one order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Execution {
    /// The order ran in batch `batch_id` of `batch_size` orders.
    Executed {
        order_id: String,
        batch_id: String,
        batch_size: usize,
        executor: String,
        executed_at_ms: u64,
        /// How long the batch's oldest order had waited in the queue when the batch ran, in
        /// ms: a batch shorter than `--batch-size` waited at least the linger for more orders.
        batch_waited_ms: u64,
    },
    /// The order's batch failed; every order of the batch gets this.
    BatchFailed {
        order_id: String,
        batch_id: String,
        batch_size: usize,
        error: String,
    },
}

impl Execution {
    pub fn order_id(&self) -> &str {
        match self {
            Execution::Executed { order_id, .. } | Execution::BatchFailed { order_id, .. } => {
                order_id
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_each_bad_field() {
        let order = Order {
            order_id: "a b".into(),
            item: String::new(),
            quantity: 0,
        };
        let names: Vec<String> = order.check().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["order_id", "item", "quantity"]);
        let good = Order {
            order_id: "c1:42".into(),
            item: "widget".into(),
            quantity: 3,
        };
        assert!(good.check().is_empty());
    }
}
