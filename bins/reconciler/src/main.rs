//! yuba-reconciler: the backfill CLI and the scheduled repair task.
//!
//! Glue only: the command line and environment become a [`Task`] for
//! [`yuba_reconcile::Reconciler`], whose findings [`output::Report`] prints.

mod cli;
mod output;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use yuba_aws::{Dispatcher, JobSender, S3Source};
use yuba_events::{Router, WorkQueues};
use yuba_gcs::{Gcs, GcsSettings};
use yuba_model::ErrorChain;
use yuba_reconcile::{
    Action, Buckets, Counts, Depth, Finding, Live, MAX_RECHECKED_KEYS, Manifest, Observer, Orphans,
    Proof, Recheck, ReconcileError, Reconciler, Repair, RunOptions, Selection, ShardRange,
    SourceInventory, Summary, Task,
};
use yuba_replicate::{Footprint, Replicator, ReplicatorSettings};
use yuba_startup::Env;
use yuba_startup::cancel_on_termination;
use yuba_startup::metrics::{self, Dimension, Metric};

use crate::cli::{Cli, Command, Common, Run};
use crate::output::Report;

/// Exit codes besides the run's own 0 (in sync) and 1 (drift).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("yuba-reconciler: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit_code) => ExitCode::from(u8::try_from(exit_code).unwrap_or(EXIT_ERROR)),
        Err(error) => {
            let interrupted = matches!(
                error.downcast_ref::<ReconcileError>(),
                Some(ReconcileError::Interrupted { .. })
            );
            let error = ErrorChain(error.as_ref());
            tracing::error!("{error}");
            eprintln!("yuba-reconciler: {error}");
            ExitCode::from(if interrupted {
                u8::try_from(yuba_reconcile::EXIT_INTERRUPTED).unwrap_or(EXIT_ERROR)
            } else {
                EXIT_ERROR
            })
        }
    }
}

/// Runs the command; its exit code.
async fn run(cli: Cli) -> anyhow::Result<i32> {
    let env = Env::from_process();
    yuba_startup::telemetry::init(&env).map_err(anyhow::Error::msg)?;
    let gcs_settings = GcsSettings::from_env(&env)?;
    let concurrency = match &cli.command {
        Command::Run(run) => run.common().concurrency,
        Command::Plan { .. } | Command::Merge { .. } => 1,
    };
    let replicator_settings = ReplicatorSettings::from_env(
        &env,
        &Footprint::new(&gcs_settings, usize::from(concurrency)),
    )?;
    // The bucket listed is the one the replicator admits (YUBA_SOURCE_BUCKET, checked there).
    let buckets = Buckets {
        source: replicator_settings.sources.source().to_owned(),
        replica: replicator_settings.replica_bucket.clone(),
    };
    let force_path_style = env.flag("YUBA_S3_FORCE_PATH_STYLE", false)?;
    let progress_every = env.seconds_in(
        "YUBA_RECONCILE_PROGRESS_SECONDS",
        Duration::from_secs(10),
        0.1..=3600.0,
    )?;
    let sdk = yuba_aws::load_sdk_config().await;
    let s3 = S3Source::new(&sdk, force_path_style);
    let gcs = Gcs::connect(&gcs_settings).await?;
    tracing::info!(gcs_credentials = %gcs_settings.credentials, "GCS client ready");
    let reconciler = Reconciler::new(
        s3.clone(),
        gcs.clone(),
        buckets,
        replicator_settings.variants.clone(),
    );
    let run = match &cli.command {
        Command::Plan {
            shards,
            plan,
            inventory,
            json,
        } => {
            let inventory = inventory
                .source_inventory()
                .context("plan cuts an inventory report: give --source-inventory")?;
            let made = reconciler.plan(&inventory, *shards, plan).await?;
            Report::new(*json).plan(plan, &made);
            return Ok(0);
        }
        Command::Merge { plan, json } => {
            let summary = reconciler.merge(plan).await?;
            Report::new(*json).summary(&summary);
            emit_metrics(&summary);
            return Ok(summary.exit_code);
        }
        Command::Run(run) => run,
    };
    let common = run.common();

    let task = task(run, |inline| {
        Ok(if inline {
            Repair::Inline(Box::new(Replicator::new(
                s3.clone(),
                gcs.clone(),
                replicator_settings.clone(),
            )))
        } else {
            Repair::Enqueue(Dispatcher::new(
                JobSender::new(aws_sdk_sqs::Client::new(&sdk)),
                WorkQueues::from_env(&env).context("backfill enqueues jobs (or use --inline)")?,
                Router::from_env(&env)?,
            ))
        })
    })?;
    let recheck = match run {
        Run::Backfill {
            verify_enqueued: Some(seconds),
            ..
        } if !common.dry_run => {
            let queues = WorkQueues::from_env(&env)?;
            Some(Recheck {
                sqs: aws_sdk_sqs::Client::new(&sdk),
                queues: vec![queues.lambda, queues.fargate],
                wait: Duration::from_secs(*seconds),
            })
        }
        _ => None,
    };
    let summary = reconcile(
        &reconciler,
        &task,
        run.name(),
        common,
        progress_every,
        recheck.as_ref(),
    )
    .await?;
    // A shard's verdict is the merge's: its exit code says only that it ran and kept its
    // summary, so that what runs the shards retries the ones that did not, not the ones that
    // found drift.
    Ok(if common.shard.is_some() {
        0
    } else {
        summary.exit_code
    })
}

