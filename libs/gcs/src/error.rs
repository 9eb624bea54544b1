use thiserror::Error;
use yuba_model::FailureKind;

#[derive(Debug, Error)]
#[error("{message}")]
pub struct GcsError {
    pub kind: FailureKind,
    /// The HTTP status GCS answered with, when it answered.
    pub status: Option<u16>,
    /// GCS's own word for a refusal (the JSON API's `error.errors[0].reason`: `invalid`,
    /// `required`, `forbidden`, `conditionNotMet`, ...), when it gave one.
    pub reason: Option<String>,
    pub message: String,
}

/// What a request carried besides itself, which decides what a 400 in answer to it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carried {
    /// Our own checksums of the bytes it wrote (an upload's crc32c or MD5, a compose's crc32c of
    /// the whole). GCS refuses bytes that do not match them with 400 and reason `invalid`, the
    /// same answer as for any malformed request, so the answer alone cannot tell the two apart.
    /// We send well-formed requests, so the bytes were damaged on the way and sending them again
    /// can work; the retry limits end it if not.
    OurChecksums,
    /// Nothing to check: a 400 refuses the request itself, and would refuse it again.
    NoChecksums,
}

impl GcsError {
    /// The request's generation precondition failed: another write or delete of the object
    /// came first. Not an error of the request, but news that the caller's view is stale.
    pub fn is_conflict(&self) -> bool {
        self.status == Some(412)
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        GcsError::without_status(FailureKind::Permanent, message)
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        GcsError::without_status(FailureKind::Transient, message)
    }

    fn without_status(kind: FailureKind, message: impl Into<String>) -> Self {
        GcsError {
            kind,
            status: None,
            reason: None,
            message: message.into(),
        }
    }

    /// Classified from the answer's structure and the request it answered, never from its text:
    /// 408, 429 and 5xx clear up by themselves; a 400 to a request that carried our checksums
    /// is taken for bytes damaged on the way ([`Carried::OurChecksums`]); other answers are
    /// refusals.
    pub(crate) fn from_status(
        status: u16,
        reason: Option<String>,
        carried: Carried,
        message: String,
    ) -> Self {
        let damaged_in_transit = status == 400 && carried == Carried::OurChecksums;
        let kind = if status == 408 || status == 429 || status >= 500 || damaged_in_transit {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        GcsError {
            kind,
            status: Some(status),
            reason,
            message,
        }
    }

    pub(crate) fn from_storage(
        context: &str,
        carried: Carried,
        error: google_cloud_storage::Error,
    ) -> Self {
        let message = format!("{context}: {}", chain(&error));
        if let Some(status) = error.http_status_code() {
            return GcsError::from_status(status, None, carried, message);
        }
        let kind = if error.is_authentication() || error.is_binding() {
            FailureKind::Permanent
        } else {
            // Timeouts, I/O, exhausted retries, and checksum mismatches found by the client
            // after an upload: all are worth another try from the start.
            FailureKind::Transient
        };
        GcsError::without_status(kind, message)
    }

    /// A request that got no answer (reqwest gives a status only to `error_for_status`, which
    /// is not used: answers go through [`GcsError::from_status`]).
    pub(crate) fn from_http(context: &str, error: reqwest::Error) -> Self {
        let message = format!("{context}: {}", chain(&error));
        let kind = if error.is_builder() {
            FailureKind::Permanent
        } else {
            FailureKind::Transient
        };
        GcsError::without_status(kind, message)
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
    fn statuses_are_classified_from_structure_not_text() {
        let kind = |status, carried| {
            GcsError::from_status(status, Some("invalid".into()), carried, "x".into()).kind
        };
        for carried in [Carried::OurChecksums, Carried::NoChecksums] {
            assert_eq!(kind(503, carried), FailureKind::Transient);
            assert_eq!(kind(429, carried), FailureKind::Transient);
            assert_eq!(kind(408, carried), FailureKind::Transient);
            assert_eq!(kind(403, carried), FailureKind::Permanent);
            assert_eq!(kind(404, carried), FailureKind::Permanent);
            assert_eq!(kind(412, carried), FailureKind::Permanent);
        }
        assert_eq!(kind(400, Carried::OurChecksums), FailureKind::Transient);
        assert_eq!(kind(400, Carried::NoChecksums), FailureKind::Permanent);
        // The bug this replaced: a 400 whose text named a hash (here, in the object's name)
        // was retried as damaged bytes, whatever the request.
        let refusal = GcsError::from_status(
            400,
            Some("invalid".into()),
            Carried::NoChecksums,
            "updating gs://b/md5sums.txt: Invalid crc32c in metadata".into(),
        );
        assert_eq!(refusal.kind, FailureKind::Permanent);
        assert_eq!(refusal.reason.as_deref(), Some("invalid"));
    }
}
