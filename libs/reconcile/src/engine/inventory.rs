//! The pages of an inventory run: the source's objects from an S3 Inventory report, sorted on
//! this machine, merge-joined with the replica's listing. No ListObjectsV2 request is made of
//! the source bucket.
//!
//! The report is a snapshot of when it began, so it only nominates drift: every pair it makes
//! look drifting is looked up in the source bucket before it is judged (see
//! [`Reconciler::judge`]), and a replica whose source appeared or changed after the report is
//! never called an orphan, stale, or deleted on the report's word.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use futures::{TryStreamExt, stream};
use md5::{Digest, Md5};
use thiserror::Error;
use tokio::sync::mpsc;
use yuba_aws::ListedObject;
use yuba_inventory::{
    DataError, DataFile, ExternalSort, Location, MANIFEST_NAME, Manifest, ManifestError,
    SortSettings, Sorted, newest_manifest, read_data_file,
};

use super::listing::{ListingFailure, listed, with_retries};
use super::pages::{PageReceiver, in_key_order, join_pages};
use super::{ReconcileError, Reconciler};
use crate::checkpoint::Position;
use crate::ranges::KeyRange;

/// Pages of sources per key range of an inventory run: a range's sources are held while its
/// replicas are listed (about 1 MiB per thousand objects, times the ranges in flight), and a
/// range's last replica page is a partial one (a tenth more listing requests at most).
const RANGE_PAGES: usize = 10;

/// The largest manifest read: a manifest names each data file in about 200 bytes, and S3
/// writes data files of up to gigabytes, so even a billion-object report's manifest is far
/// smaller.
const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// The source's objects from an S3 Inventory report instead of a listing
/// (`--source-inventory`).
#[derive(Debug, Clone)]
pub struct SourceInventory {
    pub location: Location,
    /// A report made longer ago than this is refused.
    pub max_age: Duration,
    pub sort: SortSettings,
    /// The keys the run covers, sources and replicas: all of them, or a shard's range
    /// (`--shard`, whose part of the report holds the sources in it).
    pub bounds: KeyRange,
}

