//! A run: pages of key pairs (from the two listings, or from a manifest) flow through
//! classification, optional content checks and repairs, with bounded concurrency, and are
//! reported and checkpointed in key order.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use yuba_aws::{JobSender, ListedObject, S3Source};
use yuba_events::{Router, WorkQueues};
use yuba_gcs::{Gcs, ListQuery, ObjectInfo};
use yuba_model::{CANARY_PREFIX, DeleteJob, FailureKind, Job, ReplicaRecord, ReplicateJob, keys};
use yuba_replicate::{Outcome, Replicator};
use yuba_variants::VariantConfig;

use crate::checkpoint::{CheckpointError, CheckpointFile, Position};
use crate::classify::{Companion, Kind, Pair, Verdict, classify};
use crate::content::{ContentCheck, compare_deep, judge};
use crate::join::{Join, OrderError, Step};
use crate::pace::Pacer;
use crate::ranges::{self, Level, Range};
use crate::report::{Action, Counts, Finding, Summary, exit_code};

/// Pages worked on at once: one finishing while the next starts, so a slow object at the end
/// of a page does not idle the others.
const PAGES_IN_FLIGHT: usize = 2;
/// The conventional exit code of a program stopped by SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Ranges listed at once, at most (each holds a few pages of both listings).
const MAX_RANGES_IN_FLIGHT: usize = 8;
/// A level with fewer directories than this is split further, to have ranges enough to list
/// at once...
const RANGES_WANTED: usize = 16;
/// ...down to this many levels under the prefix, so that planning stays a handful of requests.
const EXPLORE_DEPTH: u32 = 3;
/// Attempts at one listing page before the run fails (the SDKs retry inside each attempt too).
const LISTING_ATTEMPTS: u32 = 5;
/// How listing requests are retried: pauses drawn up to 1, 2, 4 and 8 s (on average the 7.5 s
/// in all that a fixed 0.5 s doubling waited), and a time limit that lets five attempts time
/// out at the clients' 60 s but stops a listing that hangs longer.
const LISTING_RETRIES: yuba_retry::RetryPolicy = yuba_retry::RetryPolicy {
    first_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(8),
    max_attempts: LISTING_ATTEMPTS,
    time_limit: Duration::from_secs(300),
};
/// The retries all the listing tasks of the process may make: when a bucket fails every
/// request, the ranges listed at once do not each retry it `LISTING_ATTEMPTS` times.
static LISTING_BUDGET: std::sync::LazyLock<yuba_retry::RetryBudget> =
    std::sync::LazyLock::new(yuba_retry::RetryBudget::default);

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

/// How `backfill` repairs.
#[derive(Debug, Clone)]
pub enum Repair {
    /// Jobs on the work queues, in the format and by the routing ingest uses.
    Enqueue {
        sender: JobSender,
        queues: WorkQueues,
        router: Router,
    },
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
    Verify(Depth),
    Backfill {
        verify: Option<Depth>,
        repair: Repair,
        delete_orphans: bool,
    },
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

    fn depth(&self) -> Option<Depth> {
        match self {
            Task::Diff => None,
            Task::Verify(depth) => Some(*depth),
            Task::Backfill { verify, .. } => *verify,
        }
    }

    /// What the task does, for the checkpoint's run identity.
    fn describe(&self) -> String {
        let deep = |depth: Depth| if depth == Depth::Deep { " --deep" } else { "" };
        match self {
            Task::Diff => "diff".to_owned(),
            Task::Verify(depth) => format!("verify{}", deep(*depth)),
            Task::Backfill {
                verify,
                repair,
                delete_orphans,
            } => {
                let mut text = "backfill".to_owned();
                if matches!(repair, Repair::Inline(_)) {
                    text.push_str(" --inline");
                }
                if let Some(depth) = verify {
                    text.push_str(" --verify");
                    text.push_str(deep(*depth));
                }
                if *delete_orphans {
                    text.push_str(" --delete-orphans");
                }
                text
            }
        }
    }
}

