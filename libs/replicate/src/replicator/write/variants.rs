//! An image's variants: rendered on a blocking thread under the memory its admission reserved,
//! named by the configuration's key template, and written before the original.

use bytes::Bytes;
use yuba_aws::SourceObject;
use yuba_gcs::{GcsError, UploadSpec};
use yuba_model::{
    Checksums, ErrorChain, MadeVariant, SourceFacts, VariantRecord, VariantsError, gcs_object_name,
};
use yuba_transform::Variant;
use yuba_variants::{Profile, VariantConfig};

use crate::error::ReplicateError;
use crate::replicator::Replicator;
use crate::replicator::admission::{Admission, Render};
use crate::variants_error::{transform_failure, transform_lost, unnameable};

impl Replicator {
    /// Makes and writes the variants `admission` calls for. Returns each one written, or why
    /// none could be made: a bad image is a fact to record, not a failure of the job. A failed
    /// upload is a failure (transient).
    pub(super) async fn write_variants(
        &self,
        facts: &SourceFacts,
        source: &SourceObject,
        content: &Bytes,
        checksums: &Checksums,
        admission: Admission,
    ) -> Result<(Vec<MadeVariant>, Option<VariantsError>), ReplicateError> {
        let render = match admission {
            Admission::NoVariants(error) => return Ok((Vec::new(), error)),
            Admission::Render(render) => render,
        };
        let rendered = self.render(content, render).await;
        let named = rendered
            .and_then(|variants| name_variants(&self.settings.variants, &facts.key, variants));
        let named = match named {
            Ok(named) => named,
            Err(error) => return Ok((Vec::new(), Some(error))),
        };
        let mut made = Vec::with_capacity(named.len());
        for (name, variant) in named {
            made.push(
                self.write_variant(facts, source, checksums, name, variant)
                    .await?,
            );
        }
        Ok((made, None))
    }

    /// Renders the image `content` holds, or says why it cannot be.
    async fn render(&self, content: &Bytes, render: Render) -> Result<Vec<Variant>, VariantsError> {
        let limits = self.settings.image_limits;
        let (profiles, reservation) = render.settle(content, &limits)?;
        let image = content.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            yuba_transform::render(&image, &profiles, &limits)
        })
        .await;
        // What the render allocated is freed; the source (part of the reservation) is held by
        // the caller until the original is written, a smaller share not worth splitting off.
        drop(reservation);
        match rendered {
            Ok(Ok(rendered)) => Ok(rendered.variants),
            Ok(Err(error)) => {
                tracing::warn!(kind = error.kind(), error = %ErrorChain(&error), "no variants: the image cannot be transformed");
                Err(transform_failure(&error))
            }
            Err(join) => {
                tracing::error!(error = %ErrorChain(&join), "the transform did not finish");
                Err(transform_lost(&join))
            }
        }
    }

    /// Writes one variant beside the replica, with the record that ties it to its source.
    async fn write_variant(
        &self,
        facts: &SourceFacts,
        source: &SourceObject,
        checksums: &Checksums,
        name: String,
        variant: Variant,
    ) -> Result<MadeVariant, GcsError> {
        let record = VariantRecord {
            source_bucket: facts.bucket.clone(),
            source_key: facts.key.clone(),
            source_etag: facts.etag.clone(),
            source_sha256: checksums.sha256_hex(),
            profile: variant.profile.clone(),
            width: variant.width,
            height: variant.height,
        };
        let spec = UploadSpec {
            bucket: self.settings.replica_bucket.clone(),
            name,
            content_type: Some(variant.format.content_type().to_owned()),
            cache_control: source.cache_control.clone(),
            metadata: record
                .to_metadata()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            ..UploadSpec::default()
        };
        self.gcs
            .upload_bytes(spec, Bytes::from(variant.bytes))
            .await?;
        Ok(MadeVariant::new(
            variant.profile,
            variant.format.extension(),
        ))
    }
}

/// Each variant with the GCS name it is written under. A long key plus the template's prefix
/// can outgrow GCS's name limit: that costs the variants (all of them, none is written), never
/// the original.
fn name_variants(
    config: &VariantConfig,
    key: &str,
    variants: Vec<Variant>,
) -> Result<Vec<(String, Variant)>, VariantsError> {
    variants
        .into_iter()
        .map(|variant| {
            let name =
                config
                    .key_template
                    .render(&variant.profile, key, variant.format.extension());
            match gcs_object_name(&name) {
                Ok(_) => Ok((name, variant)),
                Err(reason) => Err(unnameable(&name, &reason)),
            }
        })
        .collect()
}
