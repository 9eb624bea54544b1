use yuba_gcs::PARTS_PREFIX;
use yuba_model::gcs_object_name;
use yuba_variants::VariantConfig;

use crate::error::ReplicateError;

/// The GCS name of `key`'s replica: the key itself, if GCS can hold it and it is not a name
/// yuba writes other objects under (variants, the parts of composite uploads). Replicating,
/// deleting and the reconciler all go through it, so such a key never touches another's
/// object and is reported rather than retried.
pub fn replica_name<'a>(
    bucket: &str,
    key: &'a str,
    variants: &VariantConfig,
) -> Result<&'a str, ReplicateError> {
    let name = gcs_object_name(key).map_err(|reason| ReplicateError::Name {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        reason,
    })?;
    let reserved = |prefix: String, holds, remedy| ReplicateError::Reserved {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        prefix,
        holds,
        remedy,
    };
    if key.starts_with(PARTS_PREFIX) {
        return Err(reserved(
            PARTS_PREFIX.to_owned(),
            "the temporary parts of composite uploads",
            "leave the prefix out with YUBA_FILTER_PREFIXES",
        ));
    }
    if let Some(prefix) = variants.reserved_prefix_of(key) {
        return Err(reserved(
            prefix,
            "image variants",
            "give the variants a key_template (YUBA_VARIANTS) whose prefix no source key uses",
        ));
    }
    Ok(name)
}
