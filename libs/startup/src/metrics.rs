//! Metrics as CloudWatch Embedded Metric Format: a JSON log line that CloudWatch Logs turns into
//! metric data points, with no agent and no API call on the hot path
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! Lines go to stderr beside the logs (Lambda and the ECS awslogs driver ship both streams),
//! and only when logs are JSON: on a terminal they would be noise.
//!
//! What can be emitted is [`catalog`]: metrics and dimensions are enums, never names at a call
//! site. On Lambda, the metrics the catalog marks per-version carry a second dimension set with
//! the function version (`FunctionVersion`), which a deployment's canary alarms watch.
//!
//! The namespace is `yuba` unless `YUBA_METRICS_NAMESPACE` says otherwise: two deployments in
//! one account (a dev and a prod stage) must not count into each other's alarms.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{ConfigError, Env};
use serde_json::{Map, Value, json};

pub mod catalog;

pub use catalog::{Dimension, IngestRecord, Metric, Unit, VERSION_DIMENSION};

/// The CloudWatch namespace of yuba's metrics when none is configured.
pub const DEFAULT_NAMESPACE: &str = "yuba";

/// Where metrics go, and the Lambda version they carry: `Some` when they are emitted at all.
static SINK: OnceLock<Option<Sink>> = OnceLock::new();

#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) namespace: String,
    pub(crate) version: Option<String>,
}

pub(crate) fn enable(sink: Option<Sink>) {
    let _ = SINK.set(sink);
}

/// The Lambda function version this process runs as (`AWS_LAMBDA_FUNCTION_VERSION`, which the
/// Lambda runtime sets: `1`, `42`, or `$LATEST`); `None` off Lambda.
pub fn function_version_from_env(env: &Env) -> Option<String> {
    env.optional("AWS_LAMBDA_FUNCTION_VERSION")
        .filter(|version| !version.trim().is_empty())
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

/// One EMF document: `values` by `dimensions`. Each metric's [`Metric::dimension_sets`] must
/// hold the set `dimensions` makes (checked by [`emit`] in debug builds, so the tests of every
/// program catch a call that strays from the catalog). With `version` (on Lambda), the metrics
/// that are [`Metric::per_version`] go in a second directive whose dimension sets are the usual
/// one, the usual one plus [`VERSION_DIMENSION`], and the version alone: all three series from
/// one line. The last is the version's total, whatever its other dimensions: the denominator of
/// a canary's failure ratio, in one metric (an alarm may read at most 10).
pub fn emf_line(
    namespace: &str,
    timestamp_ms: u128,
    version: Option<&str>,
    dimensions: &[(Dimension, &str)],
    values: &[(Metric, f64)],
) -> String {
    let usual: Vec<&str> = dimensions.iter().map(|(name, _)| name.name()).collect();
    let definitions = |metrics: &[&(Metric, f64)]| {
        metrics
            .iter()
            .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit().as_str()}))
            .collect::<Vec<_>>()
    };
    type Points<'a> = Vec<&'a (Metric, f64)>;
    let (versioned, plain): (Points, Points) = values
        .iter()
        .partition(|(metric, _)| version.is_some() && metric.per_version());
    let mut directives = Vec::new();
    if !plain.is_empty() {
        directives.push(json!({
            "Namespace": namespace,
            "Dimensions": [usual],
            "Metrics": definitions(&plain),
        }));
    }
    if !versioned.is_empty() {
        let mut with_version = usual.clone();
        with_version.push(VERSION_DIMENSION.name());
        directives.push(json!({
            "Namespace": namespace,
            "Dimensions": [usual, with_version, [VERSION_DIMENSION.name()]],
            "Metrics": definitions(&versioned),
        }));
    }
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": u64::try_from(timestamp_ms).unwrap_or(u64::MAX),
            "CloudWatchMetrics": directives,
        }),
    );
    for (name, value) in dimensions {
        document.insert(name.name().into(), Value::from(*value));
    }
    if let (Some(version), false) = (version, versioned.is_empty()) {
        document.insert(VERSION_DIMENSION.name().into(), Value::from(version));
    }
    for (metric, value) in values {
        document.insert(metric.name().into(), Value::from(*value));
    }
    Value::Object(document).to_string()
}

