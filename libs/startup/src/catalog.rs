//! Every setting any yuba program reads from its environment, in one place.
//!
//! This catalog is the definition the other places are held to: README's configuration table is
//! rendered from it, and the tidy tests (`tests/tests/e2e/tidy.rs`) fail when a program reads a
//! `YUBA_` variable the catalog does not list, when the catalog lists one no program reads, or
//! when the CDK app sets a variable the programs do not know (a setting lost in a rename would
//! otherwise be ignored silently, its default used in the cloud).

/// One row of the configuration table: a setting, or a few that go together.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The variables, in full.
    pub names: &'static [&'static str],
    /// The programs that read it.
    pub used_by: &'static [Program],
    /// Where they read it.
    pub home: Home,
    /// What applies when it is unset (Markdown).
    pub default: &'static str,
    /// What it does (Markdown).
    pub meaning: &'static str,
}

pub use crate::Program;

/// Where a setting is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Wherever the program runs.
    Anywhere,
    /// Only when it is not under the Lambda runtime (it polls its queue itself): on Lambda the
    /// trigger does that work, and the setting would be ignored.
    OffLambda,
}

/// Every setting, in the order README lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        names: &["YUBA_LAMBDA_QUEUE_URL"],
        used_by: &[Program::Ingest, Program::Reconciler],
        home: Home::Anywhere,
        default: "required",
        meaning: "work queue of the Lambda worker",
    },
    Setting {
        names: &["YUBA_FARGATE_QUEUE_URL"],
        used_by: &[Program::Ingest, Program::Reconciler],
        home: Home::Anywhere,
        default: "required",
        meaning: "work queue of the Fargate worker",
    },
    Setting {
        names: &["YUBA_ROUTE_THRESHOLD_BYTES"],
        used_by: &[Program::Ingest, Program::Reconciler],
        home: Home::Anywhere,
        default: "268435456 (256 MiB)",
        meaning: "larger objects (or of unknown size) go to Fargate",
    },
    Setting {
        names: &["YUBA_FILTER_PREFIXES", "YUBA_FILTER_SUFFIXES"],
        used_by: &[Program::Ingest],
        home: Home::Anywhere,
        default: "all keys",
        meaning: "comma-separated; a key must match one prefix and one suffix of those given \
                  (keys under the reserved `_yuba-canary/`, the deployment probe's, always pass)",
    },
    Setting {
        names: &["YUBA_EVENTS_QUEUE_URL"],
        used_by: &[Program::Ingest],
        home: Home::OffLambda,
        default: "required off Lambda",
        meaning: "the queue S3 notifications arrive on",
    },
    Setting {
        names: &["YUBA_EVENTS_DLQ_URL"],
        used_by: &[Program::Ingest],
        home: Home::Anywhere,
        default: "none: a rejected record fails its notification (S3 invoking ingest directly)",
        meaning: "the events queue's dead-letter queue: each rejected record (malformed, or of \
                  another bucket) is set aside there alone, as a notification a redrive reads \
                  again, with its reason in a message attribute",
    },
    Setting {
        names: &["YUBA_QUEUE_URL"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "required off Lambda",
        meaning: "the work queue to consume",
    },
    Setting {
        names: &["YUBA_GCS_BUCKET"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "required",
        meaning: "the replica bucket",
    },
    Setting {
        names: &["YUBA_MIRROR_DELETES"],
        used_by: &[Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "`true`",
        meaning: "`false` keeps replicas when their source is deleted",
    },
    Setting {
        names: &["YUBA_VARIANTS", "YUBA_VARIANTS_FILE"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "no variants",
        meaning: "the variant profiles, as a JSON document or the path of one (below)",
    },
    Setting {
        names: &[
            "YUBA_MAX_SOURCE_PIXELS",
            "YUBA_MAX_SOURCE_BYTES",
            "YUBA_MAX_SOURCE_FRAMES",
        ],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "50000000, 67108864, 256",
        meaning: "larger images are replicated without variants (the reason is recorded)",
    },
    Setting {
        names: &["YUBA_MEMORY_MIB"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "the Lambda function's memory, else the cgroup's `memory.max`, else the machine's",
        meaning: "the process's memory, from which the image-work budget is derived (below)",
    },
    Setting {
        names: &["YUBA_UPLOAD_CHUNK_BYTES"],
        used_by: &[Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "8388608 (8 MiB)",
        meaning: "bytes buffered per upload; objects up to this size are written in one request. \
                  A multiple of 256 KiB",
    },
    Setting {
        names: &["YUBA_GCS_COMPOSE_THRESHOLD_BYTES"],
        used_by: &[Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "33554432 (32 MiB), or the chunk size if larger",
        meaning: "streamed objects at least this large (and at most 1,024 chunks) go up as \
                  one-chunk parts, several at once, composed into the replica once the content is \
                  verified (a parallel composite upload); smaller ones in one resumable upload. \
                  `0` turns it off; otherwise at least `YUBA_UPLOAD_CHUNK_BYTES`. Trade-offs: a \
                  composite object has no MD5 in GCS (only its CRC32C, which yuba checks); the \
                  parts, under `_yuba-parts/` and deleted right after, are billed as deleted \
                  objects for the bucket's soft-delete retention, and in Nearline, Coldline or \
                  Archive buckets incur early-deletion charges: set `0` there",
    },
    Setting {
        names: &["YUBA_GCS_PARALLEL_UPLOADS"],
        used_by: &[Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "4",
        meaning: "parts of one composite upload sent at once (1–32)",
    },
    Setting {
        names: &["YUBA_GCS_ENDPOINT"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "Google's",
        meaning: "an `http://` URL is an emulator, used without credentials",
    },
    Setting {
        names: &["YUBA_GCS_CREDENTIALS"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "unset",
        meaning: "the workload identity federation configuration itself (`\"type\": \
                  \"external_account\"` JSON, as terraform/ or `gcloud iam workload-identity-pools \
                  create-cred-config ... --aws` writes it), for environments without a file \
                  (Lambda). Checked at start-up: a missing or malformed field stops the program \
                  naming it. For an AWS source, the AWS identity comes from \
                  `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` when they are set (Lambda), otherwise \
                  from the AWS SDK's credential chain (Fargate/ECS task role, EC2, profiles); the \
                  region fills `{region}` in `regional_cred_verification_url`. Ignored with an \
                  `http://` `YUBA_GCS_ENDPOINT`; not together with `GOOGLE_APPLICATION_CREDENTIALS`",
    },
    Setting {
        names: &["GOOGLE_APPLICATION_CREDENTIALS"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "ADC",
        meaning: "the path of a credential file: an `external_account` configuration is read and \
                  checked at start-up and used as `YUBA_GCS_CREDENTIALS` is; a `service_account`, \
                  `authorized_user` or `impersonated_service_account` file goes to Application \
                  Default Credentials. Unset (and no `YUBA_GCS_CREDENTIALS`): ADC (gcloud's \
                  credentials or the metadata server)",
    },
    Setting {
        names: &["YUBA_GCS_RETRY_ATTEMPTS", "YUBA_GCS_RETRY_SECONDS"],
        used_by: &[Program::Worker, Program::Reconciler, Program::Serve],
        home: Home::Anywhere,
        default: "6, 60",
        meaning: "attempts and time limit of one GCS request (also its timeout). Retries are \
                  jittered and drawn from a budget the whole process shares (500 tokens, 5 per \
                  retry, 10 after a timeout, 1 back per success), so a failing GCS gets about one \
                  request per job, not a retry storm; S3 and SQS use the AWS SDK's standard mode, \
                  which has the same quota",
    },
    Setting {
        names: &["YUBA_S3_FORCE_PATH_STYLE"],
        used_by: &[Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "`false`",
        meaning: "path-style S3 URLs (emulators)",
    },
    Setting {
        names: &["YUBA_CONCURRENCY"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::Anywhere,
        default: "ingest 4, worker 8",
        meaning: "messages worked on at once",
    },
    Setting {
        names: &["YUBA_VISIBILITY_TIMEOUT_SECONDS"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::OffLambda,
        default: "60",
        meaning: "renewed every half while a message is worked on",
    },
    Setting {
        names: &["YUBA_RECEIVE_WAIT_SECONDS"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::OffLambda,
        default: "20",
        meaning: "long-poll wait",
    },
    Setting {
        names: &["YUBA_SHUTDOWN_GRACE_SECONDS"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::OffLambda,
        default: "25 (the CDK app sets 105 on Fargate, with a 115 s stop timeout)",
        meaning: "time in-flight messages get after SIGTERM before they are released",
    },
    Setting {
        names: &["ECS_AGENT_URI"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "set by ECS",
        meaning: "the ECS agent's endpoint; where it is set, the worker holds ECS task scale-in \
                  protection while jobs are in flight. Unset (a laptop, the tests, Lambda): no \
                  protection, nothing called",
    },
    Setting {
        names: &["YUBA_TASK_PROTECTION"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "`true`",
        meaning: "`false` turns task scale-in protection off even on ECS",
    },
    Setting {
        names: &["YUBA_TASK_PROTECTION_MINUTES"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "5",
        meaning: "`ExpiresInMinutes` of each protection request (1–60): how long a task that stops \
                  renewing can still hold up a deployment or a scale-in",
    },
    Setting {
        names: &["YUBA_TASK_PROTECTION_RENEW_SECONDS"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "60",
        meaning: "renewal period while busy; at most half the expiry (checked at start-up)",
    },
    Setting {
        names: &["YUBA_TASK_PROTECTION_IDLE_SECONDS"],
        used_by: &[Program::Worker],
        home: Home::OffLambda,
        default: "10",
        meaning: "how long the worker stays idle before it drops protection (0–600)",
    },
    Setting {
        names: &["YUBA_RETRY_BASE_SECONDS", "YUBA_RETRY_MAX_SECONDS"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::Anywhere,
        default: "2, 300",
        meaning: "backoff of a transiently failed message (doubles per receive, jittered), set \
                  through its visibility; on Lambda too, before the invocation reports it failed",
    },
    Setting {
        names: &["YUBA_SOURCE_BUCKET"],
        used_by: &[Program::Ingest, Program::Worker, Program::Reconciler],
        home: Home::Anywhere,
        default: "required",
        meaning: "the S3 bucket that is replicated: the only one whose objects are read; a \
                  record or job naming another is refused (counted as `foreign_bucket` / \
                  `foreign-bucket`)",
    },
    Setting {
        names: &["YUBA_CANARY_BUCKET"],
        used_by: &[Program::Ingest, Program::Worker],
        home: Home::Anywhere,
        default: "none",
        meaning: "the stack's probe bucket, whose keys under `_yuba-canary/` are replicated too",
    },
    Setting {
        names: &[
            "YUBA_RECONCILE_PREFIX",
            "YUBA_RECONCILE_CONCURRENCY",
            "YUBA_RECONCILE_MAX_RATE",
            "YUBA_RECONCILE_CHECKPOINT",
            "YUBA_RECONCILE_JSON",
            "YUBA_RECONCILE_INLINE",
            "YUBA_RECONCILE_DELETE_ORPHANS",
            "YUBA_RECONCILE_ORPHAN_VARIANT_MIN_AGE",
            "YUBA_RECONCILE_VERIFY_ENQUEUED",
            "YUBA_RECONCILE_SOURCE_INVENTORY",
            "YUBA_RECONCILE_INVENTORY_MAX_AGE_HOURS",
            "YUBA_RECONCILE_INVENTORY_SPILL_DIR",
            "YUBA_RECONCILE_INVENTORY_MEMORY_MIB",
            "YUBA_RECONCILE_SHARD",
            "YUBA_RECONCILE_PLAN",
        ],
        used_by: &[Program::Reconciler],
        home: Home::Anywhere,
        default: "as the flags",
        meaning: "the flags of the same names, for the scheduled task",
    },
    Setting {
        names: &["YUBA_RECONCILE_PROGRESS_SECONDS"],
        used_by: &[Program::Reconciler],
        home: Home::Anywhere,
        default: "10",
        meaning: "how often a run logs its progress (0.1–3600)",
    },
    Setting {
        names: &["YUBA_SERVE_ADDRESS"],
        used_by: &[Program::Serve],
        home: Home::OffLambda,
        default: "`127.0.0.1:8080`",
        meaning: "the address the delivery origin listens on (`0.0.0.0:8080` in a container)",
    },
    Setting {
        names: &["YUBA_SERVE_METADATA_SECONDS"],
        used_by: &[Program::Serve],
        home: Home::Anywhere,
        default: "1",
        meaning: "how long the delivery origin answers from metadata it read (0–60; 0: every \
                  request reads it): the most an overwrite or delete is seen late",
    },
    Setting {
        names: &["YUBA_LOG_FORMAT"],
        used_by: &[
            Program::Ingest,
            Program::Worker,
            Program::Reconciler,
            Program::Serve,
        ],
        home: Home::Anywhere,
        default: "JSON in the cloud or when not a terminal",
        meaning: "`json` or `pretty`; level from `RUST_LOG` (default `info`)",
    },
    Setting {
        names: &["YUBA_METRICS_NAMESPACE"],
        used_by: &[
            Program::Ingest,
            Program::Worker,
            Program::Reconciler,
            Program::Serve,
        ],
        home: Home::Anywhere,
        default: "`yuba`",
        meaning: "CloudWatch namespace of the Embedded Metric Format lines (written with JSON \
                  logs; every metric and dimension is in `cdk/lib/generated/metrics.json`)",
    },
];

/// The AWS SDK's own settings that a deployment may set, which the programs leave to the SDK:
/// listed in the table for the reader, not read by name anywhere in yuba.
pub const AWS_SDK_SETTINGS: &[&str] = &["AWS_REGION", "AWS_ENDPOINT_URL"];

/// Whether `name` is a setting of the catalog.
pub fn is_setting(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.names.contains(&name))
}

/// README's configuration table (Markdown), one row per [`Setting`].
pub fn render_table() -> String {
    let mut table =
        String::from("| variable | used by | default | meaning |\n| --- | --- | --- | --- |\n");
    let quoted = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        names.join(", ")
    };
    for setting in SETTINGS {
        let mut used_by: Vec<&str> = setting.used_by.iter().map(|p| p.as_str()).collect();
        if setting.home == Home::OffLambda {
            used_by.push("off Lambda");
        }
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            quoted(setting.names),
            used_by.join(", "),
            setting.default,
            setting.meaning
        ));
    }
    table.push_str(&format!(
        "| {}, credentials | ingest, worker, reconciler | the AWS chain | standard AWS SDK settings |\n",
        quoted(AWS_SDK_SETTINGS)
    ));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for name in SETTINGS.iter().flat_map(|s| s.names) {
            assert!(seen.insert(*name), "{name} is listed twice");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: environment variables are upper case"
            );
        }
    }

    #[test]
    fn no_cell_breaks_the_table() {
        for line in render_table().lines() {
            // A `|` inside a cell would add a column; a newline would end the row.
            assert_eq!(line.matches('|').count(), 5, "{line}");
        }
    }
}
