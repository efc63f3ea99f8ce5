//! The answer of an evaluation and its JSON form: `{"value": 12.5}`, `{"values": [3, 2]}`
//! (the whole expression was a range; newest first), or `{"value": null, "reason": "…"}`.
//! A `Value` is always finite, so the JSON never holds a number JSON cannot write.

use serde::ser::{Serialize, SerializeMap, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Value(f64),
    /// The whole expression was a bare range: its values, newest first.
    Values(Vec<f64>),
    /// No value, and why (which part of the expression, and what was missing).
    Missing {
        reason: String,
    },
}

impl Outcome {
    /// The single value, if there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Outcome::Value(value) => Some(*value),
            _ => None,
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Outcome::Value(value) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("value", value)?;
                map.end()
            }
            Outcome::Values(values) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("values", values)?;
                map.end()
            }
            Outcome::Missing { reason } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("value", &None::<f64>)?;
                map.serialize_entry("reason", reason)?;
                map.end()
            }
        }
    }
}