/// Emits one data point per value, if metrics are enabled.
pub fn emit(dimensions: &[(Dimension, &str)], values: &[(Metric, f64)]) {
    let names: Vec<Dimension> = dimensions.iter().map(|(name, _)| *name).collect();
    for (metric, _) in values {
        debug_assert!(
            metric.accepts(&names),
            "{metric:?} is not emitted by {names:?} in the metric catalog"
        );
    }
    let Some(Some(sink)) = SINK.get() else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut line = emf_line(
        &sink.namespace,
        now,
        sink.version.as_deref(),
        dimensions,
        values,
    );
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
            None,
            &[(Dimension::Outcome, "replicated")],
            &[(Metric::Jobs, 1.0), (Metric::BytesReplicated, 11.0)],
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
                        "Metrics": [
                            {"Name": "Jobs", "Unit": "Count"},
                            {"Name": "BytesReplicated", "Unit": "Bytes"}
                        ]
                    }]
                },
                "Outcome": "replicated",
                "Jobs": 1.0,
                "BytesReplicated": 11.0
            })
        );
    }

    /// On Lambda a per-version metric gets both series from one line; the others in the same
    /// document keep their usual set only.
    #[test]
    fn per_version_metrics_get_a_second_dimension_set_with_the_version() {
        let line = emf_line(
            "yuba/prod",
            1_795_300_000_000,
            Some("42"),
            &[
                (Dimension::Outcome, "failed"),
                (Dimension::Failure, "permanent"),
            ],
            &[(Metric::Jobs, 1.0)],
        );
        let document: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            document,
            json!({
                "_aws": {
                    "Timestamp": 1_795_300_000_000_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "yuba/prod",
                        "Dimensions": [
                            ["Outcome", "Failure"],
                            ["Outcome", "Failure", "FunctionVersion"],
                            ["FunctionVersion"]
                        ],
                        "Metrics": [{"Name": "Jobs", "Unit": "Count"}]
                    }]
                },
                "Outcome": "failed",
                "Failure": "permanent",
                "FunctionVersion": "42",
                "Jobs": 1.0
            })
        );

        let line = emf_line(
            "yuba",
            1,
            Some("$LATEST"),
            &[(Dimension::Outcome, "replicated")],
            &[(Metric::Jobs, 1.0), (Metric::JobDuration, 5.0)],
        );
        let document: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"],
            json!([
                {
                    "Namespace": "yuba",
                    "Dimensions": [["Outcome"]],
                    "Metrics": [{"Name": "JobDuration", "Unit": "Milliseconds"}]
                },
                {
                    "Namespace": "yuba",
                    "Dimensions": [["Outcome"], ["Outcome", "FunctionVersion"], ["FunctionVersion"]],
                    "Metrics": [{"Name": "Jobs", "Unit": "Count"}]
                }
            ])
        );
        assert_eq!(document["FunctionVersion"], "$LATEST");
    }

    #[test]
    fn without_a_version_or_a_per_version_metric_there_is_no_version_member() {
        for (version, metric) in [(None, Metric::Jobs), (Some("3"), Metric::JobDuration)] {
            let line = emf_line(
                "yuba",
                1,
                version,
                &[(Dimension::Outcome, "replicated")],
                &[(metric, 1.0)],
            );
            let document: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(document.get("FunctionVersion"), None, "{line}");
            assert_eq!(
                document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["Outcome"]])
            );
        }
    }

    #[test]
    fn the_version_comes_from_the_lambda_runtime_environment() {
        let version = |pairs: &[(&str, &str)]| {
            function_version_from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(version(&[]), None);
        assert_eq!(version(&[("AWS_LAMBDA_FUNCTION_VERSION", "")]), None);
        assert_eq!(
            version(&[("AWS_LAMBDA_FUNCTION_VERSION", "7")]).as_deref(),
            Some("7")
        );
    }

    /// The catalog check of [`emit`]: a debug build (every test run of the programs) stops on
    /// a metric emitted by dimensions the catalog does not give it.
    #[test]
    #[should_panic(expected = "not emitted by")]
    fn emitting_outside_the_catalog_is_caught_in_debug_builds() {
        emit(&[(Dimension::Command, "diff")], &[(Metric::Jobs, 1.0)]);
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
