//! Every metric yuba emits and every dimension it emits them by: the one list that the programs
//! emit through ([`super::emit`] takes a [`Metric`] and [`Dimension`]s, never names) and that
//! `tests/tests/e2e/metrics.rs` renders into `cdk/lib/generated/metrics.json`, which the CDK app's
//! alarms, dashboard and canary read instead of spelling names of their own.
//!
//! A dimension's values are either a closed set, taken from the Rust enum that produces them
//! (see [`Domain::Closed`]: the enums live in the crates that own the concept, so the contract
//! test, which sees every crate, joins them in), or free-form ([`Dimension::FunctionVersion`]).
//! Values that no domain enum produces, because the emitting program decides them itself
//! ([`OUTCOME_FAILED`], [`OUTCOME_REJECTED`], [`OUTCOME_FOREIGN_BUCKET`], [`VARIANT_ERROR_UNKNOWN`],
//! [`IngestRecord`]), are
//! defined here.

pub use crate::Program;

/// Where the values of a dimension come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A closed set, made by the named Rust items (the contract test holds the rendered list to
    /// exactly these).
    Closed { source: &'static str },
    /// Any value; `description` says what it is.
    FreeForm { description: &'static str },
}

/// A metric dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// What became of a worker job.
    Outcome,
    /// Whether a failed job can succeed on a retry.
    Failure,
    /// Why an image got no variants (the transform's error kind).
    VariantError,
    /// The reconciler's command.
    Command,
    /// What became of a record of an S3 notification in ingest.
    Record,
    /// How the delivery origin found what it answered (an original, a stored variant, one
    /// rendered on demand), or why it refused.
    Served,
    /// The Lambda function version the program runs as (only on Lambda, and only in the extra
    /// dimension sets of the metrics marked [`Metric::per_version`]).
    FunctionVersion,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::Outcome,
        Dimension::Failure,
        Dimension::VariantError,
        Dimension::Command,
        Dimension::Record,
        Dimension::Served,
        Dimension::FunctionVersion,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Dimension::Outcome => "Outcome",
            Dimension::Failure => "Failure",
            Dimension::VariantError => "VariantError",
            Dimension::Command => "Command",
            Dimension::Record => "Record",
            Dimension::Served => "Served",
            Dimension::FunctionVersion => "FunctionVersion",
        }
    }

    pub const fn domain(self) -> Domain {
        match self {
            Dimension::Outcome => Domain::Closed {
                source: "yuba_replicate::Outcome::NAMES, then OUTCOME_FAILED, OUTCOME_REJECTED and \
                         OUTCOME_FOREIGN_BUCKET",
            },
            Dimension::Failure => Domain::Closed {
                source: "yuba_model::FailureKind::ALL (as_str)",
            },
            Dimension::VariantError => Domain::Closed {
                source: "yuba_replicate::variants_error_kinds(), then VARIANT_ERROR_UNKNOWN",
            },
            Dimension::Command => Domain::Closed {
                source: "yuba_reconcile::Command::ALL (as_str)",
            },
            Dimension::Record => Domain::Closed {
                source: "IngestRecord::ALL (as_str)",
            },
            Dimension::Served => Domain::Closed {
                source: "yuba_origin::Served::NAMES",
            },
            Dimension::FunctionVersion => Domain::FreeForm {
                description: "the Lambda function version (AWS_LAMBDA_FUNCTION_VERSION)",
            },
        }
    }
}

/// The dimension that per-version metrics carry in their second dimension set.
pub const VERSION_DIMENSION: Dimension = Dimension::FunctionVersion;

/// `Outcome` of a job that ran and failed (with `Failure` saying whether a retry can help).
pub const OUTCOME_FAILED: &str = "failed";
/// `Outcome` of a message that is not a job at all (poison: no retry or redrive can help it).
pub const OUTCOME_REJECTED: &str = "rejected";
/// `Outcome` of a job refused because it names a bucket yuba does not replicate (nothing read).
pub const OUTCOME_FOREIGN_BUCKET: &str = "foreign-bucket";
/// `VariantError` of a variant failure whose recorded reason names no transform error kind.
pub const VARIANT_ERROR_UNKNOWN: &str = "unknown";

