//! Large objects, in one resumable upload: streamed from S3 through the verifier, with the
//! digests added to the record once the upload is finalised.

use std::sync::{Arc, Mutex};

use yuba_aws::SourceObject;
use yuba_gcs::ObjectUpdate;
use yuba_model::{Checksums, SourceFacts, keys};

use super::{Imaging, Target, replica_record, upload_spec};
use crate::error::ReplicateError;
use crate::outcome::Outcome;
use crate::replicator::Replicator;
use crate::source::{StreamFailure, StreamReport, VerifiedStream};
use crate::verify::{ExpectedContent, IntegrityError};

impl Replicator {
    /// Streams through a resumable upload, hashing on the way. The digests are known only at
    /// the end, so they are added to the replica's record right after the upload is finalised
    /// (see [`yuba_model::ReplicaRecord`] on complete and incomplete records), in the one
    /// metadata update that also puts right a content type the server did not store.
    pub(super) async fn write_streamed(
        &self,
        target: Target<'_>,
        source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        imaging: Imaging,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let record = replica_record(facts, None, imaging);
        let mut spec = upload_spec(bucket, target, &source, &record);
        // Checksums the source vouches for are given to GCS up front, so it checks the upload
        // end to end against S3's own record of the content.
        spec.known_crc32c = expected.crc32c;
        spec.known_md5 = expected.md5;
        let content_type = spec.content_type.clone();
        let (stream, report) = VerifiedStream::new(source, expected);
        let uploaded = self.gcs.upload(spec, stream).await;
        let facts = &record.source;
        let (checksums, failure) = take_report(&report);
        if let Some(failure) = failure {
            return Err(ReplicateError::stream(failure, facts));
        }
        let stored = uploaded.map_err(|error| ReplicateError::conditional_write(error, false))?;
        let checksums = checksums.ok_or_else(|| {
            let reason = IntegrityError::TooShort {
                expected: facts.size,
                received: 0,
            };
            ReplicateError::integrity(facts, reason)
        })?;
        let completion = ObjectUpdate {
            // GCS stores the type the upload asked for; fake-gcs-server the type of the media,
            // which the streaming client sends as application/octet-stream.
            content_type: content_type
                .filter(|wanted| stored.content_type.as_deref() != Some(wanted.as_str())),
            metadata: vec![
                (keys::SHA256.to_owned(), checksums.sha256_hex()),
                (keys::CRC32C.to_owned(), checksums.crc32c_base64()),
            ],
            ..ObjectUpdate::default()
        };
        self.gcs
            .objects()
            .update(bucket, target.name, stored.generation, completion)
            .await
            .map_err(|error| ReplicateError::conditional_write(error, false))?;
        Ok(Outcome::replicated(&stored, checksums, &record, true))
    }
}

fn take_report(report: &Arc<Mutex<StreamReport>>) -> (Option<Checksums>, Option<StreamFailure>) {
    let mut report = report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (report.checksums.take(), report.failure.take())
}
