use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use yuba_aws::{classify_sdk_error, describe_sdk_error};
use yuba_model::{Cause, ErrorChain, FailureKind};
use yuba_retry::{RetryBudget, RetryPolicy, Retryable};

use crate::handler::{Delivery, Handler, log_failure};
use crate::protection::protect_while_busy;
use crate::settings::{ConsumerSettings, TaskProtectionSettings};
use crate::visibility::{change_visibility, keep_invisible, whole_seconds};

/// Deletes wait at most this long for company before going out in a batch.
const DELETE_LINGER: Duration = Duration::from_millis(100);
pub(crate) const SQS_BATCH: usize = 10;

/// Long-polls one queue and feeds its messages to a [`Handler`].
#[derive(Debug)]
pub struct Consumer<H> {
    sqs: aws_sdk_sqs::Client,
    settings: ConsumerSettings,
    handler: Arc<H>,
    protection: Option<TaskProtectionSettings>,
}

/// What a consumer did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    pub received: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Messages still in flight when the shutdown grace ran out, made visible again.
    pub released: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn stats(&self, released: u64) -> ConsumerStats {
        ConsumerStats {
            received: self.received.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            released,
        }
    }
}

/// Receipt handles of the messages being worked on, by message id.
type InFlight = Arc<Mutex<HashMap<String, String>>>;

/// The number of messages being worked on, for the task protection that follows it.
type Busy = Arc<watch::Sender<usize>>;

/// Counts one message as worked on for as long as it lives: a task that ends, fails or is
/// aborted at the end of the grace is counted out all the same.
struct BusyGuard(Busy);

