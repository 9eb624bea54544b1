use std::future::Future;

use thiserror::Error;
use yuba_model::{Cause, ErrorChain, FailureKind};

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

/// Why a message failed: whether it may succeed later, what the handler says, and the error
/// underneath, if there is one.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct HandlerError {
    pub kind: FailureKind,
    pub message: String,
    #[source]
    pub source: Option<Cause>,
}

impl HandlerError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        HandlerError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause`: the log line of the failure shows it too.
    pub fn with_source(self, cause: impl Into<Cause>) -> Self {
        HandlerError {
            source: Some(cause.into()),
            ..self
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
            error = %ErrorChain(error),
            "message failed; it will be retried"
        ),
        FailureKind::Permanent => tracing::error!(
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
            failure = error.kind.as_str(),
            error = %ErrorChain(error),
            "message cannot be processed; it goes to the dead-letter queue once the queue's \
             maxReceiveCount is reached"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_cause_for_the_log_line() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let error =
            HandlerError::new(FailureKind::Transient, "uploading gs://b/k").with_source(reset);
        assert_eq!(error.to_string(), "uploading gs://b/k");
        assert_eq!(
            ErrorChain(&error).to_string(),
            "uploading gs://b/k: connection reset"
        );
        assert!(
            HandlerError::new(FailureKind::Permanent, "bad")
                .source
                .is_none()
        );
    }
}
