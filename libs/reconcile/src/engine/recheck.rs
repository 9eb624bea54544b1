//! What a backfill enqueued, looked at again once the workers took it: a job on a queue is not
//! a repair until the key is found in sync. The backfill waits (boundedly) for the work queues
//! to hold no more messages, then looks at the keys it enqueued as it found them (a diff, or with
//! `--verify` the same proof): those in sync are repaired, the rest failed, with what they still
//! are.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use yuba_aws::queue_backlog;

use super::{Live, Manifest, Observer, ReconcileError, Reconciler, RunOptions, Selection, Task};
use crate::report::{Action, Counts, Finding, Summary, exit_code};

/// How often the work queues' backlog is asked for while waiting.
const POLL: Duration = Duration::from_secs(5);

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
    /// reason.
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
        let left = self.wait_for_queues(recheck).await?;
        let waited = started.elapsed().as_secs();
        let checked = keys.len() as u64;
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
        let live = Live::default();
        // A repair only a content or attribute check can see is proven by that check again.
        let look = backfill.proof().map_or(Task::Diff, Task::Verify);
        self.run(
            &look,
            &selection,
            &options,
            &kept,
            &live,
            CancellationToken::new(),
        )
        .await?;
        let still = kept.0.into_inner().unwrap_or_else(|p| p.into_inner());
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

    /// Polls the work queues until none holds a message or the wait is over: what they still
    /// hold then. A failed poll is tried again at the next, until the wait is over.
    async fn wait_for_queues(&self, recheck: &Recheck) -> Result<u64, ReconcileError> {
        let deadline = Instant::now() + recheck.wait;
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
            if held == 0 || Instant::now() >= deadline {
                return Ok(held);
            }
            tracing::info!(held, "waiting for the workers to take the enqueued jobs");
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}
