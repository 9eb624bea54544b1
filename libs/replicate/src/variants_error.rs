//! Why an image that should have had variants has none: the [`VariantsError`]s a replica
//! records, and the closed set of their kinds.

use yuba_model::{ObjectNameError, VariantsError};
use yuba_transform::TransformError;

use crate::memory::OverBudget;

/// The [`VariantsError`] kind when a variant's name cannot be a GCS object name (the
/// transform's own refusals have [`TransformError::kind`]).
pub const VARIANT_NAME_ERROR: &str = "name";

/// The [`VariantsError`] kind when the image's render would need more memory than the process
/// has for images at all ([`crate::MemoryBudget`]).
pub const TOO_LARGE_FOR_MEMORY: &str = "too_large_for_memory";

/// Every [`VariantsError`] kind the worker records: the metric catalog's `VariantError` values.
pub fn variants_error_kinds() -> impl Iterator<Item = &'static str> {
    TransformError::KINDS
        .into_iter()
        .chain([VARIANT_NAME_ERROR, TOO_LARGE_FOR_MEMORY])
}

/// The recorded reason for a transform's refusal.
pub(crate) fn transform_failure(error: &TransformError) -> VariantsError {
    VariantsError::new(error.kind(), error.to_string())
}

/// The recorded reason for a transform that did not finish (its thread was lost), of the same
/// kind as the transform's own report of a panic.
pub(crate) fn transform_lost(join: &tokio::task::JoinError) -> VariantsError {
    VariantsError::new("panicked", join.to_string())
}

/// The recorded reason for an image whose render needs more than the images' whole budget.
pub(crate) fn too_large_for_memory(over: OverBudget) -> VariantsError {
    const MIB: u64 = 1024 * 1024;
    VariantsError::new(
        TOO_LARGE_FOR_MEMORY,
        format!(
            "making its variants needs about {} MiB with the source, more than the {} MiB this \
             process has for images; give it more memory (README \"Memory\")",
            over.needed.div_ceil(MIB),
            over.budget / MIB
        ),
    )
}

/// The recorded reason for an image in a format the transform does not decode, of the same
/// kind as the transform's own refusal of one.
pub(crate) fn unsupported(format: &str) -> VariantsError {
    VariantsError::new(
        "unsupported",
        format!("{format} images are replicated without variants"),
    )
}

/// The recorded reason for a variant whose name GCS cannot hold.
pub(crate) fn unnameable(name: &str, reason: &ObjectNameError) -> VariantsError {
    VariantsError::new(VARIANT_NAME_ERROR, format!("variant {name:?}: {reason}"))
}
