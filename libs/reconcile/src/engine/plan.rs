//! A sharded run's plan, kept in S3 (see [`shard`](crate::shard)): made once from the inventory
//! report, read by each shard, and the shards' summaries kept beside it for the merge.
//!
//! The plan step sorts the report once and writes each shard's part as a report of its own
//! ([`PART_FORMAT`] data files of [`ROWS_PER_DATA_FILE`] rows and a manifest with their MD5s, the
//! original's creation time and source bucket), so a shard reads and checks its part exactly as
//! it would a report S3 wrote. `plan.json` is written last: a plan that is there is whole.

use bytes::Bytes;
use chrono::Utc;
use thiserror::Error;
use tokio::sync::mpsc;
use yuba_inventory::DataFile;
use yuba_inventory::ReportFormat;
use yuba_inventory::write::{DataWriter, data_file, manifest_json};

use super::inventory::{InventoryError, SmallObjectError, SourceInventory};
use super::listing::{ListingFailure, with_retries};
use super::{ReconcileError, Reconciler};
use crate::ranges::KeyRange;
use crate::report::Summary;
use crate::shard::{Cutter, Plan, PlanLocation, PlannedShard, Shard, ShardError, merge};

/// The format of a shard's part.
pub const PART_FORMAT: ReportFormat = ReportFormat::Csv;
/// Rows per data file of a shard's part: a file is held whole while it is written and sent
/// (about 15 MiB gzip at 60 bytes a row), and a shard reads its files one after another.
pub const ROWS_PER_DATA_FILE: usize = 250_000;
/// The largest plan read: a thousand shards with boundary keys of S3's 1,024-byte maximum.
const MAX_PLAN_BYTES: usize = 16 << 20;
/// The largest summary read: a summary is a few hundred bytes of counts.
const MAX_SUMMARY_BYTES: usize = 1 << 20;
/// The name of a shard's summary in its folder.
const SUMMARY_NAME: &str = "summary.json";

#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("there is no plan at {0}: make it first (yuba-reconciler plan --plan {0})")]
    NoPlan(PlanLocation),
    #[error("{location} is over {max} bytes: it is not what yuba writes there")]
    TooLarge { location: String, max: usize },
    #[error("the summary {location} is not a yuba summary: {why}")]
    Summary { location: String, why: String },
    #[error(transparent)]
    Store(ListingFailure),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// What the sorting thread hands the uploads, in key order.
enum Part {
    /// A full data file of shard `shard` (counted from 0).
    File { shard: u32, bytes: Vec<u8> },
    /// Shard `shard` is whole: its range and what its part holds.
    Closed {
        shard: u32,
        range: KeyRange,
        objects: u64,
        bytes: u64,
    },
}

impl Reconciler {
    /// Reads and sorts the inventory report once, cuts it into `shards` parts of as many objects
    /// each, and writes each part and the plan to `at`.
    pub async fn plan(
        &self,
        inventory: &SourceInventory,
        shards: u32,
        at: &PlanLocation,
    ) -> Result<Plan, ReconcileError> {
        let (sorted, report) = self.sorted_inventory(inventory).await?;
        let (parts, mut receiver) = mpsc::channel(1);
        let source_bucket = self.buckets.source.clone();
        let spill_dir = inventory.sort.spill_dir.clone();
        let cutting = tokio::task::spawn_blocking(move || {
            cut(
                sorted,
                &source_bucket,
                Cutter::new(shards, report.objects),
                &parts,
            )
        });
        let planned = self
            .write_parts(&mut receiver, shards, at, report.created)
            .await?;
        cutting
            .await
            .map_err(std::io::Error::other)
            .and_then(|cut| cut)
            .map_err(|source| InventoryError::Spill {
                dir: spill_dir,
                source,
            })?;
        let plan = Plan {
            version: crate::shard::PLAN_VERSION,
            source_bucket: self.buckets.source.clone(),
            inventory: report.manifest,
            inventory_created: report.created,
            planned_at: Utc::now(),
            shards: planned,
        };
        self.store(
            &at.bucket,
            &at.plan_key(),
            to_json(&plan),
            "application/json",
        )
        .await?;
        Ok(plan)
    }

    /// Writes the parts the sorting thread hands over, in key order: each data file as it
    /// comes, each shard's manifest once the shard is closed. The shards, as planned.
    async fn write_parts(
        &self,
        parts: &mut mpsc::Receiver<Part>,
        shards: u32,
        at: &PlanLocation,
        created: chrono::DateTime<Utc>,
    ) -> Result<Vec<PlannedShard>, ReconcileError> {
        let mut planned = Vec::with_capacity(usize::try_from(shards).unwrap_or(0));
        let mut files: Vec<DataFile> = Vec::new();
        let counted_from_one = |shard: u32| Shard {
            index: shard + 1,
            of: shards,
        };
        while let Some(part) = parts.recv().await {
            match part {
                Part::File { shard, bytes } => {
                    let shard = counted_from_one(shard);
                    let name = format!("data/part-{:05}.{}", files.len(), PART_FORMAT.extension());
                    let key = at.shard_key(shard, &name);
                    files.push(data_file(&key, &bytes));
                    self.store(&at.bucket, &key, bytes, PART_FORMAT.content_type())
                        .await?;
                }
                Part::Closed {
                    shard,
                    range,
                    objects,
                    bytes,
                } => {
                    let shard = counted_from_one(shard);
                    let manifest = at.shard_key(shard, yuba_inventory::MANIFEST_NAME);
                    let json = manifest_json(
                        PART_FORMAT,
                        &self.buckets.source,
                        &at.bucket,
                        created,
                        &std::mem::take(&mut files),
                    );
                    self.store(&at.bucket, &manifest, json.into_bytes(), "application/json")
                        .await?;
                    tracing::info!(%shard, objects, start = ?range.start, end = ?range.end, "a shard's part of the report is written");
                    planned.push(PlannedShard {
                        start: range.start,
                        end: range.end,
                        objects,
                        bytes,
                        manifest,
                    });
                }
            }
        }
        Ok(planned)
    }

