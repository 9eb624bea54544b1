//! A run: pages of key pairs (from the two listings, or from a manifest) flow through
//! classification, optional content checks and repairs, with bounded concurrency, and are
//! reported and checkpointed in key order.
//!
//! This module holds what a run is asked to do and what it reports; its parts:
//! - [`run`] the run loop: checkpoint, pages in flight, findings and totals in key order;
//! - [`pages`] the pages of a listing run: the key space split into ranges, each listed and
//!   merge-joined;
//! - [`listing`] one bucket's listing, a page at a time, each request retried;
//! - [`manifest`] the pages of a manifest run: its keys looked up in both buckets;
//! - [`inventory`] the pages of an inventory run: an S3 Inventory report, sorted, merge-joined
//!   with the replica's listing;
//! - [`plan`] a sharded run's plan in S3: made from the report, read by the shards, and the
//!   shards' summaries merged;
//! - [`judge`] a pair classified, and its content proven where asked;
//! - [`repair`] what `backfill` does about drift: jobs enqueued, or replicated inline.

mod inventory;
mod judge;
mod listing;
mod manifest;
mod pages;
mod plan;
mod recheck;
mod repair;
mod run;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use thiserror::Error;
use yuba_aws::{Dispatcher, S3Source};
use yuba_gcs::Gcs;
use yuba_replicate::Replicator;
use yuba_variants::VariantConfig;

pub use inventory::{InventoryError, SourceInventory};
pub use listing::ListingFailure;
pub use plan::{PlanError, ROWS_PER_DATA_FILE};
pub use recheck::{MAX_RECHECKED_KEYS, Recheck};
pub use run::EXIT_INTERRUPTED;

use crate::checkpoint::CheckpointError;
use crate::join::OrderError;
use crate::report::{Counts, Finding, Summary};

#[derive(Debug, Clone)]
pub struct Buckets {
    pub source: String,
    pub replica: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Compare checksums (S3 CRC32C, ETag MD5, recorded digests): no object is read.
    Checksums,
    /// Stream both sides and compare sha256.
    Deep,
}

/// What `verify` (and `backfill --verify`) proves of a replica the listing found in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub depth: Depth,
    /// Also compare the source's headers and user metadata with the ones the replica was
    /// written with (`--metadata`): a HEAD per object, which `Depth::Checksums` makes anyway.
    pub metadata: bool,
}

/// How `backfill` repairs.
#[derive(Debug, Clone)]
pub enum Repair {
    /// Jobs on the work queues, by ingest's own path to them.
    Enqueue(Dispatcher),
    /// In this process, with the worker's code.
    Inline(Box<Replicator>),
}

/// Which of the reconciler's commands a [`Task`] is: its name in summaries, checkpoints and
/// the `Command` metric dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Diff,
    Verify,
    Backfill,
}

impl Command {
    /// Every command, for what iterates over them (the metric catalog's `Command` values).
    pub const ALL: [Command; 3] = [Command::Diff, Command::Verify, Command::Backfill];

    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Diff => "diff",
            Command::Verify => "verify",
            Command::Backfill => "backfill",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Task {
    Diff,
    Verify(Proof),
    Backfill {
        verify: Option<Proof>,
        repair: Repair,
        orphans: Orphans,
    },
}

/// What `backfill` does about orphans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orphans {
    /// Delete them (`--delete-orphans`); otherwise they are kept and reported.
    pub delete: bool,
    /// An orphan variant younger than this is kept: its original may still be being written
    /// (the worker writes variants first).
    pub variant_min_age: std::time::Duration,
}

impl Task {
    pub fn command(&self) -> Command {
        match self {
            Task::Diff => Command::Diff,
            Task::Verify(_) => Command::Verify,
            Task::Backfill { .. } => Command::Backfill,
        }
    }

    pub fn name(&self) -> &'static str {
        self.command().as_str()
    }

    fn proof(&self) -> Option<Proof> {
        match self {
            Task::Diff => None,
            Task::Verify(proof) => Some(*proof),
            Task::Backfill { verify, .. } => *verify,
        }
    }

    /// What the task does, for the checkpoint's run identity.
    fn describe(&self) -> String {
        let flags = |proof: &Proof| {
            let deep = if proof.depth == Depth::Deep {
                " --deep"
            } else {
                ""
            };
            let metadata = if proof.metadata { " --metadata" } else { "" };
            format!("{deep}{metadata}")
        };
        match self {
            Task::Diff => "diff".to_owned(),
            Task::Verify(proof) => format!("verify{}", flags(proof)),
            Task::Backfill {
                verify,
                repair,
                orphans,
            } => {
                let mut text = "backfill".to_owned();
                if matches!(repair, Repair::Inline(_)) {
                    text.push_str(" --inline");
                }
                if let Some(proof) = verify {
                    text.push_str(" --verify");
                    text.push_str(&flags(proof));
                }
                if orphans.delete {
                    text.push_str(" --delete-orphans");
                }
                text
            }
        }
    }
}

