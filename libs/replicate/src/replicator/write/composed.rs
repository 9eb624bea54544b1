//! Large objects, the fast way: in parts that upload several at once and are composed into the
//! replica, with its complete record, once the content is proven.

use bytes::BytesMut;
use yuba_aws::SourceObject;
use yuba_gcs::{CompositeUpload, GcsError, SourceIdentity};
use yuba_model::{Checksums, SourceFacts};

use super::{Imaging, Target, replica_record, upload_spec};
use crate::error::ReplicateError;
use crate::outcome::Outcome;
use crate::replicator::Replicator;
use crate::source::StreamFailure;
use crate::verify::{ContentVerifier, ExpectedContent};

/// Why the parts of a composite upload stopped before the content was complete.
enum PartsFailure {
    Stream(StreamFailure),
    Upload(GcsError),
}

impl Replicator {
    /// Reads once, verified and hashed on the way, in parts that upload several at once and are
    /// composed into the replica when the content is proven. The compose names the complete
    /// record, so no replica is ever without one, and no metadata update follows.
    ///
    /// The parts are keyed by the version being read (its version id, ETag and size), so an
    /// attempt cut short (cancelled, or failed transiently: its parts are kept) is resumed by
    /// the next attempt at the same version: the source is read whole again, for its digests,
    /// but a part GCS already holds with the same bytes is not uploaded again. A permanent
    /// failure removes the parts.
    pub(super) async fn write_composed(
        &self,
        target: Target<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        imaging: Imaging,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let location = format!("s3://{}/{}", facts.bucket, facts.key);
        let identity = SourceIdentity {
            location: &location,
            version_id: source.version_id.as_deref(),
            etag: &source.etag,
            size: source.size,
        };
        let mut upload = self
            .gcs
            .composite_upload(bucket, target.name, &identity)
            .await?;
        let checksums = match send_parts(&mut source, expected, &mut upload).await {
            Ok(checksums) => checksums,
            Err(failure) => {
                let error = match failure {
                    PartsFailure::Stream(failure) => ReplicateError::stream(failure, &facts),
                    PartsFailure::Upload(error) => error.into(),
                };
                // Parts read from a stream that failed its checks are kept as well: the next
                // attempt compares each with the bytes it reads and replaces any that differ.
                upload.abort(error.kind()).await;
                return Err(error);
            }
        };
        let record = replica_record(facts, Some(&checksums), imaging);
        let spec = upload_spec(bucket, target, &source, &record);
        let stored = upload
            .finish(spec, checksums.crc32c)
            .await
            .map_err(|error| ReplicateError::conditional_write(error, false))?;
        Ok(Outcome::replicated(&stored, checksums, &record, true))
    }
}

/// Reads the source to its end through the verifier, cutting it into parts of the upload's
/// size and pushing each as it fills (the last one once the content is proven). Holds one
/// part besides those uploading.
async fn send_parts(
    source: &mut SourceObject,
    expected: ExpectedContent,
    upload: &mut CompositeUpload,
) -> Result<Checksums, PartsFailure> {
    let part_bytes = upload.part_bytes();
    let mut verifier = ContentVerifier::new(expected);
    let mut part = BytesMut::with_capacity(part_bytes);
    while let Some(chunk) = source.next_chunk().await {
        let mut chunk =
            chunk.map_err(|error| PartsFailure::Stream(StreamFailure::Source(error)))?;
        verifier
            .feed(&chunk)
            .map_err(|error| PartsFailure::Stream(StreamFailure::Integrity(error)))?;
        while !chunk.is_empty() {
            let take = chunk.len().min(part_bytes - part.len());
            part.extend_from_slice(&chunk.split_to(take));
            if part.len() == part_bytes {
                // The next part's buffer only once this one is on its way: while `push` waits
                // for a free slot, one full part is held, not two.
                upload
                    .push(std::mem::take(&mut part).freeze())
                    .await
                    .map_err(PartsFailure::Upload)?;
                part.reserve(part_bytes);
            }
        }
    }
    let checksums = verifier
        .finish()
        .map_err(|error| PartsFailure::Stream(StreamFailure::Integrity(error)))?;
    if !part.is_empty() {
        upload
            .push(part.freeze())
            .await
            .map_err(PartsFailure::Upload)?;
    }
    Ok(checksums)
}