impl BusyGuard {
    fn enter(busy: &Busy) -> BusyGuard {
        busy.send_modify(|count| *count += 1);
        BusyGuard(Arc::clone(busy))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl<H: Handler> Consumer<H> {
    pub fn new(sqs: aws_sdk_sqs::Client, settings: ConsumerSettings, handler: H) -> Self {
        Consumer {
            sqs,
            settings,
            handler: Arc::new(handler),
            protection: None,
        }
    }

    /// Holds the ECS task's scale-in protection while messages are in flight (see
    /// [`protection`](crate::protection)); `None` (no ECS agent) leaves it off.
    pub fn with_task_protection(mut self, protection: Option<TaskProtectionSettings>) -> Self {
        self.protection = protection;
        self
    }

    /// Runs until `shutdown` is cancelled, then stops receiving, gives in-flight messages the
    /// shutdown grace to finish, releases those that did not, flushes pending deletes, and
    /// returns.
    pub async fn run(self, shutdown: CancellationToken) -> ConsumerStats {
        let Consumer {
            sqs,
            settings,
            handler,
            protection,
        } = self;
        let (acks, ack_queue) = mpsc::unbounded_channel::<String>();
        let deleter = tokio::spawn(delete_in_batches(
            sqs.clone(),
            settings.queue_url.clone(),
            ack_queue,
        ));
        let (busy, in_flight_count) = watch::channel(0_usize);
        let protector = protection.clone().map(|protection| {
            tracing::info!(
                expires_in_minutes = protection.expires_in_minutes,
                renew_every = ?protection.renew_every,
                release_after = ?protection.release_after,
                "task scale-in protection: held while messages are in flight"
            );
            tokio::spawn(protect_while_busy(protection, in_flight_count))
        });
        tracing::info!(
            queue = %settings.queue_url,
            concurrency = settings.concurrency,
            task_protection = protection.is_some(),
            "consuming"
        );
        let task = Task {
            sqs,
            settings: Arc::new(settings),
            handler,
            counters: Arc::default(),
            in_flight: Arc::default(),
            acks,
            busy: Arc::new(busy),
        };
        let mut tasks = JoinSet::new();
        let stopped_at = receive_until_stopped(&task, &shutdown, &mut tasks).await;
        let released = drain(&task, tasks, stopped_at).await;
        // Protection is not dropped on the way out, and no call is made for it: a consumer
        // stops only on SIGTERM, which ECS sends to a task it is stopping (Spot reclaim,
        // scale-in, deployment, StopTask), and a stopped task's protection ends with it. A last
        // request would only spend stop-timeout seconds on an agent that may be slow, while
        // the release of unfinished messages in the drain must come first.
        if let Some(protector) = protector {
            protector.abort();
        }
        let stats = task.counters.stats(released);
        // The last sender of acknowledgements: the batcher flushes what it holds and ends.
        drop(task);
        if deleter.await.is_err() {
            tracing::error!(
                "the delete batcher panicked; some finished messages may be redelivered"
            );
        }
        tracing::info!(?stats, "consumer stopped");
        stats
    }
}

/// Receives messages and starts a task for each, as permits free up, until `shutdown` is
/// cancelled. Returns the instant the shutdown was seen during a long poll, if it was: the
/// shutdown grace counts from there, since the poll's end was waited for.
async fn receive_until_stopped<H: Handler>(
    task: &Task<H>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Option<Instant> {
    let settings = &task.settings;
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut receive_failures = 0_u32;
    loop {
        let mut held = tokio::select! {
            held = permits_for_a_batch(&permits) => held?,
            () = shutdown.cancelled() => return None,
        };
        let messages = match receive_unless_stopped(task, shutdown, held.len()).await {
            Polled::Stopped(at) => return Some(at),
            Polled::Received(Ok(messages)) => {
                receive_failures = 0;
                messages
            }
            Polled::Received(Err(error)) => {
                receive_failures += 1;
                let pause = settings
                    .backoff
                    .delay(receive_failures)
                    .min(Duration::from_secs(20));
                tracing::warn!(
                    error = %ErrorChain(&error),
                    ?pause,
                    "ReceiveMessage failed; polling again after a pause"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return None,
                }
            }
        };
        task.counters
            .received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        for message in messages {
            let Some(permit) = held.pop() else { break };
            let Some(work) = Work::from_message(message) else {
                continue;
            };
            let task = task.clone();
            tasks.spawn(async move {
                task.run(work).await;
                drop(permit);
            });
        }
        while tasks.try_join_next().is_some() {}
    }
}

/// Waits for one free slot, then takes as many more as are free, up to a receive's worth.
/// `None`: the semaphore is closed.
async fn permits_for_a_batch(permits: &Arc<Semaphore>) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = Arc::clone(permits).acquire_owned().await.ok()?;
    let mut held = vec![first];
    while held.len() < SQS_BATCH {
        match Arc::clone(permits).try_acquire_owned() {
            Ok(permit) => held.push(permit),
            Err(_) => break,
        }
    }
    Some(held)
}

/// What a long poll came to.
enum Polled {
    Received(Result<Vec<Message>, SqsCallError>),
    /// `shutdown` was cancelled at this instant, during the poll.
    Stopped(Instant),
}

/// One long poll for up to `max` messages, unless `shutdown` comes first.
async fn receive_unless_stopped<H>(
    task: &Task<H>,
    shutdown: &CancellationToken,
    max: usize,
) -> Polled {
    let settings = &task.settings;
    let poll = receive(&task.sqs, settings, max);
    tokio::pin!(poll);
    tokio::select! {
        received = &mut poll => Polled::Received(received),
        () = shutdown.cancelled() => {
            // Dropping a long poll does not cancel it at SQS: the messages it returns would
            // stay invisible for a whole visibility timeout. Let it finish and hand back
            // whatever it took.
            let stopped_at = Instant::now();
            let deadline = stopped_at + settings.shutdown_grace;
            if let Ok(Ok(messages)) = tokio::time::timeout_at(deadline, poll).await {
                let released: Vec<(String, Duration)> = messages
                    .into_iter()
                    .filter_map(|m| m.receipt_handle)
                    .map(|receipt| (receipt, Duration::ZERO))
                    .collect();
                change_visibility(&task.sqs, &settings.queue_url, &released).await;
            }
            Polled::Stopped(stopped_at)
        }
    }
}

/// Gives the tasks still running the shutdown grace (from `stopped_at`, or from now) to finish,
/// then aborts the rest and makes their messages visible at once for another consumer.
/// Returns how many were released.
async fn drain<H>(task: &Task<H>, mut tasks: JoinSet<()>, stopped_at: Option<Instant>) -> u64 {
    let grace = task.settings.shutdown_grace;
    let pending = tasks.len();
    if pending > 0 {
        tracing::info!(
            in_flight = pending,
            ?grace,
            "stopped receiving; waiting for in-flight messages"
        );
    }
    // One grace period from the stop signal, however it was spent (a long poll, the drain).
    let deadline = stopped_at.unwrap_or_else(Instant::now) + grace;
    let drained = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if drained {
        return 0;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let unfinished: Vec<(String, Duration)> = lock(&task.in_flight)
        .drain()
        .map(|(_, receipt)| (receipt, Duration::ZERO))
        .collect();
    let released = unfinished.len() as u64;
    tracing::warn!(
        released,
        "shutdown grace ran out; releasing unfinished messages for another consumer"
    );
    change_visibility(&task.sqs, &task.settings.queue_url, &unfinished).await;
    released
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    settings: &ConsumerSettings,
    max: usize,
) -> Result<Vec<Message>, SqsCallError> {
    let output = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(i32::try_from(max).unwrap_or(1))
        .wait_time_seconds(whole_seconds(settings.receive_wait))
        .visibility_timeout(whole_seconds(settings.visibility_timeout))
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(SqsCallError::new)?;
    Ok(output.messages.unwrap_or_default())
}

/// A failed SQS call that is only logged: SQS's answer on one line (status, code, message and a
/// hint), with the SDK's error underneath for [`ErrorChain`] to show.
#[derive(Debug, Error)]
#[error("{summary}")]
pub(crate) struct SqsCallError {
    summary: String,
    #[source]
    source: Cause,
}

impl SqsCallError {
    pub(crate) fn new<E>(error: SdkError<E, HttpResponse>) -> SqsCallError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        SqsCallError {
            summary: describe_sdk_error(&error),
            source: Box::new(error),
        }
    }
}

/// A received message, as the handler and the bookkeeping need it.
struct Work {
    delivery: Delivery,
    receipt: String,
}

impl Work {
    fn from_message(message: Message) -> Option<Work> {
        let receive_count = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let (Some(message_id), Some(receipt)) = (message.message_id, message.receipt_handle) else {
            tracing::error!("SQS returned a message without an id or receipt handle; skipped");
            return None;
        };
        Some(Work {
            delivery: Delivery {
                message_id,
                body: message.body.unwrap_or_default(),
                receive_count,
            },
            receipt,
        })
    }
}

/// What a message's task needs; one for each message, cloned from the consumer's.
struct Task<H> {
    sqs: aws_sdk_sqs::Client,
    settings: Arc<ConsumerSettings>,
    handler: Arc<H>,
    counters: Arc<Counters>,
    in_flight: InFlight,
    acks: mpsc::UnboundedSender<String>,
    busy: Busy,
}

impl<H> Clone for Task<H> {
    fn clone(&self) -> Self {
        Task {
            sqs: self.sqs.clone(),
            settings: Arc::clone(&self.settings),
            handler: Arc::clone(&self.handler),
            counters: Arc::clone(&self.counters),
            in_flight: Arc::clone(&self.in_flight),
            acks: self.acks.clone(),
            busy: Arc::clone(&self.busy),
        }
    }
}

impl<H: Handler> Task<H> {
    async fn run(self, work: Work) {
        let Work { delivery, receipt } = work;
        // Only a counter moves here: the protection calls go out from their own task, so they
        // can neither delay nor fail the message.
        let _busy = BusyGuard::enter(&self.busy);
        lock(&self.in_flight).insert(delivery.message_id.clone(), receipt.clone());
        let result = tokio::select! {
            result = self.handler.handle(&delivery) => result,
            never = keep_invisible(self.settings.visibility_timeout, || {
                self.set_visibility(&receipt, self.settings.visibility_timeout)
            }) => match never {},
        };
        lock(&self.in_flight).remove(&delivery.message_id);
        match result {
            Ok(()) => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                // The batcher outlives every task; a closed channel means the process is
                // already going down, and the message will simply be redelivered.
                let _ = self.acks.send(receipt);
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                log_failure(&delivery, &error);
                let visible_in = self
                    .settings
                    .backoff
                    .visible_in(error.kind, delivery.receive_count);
                self.set_visibility(&receipt, visible_in).await;
            }
        }
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) {
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(timeout))
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(
                error = %ErrorChain(&SqsCallError::new(error)),
                "ChangeMessageVisibility failed"
            );
        }
    }
}

