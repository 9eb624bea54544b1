//! The reconciler's logic: find every way the GCS replica differs from the S3 bucket, prove
//! content where asked, and repair.
//!
//! - [`join`] merge-joins the two listings (both in UTF-8 byte order) a page at a time;
//! - [`ranges`] splits a listing at its directories, so ranges are listed at once and still
//!   joined in key order;
//! - [`classify`] tells each key's state from listing metadata alone (missing, stale, mismatch,
//!   variants-missing, orphan, in-sync), with the same rules the worker uses to skip a job;
//! - [`content`] proves content for `verify` (checksums, or sha256 of both streams);
//! - [`shard`] splits a run into key ranges that run apart (a plan, its shards, their merge);
//! - [`engine`] runs it all with bounded concurrency and memory, repairs through the work
//!   queues or the worker's own [`Replicator`](yuba_replicate::Replicator), and checkpoints
//!   each finished page so an interrupted run resumes where it stopped.
//!
//! The CLI (`bins/reconciler`) is glue over [`Reconciler::run`].

pub mod checkpoint;
pub mod classify;
pub mod content;
pub mod engine;
pub mod join;
mod pace;
pub mod ranges;
pub mod report;
pub mod shard;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFile, Position};
pub use classify::{Kind, Pair, Verdict};
pub use engine::{
    Buckets, Command, Depth, EXIT_INTERRUPTED, InventoryError, ListingFailure, Live,
    MAX_RECHECKED_KEYS, Manifest, Observer, Orphans, PlanError, Proof, ROWS_PER_DATA_FILE, Recheck,
    ReconcileError, Reconciler, Repair, RunOptions, Selection, SourceInventory, Task,
};
pub use report::{Action, Basis, Counts, Finding, ShardRange, Summary};
pub use shard::{Cutter, Plan, PlanLocation, PlannedShard, Shard, ShardError};
