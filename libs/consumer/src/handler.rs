use std::future::Future;

use thiserror::Error;
use yuba_model::FailureKind;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct HandlerError {
    pub kind: FailureKind,
    pub message: String,
}

impl HandlerError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        HandlerError {
            kind,
            message: message.into(),
        }
    }
}

/// What to do with a message. `Ok` means it is done with and can be deleted.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// The one log line for a failed message, the same wherever it was consumed.
pub(crate) fn log_failure(delivery: &Delivery, error: &HandlerError) {
    match error.kind {
        FailureKind::Transient => tracing::warn!(
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
            failure = error.kind.as_str(),
            error = %error,
            "message failed; it will be retried"
        ),
        FailureKind::Permanent => tracing::error!(
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
            failure = error.kind.as_str(),
            error = %error,
            "message cannot be processed; it goes to the dead-letter queue once the queue's \
             maxReceiveCount is reached"
        ),
    }
}
