use std::sync::Arc;

use thiserror::Error;
use yuba_delivery::path::PathError;
use yuba_gcs::GcsError;
use yuba_model::{ErrorChain, VariantsError};

/// Why a request gets no object: each is one status, with a message that names the problem
/// and what to do. The message is the body, as plain text; never a stack trace.
#[derive(Debug, Clone, Error)]
pub enum Refusal {
    /// 405: only reads are answered.
    #[error("{0} is not answered here: this origin serves GET and HEAD")]
    Method(String),
    /// 400: what S3 would refuse too (a broken escape, bytes that are not UTF-8).
    #[error("the path names no object: {0}")]
    Path(#[from] PathError),
    /// 404: nothing to serve at this path, and why.
    #[error("{0}")]
    NotFound(String),
    /// 422: the source exists, but no variant can be made of it; the recorded reason.
    #[error("no {profile} variant can be made of {key:?}: {} ({})", .reason.details, .reason.kind)]
    NoVariant {
        profile: String,
        key: String,
        reason: VariantsError,
    },
    /// 503 (GCS failed in a way that may pass: try again) or 502 (GCS refused us: a
    /// misconfiguration, such as a missing grant).
    #[error("the replica could not be read: {}", ErrorChain(&**.0))]
    Gcs(Arc<GcsError>),
    /// 500: a render on demand was lost (a bug: the transform's own panics are caught and
    /// recorded as `panicked`); the next request tries again.
    #[error("the variant's render did not finish ({0}); try again")]
    Lost(String),
}

impl From<GcsError> for Refusal {
    fn from(error: GcsError) -> Refusal {
        Refusal::Gcs(Arc::new(error))
    }
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Method(_) => 405,
            Refusal::Path(_) => 400,
            Refusal::NotFound(_) => 404,
            Refusal::NoVariant { .. } => 422,
            Refusal::Gcs(error) if error.kind.is_transient() => 503,
            Refusal::Gcs(_) => 502,
            Refusal::Lost(_) => 500,
        }
    }

    /// Every [`kind`](Refusal::kind).
    pub const KINDS: [&'static str; 6] =
        ["method", "path", "not_found", "no_variant", "gcs", "lost"];

    /// The metric and log name of the refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Method(_) => "method",
            Refusal::Path(_) => "path",
            Refusal::NotFound(_) => "not_found",
            Refusal::NoVariant { .. } => "no_variant",
            Refusal::Gcs(_) => "gcs",
            Refusal::Lost(_) => "lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_says_why() {
        let no_variant = Refusal::NoVariant {
            profile: "thumb".into(),
            key: "a.gif".into(),
            reason: VariantsError::new("too_many_pixels", "80000 × 80000 is more than allowed"),
        };
        assert_eq!(no_variant.status(), 422);
        assert_eq!(
            no_variant.to_string(),
            "no thumb variant can be made of \"a.gif\": 80000 × 80000 is more than allowed \
             (too_many_pixels)"
        );
        assert_eq!(Refusal::Method("POST".into()).status(), 405);
        assert_eq!(Refusal::Path(PathError::NoKey).status(), 400);
        assert_eq!(Refusal::NotFound("x".into()).status(), 404);
        assert_eq!(Refusal::from(GcsError::transient("slow")).status(), 503);
        assert_eq!(Refusal::from(GcsError::permanent("denied")).status(), 502);
        let every = [
            no_variant,
            Refusal::Method("POST".into()),
            Refusal::Path(PathError::NoKey),
            Refusal::NotFound("x".into()),
            Refusal::from(GcsError::transient("slow")),
            Refusal::Lost("x".into()),
        ];
        let kinds: Vec<&str> = every.iter().map(Refusal::kind).collect();
        assert_eq!(kinds.len(), Refusal::KINDS.len());
        for kind in kinds {
            assert!(Refusal::KINDS.contains(&kind), "{kind}");
        }
    }
}
