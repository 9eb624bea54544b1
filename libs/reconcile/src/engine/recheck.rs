//! What a backfill enqueued, looked at again once the workers took it: a job on a queue is not
//! a repair until the key is found in sync. The backfill waits (boundedly) for the work queues
//! to hold no more messages, then looks at the keys it enqueued as it found them (a diff, or with
//! `--verify` the same proof): those in sync are repaired, the rest failed, with what they still
//! are. Queues that other work keeps busy are not waited out: the keys still pending are looked
//! at now and then meanwhile, and the wait ends once they are all in sync.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use yuba_aws::queue_backlog;

use super::{Live, Manifest, Observer, ReconcileError, Reconciler, RunOptions, Selection, Task};
use crate::report::{Action, Counts, Finding, Summary, exit_code};

/// How often the work queues' backlog is asked for while waiting.
const POLL: Duration = Duration::from_secs(5);

/// How long after the jobs were enqueued the keys are first looked at, if the work queues have
/// not emptied before. Each later look waits twice as long as the one before, so queues that
/// never empty cost a few looks at the keys still pending (eight in the default half hour),
/// never one per poll.
const FIRST_LOOK: Duration = Duration::from_secs(10);

/// The keys a backfill may look at again; past them, the rest of its jobs stay `enqueued`
/// (counted, not proven) and a warning says so. Keys are held in memory until the run ends.
pub const MAX_RECHECKED_KEYS: usize = 100_000;

/// Where a backfill's jobs went, and how long to wait for the workers to take them.
#[derive(Debug, Clone)]
pub struct Recheck {
    pub sqs: aws_sdk_sqs::Client,
    /// The work queues' URLs.
    pub queues: Vec<String>,
    /// The longest wait for the queues to hold no message.
    pub wait: Duration,
}

/// Findings of the look again, kept rather than printed.
#[derive(Default)]
struct Kept(Mutex<Vec<Finding>>);

impl Observer for Kept {
    fn finding(&self, finding: &Finding) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(finding.clone());
    }

    fn page_done(&self, _totals: &Counts) {}
}

impl Reconciler {
    /// Waits for the work queues to be done with `keys`' jobs (or `recheck.wait` to pass), looks
    /// at the keys again as `backfill` looked at them, and settles them in `summary`: in sync
    /// is repaired; a key still drifting is failed, told to `observer` as a finding with its
    /// reason. Queues that other work keeps busy need not hold up the verdict: the keys still
    /// pending are looked at after [`FIRST_LOOK`], then at twice the interval each time, and
    /// the wait ends as soon as none is left.
    pub async fn recheck(
        &self,
        backfill: &Task,
        recheck: &Recheck,
        keys: Vec<String>,
        options: &RunOptions,
        observer: &dyn Observer,
        summary: &mut Summary,
    ) -> Result<(), ReconcileError> {
        let started = Instant::now();
        let deadline = started + recheck.wait;
        let checked = keys.len() as u64;
        let mut pending = keys;
        let mut interval = FIRST_LOOK;
        let (still, left) = loop {
            let look_at = deadline.min(Instant::now() + interval);
            let left = self.wait_for_queues(recheck, look_at, deadline).await?;
            let still = self.look_again(backfill, &pending, options).await?;
            if still.is_empty() || left == 0 || Instant::now() >= deadline {
                break (still, left);
            }
            tracing::info!(
                pending = still.len(),
                held = left,
                "some enqueued keys are not in sync yet; looking again later"
            );
            pending = still.iter().map(|finding| finding.key.clone()).collect();
            interval = interval.saturating_mul(2);
        };
        let waited = started.elapsed().as_secs();
        let queues = match left {
            0 => "the work queues were empty".to_owned(),
            n => format!("the work queues still held {n} messages"),
        };
        for finding in &still {
            observer.finding(&Finding {
                action: Some(Action::Failed),
                error: Some(format!(
                    "still {} {waited} s after its job was enqueued ({queues}): see the workers' \
                     logs and the dead-letter queues",
                    finding.kind.as_str()
                )),
                ..finding.clone()
            });
        }
        let counts = &mut summary.counts;
        counts.failed += still.len() as u64;
        counts.repaired += checked.saturating_sub(still.len() as u64);
        counts.rechecked += checked;
        summary.exit_code = exit_code(counts, true);
        Ok(())
    }

    /// The findings of a look at `keys`, as `backfill` looked: a diff, or its own proof (a
    /// repair only a content or attribute check can see is proven by that check again).
    async fn look_again(
        &self,
        backfill: &Task,
        keys: &[String],
        options: &RunOptions,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let kept = Kept::default();
        let selection = Selection {
            manifest: Some(Manifest::Keys(Arc::from(keys))),
            ..Selection::default()
        };
        let options = RunOptions {
            checkpoint: None,
            resume: false,
            dry_run: false,
            ..options.clone()
        };
        let look = backfill.proof().map_or(Task::Diff, Task::Verify);
        self.run(
            &look,
            &selection,
            &options,
            &kept,
            &Live::default(),
            CancellationToken::new(),
        )
        .await?;
        Ok(kept.0.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// Polls the work queues until none holds a message or `until` has passed: what they still
    /// hold then. A failed poll counts as a message held, and is an error only once `deadline`
    /// (the whole wait) has passed.
    async fn wait_for_queues(
        &self,
        recheck: &Recheck,
        until: Instant,
        deadline: Instant,
    ) -> Result<u64, ReconcileError> {
        loop {
            let mut held = 0;
            for queue in &recheck.queues {
                match queue_backlog(&recheck.sqs, queue).await {
                    Ok(messages) => held += messages,
                    Err(error) if error.kind.is_transient() && Instant::now() < deadline => {
                        tracing::warn!(%error, "could not read a work queue's backlog; asking again");
                        held += 1;
                    }
                    Err(error) => return Err(ReconcileError::Backlog(error)),
                }
            }
            if held == 0 || Instant::now() >= until {
                return Ok(held);
            }
            tracing::info!(held, "waiting for the workers to take the enqueued jobs");
            tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }
}
