use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message_batch::{SendMessageBatchError, SendMessageBatchOutput};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use futures::StreamExt;
use thiserror::Error;
use yuba_model::{Cause, FailureKind};
use yuba_retry::{RetryBudget, RetryPolicy, Retryable};

use crate::batch::{MAX_BATCH_BYTES, pack_batches};
use crate::classify::{classify_sdk_error, describe_sdk_error};

/// How many SendMessageBatch calls one `send` keeps in flight.
const BATCHES_IN_FLIGHT: usize = 8;

/// How the entries of a batch that SQS did not take are sent again: four more times, after
/// pauses under 100, 200, 400 and 800 ms.
const SEND_RETRIES: RetryPolicy = RetryPolicy {
    first_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(1),
    max_attempts: 5,
    time_limit: Duration::from_secs(30),
};

/// Puts messages on a queue with SendMessageBatch, retrying the entries SQS did not take.
///
/// Cloning is cheap and shares the retry budget: the clones are one client.
#[derive(Debug, Clone)]
pub struct JobSender {
    client: aws_sdk_sqs::Client,
    budget: RetryBudget,
}

/// A message to send: its body, and string message attributes (which SQS keeps beside the body,
/// through a redrive too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    pub attributes: Vec<(&'static str, String)>,
}

impl Message {
    /// What the message weighs against SQS's size limit: the body, and each attribute's name,
    /// type and value.
    fn size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(name, value)| name.len() + "String".len() + value.len())
            .sum();
        self.body.len() + attributes
    }

    fn entry(
        &self,
        id: usize,
    ) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(&self.body);
        for (name, value) in &self.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?;
            entry = entry.message_attributes(*name, value);
        }
        entry.build()
    }
}

/// Why one message was not sent.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
    /// The SDK's error, when the whole call failed. One failed call fails every entry it
    /// carried, so they share it.
    #[source]
    pub source: Option<Cause>,
}

/// The outcome of each message of one batch so far: `None` for one not yet answered for.
type Outcomes = Mutex<Vec<Option<Result<(), SendError>>>>;

/// Entries of a batch still worth sending again after one attempt: the error the attempt
/// ended with, for the retry's log line.
#[derive(Debug, Error)]
#[error("{unsent} message(s) not taken yet, the first because {first}")]
struct Unsent {
    unsent: usize,
    first: String,
}

impl Retryable for Unsent {
    fn kind(&self) -> FailureKind {
        FailureKind::Transient
    }
}