/// What the command asks for; `repair` makes a backfill's means of repair (`true`: inline).
fn task(run: &Run, repair: impl FnOnce(bool) -> anyhow::Result<Repair>) -> anyhow::Result<Task> {
    let proof = |deep: bool, metadata: bool| Proof {
        depth: if deep { Depth::Deep } else { Depth::Checksums },
        metadata,
    };
    Ok(match run {
        Run::Diff { .. } => Task::Diff,
        Run::Verify { deep, metadata, .. } => Task::Verify(proof(*deep, *metadata)),
        Run::Backfill {
            inline,
            verify,
            deep,
            metadata,
            delete_orphans,
            orphan_variant_min_age,
            ..
        } => Task::Backfill {
            verify: verify.then_some(proof(*deep, *metadata)),
            repair: repair(*inline)?,
            orphans: Orphans {
                delete: *delete_orphans,
                variant_min_age: Duration::from_secs(*orphan_variant_min_age),
            },
        },
    })
}

/// Runs the task over the keys the command selects, reporting as it asks (a progress line every
/// `progress_every`), until it ends or a signal stops it; then prints the summary and emits
/// the metrics.
async fn reconcile(
    reconciler: &Reconciler,
    task: &Task,
    command: &'static str,
    common: &Common,
    progress_every: Duration,
    recheck: Option<&Recheck>,
) -> anyhow::Result<Summary> {
    let mut source_inventory = common.inventory.source_inventory();
    let shard = match (common.shard, &common.plan) {
        (Some(shard), Some(at)) => {
            let plan = reconciler.read_plan(at).await?;
            let (part, bounds) = plan.part(shard, at)?;
            tracing::info!(%shard, plan = %at, start = ?bounds.start, end = ?bounds.end, "running one shard of a plan");
            let range = ShardRange {
                index: shard.index,
                of: shard.of,
                start: bounds.start.clone(),
                end: bounds.end.clone(),
            };
            source_inventory = Some(SourceInventory {
                bounds,
                ..common.inventory.read(part)
            });
            Some((shard, at, range))
        }
        _ => None,
    };
    let selection = Selection {
        prefix: common.prefix.clone(),
        manifest: common.manifest.clone().map(Manifest::File),
        source_inventory,
        since: common.since,
        until: common.until,
    };
    let options = RunOptions {
        concurrency: usize::from(common.concurrency),
        max_rate: common.max_rate,
        page_size: common.page_size,
        dry_run: common.dry_run,
        checkpoint: common.checkpoint_path(command),
        resume: common.resume,
    };
    tracing::info!(run = %reconciler.run_identity(task, &selection), "starting");

    let report = Arc::new(Report::new(common.json));
    let live = Arc::new(Live::default());
    let stop_watching = tokio_util::sync::CancellationToken::new();
    report.watch(Arc::clone(&live), progress_every, stop_watching.clone());
    let interrupt = cancel_on_termination().context("installing signal handlers")?;
    let observer = Enqueued::new(report.as_ref(), recheck.is_some());
    let result = reconciler
        .run(task, &selection, &options, &observer, &live, interrupt)
        .await;
    stop_watching.cancel();
    let mut summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            if let ReconcileError::Interrupted { summary, .. } = &error {
                report.summary(summary);
            }
            return Err(error.into());
        }
    };
    if let Some(recheck) = recheck {
        let keys = observer.keys();
        tracing::info!(
            keys = keys.len(),
            wait_s = recheck.wait.as_secs(),
            "looking at the enqueued keys again once the workers took their jobs"
        );
        reconciler
            .recheck(task, recheck, keys, &options, report.as_ref(), &mut summary)
            .await?;
    }
    match shard {
        // A shard's figures are the merge's to emit: emitted here too, the alarm would count
        // them twice.
        Some((shard, at, range)) => {
            summary.shard = Some(range);
            report.summary(&summary);
            reconciler.keep_summary(at, shard, &summary).await?;
        }
        None => {
            report.summary(&summary);
            emit_metrics(&summary);
        }
    }
    Ok(summary)
}

/// Passes each finding on to the report, and keeps the keys of those enqueued (when they are to
/// be looked at again), up to [`MAX_RECHECKED_KEYS`].
struct Enqueued<'a> {
    report: &'a Report,
    keys: Option<Mutex<Vec<String>>>,
}

impl<'a> Enqueued<'a> {
    fn new(report: &'a Report, keep: bool) -> Self {
        Enqueued {
            report,
            keys: keep.then(Mutex::default),
        }
    }

    fn keys(&self) -> Vec<String> {
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        std::mem::take(&mut *keys.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Observer for Enqueued<'_> {
    fn finding(&self, finding: &Finding) {
        self.report.finding(finding);
        let (Some(keys), Some(Action::Enqueued(_))) = (&self.keys, finding.action) else {
            return;
        };
        let mut keys = keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() == MAX_RECHECKED_KEYS {
            tracing::warn!(
                max = MAX_RECHECKED_KEYS,
                "more keys enqueued than are looked at again: the rest stay counted as enqueued"
            );
        }
        if keys.len() < MAX_RECHECKED_KEYS {
            keys.push(finding.key.clone());
        }
    }

    fn page_done(&self, totals: &Counts) {
        self.report.page_done(totals);
    }
}

/// The run's figures as CloudWatch metrics (EMF), for the scheduled task's alarm and dashboard.
fn emit_metrics(summary: &Summary) {
    let c = &summary.counts;
    let count = |value: u64| value as f64;
    metrics::emit(
        &[(Dimension::Command, &summary.command)],
        &[
            (Metric::ReconcileExamined, count(c.listed_source)),
            (Metric::ReconcileDrift, count(c.drift())),
            (Metric::ReconcileRepaired, count(c.repaired)),
            (Metric::ReconcileEnqueued, count(c.enqueued)),
            (Metric::ReconcileFailed, count(c.failed)),
            (Metric::ReconcileBytesCopied, count(c.bytes_copied)),
            (Metric::ReconcileDuration, count(summary.elapsed_ms)),
        ],
    );
}