    /// The plan at `at`, checked.
    pub async fn read_plan(&self, at: &PlanLocation) -> Result<Plan, ReconcileError> {
        let bytes = self
            .fetch(&at.bucket, &at.plan_key(), MAX_PLAN_BYTES)
            .await?
            .ok_or_else(|| PlanError::NoPlan(at.clone()))?;
        Ok(Plan::parse(&bytes).map_err(PlanError::from)?)
    }

    /// Keeps shard `shard`'s summary beside the plan, for the merge.
    pub async fn keep_summary(
        &self,
        at: &PlanLocation,
        shard: Shard,
        summary: &Summary,
    ) -> Result<(), ReconcileError> {
        self.store(
            &at.bucket,
            &at.shard_key(shard, SUMMARY_NAME),
            to_json(summary),
            "application/json",
        )
        .await
    }

    /// The shards' summaries added up into the run's verdict; every shard of the plan must have
    /// one.
    pub async fn merge(&self, at: &PlanLocation) -> Result<Summary, ReconcileError> {
        let plan = self.read_plan(at).await?;
        let of = u32::try_from(plan.shards.len()).unwrap_or(u32::MAX);
        let mut summaries = Vec::with_capacity(plan.shards.len());
        for shard in Shard::all(of) {
            let key = at.shard_key(shard, SUMMARY_NAME);
            let Some(bytes) = self.fetch(&at.bucket, &key, MAX_SUMMARY_BYTES).await? else {
                summaries.push(None);
                continue;
            };
            let summary =
                serde_json::from_slice::<Summary>(&bytes).map_err(|error| PlanError::Summary {
                    location: format!("s3://{}/{key}", at.bucket),
                    why: error.to_string(),
                })?;
            summaries.push(Some(summary));
        }
        Ok(merge(&summaries).map_err(PlanError::from)?)
    }

    /// Writes a small object, retried as listing requests are.
    async fn store(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ReconcileError> {
        let what = format!("writing s3://{bucket}/{key}");
        let body = Bytes::from(bytes);
        with_retries(&what, || async {
            self.s3
                .put(bucket, key, body.clone(), content_type)
                .await
                .map_err(|error| ListingFailure::s3(&what, error))
        })
        .await
        .map_err(|error| PlanError::Store(error).into())
    }

    /// A small object's bytes (`None`: there is none), refused past `max` bytes.
    async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, PlanError> {
        self.fetch_small(bucket, key, max)
            .await
            .map_err(|error| match error {
                SmallObjectError::Failed(failure) => PlanError::Store(failure),
                SmallObjectError::TooLarge => PlanError::TooLarge {
                    location: format!("s3://{bucket}/{key}"),
                    max,
                },
            })
    }
}

/// A plan or a summary as the JSON kept in S3: plain data, which always serializes.
fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value)
        .unwrap_or_else(|error| unreachable!("plans and summaries serialize: {error}"))
}

/// Cuts the sorted report into the shards' parts (on a thread of its own: the runs are files),
/// handing each full data file and each closed shard to `parts` in key order.
fn cut(
    sorted: yuba_inventory::Sorted,
    source_bucket: &str,
    mut cutter: Cutter,
    parts: &mpsc::Sender<Part>,
) -> std::io::Result<()> {
    let mut file = (PART_FORMAT.writer(source_bucket), 0usize);
    let (mut objects, mut bytes) = (0u64, 0u64);
    let send = |part: Part| {
        parts
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the plan's uploads stopped"))
    };
    let flush = |file: &mut (DataWriter, usize), shard: u32| -> std::io::Result<()> {
        if file.1 == 0 {
            return Ok(());
        }
        let full = std::mem::replace(file, (PART_FORMAT.writer(source_bucket), 0));
        send(Part::File {
            shard,
            bytes: full.0.finish()?,
        })
    };
    let close = |closed: Vec<(u32, KeyRange)>, objects: &mut u64, bytes: &mut u64| {
        for (shard, range) in closed {
            send(Part::Closed {
                shard,
                range,
                objects: std::mem::take(objects),
                bytes: std::mem::take(bytes),
            })?;
        }
        std::io::Result::Ok(())
    };
    for entry in sorted {
        let entry = entry?;
        let shard = cutter.open();
        let closed = cutter.place(&entry.key);
        if !closed.is_empty() {
            flush(&mut file, shard)?;
            close(closed, &mut objects, &mut bytes)?;
        }
        file.0.write(&entry)?;
        file.1 += 1;
        objects += 1;
        bytes += entry.size;
        if file.1 == ROWS_PER_DATA_FILE {
            flush(&mut file, cutter.open())?;
        }
    }
    flush(&mut file, cutter.open())?;
    close(cutter.finish(), &mut objects, &mut bytes)
}
