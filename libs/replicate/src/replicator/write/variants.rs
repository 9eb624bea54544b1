//! An image's variants: rendered under the memory its admission reserved (`crate::render`),
//! named by the configuration's key template, and written before the original.

use bytes::Bytes;
use yuba_aws::SourceObject;
use yuba_gcs::GcsError;
use yuba_model::{Checksums, MadeVariant, ReplicaRecord, SourceFacts, VariantsError, keys};
use yuba_transform::{Variant, identify};
use yuba_variants::VariantConfig;

use super::whole::read_whole;
use super::{Held, SNIFF_BYTES, Target, image_format};
use crate::error::ReplicateError;
use crate::outcome::Outcome;
use crate::replicator::Replicator;
use crate::replicator::admission::Admission;
use crate::replicator::attributes;
use crate::variant_object::{variant_name, variant_upload};
use crate::verify::ExpectedContent;

impl Replicator {
    /// The replica `name` holds the source's content but lacks variants the configuration
    /// calls for now (a profile was added since it was written): those are made from the
    /// source, read and proven as for a copy, and a metadata update of the replica's generation
    /// adds them to its record, with the source's attributes. Neither the original's content
    /// nor the variants it has are sent again, unless the bytes read are not the ones the record
    /// describes: then the replica is written anew from them, as a copy is.
    pub(in crate::replicator) async fn add_variants(
        &self,
        name: &str,
        held: Held<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
    ) -> Result<Outcome, ReplicateError> {
        let target = Target {
            name,
            if_generation_match: held.replica.generation,
        };
        let identified = identify(&source.peek(SNIFF_BYTES).await?);
        let format = image_format(identified);
        if format != held.record.image_format {
            return self.write(target, source, facts, expected).await;
        }
        let missing = self.settings.variants.missing_for(held.record);
        let admission = self
            .admit(&facts.key, &mut source, identified, Some(&missing))
            .await?;
        let (added, variants_error) = match admission {
            Admission::NoVariants(error) => (Vec::new(), error),
            admission => {
                let whole = read_whole(&mut source, &facts, expected).await?;
                if held.record.sha256.as_deref() != Some(whole.checksums.sha256_hex().as_str()) {
                    return self
                        .upload_whole(target, &source, facts, whole, format, admission)
                        .await;
                }
                self.write_variants(&facts, &source, &whole.content, &whole.checksums, admission)
                    .await?
            }
        };
        // The variants it has stay (made from the same content, under profiles of the same
        // names) while their profile is still configured.
        let kept = self.settings.variants.kept_for(held.record);
        let variants = kept.into_iter().chain(added).collect();
        let record = ReplicaRecord {
            source: SourceFacts {
                sequencer: facts
                    .sequencer
                    .clone()
                    .or_else(|| held.record.source.sequencer.clone()),
                ..facts
            },
            variants,
            variants_error,
            image_format: format,
            ..held.record.clone()
        };
        let update = attributes::update(held.replica, &source.attributes, &record);
        let stored = self
            .gcs
            .objects()
            .update(
                &self.settings.replica_bucket,
                name,
                held.replica.generation,
                update,
            )
            .await
            .map_err(|error| {
                ReplicateError::conditional_write(error, !record.variants.is_empty())
            })?;
        Ok(Outcome::VariantsAdded {
            generation: stored.generation,
            variants: record.variants.len(),
            variants_error: record.variants_error,
        })
    }

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

    /// Removes the variants `previous` (the record of the content a write just replaced) lists
    /// that are still made from that content: the new content did not replace them (it is not
    /// an image any more, is over the limits, or has other formats), so they would go on
    /// showing the old photo. A variant made from any other content, or replaced meanwhile (its
    /// generation's precondition fails), is left alone.
    pub(in crate::replicator) async fn remove_outdated_variants(
        &self,
        previous: &ReplicaRecord,
        current_sha256: &str,
    ) -> Result<usize, ReplicateError> {
        let Some(outdated) = previous
            .sha256
            .as_deref()
            .filter(|old| *old != current_sha256)
        else {
            return Ok(0);
        };
        let bucket = &self.settings.replica_bucket;
        let mut removed = 0;
        for variant in &previous.variants {
            let name = self
                .settings
                .variants
                .name_of(&previous.source.key, variant);
            let Some(found) = self.gcs.objects().get(bucket, &name).await? else {
                continue;
            };
            if found.metadata.get(keys::SOURCE_SHA256).map(String::as_str) != Some(outdated) {
                continue;
            }
            match self
                .gcs
                .objects()
                .delete(bucket, &name, Some(found.generation))
                .await
            {
                Ok(deleted) => removed += usize::from(deleted),
                Err(error) if error.is_conflict() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(removed)
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
            source.attributes.cache_control.clone(),
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
