use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use yuba_aws::describe_sdk_error;

use crate::handler::{Delivery, Handler, log_failure};
use crate::protection::protect_while_busy;
use crate::settings::{ConsumerSettings, TaskProtectionSettings};
use crate::visibility::{change_visibility, whole_seconds};

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
        let settings = Arc::new(self.settings);
        let counters = Arc::new(Counters::default());
        let in_flight: InFlight = Arc::default();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let (acks, ack_queue) = mpsc::unbounded_channel::<String>();
        let deleter = tokio::spawn(delete_in_batches(
            self.sqs.clone(),
            settings.queue_url.clone(),
            ack_queue,
        ));
        let mut tasks = JoinSet::new();
        let mut receive_failures = 0_u32;
        let mut stop_deadline = None;
        let (busy, in_flight_count) = watch::channel(0_usize);
        let busy: Busy = Arc::new(busy);
        let protector = self.protection.clone().map(|protection| {
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
            task_protection = self.protection.is_some(),
            "consuming"
        );
        loop {
            let first = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let mut held = vec![first];
            while held.len() < SQS_BATCH {
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            let poll = receive(&self.sqs, &settings, held.len());
            tokio::pin!(poll);
            let received = tokio::select! {
                received = &mut poll => received,
                () = shutdown.cancelled() => {
                    // Dropping a long poll does not cancel it at SQS: the messages it returns
                    // would stay invisible for a whole visibility timeout. Let it finish and
                    // hand back whatever it took.
                    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
                    stop_deadline = Some(deadline);
                    if let Ok(Ok(messages)) = tokio::time::timeout_at(deadline, poll).await {
                        let released: Vec<(String, Duration)> = messages
                            .into_iter()
                            .filter_map(|m| m.receipt_handle)
                            .map(|receipt| (receipt, Duration::ZERO))
                            .collect();
                        change_visibility(&self.sqs, &settings.queue_url, &released).await;
                    }
                    break;
                }
            };
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    messages
                }
                Err(error) => {
                    receive_failures += 1;
                    let pause = settings
                        .backoff
                        .delay(receive_failures)
                        .min(Duration::from_secs(20));
                    tracing::warn!(%error, ?pause, "ReceiveMessage failed; polling again after a pause");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            };
            counters
                .received
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            for message in messages {
                let Some(permit) = held.pop() else { break };
                let Some(work) = Work::from_message(message) else {
                    continue;
                };
                let task = Task {
                    sqs: self.sqs.clone(),
                    settings: Arc::clone(&settings),
                    handler: Arc::clone(&self.handler),
                    counters: Arc::clone(&counters),
                    in_flight: Arc::clone(&in_flight),
                    acks: acks.clone(),
                    busy: Arc::clone(&busy),
                };
                tasks.spawn(async move {
                    task.run(work).await;
                    drop(permit);
                });
            }
            while tasks.try_join_next().is_some() {}
        }

        let pending = tasks.len();
        if pending > 0 {
            tracing::info!(
                in_flight = pending,
                grace = ?settings.shutdown_grace,
                "stopped receiving; waiting for in-flight messages"
            );
        }
        // One grace period from the stop signal, however it was spent (a long poll, the drain).
        let deadline =
            stop_deadline.unwrap_or_else(|| tokio::time::Instant::now() + settings.shutdown_grace);
        let drained = tokio::time::timeout_at(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let mut released = 0;
        if !drained {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let unfinished: Vec<(String, Duration)> = lock(&in_flight)
                .drain()
                .map(|(_, receipt)| (receipt, Duration::ZERO))
                .collect();
            released = unfinished.len() as u64;
            tracing::warn!(
                released,
                "shutdown grace ran out; releasing unfinished messages for another consumer"
            );
            change_visibility(&self.sqs, &settings.queue_url, &unfinished).await;
        }
        // Protection is not dropped on the way out, and no call is made for it: a consumer
        // stops only on SIGTERM, which ECS sends to a task it is stopping (Spot reclaim,
        // scale-in, deployment, StopTask), and a stopped task's protection ends with it. A last
        // request would only spend stop-timeout seconds on an agent that may be slow, while
        // the release of unfinished messages above must come first.
        if let Some(protector) = protector {
            protector.abort();
        }
        drop(acks);
        if deleter.await.is_err() {
            tracing::error!(
                "the delete batcher panicked; some finished messages may be redelivered"
            );
        }
        let stats = ConsumerStats {
            received: counters.received.load(Ordering::Relaxed),
            succeeded: counters.succeeded.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            released,
        };
        tracing::info!(?stats, "consumer stopped");
        stats
    }
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    settings: &ConsumerSettings,
    max: usize,
) -> Result<Vec<Message>, String> {
    let output = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(i32::try_from(max).unwrap_or(1))
        .wait_time_seconds(whole_seconds(settings.receive_wait))
        .visibility_timeout(whole_seconds(settings.visibility_timeout))
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|error| describe_sdk_error(&error))?;
    Ok(output.messages.unwrap_or_default())
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

struct Task<H> {
    sqs: aws_sdk_sqs::Client,
    settings: Arc<ConsumerSettings>,
    handler: Arc<H>,
    counters: Arc<Counters>,
    in_flight: InFlight,
    acks: mpsc::UnboundedSender<String>,
    busy: Busy,
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
            never = self.keep_invisible(&receipt) => match never {},
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

    /// Renews the message's invisibility every half timeout, for as long as it is polled.
    async fn keep_invisible(&self, receipt: &str) -> std::convert::Infallible {
        let period = self.settings.visibility_timeout / 2;
        loop {
            tokio::time::sleep(period).await;
            self.set_visibility(receipt, self.settings.visibility_timeout)
                .await;
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
            tracing::warn!(error = %describe_sdk_error(&error), "ChangeMessageVisibility failed");
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
        delete_batch(&sqs, &queue_url, std::mem::take(&mut batch)).await;
    }
}

async fn delete_batch(sqs: &aws_sdk_sqs::Client, queue_url: &str, receipts: Vec<String>) {
    let mut pending: Vec<(usize, String)> = receipts.into_iter().enumerate().collect();
    for attempt in 0..3 {
        if pending.is_empty() {
            return;
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let entries: Result<Vec<_>, _> = pending
            .iter()
            .map(|(id, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id.to_string())
                    .receipt_handle(receipt)
                    .build()
            })
            .collect();
        let Ok(entries) = entries else { return };
        match sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(&id.to_string().as_str()));
            }
            Err(error) => {
                tracing::warn!(error = %describe_sdk_error(&error), "DeleteMessageBatch failed; retrying");
            }
        }
    }
    if !pending.is_empty() {
        tracing::warn!(
            count = pending.len(),
            "could not delete finished messages; they will be redelivered and found done"
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