/// What a report is, besides its objects.
#[derive(Debug, Clone)]
pub(super) struct Report {
    /// Its manifest.
    pub(super) manifest: String,
    pub(super) created: chrono::DateTime<Utc>,
    /// Current objects in its data files (a key listed twice counted twice).
    pub(super) objects: u64,
}

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "{location} holds no inventory report (no YYYY-MM-DDTHH-MMZ/ folder); name a manifest.json, or the folder S3 writes a configuration's reports to"
    )]
    NoReport { location: Location },
    #[error("{0} is not there: name an existing manifest.json")]
    NotFound(String),
    #[error(
        "the inventory manifest {location} is over {MAX_MANIFEST_BYTES} bytes: it is not an S3 Inventory manifest"
    )]
    TooLarge { location: String },
    #[error(transparent)]
    Fetch(ListingFailure),
    #[error(
        "the inventory data file {location} is not the one its manifest describes (MD5 {found}, \
         the manifest's {expected}); it may still be being written: retry once the report is complete"
    )]
    Checksum {
        location: String,
        found: String,
        expected: String,
    },
    #[error("the inventory data file {location}")]
    Data {
        location: String,
        #[source]
        source: DataError,
    },
    #[error(
        "cannot sort the inventory report in {dir}: give --inventory-spill-dir a folder with room for the report, uncompressed"
    )]
    Spill {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a small object (a manifest, a plan, a summary) could not be read.
#[derive(Debug)]
pub(super) enum SmallObjectError {
    /// Reading it failed, retries spent.
    Failed(ListingFailure),
    /// It is larger than what was asked for: not the object it should be.
    TooLarge,
}

impl Reconciler {
    /// The report's objects under `prefix` (past `position`), merge-joined with the replica
    /// bucket's listing. The sorted report is cut into key ranges of [`RANGE_PAGES`] pages of
    /// sources; up to `ranges_in_flight` ranges have their replicas listed (GCS `startOffset` and
    /// `endOffset`) and joined at once, and their pages are passed on one range after another,
    /// so they stay in key order.
    pub(super) fn inventory_pages(
        &self,
        inventory: SourceInventory,
        prefix: String,
        position: Option<Position>,
        page_size: u32,
        ranges_in_flight: usize,
    ) -> PageReceiver {
        let after = Position::after_key(position);
        let range_objects = RANGE_PAGES * usize::try_from(page_size).unwrap_or(1000);
        let ranges = self.inventory_ranges(inventory, prefix.clone(), after.clone(), range_objects);
        let this = self.clone();
        let started = stream::unfold(ranges, |mut ranges| async move {
            ranges.recv().await.map(|range| (range, ranges))
        })
        .map_ok(move |(range, sources)| {
            let replicas = this.list_replicas(prefix.clone(), range, after.clone(), page_size);
            join_pages(listed(sources), replicas, page_size)
        });
        in_key_order(started, ranges_in_flight, page_size)
    }

    /// The report's objects under `prefix` and after `after`, in key order, cut into contiguous
    /// key ranges of `range_objects` each: the first from the start of the run's bounds (the
    /// key space, or a shard's range), the last to their end, each ending where the next
    /// begins, so the ranges' replica listings hold every replica in the bounds once. An empty
    /// report is one range of no source.
    fn inventory_ranges(
        &self,
        inventory: SourceInventory,
        prefix: String,
        after: Option<String>,
        range_objects: usize,
    ) -> mpsc::Receiver<Result<(KeyRange, Vec<ListedObject>), ReconcileError>> {
        let (ranges, receiver) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let sorted = match this.sorted_inventory(&inventory).await {
                Ok((sorted, _)) => sorted,
                Err(error) => {
                    let _ = ranges.send(Err(error.into())).await;
                    return;
                }
            };
            let spill_dir = inventory.sort.spill_dir.clone();
            // Reading the runs is file I/O: off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                let mut sorted = sorted;
                let bounds = inventory.bounds;
                let selected = sorted.by_ref().filter(|entry| {
                    entry.as_ref().map_or(true, |entry| {
                        entry.key.starts_with(&prefix)
                            && bounds.contains(&entry.key)
                            && after
                                .as_deref()
                                .is_none_or(|after| entry.key.as_str() > after)
                    })
                });
                let mut start = bounds.start.clone();
                let mut sources = Vec::with_capacity(range_objects);
                for entry in selected {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(source) => {
                            let error = InventoryError::Spill {
                                dir: spill_dir,
                                source,
                            };
                            let _ = ranges.blocking_send(Err(error.into()));
                            return;
                        }
                    };
                    if sources.len() == range_objects {
                        let range = KeyRange {
                            start: start.replace(entry.key.clone()),
                            end: Some(entry.key.clone()),
                        };
                        let full =
                            std::mem::replace(&mut sources, Vec::with_capacity(range_objects));
                        if ranges.blocking_send(Ok((range, full))).is_err() {
                            return;
                        }
                    }
                    sources.push(ListedObject {
                        key: entry.key,
                        size: entry.size,
                        etag: entry.etag,
                        last_modified: entry.last_modified,
                    });
                }
                let last = KeyRange {
                    start,
                    end: bounds.end.clone(),
                };
                let _ = ranges.blocking_send(Ok((last, sources)));
                if sorted.duplicates() > 0 {
                    tracing::warn!(
                        duplicates = sorted.duplicates(),
                        "keys listed more than once in the inventory report: each was kept once, as last modified"
                    );
                }
            })
            .await;
        });
        receiver
    }

    /// Reads the report's manifest, checks it, and sorts its data files' objects.
    pub(super) async fn sorted_inventory(
        &self,
        inventory: &SourceInventory,
    ) -> Result<(Sorted, Report), InventoryError> {
        let location = &inventory.location;
        let (manifest_location, manifest) = self.manifest(inventory).await?;
        tracing::info!(
            manifest = %manifest_location,
            created = %manifest.created,
            files = manifest.files.len(),
            "reading the inventory report"
        );
        let spill = |source| InventoryError::Spill {
            dir: inventory.sort.spill_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&inventory.sort.spill_dir).map_err(spill)?;
        let mut sort = ExternalSort::new(inventory.sort.clone());
        let (mut objects, mut noncurrent) = (0, 0);
        for file in &manifest.files {
            let path = self
                .download(&location.bucket, file, &inventory.sort.spill_dir)
                .await?;
            let schema = manifest.schema.clone();
            let data_location = format!("s3://{}/{}", location.bucket, file.key);
            let dir = inventory.sort.spill_dir.clone();
            let read = tokio::task::spawn_blocking(move || {
                let rows = match File::open(&path) {
                    Ok(opened) => read_data_file(opened, &schema, |entry| sort.push(entry))
                        .map_err(|error| match error {
                            DataError::Keep(source) => InventoryError::Spill { dir, source },
                            source => InventoryError::Data {
                                location: data_location,
                                source,
                            },
                        }),
                    Err(source) => Err(InventoryError::Spill { dir, source }),
                };
                let _ = std::fs::remove_file(&path);
                rows.map(|rows| (rows, sort))
            })
            .await
            .map_err(|error| spill(std::io::Error::other(error)))?;
            let (rows, sorted_so_far) = read?;
            sort = sorted_so_far;
            objects += rows.objects;
            noncurrent += rows.noncurrent;
        }
        let runs = sort.runs();
        let sorted = tokio::task::spawn_blocking(move || sort.finish())
            .await
            .map_err(|error| spill(std::io::Error::other(error)))?
            .map_err(spill)?;
        tracing::info!(
            objects,
            noncurrent,
            runs,
            "the inventory report is read and sorted"
        );
        let report = Report {
            manifest: manifest_location,
            created: manifest.created,
            objects,
        };
        Ok((sorted, report))
    }

    /// The report's manifest (and where it is), checked: of the source bucket, and recent.
    async fn manifest(
        &self,
        inventory: &SourceInventory,
    ) -> Result<(String, Manifest), InventoryError> {
        let location = &inventory.location;
        let key = self.manifest_key(location).await?;
        let manifest_location = format!("s3://{}/{key}", location.bucket);
        let bytes = match self
            .fetch_small(&location.bucket, &key, MAX_MANIFEST_BYTES)
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(InventoryError::NotFound(manifest_location)),
            Err(SmallObjectError::TooLarge) => {
                return Err(InventoryError::TooLarge {
                    location: manifest_location,
                });
            }
            Err(SmallObjectError::Failed(failure)) => return Err(InventoryError::Fetch(failure)),
        };
        let manifest = Manifest::parse(&bytes)?;
        manifest.check(&self.buckets.source, Utc::now(), inventory.max_age)?;
        Ok((manifest_location, manifest))
    }

    /// The manifest's key: the one named, or the newest report's in the folder named.
    async fn manifest_key(&self, location: &Location) -> Result<String, InventoryError> {
        if !location.is_folder() {
            return Ok(location.key.clone());
        }
        let what = format!("listing {location}");
        let mut newest: Option<String> = None;
        let mut continuation: Option<String> = None;
        loop {
            let query = yuba_aws::ListQuery {
                prefix: &location.key,
                delimiter: Some("/"),
                continuation: continuation.as_deref(),
                page_size: 1000,
                ..yuba_aws::ListQuery::default()
            };
            let page = with_retries(&what, || async {
                self.s3
                    .list(&location.bucket, &query)
                    .await
                    .map_err(|error| ListingFailure::s3(&what, error))
            })
            .await
            .map_err(InventoryError::Fetch)?;
            let candidates = newest.iter().chain(&page.prefixes).map(String::as_str);
            newest = newest_manifest(candidates)
                .map(|manifest| manifest.trim_end_matches(MANIFEST_NAME).to_owned());
            continuation = page.continuation;
            if continuation.is_none() {
                break;
            }
        }
        newest
            .map(|folder| format!("{folder}{MANIFEST_NAME}"))
            .ok_or_else(|| InventoryError::NoReport {
                location: location.clone(),
            })
    }

    /// A small object's bytes (`None` if there is none), refused past `max` bytes: the read
    /// stops there.
    pub(super) async fn fetch_small(
        &self,
        bucket: &str,
        key: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, SmallObjectError> {
        let what = format!("reading s3://{bucket}/{key}");
        let bytes = with_retries(&what, || async {
            let failure = |error| ListingFailure::s3(&what, error);
            let Some(mut object) = self.s3.get(bucket, key).await.map_err(failure)? else {
                return Ok(None);
            };
            let mut bytes = Vec::new();
            while let Some(chunk) = object.next_chunk().await {
                bytes.extend_from_slice(&chunk.map_err(failure)?);
                if bytes.len() > max {
                    break;
                }
            }
            Ok(Some(bytes))
        })
        .await
        .map_err(SmallObjectError::Failed)?;
        match bytes {
            Some(bytes) if bytes.len() > max => Err(SmallObjectError::TooLarge),
            bytes => Ok(bytes),
        }
    }

    /// Streams a data file to a file in `dir`, checking it against the manifest's MD5.
    async fn download(
        &self,
        bucket: &str,
        file: &DataFile,
        dir: &std::path::Path,
    ) -> Result<PathBuf, InventoryError> {
        let location = format!("s3://{bucket}/{}", file.key);
        let path = dir.join(format!(
            "yuba-inventory-{}-{}.data",
            std::process::id(),
            rand::random::<u64>()
        ));
        let what = format!("reading {location}");
        // S3's failures are retried; the disk's are the run's (`Err` inside `Ok`).
        let found = with_retries(&what, || async {
            let failure = |error| ListingFailure::s3(&what, error);
            let Some(mut object) = self.s3.get(bucket, &file.key).await.map_err(failure)? else {
                return Ok(Ok(None));
            };
            let mut out = match File::create(&path) {
                Ok(out) => std::io::BufWriter::new(out),
                Err(error) => return Ok(Err(error)),
            };
            let mut md5 = Md5::new();
            while let Some(chunk) = object.next_chunk().await {
                let chunk = chunk.map_err(failure)?;
                md5.update(&chunk);
                if let Err(error) = out.write_all(&chunk) {
                    return Ok(Err(error));
                }
            }
            Ok(out.flush().map(|()| Some(hex::encode(md5.finalize()))))
        })
        .await;
        let error = match found {
            Ok(Ok(Some(found))) if found.eq_ignore_ascii_case(&file.md5) => return Ok(path),
            Ok(Ok(Some(found))) => InventoryError::Checksum {
                location,
                found,
                expected: file.md5.clone(),
            },
            Ok(Ok(None)) => InventoryError::NotFound(location),
            Ok(Err(source)) => InventoryError::Spill {
                dir: dir.to_owned(),
                source,
            },
            Err(error) => InventoryError::Fetch(error),
        };
        let _ = std::fs::remove_file(&path);
        Err(error)
    }
}