/// The keys a run looks up instead of listing.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// A file of keys, one per line (`--manifest`).
    File(PathBuf),
    /// Keys the program holds: the ones a backfill enqueued, looked at again once the workers
    /// took their jobs.
    Keys(Arc<[String]>),
}

impl std::fmt::Display for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Manifest::File(path) => write!(f, "{}", path.display()),
            Manifest::Keys(keys) => write!(f, "({} keys)", keys.len()),
        }
    }
}

/// Which keys a run looks at.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub prefix: String,
    /// Keys to look up instead of listing.
    pub manifest: Option<Manifest>,
    /// The source's objects from an inventory report instead of a listing.
    pub source_inventory: Option<SourceInventory>,
    /// Only sources last modified at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only sources last modified before this.
    pub until: Option<DateTime<Utc>>,
}

impl Selection {
    fn admits(&self, last_modified: Option<DateTime<Utc>>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        last_modified.is_some_and(|time| {
            self.since.is_none_or(|since| time >= since)
                && self.until.is_none_or(|until| time < until)
        })
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    /// Objects per second, at most.
    pub max_rate: Option<f64>,
    /// Keys per listing request and per checkpointed page.
    pub page_size: u32,
    /// Report what would be repaired, change nothing (no checkpoint either).
    pub dry_run: bool,
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint, if there is one.
    pub resume: bool,
}

/// Told about findings in key order, and after each page.
pub trait Observer: Send + Sync {
    fn finding(&self, finding: &Finding);
    fn page_done(&self, totals: &Counts);
}

/// Figures that move within a page, for a live progress display.
#[derive(Debug, Default)]
pub struct Live {
    pub examined: AtomicU64,
    pub bytes_copied: AtomicU64,
    /// Bytes of the repairs found so far: what `bytes_copied` heads for.
    pub bytes_to_copy: AtomicU64,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Listing(#[from] ListingFailure),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("cannot read the manifest {path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read line {line} of the manifest {path}")]
    ManifestLine {
        path: PathBuf,
        line: u64,
        #[source]
        source: std::io::Error,
    },
    /// A manifest key's lookup in one of the buckets.
    #[error(transparent)]
    Lookup(ListingFailure),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The work queues' backlog could not be read while waiting for the workers.
    #[error(transparent)]
    Backlog(yuba_aws::BacklogError),
    #[error("interrupted{}", .checkpoint.as_ref().map(|p| format!("; the finished pages are saved in {}: run the same command with --resume to continue", p.display())).unwrap_or_default())]
    Interrupted {
        checkpoint: Option<PathBuf>,
        /// What the finished pages found.
        summary: Box<Summary>,
    },
}

/// The two buckets and what the replica bucket should hold.
#[derive(Debug, Clone)]
pub struct Reconciler {
    s3: S3Source,
    gcs: Gcs,
    buckets: Buckets,
    variants: VariantConfig,
}

impl Reconciler {
    pub fn new(s3: S3Source, gcs: Gcs, buckets: Buckets, variants: VariantConfig) -> Reconciler {
        Reconciler {
            s3,
            gcs,
            buckets,
            variants,
        }
    }

    /// What identifies a run, for its checkpoint.
    pub fn run_identity(&self, task: &Task, selection: &Selection) -> String {
        let mut identity = format!(
            "{} s3://{}/{} gs://{}",
            task.describe(),
            self.buckets.source,
            selection.prefix,
            self.buckets.replica
        );
        if let Some(manifest) = &selection.manifest {
            let _ = write!(identity, " --manifest {manifest}");
        }
        if let Some(inventory) = &selection.source_inventory {
            let _ = write!(identity, " --source-inventory {}", inventory.location);
        }
        if let Some(since) = selection.since {
            let _ = write!(identity, " --since {}", since.to_rfc3339());
        }
        if let Some(until) = selection.until {
            let _ = write!(identity, " --until {}", until.to_rfc3339());
        }
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_window_is_half_open_and_needs_a_time() {
        let at = |t: &str| Some(t.parse::<DateTime<Utc>>().unwrap());
        let selection = Selection {
            since: at("2026-11-01T00:00:00Z"),
            until: at("2026-11-02T00:00:00Z"),
            ..Selection::default()
        };
        assert!(selection.admits(at("2026-11-01T00:00:00Z")));
        assert!(!selection.admits(at("2026-11-02T00:00:00Z")));
        assert!(!selection.admits(at("2026-10-31T23:59:59Z")));
        assert!(!selection.admits(None));
        assert!(Selection::default().admits(None));
    }
}