/// Collects receipts of finished messages and deletes them ten at a time, or after a short
/// linger, until every sender is gone.
async fn delete_in_batches(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    mut receipts: mpsc::UnboundedReceiver<String>,
) {
    let budget = RetryBudget::default();
    let mut batch = Vec::with_capacity(SQS_BATCH);
    loop {
        let Some(first) = receipts.recv().await else {
            return;
        };
        batch.push(first);
        let linger = tokio::time::sleep(DELETE_LINGER);
        tokio::pin!(linger);
        while batch.len() < SQS_BATCH {
            tokio::select! {
                next = receipts.recv() => match next {
                    Some(receipt) => batch.push(receipt),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        delete_batch(&sqs, &queue_url, std::mem::take(&mut batch), &budget).await;
    }
}

/// How a batch of deletes is retried: the entries SQS did not delete, or the whole batch when
/// the call failed, twice more, after pauses under 200 and 400 ms. A message whose delete
/// still fails is redelivered later and found done, so a short effort is enough.
const DELETE_RETRIES: RetryPolicy = RetryPolicy {
    first_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_millis(400),
    max_attempts: 3,
    time_limit: Duration::from_secs(10),
};

/// Why some of a batch of finished messages were not deleted.
#[derive(Debug, Error)]
#[error("{message}")]
struct DeleteError {
    kind: FailureKind,
    message: String,
    #[source]
    source: Option<Cause>,
}

impl Retryable for DeleteError {
    fn kind(&self) -> FailureKind {
        self.kind
    }
}

async fn delete_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipts: Vec<String>,
    budget: &RetryBudget,
) {
    let pending = Mutex::new(receipts.into_iter().enumerate().collect());
    let deleted = yuba_retry::run(
        &DELETE_RETRIES,
        budget,
        "deleting finished messages",
        || delete_pending(sqs, queue_url, &pending),
    )
    .await;
    if let Err(error) = deleted {
        tracing::warn!(
            count = lock(&pending).len(),
            error = %ErrorChain(&error),
            "could not delete finished messages; they will be redelivered and found done"
        );
    }
}

/// One DeleteMessageBatch of the receipts still `pending` (by entry id), which keeps those SQS
/// did not delete.
async fn delete_pending(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    pending: &Mutex<Vec<(usize, String)>>,
) -> Result<(), DeleteError> {
    let entries: Result<Vec<_>, _> = lock(pending)
        .iter()
        .map(|(id, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id.to_string())
                .receipt_handle(receipt)
                .build()
        })
        .collect();
    let entries = entries.map_err(|error| DeleteError {
        kind: FailureKind::Permanent,
        message: "could not build the DeleteMessageBatch request".to_owned(),
        source: Some(Box::new(error)),
    })?;
    let output = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|error| DeleteError {
            kind: classify_sdk_error(&error),
            message: format!("DeleteMessageBatch failed: {}", describe_sdk_error(&error)),
            source: Some(Box::new(error)),
        })?;
    let failed = output.failed();
    lock(pending).retain(|(id, _)| failed.iter().any(|f| f.id() == id.to_string()));
    let Some(first) = failed.first() else {
        return Ok(());
    };
    // An entry refused for a fault of ours (a receipt SQS does not know) cannot be deleted by
    // trying again; the others can.
    let kind = if failed.iter().all(|f| f.sender_fault()) {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    };
    Err(DeleteError {
        kind,
        message: format!(
            "SQS did not delete {} of the messages: {} ({})",
            failed.len(),
            first.message().unwrap_or("no reason given"),
            first.code()
        ),
        source: None,
    })
}

/// The guarded value even if a holder panicked: the maps it guards stay consistent whatever a
/// handler does, since they are only touched by this crate's own short critical sections.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;

    #[test]
    fn a_failed_call_keeps_the_sdk_error_underneath() {
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 20s");
        let error = SqsCallError::new(
            SdkError::<ReceiveMessageError, HttpResponse>::timeout_error(timeout),
        );
        let source = std::error::Error::source(&error).expect("a source");
        assert!(
            source.is::<SdkError<ReceiveMessageError, HttpResponse>>(),
            "{source:?}"
        );
        assert!(
            ErrorChain(&error).to_string().contains("no answer in 20s"),
            "{}",
            ErrorChain(&error)
        );
    }
}
