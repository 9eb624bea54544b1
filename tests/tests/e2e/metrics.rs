//! The metrics contract, the canary's job, and the checks that keep them true.
//!
//! The CDK app's alarms, dashboard and deployment canary read metrics by name and dimension;
//! nothing at synth time would tell them that a program emits other names, or other values.
//! So the one list is `yuba_startup::metrics::catalog` (every emit call goes through its
//! enums), with the closed value sets of its dimensions taken here from the enums that make
//! them (each in the crate that owns the concept, which this crate, depending on all of them,
//! can join), and
//!
//! - `the_contract_file_is_up_to_date` renders `cdk/lib/generated/metrics.json` from it
//!   (the CDK reads it and its tests hold every alarm to it), rewriting a stale file and
//!   failing;
//! - `the_canary_job_file_is_up_to_date` renders `cdk/lib/generated/canary-job.json`, the job
//!   message the pre-traffic hook sends through a new worker version, with `Job::to_message`,
//!   and `the_canary_template_decodes_once_filled_in` proves the hook's substitution yields a
//!   job the worker accepts;
//! - `no_metric_bypasses_the_catalog` scans the sources of `bins/` and `libs/` for metric or
//!   dimension names spelled as strings, EMF written by hand, and metrics emitted by a program
//!   the catalog does not name (or named but never emitted), and fails naming file and line;
//! - `ingest_emits_what_became_of_each_record` runs ingest on its Lambda home (the loopback
//!   Runtime API) with a function version and reads its EMF lines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};
use yuba_e2e::{
    Process, Stack, check_generated, dump_logs, eventually, program_sources, replicate,
};
use yuba_model::{CANARY_PREFIX, FailureKind, Job, ReplicateJob};
use yuba_reconcile::Command;
use yuba_replicate::{Outcome, variants_error_kinds};
use yuba_startup::metrics::catalog::{
    Dimension, Domain, IngestRecord, Metric, OUTCOME_FAILED, OUTCOME_FOREIGN_BUCKET,
    OUTCOME_REJECTED, Program, VARIANT_ERROR_UNKNOWN, VERSION_DIMENSION,
};

/// Where the contracts are written, from the repository's root.
const METRICS_CONTRACT: &str = "cdk/lib/generated/metrics.json";
const CANARY_CONTRACT: &str = "cdk/lib/generated/canary-job.json";

/// The values of a closed dimension, from the enums that produce them; `None` for a free-form
/// one. The match is exhaustive: a new dimension does not compile until it says where its
/// values come from.
fn values_of(dimension: Dimension) -> Option<Vec<&'static str>> {
    match dimension {
        // What a job that ran became (the replicator's outcomes), then what the worker says
        // itself of a job that failed and of a message that is no job.
        Dimension::Outcome => Some(
            Outcome::NAMES
                .into_iter()
                .chain([OUTCOME_FAILED, OUTCOME_REJECTED, OUTCOME_FOREIGN_BUCKET])
                .collect(),
        ),
        Dimension::Failure => Some(FailureKind::ALL.map(FailureKind::as_str).to_vec()),
        Dimension::VariantError => Some(
            variants_error_kinds()
                .chain([VARIANT_ERROR_UNKNOWN])
                .collect(),
        ),
        Dimension::Command => Some(Command::ALL.map(Command::as_str).to_vec()),
        Dimension::Record => Some(IngestRecord::ALL.map(IngestRecord::as_str).to_vec()),
        Dimension::Served => Some(yuba_origin::Served::NAMES.to_vec()),
        Dimension::FunctionVersion => None,
    }
}