impl JobSender {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        JobSender {
            client,
            budget: RetryBudget::default(),
        }
    }

    /// Sends every body to `queue_url`. The result has one entry per body, in order, so the
    /// caller can fail exactly the records whose jobs did not make it.
    pub async fn send(&self, queue_url: &str, bodies: &[String]) -> Vec<Result<(), SendError>> {
        let messages: Vec<Message> = bodies
            .iter()
            .map(|body| Message {
                body: body.clone(),
                attributes: Vec::new(),
            })
            .collect();
        self.send_messages(queue_url, &messages).await
    }

    /// Sends every message to `queue_url`, as [`JobSender::send`] sends bodies.
    pub async fn send_messages(
        &self,
        queue_url: &str,
        messages: &[Message],
    ) -> Vec<Result<(), SendError>> {
        let sizes: Vec<usize> = messages.iter().map(Message::size).collect();
        let mut results: Vec<Result<(), SendError>> = Vec::with_capacity(messages.len());
        let mut outcomes: Vec<_> = futures::stream::iter(pack_batches(&sizes))
            .map(|range| async move {
                let outcome = self.send_batch(queue_url, &messages[range.clone()]).await;
                (range.start, outcome)
            })
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        outcomes.sort_unstable_by_key(|(start, _)| *start);
        for (_, outcome) in outcomes {
            results.extend(outcome);
        }
        results
    }

    /// One SendMessageBatch, then again for the entries that failed with a fault of SQS's
    /// (with [`yuba_retry`]'s backoff and budget), until all are in or the retries run out.
    async fn send_batch(
        &self,
        queue_url: &str,
        messages: &[Message],
    ) -> Vec<Result<(), SendError>> {
        let outcomes: Outcomes = Mutex::new(messages.iter().map(|_| None).collect());
        if let [message] = messages
            && message.size() > MAX_BATCH_BYTES
        {
            lock(&outcomes)[0] = Some(Err(SendError {
                kind: FailureKind::Permanent,
                message: format!(
                    "the message is {} bytes; SQS takes at most {MAX_BATCH_BYTES}",
                    message.size()
                ),
                source: None,
            }));
        }
        let what = format!("SendMessageBatch to {queue_url}");
        // What is still unsent at the end is in the outcomes, each with its own error.
        let _ = yuba_retry::run(&SEND_RETRIES, &self.budget, &what, || {
            self.send_pending(queue_url, messages, &outcomes)
        })
        .await;
        let outcomes = outcomes
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(SendError {
                        kind: FailureKind::Transient,
                        message: "SQS neither accepted nor refused the message".to_owned(),
                        source: None,
                    })
                })
            })
            .collect()
    }

    /// One SendMessageBatch of the messages not yet sent nor refused for good, whose outcomes it
    /// records. `Err`: some may still be taken if sent again.
    async fn send_pending(
        &self,
        queue_url: &str,
        messages: &[Message],
        outcomes: &Outcomes,
    ) -> Result<(), Unsent> {
        let pending: Vec<usize> = lock(outcomes)
            .iter()
            .enumerate()
            .filter(|(_, outcome)| {
                outcome
                    .as_ref()
                    .is_none_or(|r| r.as_ref().is_err_and(|e| e.kind.is_transient()))
            })
            .map(|(i, _)| i)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let entries: Result<Vec<_>, _> = pending.iter().map(|&i| messages[i].entry(i)).collect();
        let answer = match entries {
            Ok(entries) => self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| CallFailure::new(queue_url, error)),
            Err(error) => Err(CallFailure {
                kind: FailureKind::Permanent,
                message: format!("could not build the SQS batch: {error}"),
                cause: Arc::new(error),
            }),
        };
        let mut outcomes = lock(outcomes);
        match answer {
            Ok(output) => record_answer(&mut outcomes, &output),
            Err(failure) => {
                for &i in &pending {
                    outcomes[i] = Some(Err(failure.of_entry()));
                }
            }
        }
        let mut unsent = pending.iter().filter_map(|&i| match &outcomes[i] {
            Some(Err(error)) if error.kind.is_transient() => Some(error),
            _ => None,
        });
        match unsent.next() {
            None => Ok(()),
            Some(first) => Err(Unsent {
                unsent: 1 + unsent.count(),
                first: first.message.clone(),
            }),
        }
    }
}

/// A failure of a whole call, shared by every entry it carried.
struct CallFailure {
    kind: FailureKind,
    message: String,
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl CallFailure {
    fn new(queue_url: &str, error: SdkError<SendMessageBatchError, HttpResponse>) -> CallFailure {
        CallFailure {
            kind: classify_sdk_error(&error),
            message: format!(
                "SendMessageBatch to {queue_url} failed: {}",
                describe_sdk_error(&error)
            ),
            cause: Arc::new(error),
        }
    }

    fn of_entry(&self) -> SendError {
        SendError {
            kind: self.kind,
            message: self.message.clone(),
            source: Some(Box::new(Arc::clone(&self.cause))),
        }
    }
}

/// Records which entries SQS took and which it refused: for a fault of ours (the sender's),
/// for good; for one of its own, to be sent again.
fn record_answer(outcomes: &mut [Option<Result<(), SendError>>], output: &SendMessageBatchOutput) {
    for ok in output.successful() {
        if let Ok(i) = ok.id().parse::<usize>() {
            outcomes[i] = Some(Ok(()));
        }
    }
    for failed in output.failed() {
        let Ok(i) = failed.id().parse::<usize>() else {
            continue;
        };
        let kind = if failed.sender_fault() {
            FailureKind::Permanent
        } else {
            FailureKind::Transient
        };
        outcomes[i] = Some(Err(SendError {
            kind,
            message: format!(
                "SQS refused the message: {} ({})",
                failed.message().unwrap_or("no reason given"),
                failed.code()
            ),
            source: None,
        }));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
