//! The output schema of `perfpipe parse` (READING.md, "Output schema"), as `serde` impls.
//!
//! Field order and names are the schema's: a metric is `label, value, uom, warn, crit, min, max,
//! warn_range, crit_range`; a range is `{inside, start, start_infinity, end, end_infinity}` with
//! `null` for an infinite bound, or `{"invalid": true}`; an error is `{offset, message}`.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::{Metric, ParseError, Perfdata, Range, Threshold};

impl Serialize for Perfdata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Perfdata", 2)?;
        out.serialize_field("metrics", &self.metrics)?;
        out.serialize_field("errors", &self.errors)?;
        out.end()
    }
}

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Metric", 9)?;
        out.serialize_field("label", &self.label)?;
        out.serialize_field("value", &self.value)?;
        out.serialize_field("uom", self.uom)?;
        out.serialize_field("warn", &self.warn.map(|t| t.raw))?;
        out.serialize_field("crit", &self.crit.map(|t| t.raw))?;
        out.serialize_field("min", &self.min)?;
        out.serialize_field("max", &self.max)?;
        out.serialize_field("warn_range", &self.warn.map(RangeField::from))?;
        out.serialize_field("crit_range", &self.crit.map(RangeField::from))?;
        out.end()
    }
}

/// A threshold's range as the schema prints it.
struct RangeField(Option<Range>);

impl From<Threshold<'_>> for RangeField {
    fn from(threshold: Threshold<'_>) -> Self {
        RangeField(threshold.range)
    }
}

impl Serialize for RangeField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let finite = |bound: f64| bound.is_finite().then_some(bound);
        match self.0 {
            None => {
                let mut out = serializer.serialize_map(Some(1))?;
                out.serialize_entry("invalid", &true)?;
                out.end()
            }
            Some(range) => {
                let mut out = serializer.serialize_struct("Range", 5)?;
                out.serialize_field("inside", &range.inside)?;
                out.serialize_field("start", &finite(range.start))?;
                out.serialize_field("start_infinity", &range.start.is_infinite())?;
                out.serialize_field("end", &finite(range.end))?;
                out.serialize_field("end_infinity", &range.end.is_infinite())?;
                out.end()
            }
        }
    }
}

impl Serialize for ParseError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("ParseError", 2)?;
        out.serialize_field("offset", &self.offset)?;
        out.serialize_field("message", &self.kind.to_string())?;
        out.end()
    }
}
