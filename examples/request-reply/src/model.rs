//! The request, the reply and the typed error a server sends back. Plain data: the arithmetic
//! is here too, so the client's tests can check every reply against it.

use serde::{Deserialize, Serialize};

/// Divide `a` by `b`; `id` is the caller's, echoed in the reply.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub a: i64,
    pub b: i64,
}

/// The answer of a division.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quotient {
    pub quotient: i64,
    pub remainder: i64,
}

/// What a server refuses, sent back inside the reply (never a timeout).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CalcError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("{a} / {b} overflows")]
    Overflow { a: i64, b: i64 },
}

/// A server's reply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// The replica that answered.
    pub served_by: String,
    pub result: Result<Quotient, CalcError>,
}

impl Request {
    /// The one right answer to this request.
    pub fn evaluate(&self) -> Result<Quotient, CalcError> {
        if self.b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        match (self.a.checked_div(self.b), self.a.checked_rem(self.b)) {
            (Some(quotient), Some(remainder)) => Ok(Quotient {
                quotient,
                remainder,
            }),
            _ => Err(CalcError::Overflow {
                a: self.a,
                b: self.b,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed_values() {
        let r = |a, b| Request { id: 1, a, b }.evaluate();
        assert_eq!(
            r(7, 2),
            Ok(Quotient {
                quotient: 3,
                remainder: 1
            })
        );
        assert_eq!(r(7, 0), Err(CalcError::DivisionByZero));
        assert_eq!(
            r(i64::MIN, -1),
            Err(CalcError::Overflow { a: i64::MIN, b: -1 })
        );
        let json = serde_json::to_value(r(1, 0)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Err": {"error": "division_by_zero"}})
        );
    }
}