/// What became of one record of an S3 notification in ingest: the values of [`Dimension::Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IngestRecord {
    /// Its job is on a work queue.
    Enqueued,
    /// Its job could not be put on a work queue, after the sender's retries: the notification
    /// fails and comes back (or goes to the DLQ).
    NotEnqueued,
    /// Its key is outside the configured prefixes and suffixes.
    Filtered,
    /// Not an object change yuba replicates (`s3:TestEvent`, an event type it does not handle).
    Ignored,
    /// The same change as an earlier record of the same notification.
    Duplicate,
    /// Malformed: set aside alone on the events DLQ for a person to look at. A notification
    /// that cannot be parsed at all counts as one rejected record (and goes there whole).
    Rejected,
    /// Of a bucket yuba does not replicate (not `YUBA_SOURCE_BUCKET`): set aside like a rejected
    /// record, nothing read.
    ForeignBucket,
}

impl IngestRecord {
    pub const ALL: [IngestRecord; 7] = [
        IngestRecord::Enqueued,
        IngestRecord::NotEnqueued,
        IngestRecord::Filtered,
        IngestRecord::Ignored,
        IngestRecord::Duplicate,
        IngestRecord::Rejected,
        IngestRecord::ForeignBucket,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            IngestRecord::Enqueued => "enqueued",
            IngestRecord::NotEnqueued => "not_enqueued",
            IngestRecord::Filtered => "filtered",
            IngestRecord::Ignored => "ignored",
            IngestRecord::Duplicate => "duplicate",
            IngestRecord::Rejected => "rejected",
            IngestRecord::ForeignBucket => "foreign_bucket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric yuba emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// One per job message the worker handled, by `Outcome` (and `Failure` when it failed or
    /// was rejected).
    Jobs,
    JobDuration,
    BytesReplicated,
    VariantsMade,
    /// From the S3 event's time to the replica, where the job carries the event time.
    ReplicationLag,
    VariantFailures,
    ReconcileExamined,
    ReconcileDrift,
    /// Drift repaired in the reconciler's process (inline copies, deletes, found done).
    ReconcileRepaired,
    /// Drift handed to the workers as jobs: not repaired until a later look finds it in sync.
    ReconcileEnqueued,
    ReconcileFailed,
    ReconcileBytesCopied,
    ReconcileDuration,
    /// Records of S3 notifications ingest handled, by `Record` (what became of them).
    IngestRecords,
    /// Requests the delivery origin answered, by `Served`.
    OriginRequests,
    /// From a request to its answer's head (the body streams after), by `Served`.
    OriginLatency,
    /// Variants the delivery origin rendered on demand: one per render, however many requests
    /// waited for it.
    OriginRenders,
}

use Dimension as D;

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::Jobs,
        Metric::JobDuration,
        Metric::BytesReplicated,
        Metric::VariantsMade,
        Metric::ReplicationLag,
        Metric::VariantFailures,
        Metric::ReconcileExamined,
        Metric::ReconcileDrift,
        Metric::ReconcileRepaired,
        Metric::ReconcileEnqueued,
        Metric::ReconcileFailed,
        Metric::ReconcileBytesCopied,
        Metric::ReconcileDuration,
        Metric::IngestRecords,
        Metric::OriginRequests,
        Metric::OriginLatency,
        Metric::OriginRenders,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Jobs => "Jobs",
            Metric::JobDuration => "JobDuration",
            Metric::BytesReplicated => "BytesReplicated",
            Metric::VariantsMade => "VariantsMade",
            Metric::ReplicationLag => "ReplicationLag",
            Metric::VariantFailures => "VariantFailures",
            Metric::ReconcileExamined => "ReconcileExamined",
            Metric::ReconcileDrift => "ReconcileDrift",
            Metric::ReconcileRepaired => "ReconcileRepaired",
            Metric::ReconcileEnqueued => "ReconcileEnqueued",
            Metric::ReconcileFailed => "ReconcileFailed",
            Metric::ReconcileBytesCopied => "ReconcileBytesCopied",
            Metric::ReconcileDuration => "ReconcileDuration",
            Metric::IngestRecords => "IngestRecords",
            Metric::OriginRequests => "OriginRequests",
            Metric::OriginLatency => "OriginLatency",
            Metric::OriginRenders => "OriginRenders",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Metric::Jobs
            | Metric::VariantsMade
            | Metric::VariantFailures
            | Metric::ReconcileExamined
            | Metric::ReconcileDrift
            | Metric::ReconcileRepaired
            | Metric::ReconcileEnqueued
            | Metric::ReconcileFailed
            | Metric::IngestRecords
            | Metric::OriginRequests
            | Metric::OriginRenders => Unit::Count,
            Metric::BytesReplicated | Metric::ReconcileBytesCopied => Unit::Bytes,
            Metric::JobDuration
            | Metric::ReplicationLag
            | Metric::ReconcileDuration
            | Metric::OriginLatency => Unit::Milliseconds,
        }
    }

    pub const fn emitted_by(self) -> &'static [Program] {
        match self {
            Metric::Jobs
            | Metric::JobDuration
            | Metric::BytesReplicated
            | Metric::VariantsMade
            | Metric::ReplicationLag
            | Metric::VariantFailures => &[Program::Worker],
            Metric::ReconcileExamined
            | Metric::ReconcileDrift
            | Metric::ReconcileRepaired
            | Metric::ReconcileEnqueued
            | Metric::ReconcileFailed
            | Metric::ReconcileBytesCopied
            | Metric::ReconcileDuration => &[Program::Reconciler],
            Metric::IngestRecords => &[Program::Ingest],
            Metric::OriginRequests | Metric::OriginLatency | Metric::OriginRenders => {
                &[Program::Serve]
            }
        }
    }

    /// The dimension sets the metric is emitted with (without [`VERSION_DIMENSION`]).
    pub const fn dimension_sets(self) -> &'static [&'static [Dimension]] {
        match self {
            Metric::Jobs => &[&[D::Outcome], &[D::Outcome, D::Failure]],
            Metric::JobDuration
            | Metric::BytesReplicated
            | Metric::VariantsMade
            | Metric::ReplicationLag => &[&[D::Outcome]],
            Metric::VariantFailures => &[&[D::VariantError]],
            Metric::ReconcileExamined
            | Metric::ReconcileDrift
            | Metric::ReconcileRepaired
            | Metric::ReconcileEnqueued
            | Metric::ReconcileFailed
            | Metric::ReconcileBytesCopied
            | Metric::ReconcileDuration => &[&[D::Command]],
            Metric::IngestRecords => &[&[D::Record]],
            Metric::OriginRequests | Metric::OriginLatency => &[&[D::Served]],
            // One series, the origin's total.
            Metric::OriginRenders => &[&[]],
        }
    }

    /// Whether, on Lambda, the metric is also emitted with each of its dimension sets plus
    /// [`VERSION_DIMENSION`], and with the version alone (the version's total): what a
    /// deployment's canary alarms watch, so that the new version's own health is told apart from
    /// the old one's while both take traffic.
    pub const fn per_version(self) -> bool {
        matches!(self, Metric::Jobs | Metric::IngestRecords)
    }

    /// Whether `dimensions` (in any order) is one of the metric's dimension sets.
    pub fn accepts(self, dimensions: &[Dimension]) -> bool {
        self.dimension_sets().iter().any(|set| {
            set.len() == dimensions.len() && set.iter().all(|name| dimensions.contains(name))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The `ALL` lists are written by hand beside exhaustive matches; names must be unique, or
    /// two entries would be one metric (or one dimension value) in CloudWatch.
    #[test]
    fn names_are_unique() {
        let unique = |names: Vec<&str>| names.iter().collect::<BTreeSet<_>>().len() == names.len();
        assert!(unique(Metric::ALL.iter().map(|m| m.name()).collect()));
        assert!(unique(Dimension::ALL.iter().map(|d| d.name()).collect()));
        assert!(unique(Program::ALL.iter().map(|p| p.binary()).collect()));
        assert!(unique(
            IngestRecord::ALL.iter().map(|r| r.as_str()).collect()
        ));
    }

    #[test]
    fn the_version_dimension_is_free_form_and_in_no_usual_set() {
        assert!(matches!(
            VERSION_DIMENSION.domain(),
            Domain::FreeForm { .. }
        ));
        for metric in Metric::ALL {
            for set in metric.dimension_sets() {
                assert!(!set.contains(&VERSION_DIMENSION), "{metric:?}");
            }
        }
    }

    #[test]
    fn every_dimension_but_the_version_is_used_and_every_metric_has_an_emitter() {
        for dimension in Dimension::ALL {
            let used = Metric::ALL.iter().any(|m| {
                m.dimension_sets()
                    .iter()
                    .any(|set| set.contains(&dimension))
            });
            assert_eq!(used, dimension != VERSION_DIMENSION, "{dimension:?}");
        }
        for metric in Metric::ALL {
            assert!(!metric.emitted_by().is_empty(), "{metric:?}");
        }
    }

    #[test]
    fn dimension_sets_are_matched_in_any_order() {
        assert!(Metric::Jobs.accepts(&[D::Failure, D::Outcome]));
        assert!(Metric::Jobs.accepts(&[D::Outcome]));
        assert!(!Metric::Jobs.accepts(&[D::Failure]));
        assert!(!Metric::JobDuration.accepts(&[D::Outcome, D::Failure]));
        assert!(!Metric::IngestRecords.accepts(&[]));
    }
}
