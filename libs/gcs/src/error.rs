use thiserror::Error;
use yuba_model::{Cause, FailureKind};

/// A failed GCS operation: what was being done (the message, its own summary), how it can be
/// retried, GCS's answer when there was one, and the transport's, the SDK's or the system's
/// error underneath as the source, which [`yuba_model::ErrorChain`] shows after the message.
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
    #[source]
    source: Option<Cause>,
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

    pub fn permanent(message: impl Into<String>) -> Self {
        GcsError::without_status(FailureKind::Permanent, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        GcsError::without_status(FailureKind::Transient, message)
    }

    fn without_status(kind: FailureKind, message: impl Into<String>) -> Self {
        GcsError {
            kind,
            status: None,
            reason: None,
            message: message.into(),
            source: None,
        }
    }

    /// This error with `cause`, the error underneath it, as its source.
    pub(crate) fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        self.source = Some(cause.into());
        self
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
            source: None,
        }
    }

    pub(crate) fn from_storage(
        context: &str,
        carried: Carried,
        error: google_cloud_storage::Error,
    ) -> Self {
        let summary = if let Some(status) = error.http_status_code() {
            GcsError::from_status(status, None, carried, context.to_owned())
        } else if error.is_authentication() || error.is_binding() {
            GcsError::permanent(context)
        } else {
            // Timeouts, I/O, exhausted retries, and checksum mismatches found by the client
            // after an upload: all are worth another try from the start.
            GcsError::transient(context)
        };
        summary.caused_by(error)
    }

    /// A request that got no answer (reqwest gives a status only to `error_for_status`, which
    /// is not used: answers go through [`GcsError::from_status`]).
    pub(crate) fn from_http(context: &str, error: reqwest::Error) -> Self {
        let summary = if error.is_builder() {
            GcsError::permanent(context)
        } else {
            GcsError::transient(context)
        };
        summary.caused_by(error)
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

    #[test]
    fn the_error_underneath_is_the_source_not_part_of_the_message() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let error = GcsError::from_storage(
            "reading gs://b/k#1",
            Carried::NoChecksums,
            google_cloud_storage::Error::io(reset),
        );
        assert_eq!(error.kind, FailureKind::Transient);
        assert_eq!(error.to_string(), "reading gs://b/k#1");
        let shown = yuba_model::ErrorChain(&error).to_string();
        assert!(
            shown.starts_with("reading gs://b/k#1: ") && shown.ends_with("connection reset"),
            "{shown}"
        );

        let busy = google_cloud_storage::Error::http(503, http::HeaderMap::new(), "busy".into());
        let error = GcsError::from_storage("reading gs://b/k#1", Carried::NoChecksums, busy);
        assert_eq!(
            (error.status, error.kind),
            (Some(503), FailureKind::Transient)
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