/// A JSON object whose members keep the order given (serde_json's own map sorts them), so
/// that the file reads in the catalog's order.
struct Ordered<V>(Vec<(&'static str, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricEntry {
    unit: &'static str,
    emitted_by: Vec<&'static str>,
    dimension_sets: Vec<Vec<&'static str>>,
    per_version: bool,
}

#[derive(Serialize)]
struct DimensionEntry {
    values: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsContract {
    metrics: Ordered<MetricEntry>,
    dimensions: Ordered<DimensionEntry>,
    version_dimension: &'static str,
}

fn render_metrics() -> String {
    let metrics = Metric::ALL
        .iter()
        .map(|metric| {
            let entry = MetricEntry {
                unit: metric.unit().as_str(),
                emitted_by: metric.emitted_by().iter().map(|p| p.binary()).collect(),
                dimension_sets: metric
                    .dimension_sets()
                    .iter()
                    .map(|set| set.iter().map(|d| d.name()).collect())
                    .collect(),
                per_version: metric.per_version(),
            };
            (metric.name(), entry)
        })
        .collect();
    let dimensions = Dimension::ALL
        .iter()
        .map(|dimension| {
            let description = match dimension.domain() {
                Domain::Closed { .. } => None,
                Domain::FreeForm { description } => Some(description),
            };
            let entry = DimensionEntry {
                values: values_of(*dimension),
                description,
            };
            (dimension.name(), entry)
        })
        .collect();
    let contract = MetricsContract {
        metrics: Ordered(metrics),
        dimensions: Ordered(dimensions),
        version_dimension: VERSION_DIMENSION.name(),
    };
    let mut text = serde_json::to_string_pretty(&contract).expect("the contract serialises");
    text.push('\n');
    text
}

/// The placeholders the canary's job carries where the pre-traffic hook puts the real bucket
/// and key; they are also the names of the JSON fields they sit in.
const BUCKET_FIELD: &str = "bucket";
const KEY_FIELD: &str = "key";

fn canary_job(bucket: &str, key: &str) -> Job {
    let Job::Replicate(mut job) = replicate(bucket, key) else {
        unreachable!("replicate makes a replicate job")
    };
    // The hook reuses one object for every deployment: without force, a worker would find its
    // replica up to date and skip it, proving nothing about the new version's copy.
    job.force = true;
    Job::Replicate(job)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanaryContract {
    /// The job message, with the placeholders in `fields`.
    message: Value,
    /// Which member of `message` the hook sets to the canary's bucket, and which to its key.
    fields: Ordered<&'static str>,
    /// The prefix every canary key is under (`yuba_model::CANARY_PREFIX`).
    key_prefix: &'static str,
}

fn render_canary() -> String {
    let message: Value = serde_json::from_str(&canary_job(BUCKET_FIELD, KEY_FIELD).to_message())
        .expect("a job message is JSON");
    let contract = CanaryContract {
        message,
        fields: Ordered(vec![("bucket", BUCKET_FIELD), ("key", KEY_FIELD)]),
        key_prefix: CANARY_PREFIX,
    };
    let mut text = serde_json::to_string_pretty(&contract).expect("the contract serialises");
    text.push('\n');
    text
}

#[test]
fn the_contract_file_is_up_to_date() {
    check_generated(METRICS_CONTRACT, &render_metrics());
}

#[test]
fn the_canary_job_file_is_up_to_date() {
    check_generated(CANARY_CONTRACT, &render_canary());
}

/// What the pre-traffic hook does with the file: set the named fields of the message to a real
/// bucket and a key under the prefix, then send it. The worker must read that as the forced
/// replicate job of that object.
#[test]
fn the_canary_template_decodes_once_filled_in() {
    let contract: Value = serde_json::from_str(&render_canary()).unwrap();
    let mut message = contract["message"].clone();
    let bucket = "yuba-prod-canary-1a2b3c";
    let key = format!("{}canary.jpg", contract["keyPrefix"].as_str().unwrap());
    message[contract["fields"]["bucket"].as_str().unwrap()] = json!(bucket);
    message[contract["fields"]["key"].as_str().unwrap()] = json!(key);
    let job = Job::from_message(&message.to_string()).expect("the filled-in template decodes");
    assert_eq!(job, canary_job(bucket, &key));
    assert!(matches!(
        job,
        Job::Replicate(ReplicateJob { force: true, .. })
    ));
    assert!(key.starts_with(CANARY_PREFIX));
}

#[test]
fn the_contract_says_what_the_canary_alarms_read() {
    let contract: Value = serde_json::from_str(&render_metrics()).unwrap();
    assert_eq!(contract["versionDimension"], "FunctionVersion");
    assert_eq!(
        contract["metrics"]["Jobs"],
        json!({
            "unit": "Count",
            "emittedBy": ["yuba-worker"],
            "dimensionSets": [["Outcome"], ["Outcome", "Failure"]],
            "perVersion": true
        })
    );
    assert_eq!(contract["metrics"]["IngestRecords"]["perVersion"], true);
    assert_eq!(
        contract["metrics"]["IngestRecords"]["dimensionSets"],
        json!([["Record"]])
    );
    let values = |dimension: &str| contract["dimensions"][dimension]["values"].clone();
    for (dimension, value) in [
        ("Outcome", "replicated"),
        ("Outcome", "failed"),
        ("Outcome", "rejected"),
        ("Failure", "permanent"),
        ("Record", "not_enqueued"),
        ("Command", "backfill"),
        ("VariantError", "corrupt"),
    ] {
        assert!(
            values(dimension)
                .as_array()
                .unwrap()
                .contains(&json!(value)),
            "{dimension}={value}"
        );
    }
    assert_eq!(values("FunctionVersion"), Value::Null);
}

/// Closed dimensions have values, free-form ones none, and no value twice (a repeat would be
/// two enum variants CloudWatch cannot tell apart).
#[test]
fn closed_dimensions_have_distinct_values() {
    for dimension in Dimension::ALL {
        let values = values_of(dimension);
        match dimension.domain() {
            Domain::Closed { .. } => {
                let values = values.unwrap_or_default();
                assert!(!values.is_empty(), "{dimension:?}");
                let distinct: BTreeSet<_> = values.iter().collect();
                assert_eq!(distinct.len(), values.len(), "{dimension:?}: {values:?}");
            }
            Domain::FreeForm { .. } => assert_eq!(values, None, "{dimension:?}"),
        }
    }
}

/// Every program source (`bins/*/src`, `libs/*/src`) except the metrics module's: the catalog
/// itself and the one writer of EMF.
fn sources() -> Vec<(String, String)> {
    program_sources()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("libs/startup/src/metrics"))
        .collect()
}

/// The program a source file is part of: `bins/worker/src/...` is `yuba-worker`.
fn program_of(path: &str) -> Option<Program> {
    let bin = path.strip_prefix("bins/")?.split('/').next()?;
    Program::ALL
        .into_iter()
        .find(|program| program.as_str() == bin)
}

/// What the scan finds in one file's sources (comments removed): `violations` as `line: why`,
/// and the metrics it names as `Metric::X`.
fn scan(path: &str, source: &str) -> (Vec<String>, BTreeSet<Metric>) {
    let names: BTreeMap<&str, &str> = Metric::ALL
        .iter()
        .map(|m| (m.name(), "metric"))
        .chain(Dimension::ALL.iter().map(|d| (d.name(), "dimension")))
        .collect();
    let program = program_of(path);
    let mut violations = Vec::new();
    let mut named = BTreeSet::new();
    for (number, line) in source.lines().enumerate() {
        let at = |why: String| format!("{path}:{}: {why}", number + 1);
        let code = line.split("//").next().unwrap_or_default();
        for literal in code.split('"').skip(1).step_by(2) {
            if let Some(kind) = names.get(literal) {
                violations.push(at(format!(
                    "the {kind} name \"{literal}\" spelled as a string: emit through \
                     yuba_startup::metrics::{{Metric, Dimension}}"
                )));
            }
        }
        for marker in ["CloudWatchMetrics", "\"_aws\"", "emf_line"] {
            if code.contains(marker) {
                violations.push(at(format!(
                    "{marker}: EMF written outside yuba_startup::metrics, around the catalog"
                )));
            }
        }
        for metric in Metric::ALL {
            let token = format!("Metric::{:?}", metric);
            let found = code.match_indices(&token).any(|(start, _)| {
                !code[start + token.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if !found {
                continue;
            }
            named.insert(metric);
            match program {
                None => violations.push(at(format!(
                    "{token} in a library: metrics are emitted by the programs, which the \
                     catalog's emitted_by names"
                ))),
                Some(program) if !metric.emitted_by().contains(&program) => {
                    violations.push(at(format!(
                        "{token} emitted by {}, which the catalog does not list among its \
                         emitters",
                        program.binary()
                    )));
                }
                Some(_) => {}
            }
        }
    }
    (violations, named)
}

#[test]
fn no_metric_bypasses_the_catalog() {
    let mut violations = Vec::new();
    let mut emitted: BTreeMap<Program, BTreeSet<Metric>> = BTreeMap::new();
    for (path, source) in sources() {
        let (found, named) = scan(&path, &source);
        violations.extend(found);
        if let Some(program) = program_of(&path) {
            emitted.entry(program).or_default().extend(named);
        }
    }
    // The other way: a metric the catalog (so the CDK's alarms) expects from a program that
    // never emits it would be an alarm on a metric that never has data.
    for metric in Metric::ALL {
        for program in metric.emitted_by() {
            if !emitted.get(program).is_some_and(|m| m.contains(&metric)) {
                violations.push(format!(
                    "the catalog says {} emits {} (Metric::{metric:?}), but no source under \
                     bins/ names it",
                    program.binary(),
                    metric.name()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "metrics around the catalog:\n{}",
        violations.join("\n")
    );
}

/// The scan itself, on sources that break each rule: a check that cannot fail proves nothing.
#[test]
fn the_scan_finds_what_it_looks_for() {
    let (violations, _) = scan(
        "bins/worker/src/handler.rs",
        "metrics::emit(&[(\"Outcome\", \"x\")], &[(Metric::Jobs, 1.0)]);\n\
         let v = json!({\"_aws\": {\"CloudWatchMetrics\": []}});\n\
         metrics::emit(&[(Dimension::Command, \"diff\")], &[(Metric::ReconcileDrift, 1.0)]);\n\
         // \"Jobs\" in a comment is fine\n",
    );
    let joined = violations.join("\n");
    assert!(
        joined.contains("handler.rs:1: the dimension name \"Outcome\""),
        "{joined}"
    );
    assert!(
        joined.contains("handler.rs:2: CloudWatchMetrics"),
        "{joined}"
    );
    assert!(joined.contains("handler.rs:2: \"_aws\""), "{joined}");
    assert!(
        joined.contains("handler.rs:3: Metric::ReconcileDrift emitted by yuba-worker"),
        "{joined}"
    );
    assert!(!joined.contains(":4:"), "{joined}");
    let (violations, named) = scan(
        "libs/replicate/src/x.rs",
        "emit(&[], &[(Metric::Jobs, 1.0)])",
    );
    assert!(violations[0].contains("in a library"), "{violations:?}");
    assert!(named.contains(&Metric::Jobs));
    // `Metric::Jobs` is not `Metric::JobsX`.
    let (_, named) = scan("bins/worker/src/x.rs", "Metric::JobsX");
    assert!(named.is_empty());
}

const INGEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One S3 notification record, as S3 writes it.
fn record(event: &str, bucket: &str, key: &str, size: u64) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z", "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": key, "size": size, "eTag": "d41d8cd98f00b204e9800998ecf8427e"}}
    })
}

/// The `IngestRecords` EMF documents among a process's log lines, by their `Record` value.
fn ingest_documents(process: &Process) -> BTreeMap<String, Vec<Value>> {
    let mut documents: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in process.log_lines() {
        if line.get("_aws").is_some() && line.get("IngestRecords").is_some() {
            let record = line["Record"].as_str().unwrap_or_default().to_owned();
            documents.entry(record).or_default().push(line);
        }
    }
    documents
}

/// Ingest, running as version 7 of a Lambda function would (the version from
/// `AWS_LAMBDA_FUNCTION_VERSION`, read at start-up), handles one notification with a record of
/// every fate: enqueued, duplicate, filtered, ignored, and one routed to a work queue that does
/// not exist (not enqueued, after the sender's retries). It emits one `IngestRecords` document
/// per fate, each with the usual dimension set and the one with `FunctionVersion`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_emits_what_became_of_each_record() -> anyhow::Result<()> {
    let stack = Stack::start("metrics-ingest", 2)?;
    let sqs = stack.sqs().await;
    let events = stack.var("YUBA_EVENTS_QUEUE_URL").to_owned();
    let lambda_queue = stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
    let missing_queue = format!(
        "{}/yuba-no-such-queue",
        lambda_queue.rsplit_once('/').map_or("", |(base, _)| base)
    );
    let bucket = stack.source_bucket().to_owned();
    let notification = json!({"Records": [
        record("ObjectCreated:Put", &bucket, "in/small.jpg", 10),
        record("ObjectCreated:Put", &bucket, "in/small.jpg", 10),
        record("ObjectCreated:Put", &bucket, "out/elsewhere.jpg", 10),
        record("ObjectTagging:Put", &bucket, "in/tagged.jpg", 10),
        record("ObjectCreated:Put", &bucket, "in/large.bin", 5000),
        record("ObjectCreated:Put", "another-bucket", "in/small.jpg", 10),
    ]});
    // Only this notification: not the s3:TestEvent S3 sent when the stack was set up.
    sqs.purge_queue().queue_url(&events).send().await?;
    sqs.send_message()
        .queue_url(&events)
        .message_body(notification.to_string())
        .send()
        .await?;
    let ingest = stack.spawn(
        "yuba-ingest",
        "ingest",
        &[
            ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
            ("YUBA_FILTER_PREFIXES", "in/"),
            ("YUBA_ROUTE_THRESHOLD_BYTES", "1000"),
            ("YUBA_FARGATE_QUEUE_URL", &missing_queue),
        ],
    )?;
    let expected = [
        ("enqueued", 1.0),
        ("not_enqueued", 1.0),
        ("filtered", 1.0),
        ("ignored", 1.0),
        ("duplicate", 1.0),
        ("foreign_bucket", 1.0),
    ];
    let documents = eventually(INGEST_TIMEOUT, "ingest's metrics", || async {
        let documents = ingest_documents(&ingest);
        let all = expected
            .iter()
            .all(|(record, _)| documents.contains_key(*record));
        Ok(all.then_some(documents))
    })
    .await
    .map_err(|e| e.context(dump_logs(std::slice::from_ref(&ingest))))?;

    let namespace = match stack.var("YUBA_METRICS_NAMESPACE") {
        "" => "yuba",
        configured => configured,
    };
    for (record, value) in expected {
        // The notification fails (a job could not be enqueued) and may be seen again: every
        // attempt counts the same.
        for document in &documents[record] {
            assert_eq!(document["IngestRecords"], json!(value), "{document}");
            assert_eq!(document["FunctionVersion"], "7", "{document}");
            assert_eq!(
                document["_aws"]["CloudWatchMetrics"],
                json!([{
                    "Namespace": namespace,
                    "Dimensions": [["Record"], ["Record", "FunctionVersion"], ["FunctionVersion"]],
                    "Metrics": [{"Name": "IngestRecords", "Unit": "Count"}]
                }]),
                "{document}"
            );
        }
    }
    assert!(
        !documents.contains_key("rejected"),
        "no record was rejected: {documents:?}"
    );
    Ok(())
}
