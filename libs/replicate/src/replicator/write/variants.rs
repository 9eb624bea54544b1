//! An image's variants: rendered under the memory its admission reserved (`crate::render`),
//! named by the configuration's key template, and written before the original.

use bytes::Bytes;
use yuba_aws::SourceObject;
use yuba_gcs::GcsError;
use yuba_model::{Checksums, MadeVariant, SourceFacts, VariantsError};
use yuba_transform::Variant;
use yuba_variants::VariantConfig;

use crate::error::ReplicateError;
use crate::replicator::Replicator;
use crate::replicator::admission::Admission;
use crate::variant_object::{variant_name, variant_upload};

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
        let rendered = self.renderer.render(content, render).await;
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

    /// Writes one variant beside the replica, with the record that ties it to its source.
    async fn write_variant(
        &self,
        facts: &SourceFacts,
        source: &SourceObject,
        checksums: &Checksums,
        name: String,
        variant: Variant,
    ) -> Result<MadeVariant, GcsError> {
        let spec = variant_upload(
            &self.settings.replica_bucket,
            name,
            facts,
            checksums.sha256_hex(),
            source.cache_control.clone(),
            &variant,
        );
        self.gcs
            .upload_bytes(spec, Bytes::from(variant.bytes))
            .await?;
        Ok(MadeVariant::new(
            variant.profile,
            variant.format.extension(),
        ))
    }
}

/// Each variant with the GCS name it is written under. A name GCS cannot hold costs the
/// variants (all of them, none is written), never the original.
fn name_variants(
    config: &VariantConfig,
    key: &str,
    variants: Vec<Variant>,
) -> Result<Vec<(String, Variant)>, VariantsError> {
    variants
        .into_iter()
        .map(|variant| {
            let name = variant_name(config, &variant.profile, key, variant.format.extension())?;
            Ok((name, variant))
        })
        .collect()
}
