use thiserror::Error;
use yuba_model::FailureKind;

#[derive(Debug, Error)]
#[error("{message}")]
pub struct GcsError {
    pub kind: FailureKind,
    /// The HTTP status GCS answered with, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl GcsError {
    /// The request's generation precondition failed: another write or delete of the object
    /// came first. Not an error of the request, but news that the caller's view is stale.
    pub fn is_conflict(&self) -> bool {
        self.status == Some(412)
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        GcsError {
            kind: FailureKind::Permanent,
            status: None,
            message: message.into(),
        }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        GcsError {
            kind: FailureKind::Transient,
            status: None,
            message: message.into(),
        }
    }

    /// 408, 429 and 5xx clear up by themselves; other answers are refusals. A checksum refusal
    /// (400 naming a hash) means bytes were damaged on the way, so sending them again can work.
    pub(crate) fn from_status(status: u16, message: String) -> Self {
        let damaged_in_transit = status == 400
            && ["crc32c", "md5"]
                .iter()
                .any(|hash| message.to_ascii_lowercase().contains(hash));
        let kind = if status == 408 || status == 429 || status >= 500 || damaged_in_transit {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        GcsError {
            kind,
            status: Some(status),
            message,
        }
    }

    pub(crate) fn from_storage(context: &str, error: google_cloud_storage::Error) -> Self {
        let message = format!("{context}: {}", chain(&error));
        if let Some(status) = error.http_status_code() {
            return GcsError::from_status(status, message);
        }
        let kind = if error.is_authentication() || error.is_binding() {
            FailureKind::Permanent
        } else {
            // Timeouts, I/O, exhausted retries, and checksum mismatches found by the client
            // after an upload: all are worth another try from the start.
            FailureKind::Transient
        };
        GcsError {
            kind,
            status: None,
            message,
        }
    }

    pub(crate) fn from_http(context: &str, error: reqwest::Error) -> Self {
        let message = format!("{context}: {}", chain(&error));
        match error.status() {
            Some(status) => GcsError::from_status(status.as_u16(), message),
            None if error.is_builder() => GcsError::permanent(message),
            None => GcsError {
                kind: FailureKind::Transient,
                status: None,
                message,
            },
        }
    }
}

impl yuba_retry::Retryable for GcsError {
    fn kind(&self) -> FailureKind {
        self.kind
    }

    /// No answer (a timeout, a connection refused or reset): the costlier kind of failure for
    /// the retry budget, as the request may have held a connection for its whole timeout.
    fn is_timeout(&self) -> bool {
        self.status.is_none()
    }
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let kind = |status, message: &str| GcsError::from_status(status, message.into()).kind;
        assert_eq!(kind(503, "backend error"), FailureKind::Transient);
        assert_eq!(kind(429, "rate"), FailureKind::Transient);
        assert_eq!(kind(408, "timeout"), FailureKind::Transient);
        assert_eq!(kind(403, "forbidden"), FailureKind::Permanent);
        assert_eq!(kind(404, "no such bucket"), FailureKind::Permanent);
        assert_eq!(kind(400, "invalid argument"), FailureKind::Permanent);
        assert_eq!(
            kind(
                400,
                "Provided CRC32C \"x\" doesn't match calculated CRC32C \"y\""
            ),
            FailureKind::Transient
        );
    }
}
