//! The run loop: where a run starts (its checkpoint), the pages in flight, and what comes out
//! of them in key order (findings, totals, the checkpoint after each page).

use std::time::Instant;

use futures::{StreamExt, stream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use yuba_model::ErrorChain;

use super::judge::Judged;
use super::pages::{PageReceiver, PairPage};
use super::{Live, Observer, ReconcileError, Reconciler, RunOptions, Selection, Task};
use crate::checkpoint::{Checkpoint, CheckpointFile, Position};
use crate::classify::Kind;
use crate::pace::Pacer;
use crate::report::{Counts, Finding, Summary, exit_code};

/// Pages worked on at once: one finishing while the next starts, so a slow object at the end
/// of a page does not idle the others.
const PAGES_IN_FLIGHT: usize = 2;
/// The conventional exit code of a program stopped by SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Ranges listed at once, at most (each holds a few pages of both listings).
const MAX_RANGES_IN_FLIGHT: usize = 8;

/// What every page of a run shares.
pub(super) struct RunContext<'a> {
    pub(super) task: &'a Task,
    pub(super) selection: &'a Selection,
    pub(super) dry_run: bool,
    pub(super) concurrency: usize,
    pub(super) io: Semaphore,
    pub(super) pacer: Option<Pacer>,
    pub(super) live: &'a Live,
}

/// One page done: its findings in key order and its counts.
struct PageDone {
    findings: Vec<Finding>,
    counts: Counts,
    position: Option<Position>,
}

/// What the finished pages add up to, and where they are saved.
struct Progress<'a> {
    observer: &'a dyn Observer,
    totals: Counts,
    /// `None` without a checkpoint, or once saving one has failed.
    checkpoint: Option<CheckpointFile>,
}

impl Reconciler {
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
        let resumed = resume(checkpoint.as_ref(), options)?;
        let summary_of = {
            let resumed = resumed.is_some();
            move |totals| summary(task, options, totals, resumed, started)
        };
        let (position, totals) = match resumed {
            Some(saved) => (Some(saved.position), saved.counts),
            None => (None, Counts::default()),
        };
        observer.page_done(&totals);

        let pages = self.pages(selection, position, options)?;
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
            .map(|page| async { Ok::<_, ReconcileError>(self.process(&context, page?).await) })
            .buffered(PAGES_IN_FLIGHT);
        let mut processed = std::pin::pin!(processed);

        let mut progress = Progress {
            observer,
            totals,
            checkpoint: checkpoint.clone(),
        };
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => {
                    let mut summary = summary_of(progress.totals);
                    summary.exit_code = EXIT_INTERRUPTED;
                    return Err(ReconcileError::Interrupted {
                        checkpoint: progress.checkpoint.map(|file| file.path().to_owned()),
                        summary: Box::new(summary),
                    });
                }
                next = processed.next() => next,
            };
            let Some(done) = next else { break };
            progress.page_done(done?);
        }
        if let Some(file) = &checkpoint {
            file.remove()?;
        }
        Ok(summary_of(progress.totals))
    }

    /// The run's pages, in key order: of the manifest's keys, of the inventory report and the
    /// replica's listing, or of both listings.
    fn pages(
        &self,
        selection: &Selection,
        position: Option<Position>,
        options: &RunOptions,
    ) -> Result<PageReceiver, ReconcileError> {
        Ok(match (&selection.manifest, &selection.source_inventory) {
            (Some(manifest), _) => self.manifest_pages(manifest.clone(), position, options)?,
            (None, Some(inventory)) => self.inventory_pages(
                inventory.clone(),
                selection.prefix.clone(),
                position,
                options.page_size,
                options.concurrency.clamp(1, MAX_RANGES_IN_FLIGHT),
            ),
            (None, None) => self.listing_pages(
                selection.prefix.clone(),
                position,
                options.page_size,
                options.concurrency.clamp(1, MAX_RANGES_IN_FLIGHT),
            ),
        })
    }

    /// Judges a page's pairs, repairs what `backfill` repairs, and counts it all.
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
            // A variant in sync is counted as listed (`listed_variants`), not as a replica.
            if judged.verdict.kind != Kind::InSync || !judged.is_variant() {
                counts.count(judged.verdict.kind);
            }
            if judged.verified {
                counts.verified += 1;
            }
            if judged.looked_up {
                counts.looked_up += 1;
            }
            if judged.verdict.kind != Kind::InSync {
                drift.push(judged);
            }
        }
        let findings = match context.task {
            Task::Backfill {
                repair, orphans, ..
            } => {
                self.repair(context, repair, *orphans, drift, &mut counts)
                    .await
            }
            _ => drift
                .into_iter()
                .map(|judged| judged.into_finding(None, None))
                .collect(),
        };
        PageDone {
            findings,
            counts,
            position,
        }
    }
}

impl Progress<'_> {
    /// Reports a finished page's findings, adds its counts and saves where the run is.
    fn page_done(&mut self, done: PageDone) {
        for finding in &done.findings {
            self.observer.finding(finding);
        }
        self.totals.add(&done.counts);
        if let (Some(file), Some(position)) = (&self.checkpoint, done.position)
            && let Err(error) = file.save(position, &self.totals)
        {
            tracing::warn!(error = %ErrorChain(&error), "the run goes on without a checkpoint; point --checkpoint at a writable file to make it resumable");
            self.checkpoint = None;
        }
        self.observer.page_done(&self.totals);
    }
}

/// What the checkpoint saved, when the run resumes it.
fn resume(
    checkpoint: Option<&CheckpointFile>,
    options: &RunOptions,
) -> Result<Option<Checkpoint>, ReconcileError> {
    if options.dry_run && options.resume {
        tracing::warn!(
            "a dry run neither reads nor writes checkpoints: starting from the beginning"
        );
    }
    let Some(file) = checkpoint else {
        return Ok(None);
    };
    if !options.resume {
        if file.path().exists() {
            tracing::warn!(path = %file.path().display(), "a checkpoint of an earlier run is there; starting over (it is replaced): pass --resume to continue it instead");
        }
        return Ok(None);
    }
    let saved = file.load()?;
    match &saved {
        Some(saved) => {
            tracing::info!(path = %file.path().display(), position = ?saved.position, "resuming from the checkpoint");
        }
        None => {
            tracing::info!(path = %file.path().display(), "no checkpoint to resume: starting from the beginning");
        }
    }
    Ok(saved)
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
        command: task.name().to_owned(),
        exit_code: exit_code(&counts, repairs),
        counts,
        resumed,
        dry_run: options.dry_run,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        shard: None,
        shards: None,
    }
}
