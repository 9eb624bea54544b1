//! A variant as a GCS object: the name the key template gives it, and the upload that carries
//! the record tying it to its source. One definition for the worker, which writes variants
//! beside each replica, and the delivery origin, which writes the ones it makes on demand.

use yuba_gcs::UploadSpec;
use yuba_model::{SourceFacts, VariantRecord, VariantsError, gcs_object_name};
use yuba_transform::Variant;
use yuba_variants::VariantConfig;

use crate::variants_error::unnameable;

/// The GCS name of `key`'s variant of `profile` encoded as `extension`, or why GCS cannot hold
/// it: a long key plus the template's prefix can outgrow GCS's name limit.
pub fn variant_name(
    config: &VariantConfig,
    profile: &str,
    key: &str,
    extension: &str,
) -> Result<String, VariantsError> {
    let name = config.key_template.render(profile, key, extension);
    match gcs_object_name(&name) {
        Ok(_) => Ok(name),
        Err(reason) => Err(unnameable(&name, &reason)),
    }
}

/// The upload of `variant`, made from the source `facts` describes (whose content has
/// `source_sha256`), as the object `name` in `bucket`. It is served with the source's
/// `cache_control`, as the original is.
pub fn variant_upload(
    bucket: &str,
    name: String,
    facts: &SourceFacts,
    source_sha256: String,
    cache_control: Option<String>,
    variant: &Variant,
) -> UploadSpec {
    let record = VariantRecord {
        source_bucket: facts.bucket.clone(),
        source_key: facts.key.clone(),
        source_etag: facts.etag.clone(),
        source_sha256,
        profile: variant.profile.clone(),
        width: variant.width,
        height: variant.height,
    };
    UploadSpec {
        bucket: bucket.to_owned(),
        name,
        content_type: Some(variant.format.content_type().to_owned()),
        cache_control,
        metadata: record
            .to_metadata()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
        ..UploadSpec::default()
    }
}
