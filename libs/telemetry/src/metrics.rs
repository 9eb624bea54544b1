//! Metrics as CloudWatch Embedded Metric Format: a JSON log line that CloudWatch Logs turns into
//! metric data points, with no agent and no API call on the hot path
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! Lines go to stderr beside the logs (Lambda and the ECS awslogs driver ship both streams),
//! and only when logs are JSON: on a terminal they would be noise.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every yuba metric.
pub const NAMESPACE: &str = "yuba";

static ENABLED: OnceLock<bool> = OnceLock::new();

pub(crate) fn enable(enabled: bool) {
    let _ = ENABLED.set(enabled);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: `values` under the single dimension set made of `dimensions`.
pub fn emf_line(
    timestamp_ms: u128,
    dimensions: &[(&str, &str)],
    values: &[(&str, Unit, f64)],
) -> String {
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": u64::try_from(timestamp_ms).unwrap_or(u64::MAX),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": values
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        document.insert((*name).into(), Value::from(*value));
    }
    for (name, _, value) in values {
        document.insert((*name).into(), Value::from(*value));
    }
    Value::Object(document).to_string()
}

/// Emits one data point per value, if metrics are enabled.
pub fn emit(dimensions: &[(&str, &str)], values: &[(&str, Unit, f64)]) {
    if !ENABLED.get().copied().unwrap_or(false) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut line = emf_line(now, dimensions, values);
    line.push('\n');
    // One write of the whole line, so that it never interleaves with a log line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let line = emf_line(
            1_795_300_000_000,
            &[("Outcome", "replicated")],
            &[("Jobs", Unit::Count, 1.0), ("Bytes", Unit::Bytes, 11.0)],
        );
        let document: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            document,
            json!({
                "_aws": {
                    "Timestamp": 1_795_300_000_000_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "yuba",
                        "Dimensions": [["Outcome"]],
                        "Metrics": [{"Name": "Jobs", "Unit": "Count"}, {"Name": "Bytes", "Unit": "Bytes"}]
                    }]
                },
                "Outcome": "replicated",
                "Jobs": 1.0,
                "Bytes": 11.0
            })
        );
    }
}
