//! Small objects, and images that get variants: the content is held whole and written in one
//! request with its complete record.

use bytes::Bytes;
use yuba_aws::SourceObject;
use yuba_model::{Checksums, SourceFacts};

use super::{Imaging, Target, replica_record, upload_spec};
use crate::error::ReplicateError;
use crate::outcome::Outcome;
use crate::replicator::Replicator;
use crate::replicator::admission::Admission;
use crate::verify::{ContentVerifier, ExpectedContent};

impl Replicator {
    /// Reads and verifies everything first (held once, and bounded by the chunk size or the
    /// image byte limit), makes and writes the variants, then creates the replica complete
    /// (record, digests and variant state) in one upload that GCS checks against the digests.
    /// Writing the original last means a replica whose record is complete always has its
    /// variants, so a retried job never skips missing ones.
    pub(super) async fn write_whole(
        &self,
        target: Target<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        format: Option<String>,
        admission: Admission,
    ) -> Result<Outcome, ReplicateError> {
        let read = read_whole(&mut source, &facts, expected).await?;
        self.upload_whole(target, &source, facts, read, format, admission)
            .await
    }

    /// Writes the variants and the replica of a source read whole (see [`Self::write_whole`]).
    pub(super) async fn upload_whole(
        &self,
        target: Target<'_>,
        source: &SourceObject,
        facts: SourceFacts,
        Whole { content, checksums }: Whole,
        format: Option<String>,
        admission: Admission,
    ) -> Result<Outcome, ReplicateError> {
        let (variants, variants_error) = self
            .write_variants(&facts, source, &content, &checksums, admission)
            .await?;
        let imaging = Imaging {
            format,
            variants,
            variants_error,
        };
        let record = replica_record(facts, Some(&checksums), imaging);
        let mut spec = upload_spec(&self.settings.replica_bucket, target, source, &record);
        spec.known_crc32c = Some(checksums.crc32c);
        spec.known_md5 = Some(checksums.md5);
        let stored = self
            .gcs
            .upload_bytes(spec, content)
            .await
            .map_err(|error| {
                ReplicateError::conditional_write(error, !record.variants.is_empty())
            })?;
        Ok(Outcome::replicated(&stored, checksums, &record, false))
    }
}

/// A source's content held whole, proven to be what S3 announced, and its digests.
pub(super) struct Whole {
    pub(super) content: Bytes,
    pub(super) checksums: Checksums,
}

/// The source's content, read to its end and proven to be what S3 announced.
pub(super) async fn read_whole(
    source: &mut SourceObject,
    facts: &SourceFacts,
    expected: ExpectedContent,
) -> Result<Whole, ReplicateError> {
    let integrity = |reason| ReplicateError::integrity(facts, reason);
    let mut verifier = ContentVerifier::new(expected);
    let mut content = Vec::with_capacity(usize::try_from(source.size).unwrap_or_default());
    while let Some(chunk) = source.next_chunk().await {
        let chunk = chunk?;
        verifier.feed(&chunk).map_err(integrity)?;
        content.extend_from_slice(&chunk);
    }
    let checksums = verifier.finish().map_err(integrity)?;
    Ok(Whole {
        content: Bytes::from(content),
        checksums,
    })
}
