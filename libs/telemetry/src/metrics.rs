//! Metrics as CloudWatch Embedded Metric Format: a JSON log line that CloudWatch Logs turns into
//! metric data points, with no agent and no API call on the hot path
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! Lines go to stderr beside the logs (Lambda and the ECS awslogs driver ship both streams),
//! and only when logs are JSON: on a terminal they would be noise.
//!
//! The namespace is `yuba` unless `YUBA_METRICS_NAMESPACE` says otherwise: two deployments in
//! one account (a dev and a prod stage) must not count into each other's alarms.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use yuba_config::{ConfigError, Env};

/// The CloudWatch namespace of yuba's metrics when none is configured.
pub const DEFAULT_NAMESPACE: &str = "yuba";

/// Where metrics go: `Some(namespace)` when they are emitted at all.
static NAMESPACE: OnceLock<Option<String>> = OnceLock::new();

pub(crate) fn enable(namespace: Option<String>) {
    let _ = NAMESPACE.set(namespace);
}

/// The namespace `YUBA_METRICS_NAMESPACE` names, checked against CloudWatch's rules so that a bad
/// one fails at start-up rather than as metrics that silently never appear.
pub fn namespace_from_env(env: &Env) -> Result<String, ConfigError> {
    const VAR: &str = "YUBA_METRICS_NAMESPACE";
    let Some(namespace) = env.optional(VAR) else {
        return Ok(DEFAULT_NAMESPACE.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if namespace.len() > 255 {
        Err(env.invalid(VAR, "a CloudWatch namespace has at most 255 characters"))
    } else if let Some(bad) = namespace.chars().find(|c| !allowed(*c)) {
        Err(env.invalid(
            VAR,
            format!(
                "{bad:?} cannot be in a CloudWatch namespace: use letters, digits and . - _ / # : or space"
            ),
        ))
    } else if namespace.starts_with("AWS/") {
        Err(env.invalid(VAR, "namespaces starting with AWS/ are AWS's own"))
    } else {
        Ok(namespace)
    }
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
    namespace: &str,
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
                "Namespace": namespace,
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
    let Some(Some(namespace)) = NAMESPACE.get() else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut line = emf_line(namespace, now, dimensions, values);
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
            "yuba",
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

    #[test]
    fn the_namespace_is_checked_against_cloudwatchs_rules() {
        let namespace =
            |value: &str| namespace_from_env(&Env::from_pairs([("YUBA_METRICS_NAMESPACE", value)]));
        assert_eq!(namespace_from_env(&Env::from_pairs([])).unwrap(), "yuba");
        assert_eq!(namespace("yuba/prod").unwrap(), "yuba/prod");
        for (bad, why) in [
            ("n".repeat(256).as_str(), "at most 255"),
            ("yuba*prod", "'*' cannot be"),
            ("AWS/S3", "AWS's own"),
        ] {
            let error = namespace(bad).unwrap_err().to_string();
            assert!(
                error.contains("YUBA_METRICS_NAMESPACE") && error.contains(why),
                "{error}"
            );
        }
    }
}