/// Which keys a run looks at.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub prefix: String,
    /// Keys, one per line, instead of listing.
    pub manifest: Option<PathBuf>,
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
    #[error("{0}")]
    Listing(String),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("cannot read the manifest {path}: {error}")]
    Manifest { path: PathBuf, error: String },
    #[error("{0}")]
    Lookup(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
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

/// One page of pairs, with what the listing counted while making it.
#[derive(Debug, Default)]
struct PairPage {
    pairs: Vec<Pair>,
    listed: Counts,
    /// Where the run is once this page is done; `None` for a page that adds only counts.
    position: Option<Position>,
}

impl PairPage {
    /// Adds a pair, counting what the listings held.
    fn push(&mut self, pair: Pair) {
        if let Some(source) = &pair.source {
            self.listed.listed_source += 1;
            self.listed.listed_source_bytes += source.size;
        }
        if pair.replica.is_some() {
            self.listed.listed_replica += 1;
        }
        self.pairs.push(pair);
    }

    /// Whether `object` is a companion of the replicas rather than one, counting it if so.
    fn count_companion(&mut self, object: &ObjectInfo) -> bool {
        let counter = match Companion::of(object) {
            Some(Companion::Variant) => &mut self.listed.listed_variants,
            Some(Companion::UploadPart) => &mut self.listed.listed_upload_parts,
            Some(Companion::Canary) => &mut self.listed.listed_canary,
            None => return false,
        };
        *counter += 1;
        true
    }

    /// Appends the next page (in key order): its pairs, its counts and its position.
    fn absorb(&mut self, page: PairPage) {
        self.pairs.extend(page.pairs);
        self.listed.add(&page.listed);
        if page.position.is_some() {
            self.position = page.position;
        }
    }
}

/// One page done: its findings in key order and its counts.
struct PageDone {
    findings: Vec<Finding>,
    counts: Counts,
    position: Option<Position>,
}

/// A classified pair; `forced` when a content check, not the listing, found the drift (the
/// worker's own check would not see it, so its job must be forced).
struct Judged {
    pair: Pair,
    verdict: Verdict,
    forced: bool,
    verified: bool,
}

/// What every page of a run shares.
struct RunContext<'a> {
    task: &'a Task,
    selection: &'a Selection,
    dry_run: bool,
    concurrency: usize,
    io: Semaphore,
    pacer: Option<Pacer>,
    live: &'a Live,
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
            let _ = write!(identity, " --manifest {}", manifest.display());
        }
        if let Some(since) = selection.since {
            let _ = write!(identity, " --since {}", since.to_rfc3339());
        }
        if let Some(until) = selection.until {
            let _ = write!(identity, " --until {}", until.to_rfc3339());
        }
        identity
    }

    pub async fn run(
        &self,
        task: &Task,
        selection: &Selection,
        options: &RunOptions,
        observer: &dyn Observer,
        live: &Live,
        cancel: CancellationToken,
    ) -> Result<Summary, ReconcileError> {
        let started = Instant::now();
        let checkpoint = options
            .checkpoint
            .clone()
            .filter(|_| !options.dry_run)
            .map(|path| CheckpointFile::new(path, self.run_identity(task, selection)));
        if options.dry_run && options.resume {
            tracing::warn!(
                "a dry run neither reads nor writes checkpoints: starting from the beginning"
            );
        }
        let resumed = match (&checkpoint, options.resume) {
            (Some(file), true) => {
                let saved = file.load()?;
                if saved.is_none() {
                    tracing::info!(path = %file.path().display(), "no checkpoint to resume: starting from the beginning");
                }
                saved
            }
            (Some(file), false) => {
                if file.path().exists() {
                    tracing::warn!(path = %file.path().display(), "a checkpoint of an earlier run is there; starting over (it is replaced): pass --resume to continue it instead");
                }
                None
            }
            _ => None,
        };
        let (position, mut totals) = match resumed.clone() {
            Some(saved) => {
                tracing::info!(path = %checkpoint.as_ref().map(|f| f.path().display().to_string()).unwrap_or_default(), position = ?saved.position, "resuming from the checkpoint");
                (Some(saved.position), saved.counts)
            }
            None => (None, Counts::default()),
        };
        observer.page_done(&totals);

        let pages = match &selection.manifest {
            Some(path) => self.manifest_pages(path.clone(), position, options)?,
            None => self.listing_pages(
                selection.prefix.clone(),
                position,
                options.page_size,
                options.concurrency.clamp(1, MAX_RANGES_IN_FLIGHT),
            ),
        };
        let context = RunContext {
            task,
            selection,
            dry_run: options.dry_run,
            concurrency: options.concurrency.max(1),
            io: Semaphore::new(options.concurrency.max(1)),
            pacer: options.max_rate.map(Pacer::new),
            live,
        };
        let pages = stream::unfold(pages, |mut pages| async move {
            pages.recv().await.map(|page| (page, pages))
        });
        let processed = pages
            .map(|page| {
                let context = &context;
                async move {
                    match page {
                        Ok(page) => Ok(self.process(context, page).await),
                        Err(error) => Err(error),
                    }
                }
            })
            .buffered(PAGES_IN_FLIGHT);
        let mut processed = std::pin::pin!(processed);

        let mut checkpoint_writable = checkpoint.clone();
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => {
                    let mut summary = summary(task, options, totals, resumed.is_some(), started);
                    summary.exit_code = EXIT_INTERRUPTED;
                    return Err(ReconcileError::Interrupted {
                        checkpoint: checkpoint_writable.map(|file| file.path().to_owned()),
                        summary: Box::new(summary),
                    });
                }
                next = processed.next() => next,
            };
            let Some(done) = next else { break };
            let done = done?;
            for finding in &done.findings {
                observer.finding(finding);
            }
            totals.add(&done.counts);
            if let (Some(file), Some(position)) = (&checkpoint_writable, done.position)
                && let Err(error) = file.save(position, &totals)
            {
                tracing::warn!(%error, "the run goes on without a checkpoint; point --checkpoint at a writable file to make it resumable");
                checkpoint_writable = None;
            }
            observer.page_done(&totals);
        }
        if let Some(file) = &checkpoint {
            file.remove()?;
        }
        Ok(summary(task, options, totals, resumed.is_some(), started))
    }

    /// Lists both buckets and merge-joins them into pages, in key order. The key space is split
    /// at its directories (see [`ranges`](crate::ranges)) and up to `ranges_in_flight` ranges
    /// are listed at once; their pages are passed on one range after another, small ones merged
    /// up to `page_size` pairs.
    fn listing_pages(
        &self,
        prefix: String,
        position: Option<Position>,
        page_size: u32,
        ranges_in_flight: usize,
    ) -> mpsc::Receiver<Result<PairPage, ReconcileError>> {
        let after = match position {
            Some(Position::AfterKey(key)) => Some(key),
            _ => None,
        };
        let (pages, receiver) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let result: Result<(), ReconcileError> = async {
                let mut ranges = this.explore(prefix, 0, page_size, ranges_in_flight).await?;
                if let Some(after) = &after {
                    ranges = ranges::after(ranges, after);
                }
                tracing::info!(
                    ranges = ranges.len(),
                    at_once = ranges_in_flight,
                    "listing the key space in ranges"
                );
                let pairs_per_page = usize::try_from(page_size).unwrap_or(1000);
                let mut ranges = ranges.into_iter();
                let mut listing = VecDeque::with_capacity(ranges_in_flight);
                let mut pending = PairPage::default();
                loop {
                    while listing.len() < ranges_in_flight
                        && let Some(range) = ranges.next()
                    {
                        listing.push_back(this.range_pages(range, after.clone(), page_size));
                    }
                    let Some(head) = listing.front_mut() else {
                        break;
                    };
                    let Some(page) = head.recv().await else {
                        listing.pop_front();
                        continue;
                    };
                    let page = page?;
                    if !pending.pairs.is_empty()
                        && pending.pairs.len() + page.pairs.len() > pairs_per_page
                        && pages.send(Ok(std::mem::take(&mut pending))).await.is_err()
                    {
                        return Ok(());
                    }
                    pending.absorb(page);
                    if pending.pairs.len() >= pairs_per_page
                        && pages.send(Ok(std::mem::take(&mut pending))).await.is_err()
                    {
                        return Ok(());
                    }
                }
                let _ = pages.send(Ok(pending)).await;
                Ok(())
            }
            .await;
            if let Err(error) = result {
                let _ = pages.send(Err(error)).await;
            }
        });
        receiver
    }

    /// The ranges under `prefix`: its directories and the keys between them, descending into
    /// the directories while a level has fewer than [`RANGES_WANTED`]. A level too large for
    /// one page of a delimiter listing is listed flat, as one range.
    fn explore(
        &self,
        prefix: String,
        depth: u32,
        page_size: u32,
        in_flight: usize,
    ) -> futures::future::BoxFuture<'_, Result<Vec<Range>, ReconcileError>> {
        Box::pin(async move {
            let Some(level) = self.level(&prefix, page_size).await? else {
                return Ok(vec![Range::Prefix(prefix)]);
            };
            let ranges = level.into_ranges();
            let directories = ranges
                .iter()
                .filter(|range| matches!(range, Range::Prefix(_)))
                .count();
            if depth + 1 >= EXPLORE_DEPTH || directories == 0 || directories >= RANGES_WANTED {
                return Ok(ranges);
            }
            let expanded: Vec<Vec<Range>> = stream::iter(ranges)
                .map(|range| async move {
                    match range {
                        Range::Prefix(prefix) => {
                            self.explore(prefix, depth + 1, page_size, in_flight).await
                        }
                        listed @ Range::Listed { .. } => Ok(vec![listed]),
                    }
                })
                .buffered(in_flight)
                .try_collect()
                .await?;
            Ok(expanded.into_iter().flatten().collect())
        })
    }

    /// One level under `prefix` from both buckets, if it fits in one page on each side.
    async fn level(&self, prefix: &str, page_size: u32) -> Result<Option<Level>, ReconcileError> {
        let s3_query = yuba_aws::ListQuery {
            prefix,
            delimiter: Some(ranges::DELIMITER),
            page_size,
            ..yuba_aws::ListQuery::default()
        };
        let gcs_query = ListQuery {
            prefix,
            delimiter: Some(ranges::DELIMITER),
            page_size,
            ..ListQuery::default()
        };
        let (source_what, replica_what) = (
            format!("listing s3://{}/{prefix}", self.buckets.source),
            format!("listing gs://{}/{prefix}", self.buckets.replica),
        );
        let (sources, replicas) = tokio::join!(
            with_retries(&source_what, || async {
                self.s3
                    .list(&self.buckets.source, &s3_query)
                    .await
                    .map_err(|e| (e.kind, e.message))
            }),
            with_retries(&replica_what, || async {
                self.gcs
                    .list(&self.buckets.replica, &gcs_query)
                    .await
                    .map_err(|e| (e.kind, e.message))
            }),
        );
        let (sources, replicas) = (sources?, replicas?);
        if sources.continuation.is_some() || replicas.next_page_token.is_some() {
            return Ok(None);
        }
        Ok(Some(Level {
            sources: sources.objects,
            source_prefixes: sources.prefixes,
            replicas: replicas.objects,
            replica_prefixes: replicas.prefixes,
        }))
    }

    /// The pages of one range: listed (past `after`, the position a run resumes from) and
    /// merge-joined.
    fn range_pages(
        &self,
        range: Range,
        after: Option<String>,
        page_size: u32,
    ) -> mpsc::Receiver<Result<PairPage, ReconcileError>> {
        let (mut sources, mut replicas) = match range {
            Range::Prefix(prefix) => (
                self.list_sources(prefix.clone(), after.clone(), page_size),
                self.list_replicas(prefix, after, page_size),
            ),
            Range::Listed { sources, replicas } => (listed(sources), listed(replicas)),
        };
        let page_size = usize::try_from(page_size).unwrap_or(1000);
        let (pages, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut join = Join::new();
            let mut page = PairPage::default();
            let result: Result<(), ReconcileError> = async {
                loop {
                    match join.next_step() {
                        Step::Pair(pair) => {
                            page.position = Some(Position::AfterKey(pair.key.clone()));
                            page.push(*pair);
                            if page.pairs.len() >= page_size
                                && pages.send(Ok(std::mem::take(&mut page))).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        Step::NeedSources => match sources.recv().await {
                            Some(listed) => {
                                let (mut objects, last) = listed?;
                                // The canary's prefix is its own in the source bucket too
                                // (its replicas are left out of the other side): such a key
                                // would otherwise be reported missing on every run.
                                objects.retain(|object| {
                                    let canary = object.key.starts_with(CANARY_PREFIX);
                                    page.listed.listed_canary += u64::from(canary);
                                    !canary
                                });
                                join.feed_sources(objects, last)?;
                            }
                            None => return Ok(()),
                        },
                        Step::NeedReplicas => match replicas.recv().await {
                            Some(listed) => {
                                let (objects, last) = listed?;
                                let replicas: Vec<ObjectInfo> = objects
                                    .into_iter()
                                    .filter(|object| !page.count_companion(object))
                                    .collect();
                                join.feed_replicas(replicas, last)?;
                            }
                            None => return Ok(()),
                        },
                        Step::Done => {
                            let _ = pages.send(Ok(page)).await;
                            return Ok(());
                        }
                    }
                }
            }
            .await;
            if let Err(error) = result {
                let _ = pages.send(Err(error)).await;
            }
        });
        receiver
    }

    fn list_sources(
        &self,
        prefix: String,
        after: Option<String>,
        page_size: u32,
    ) -> mpsc::Receiver<Result<(Vec<ListedObject>, bool), ReconcileError>> {
        let s3 = self.s3.clone();
        let bucket = self.buckets.source.clone();
        let what = format!("listing s3://{bucket}/{prefix}");
        spawn_listing(what, move |continuation| {
            let (s3, bucket, prefix, after) =
                (s3.clone(), bucket.clone(), prefix.clone(), after.clone());
            async move {
                // S3 ignores StartAfter once it continues a listing.
                let start_after = after.filter(|_| continuation.is_none());
                let query = yuba_aws::ListQuery {
                    prefix: &prefix,
                    delimiter: None,
                    start_after: start_after.as_deref(),
                    continuation: continuation.as_deref(),
                    page_size,
                };
                let page = s3
                    .list(&bucket, &query)
                    .await
                    .map_err(|e| (e.kind, e.message))?;
                Ok((page.objects, page.continuation))
            }
        })
    }

    fn list_replicas(
        &self,
        prefix: String,
        after: Option<String>,
        page_size: u32,
    ) -> mpsc::Receiver<Result<(Vec<ObjectInfo>, bool), ReconcileError>> {
        let gcs = self.gcs.clone();
        let bucket = self.buckets.replica.clone();
        let what = format!("listing gs://{bucket}/{prefix}");
        spawn_listing(what, move |token| {
            let (gcs, bucket, prefix, after) =
                (gcs.clone(), bucket.clone(), prefix.clone(), after.clone());
            async move {
                let query = ListQuery {
                    prefix: &prefix,
                    delimiter: None,
                    start_offset: after.as_deref().filter(|_| token.is_none()),
                    page_token: token.as_deref(),
                    page_size,
                };
                let page = gcs
                    .list(&bucket, &query)
                    .await
                    .map_err(|e| (e.kind, e.message))?;
                // GCS's startOffset is inclusive: the key it names is already done.
                let objects = page
                    .objects
                    .into_iter()
                    .filter(|o| after.as_deref().is_none_or(|after| o.name.as_str() > after))
                    .collect();
                Ok((objects, page.next_page_token))
            }
        })
    }

    /// Pages of the keys a manifest names, looked up in both buckets.
    fn manifest_pages(
        &self,
        path: PathBuf,
        position: Option<Position>,
        options: &RunOptions,
    ) -> Result<mpsc::Receiver<Result<PairPage, ReconcileError>>, ReconcileError> {
        let manifest_error = |error: std::io::Error| ReconcileError::Manifest {
            path: path.clone(),
            error: error.to_string(),
        };
        let file = std::fs::File::open(&path).map_err(manifest_error)?;
        let mut lines = std::io::BufReader::new(file).lines();
        let skip = match position {
            Some(Position::Lines(lines)) => lines,
            _ => 0,
        };
        let (pages, receiver) = mpsc::channel(1);
        let page_size = usize::try_from(options.page_size).unwrap_or(1000);
        let concurrency = options.concurrency.max(1);
        let this = self.clone();
        tokio::spawn(async move {
            let mut consumed = 0_u64;
            loop {
                let mut keys = Vec::with_capacity(page_size);
                while keys.len() < page_size {
                    match lines.next() {
                        None => break,
                        Some(Err(error)) => {
                            let _ = pages
                                .send(Err(ReconcileError::Manifest {
                                    path: path.clone(),
                                    error: format!("line {}: {error}", consumed + 1),
                                }))
                                .await;
                            return;
                        }
                        Some(Ok(line)) => {
                            consumed += 1;
                            let key = line.strip_suffix('\r').unwrap_or(&line);
                            if consumed > skip && !key.is_empty() {
                                keys.push(key.to_owned());
                            }
                        }
                    }
                }
                let last = keys.len() < page_size;
                // The same key twice in one page would be repaired twice, at once.
                let mut seen = HashSet::new();
                keys.retain(|key| seen.insert(key.clone()));
                let looked_up: Vec<Result<Pair, ReconcileError>> = stream::iter(keys)
                    .map(|key| this.look_up(key))
                    .buffered(concurrency)
                    .collect()
                    .await;
                let mut page = PairPage {
                    position: Some(Position::Lines(consumed)),
                    ..PairPage::default()
                };
                for pair in looked_up {
                    match pair {
                        // A manifest made from a replica listing names variants and upload
                        // parts too: they live beside the replicas, as in a listing run.
                        Ok(pair)
                            if pair.source.is_none()
                                && pair
                                    .replica
                                    .as_ref()
                                    .is_some_and(|replica| page.count_companion(replica)) => {}
                        Ok(pair) => page.push(pair),
                        Err(error) => {
                            let _ = pages.send(Err(error)).await;
                            return;
                        }
                    }
                }
                if pages.send(Ok(page)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(receiver)
    }

    /// One manifest key in both buckets.
    async fn look_up(&self, key: String) -> Result<Pair, ReconcileError> {
        let (head, replica) = tokio::join!(
            self.s3.head(&self.buckets.source, &key),
            self.gcs.object(&self.buckets.replica, &key)
        );
        let head = head.map_err(|e| ReconcileError::Lookup(e.message))?;
        let replica = replica.map_err(|e| ReconcileError::Lookup(e.message))?;
        Ok(Pair {
            source: head.map(|head| ListedObject {
                key: key.clone(),
                size: head.size,
                etag: head.etag,
                last_modified: head.last_modified,
            }),
            replica,
            key,
        })
    }

    async fn process(&self, context: &RunContext<'_>, page: PairPage) -> PageDone {
        let PairPage {
            pairs,
            listed,
            position,
        } = page;
        let judged: Vec<Option<Judged>> = stream::iter(pairs)
            .map(|pair| self.judge(context, pair))
            .buffered(context.concurrency)
            .collect()
            .await;
        let mut counts = listed;
        let mut drift = Vec::new();
        for judged in judged {
            let Some(judged) = judged else {
                counts.skipped += 1;
                continue;
            };
            if judged.pair.source.is_none() && judged.pair.replica.is_none() {
                tracing::warn!(key = %judged.pair.key, "the manifest names a key that is in neither bucket");
                counts.not_found += 1;
                continue;
            }
            counts.count(judged.verdict.kind);
            if judged.verified {
                counts.verified += 1;
            }
            if judged.verdict.kind != Kind::InSync {
                drift.push(judged);
            }
        }
        let findings = match context.task {
            Task::Backfill {
                repair,
                delete_orphans,
                ..
            } => {
                self.repair(context, repair, *delete_orphans, drift, &mut counts)
                    .await
            }
            _ => drift.into_iter().map(|j| finding(j, None, None)).collect(),
        };
        PageDone {
            findings,
            counts,
            position,
        }
    }

    /// Classifies a pair; with `verify`, proves the content of what the listing found in sync.
    /// `None`: outside `--since`/`--until`.
    async fn judge(&self, context: &RunContext<'_>, pair: Pair) -> Option<Judged> {
        let last_modified = match (&pair.source, &pair.replica) {
            (Some(source), _) => source.last_modified,
            (None, Some(replica)) => ReplicaRecord::from_metadata(&replica.metadata)
                .ok()
                .flatten()
                .and_then(|record| record.source.last_modified),
            (None, None) => None,
        };
        if !context.selection.admits(last_modified) {
            return None;
        }
        if let Some(pacer) = &context.pacer {
            pacer.wait().await;
        }
        context.live.examined.fetch_add(1, Ordering::Relaxed);
        let verdict = classify(&pair, &self.buckets.source, &self.variants);
        let mut judged = Judged {
            pair,
            verdict,
            forced: false,
            verified: false,
        };
        let (Some(depth), Kind::InSync) = (context.task.depth(), judged.verdict.kind) else {
            return Some(judged);
        };
        let (Some(source), Some(replica)) = (&judged.pair.source, &judged.pair.replica) else {
            return Some(judged);
        };
        let Ok(Some(record)) = ReplicaRecord::from_metadata(&replica.metadata) else {
            return Some(judged);
        };
        let _permit = context.io.acquire().await.ok();
        let check = match depth {
            Depth::Checksums => match self.s3.head(&self.buckets.source, &source.key).await {
                Ok(head) => judge(source, head.as_ref(), replica, &record),
                Err(error) => ContentCheck::Drift(Verdict::drift(
                    Kind::Unverified,
                    format!("could not read the source's checksums: {}", error.message),
                )),
            },
            Depth::Deep => {
                compare_deep(
                    &self.s3,
                    &self.gcs,
                    &self.buckets.source,
                    &self.buckets.replica,
                    source,
                    replica,
                    &record,
                )
                .await
            }
        };
        let check = match check {
            ContentCheck::Verified(basis) => {
                match self.check_variants(&judged.pair.key, &record).await {
                    Some(verdict) => ContentCheck::Drift(verdict),
                    None => ContentCheck::Verified(basis),
                }
            }
            drift => drift,
        };
        match check {
            ContentCheck::Verified(_) => judged.verified = true,
            ContentCheck::Drift(verdict) => {
                judged.forced = verdict.kind.needs_copy();
                judged.verdict = verdict;
            }
        }
        Some(judged)
    }

    /// Whether every variant the record lists is there, made from this content.
    async fn check_variants(&self, key: &str, record: &ReplicaRecord) -> Option<Verdict> {
        for variant in &record.variants {
            let name = self
                .variants
                .key_template
                .render(&variant.profile, key, &variant.extension);
            match self.gcs.object(&self.buckets.replica, &name).await {
                Ok(None) => {
                    return Some(Verdict::drift(
                        Kind::VariantsMissing,
                        format!("variant {name} is absent"),
                    ));
                }
                Ok(Some(object))
                    if object.metadata.get(keys::SOURCE_SHA256) != record.sha256.as_ref() =>
                {
                    return Some(Verdict::drift(
                        Kind::VariantsMissing,
                        format!("variant {name} was made from other content"),
                    ));
                }
                Ok(Some(_)) => {}
                Err(error) => {
                    return Some(Verdict::drift(
                        Kind::Unverified,
                        format!("could not read variant {name}: {}", error.message),
                    ));
                }
            }
        }
        None
    }

    async fn repair(
        &self,
        context: &RunContext<'_>,
        repair: &Repair,
        delete_orphans: bool,
        drift: Vec<Judged>,
        counts: &mut Counts,
    ) -> Vec<Finding> {
        for judged in &drift {
            if judged.verdict.kind.needs_copy() {
                let size = judged.pair.source.as_ref().map_or(0, |s| s.size);
                context
                    .live
                    .bytes_to_copy
                    .fetch_add(size, Ordering::Relaxed);
            }
        }
        let jobs: Vec<Option<Job>> = drift
            .iter()
            .map(|judged| self.job_for(judged, delete_orphans))
            .collect();
        let outcomes: Vec<(Action, Option<String>)> = if context.dry_run {
            drift
                .iter()
                .zip(&jobs)
                .map(|(judged, job)| (planned(judged, job.as_ref()), None))
                .collect()
        } else {
            match repair {
                Repair::Inline(replicator) => {
                    stream::iter(drift.iter().zip(&jobs))
                        .map(|(judged, job)| {
                            self.repair_inline(context, replicator, judged, job.as_ref())
                        })
                        .buffered(context.concurrency)
                        .collect()
                        .await
                }
                Repair::Enqueue {
                    sender,
                    queues,
                    router,
                } => enqueue(sender, queues, router, &drift, &jobs).await,
            }
        };
        drift
            .into_iter()
            .zip(outcomes)
            .map(|(judged, (action, error))| {
                counts.count_action(action);
                if action == Action::Replicated {
                    let size = judged.pair.source.as_ref().map_or(0, |s| s.size);
                    counts.bytes_copied += size;
                }
                finding(judged, Some(action), error)
            })
            .collect()
    }

    /// The job that repairs a finding, if copying or deleting can.
    fn job_for(&self, judged: &Judged, delete_orphans: bool) -> Option<Job> {
        let key = judged.pair.key.clone();
        match (judged.verdict.kind, &judged.pair.source) {
            (kind, Some(source)) if kind.needs_copy() => Some(Job::Replicate(ReplicateJob {
                bucket: self.buckets.source.clone(),
                key,
                version_id: None,
                etag: Some(source.etag.clone()),
                size: Some(source.size),
                sequencer: None,
                event_time: None,
                force: judged.forced,
            })),
            // Only what yuba wrote is deleted: other objects in the replica bucket are someone's.
            (Kind::Orphan, _) if delete_orphans && written_by_yuba(judged) => {
                Some(Job::Delete(DeleteJob {
                    bucket: self.buckets.source.clone(),
                    key,
                    version_id: None,
                    sequencer: None,
                    event_time: None,
                }))
            }
            _ => None,
        }
    }

    async fn repair_inline(
        &self,
        context: &RunContext<'_>,
        replicator: &Replicator,
        judged: &Judged,
        job: Option<&Job>,
    ) -> (Action, Option<String>) {
        let Some(job) = job else {
            return (planned(judged, None), None);
        };
        let _permit = context.io.acquire().await.ok();
        match replicator
            .run_listed(job, judged.pair.replica.clone())
            .await
        {
            Ok(Outcome::Replicated { bytes, .. }) => {
                context
                    .live
                    .bytes_copied
                    .fetch_add(bytes, Ordering::Relaxed);
                (Action::Replicated, None)
            }
            Ok(Outcome::Deleted) => (Action::Deleted, None),
            Ok(Outcome::DeleteNotMirrored) => (
                Action::Kept,
                Some("YUBA_MIRROR_DELETES is false".to_owned()),
            ),
            Ok(
                Outcome::AlreadyReplicated { .. }
                | Outcome::Superseded { .. }
                | Outcome::SourceGone
                | Outcome::AlreadyAbsent
                | Outcome::SourceRecreated,
            ) => (Action::AlreadyDone, None),
            Err(error) => (Action::Failed, Some(error.to_string())),
        }
    }
}

fn summary(
    task: &Task,
    options: &RunOptions,
    counts: Counts,
    resumed: bool,
    started: Instant,
) -> Summary {
    let repairs = matches!(task, Task::Backfill { .. }) && !options.dry_run;
    Summary {
        command: task.name(),
        exit_code: exit_code(&counts, repairs),
        counts,
        resumed,
        dry_run: options.dry_run,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

fn written_by_yuba(judged: &Judged) -> bool {
    judged.pair.replica.as_ref().is_some_and(|replica| {
        matches!(ReplicaRecord::from_metadata(&replica.metadata), Ok(Some(_)))
    })
}

/// What a dry run would do, or what is done about a finding no job repairs.
fn planned(judged: &Judged, job: Option<&Job>) -> Action {
    match (job, judged.verdict.kind) {
        (Some(Job::Replicate(_)), _) => Action::WouldCopy,
        (Some(Job::Delete(_)), _) => Action::WouldDelete,
        (None, Kind::Orphan) => Action::Kept,
        (None, _) => Action::None,
    }
}

/// Puts the jobs on the work queues, routed as ingest routes them, in batches.
async fn enqueue(
    sender: &JobSender,
    queues: &WorkQueues,
    router: &Router,
    drift: &[Judged],
    jobs: &[Option<Job>],
) -> Vec<(Action, Option<String>)> {
    let mut outcomes: Vec<(Action, Option<String>)> = drift
        .iter()
        .zip(jobs)
        .map(|(judged, job)| (planned(judged, job.as_ref()), None))
        .collect();
    for route in [yuba_events::Route::Lambda, yuba_events::Route::Fargate] {
        let (indices, bodies): (Vec<usize>, Vec<String>) = jobs
            .iter()
            .enumerate()
            .filter_map(|(index, job)| {
                let job = job.as_ref()?;
                (router.route(job) == route).then(|| (index, job.to_message()))
            })
            .unzip();
        if bodies.is_empty() {
            continue;
        }
        let results = sender.send(queues.url(route), &bodies).await;
        for (index, result) in indices.into_iter().zip(results) {
            outcomes[index] = match result {
                Ok(()) => (Action::Enqueued(route), None),
                Err(error) => (Action::Failed, Some(error.to_string())),
            };
        }
    }
    outcomes
}

fn finding(judged: Judged, action: Option<Action>, error: Option<String>) -> Finding {
    let size = match (&judged.pair.source, &judged.pair.replica) {
        (Some(source), _) => source.size,
        (None, Some(replica)) => replica.size,
        (None, None) => 0,
    };
    Finding {
        kind: judged.verdict.kind,
        key: judged.pair.key,
        size,
        detail: judged.verdict.detail,
        action,
        error,
    }
}

/// Runs a listing in a task, a page at a time into a channel of one page (so it runs ahead of
/// the join by one page, no more). `fetch` gets the previous page's token (`None` first) and
/// returns a page and the next token; the channel carries each page and whether it was the last.
fn spawn_listing<T, F, Fut>(
    what: String,
    mut fetch: F,
) -> mpsc::Receiver<Result<(Vec<T>, bool), ReconcileError>>
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), (FailureKind, String)>> + Send,
{
    let (pages, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut token: Option<String> = None;
        loop {
            match with_retries(&what, || fetch(token.clone())).await {
                Ok((objects, next)) => {
                    let last = next.is_none();
                    if pages.send(Ok((objects, last))).await.is_err() || last {
                        return;
                    }
                    token = next;
                }
                Err(error) => {
                    let _ = pages.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    receiver
}

/// A listing already made, as the one page of a listing.
fn listed<T: Send + 'static>(
    objects: Vec<T>,
) -> mpsc::Receiver<Result<(Vec<T>, bool), ReconcileError>> {
    let (page, receiver) = mpsc::channel(1);
    // Cannot fail: the channel is new, with room for one.
    let _ = page.try_send(Ok((objects, true)));
    receiver
}

/// Runs one listing request, retrying transient failures ([`LISTING_RETRIES`], within
/// [`LISTING_BUDGET`]); the last failure is the run's.
async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ReconcileError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, (FailureKind, String)>>,
{
    yuba_retry::run(&LISTING_RETRIES, &LISTING_BUDGET, what, || {
        let listing = attempt();
        async move { listing.await.map_err(ListingFailure) }
    })
    .await
    .map_err(|ListingFailure((_, message))| ReconcileError::Listing(message))
}

/// A failed listing request, as [`with_retries`] tells its kind.
struct ListingFailure((FailureKind, String));

impl yuba_retry::Retryable for ListingFailure {
    fn kind(&self) -> FailureKind {
        self.0.0
    }
}

impl std::fmt::Display for ListingFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.1)
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
