//! Writing the replica, once the job has decided it must: which way the content goes (whole
//! with its variants, in one resumable upload, or in parts composed at the end: one file each
//! below), and what every way writes it with: its attributes and its record.

mod composed;
mod streamed;
mod variants;
mod whole;

use chrono::Utc;
use yuba_aws::SourceObject;
use yuba_gcs::{ObjectInfo, UploadSpec};
use yuba_model::{Checksums, MadeVariant, ReplicaRecord, SourceFacts, VariantsError};
use yuba_transform::{Identified, identify};

use super::Replicator;
use super::admission::Admission;
use super::attributes;
use crate::error::ReplicateError;
use crate::outcome::Outcome;
use crate::verify::ExpectedContent;

/// Enough of the start of an object to tell an image format by its magic number.
const SNIFF_BYTES: usize = 64;

/// Where a job writes: the replica's name and the generation it saw there (0: none), which
/// its write must still find.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) name: &'a str,
    pub(super) if_generation_match: i64,
}

/// A replica that holds its source's content (its record describes the source, and the bytes
/// stored are the ones it records), as a job found it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held<'a> {
    pub(super) replica: &'a ObjectInfo,
    pub(super) record: &'a ReplicaRecord,
}

/// What a replica records of its content as an image: its format, and the variants written
/// beside it or why there are none.
struct Imaging {
    /// The `yuba-image-format`: set for the images yuba decodes.
    format: Option<String>,
    variants: Vec<MadeVariant>,
    variants_error: Option<VariantsError>,
}

impl Replicator {
    /// Writes the source's content to `target`. What the bytes are decides, not what the upload
    /// claimed; the format is recorded so that the variants a replica should have can be told
    /// from its record alone.
    pub(super) async fn write(
        &self,
        target: Target<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
    ) -> Result<Outcome, ReplicateError> {
        let identified = identify(&source.peek(SNIFF_BYTES).await?);
        let format = image_format(identified);
        let admission = self
            .admit(&facts.key, &mut source, identified, None)
            .await?;
        // Images that get variants are held whole (bounded by the image byte limit, and
        // reserved in the images' budget); anything else larger than a chunk streams.
        let variants_error = match admission {
            Admission::NoVariants(error) if source.size > self.settings.whole_object_limit => error,
            admission => {
                return self
                    .write_whole(target, source, facts, expected, format, admission)
                    .await;
            }
        };
        let imaging = Imaging {
            format,
            variants: Vec::new(),
            variants_error,
        };
        if self.gcs.settings().composes(source.size) {
            return self
                .write_composed(target, source, facts, expected, imaging)
                .await;
        }
        self.write_streamed(target, source, facts, expected, imaging)
            .await
    }
}

/// The `yuba-image-format` of a source: set for the images yuba decodes.
fn image_format(identified: Identified) -> Option<String> {
    match identified {
        Identified::Decodable(format) => Some(format.content_type().to_owned()),
        Identified::UnsupportedImage(_) | Identified::NotAnImage => None,
    }
}

/// The replica's record: built here only, so that every write path records the same fields.
/// `checksums`: `None` while they are not known yet (a resumable upload's, added to the record
/// once it is finalised; see [`ReplicaRecord`] on complete and incomplete records).
fn replica_record(
    facts: SourceFacts,
    checksums: Option<&Checksums>,
    imaging: Imaging,
) -> ReplicaRecord {
    ReplicaRecord {
        source: facts,
        sha256: checksums.map(Checksums::sha256_hex),
        crc32c: checksums.map(|checksums| checksums.crc32c),
        replicated_at: Utc::now(),
        variants: imaging.variants,
        variants_error: imaging.variants_error,
        image_format: imaging.format,
    }
}

/// The replica's attributes: the source's HTTP headers, its user metadata (less yuba's reserved
/// keys) and the record.
fn upload_spec(
    bucket: &str,
    target: Target<'_>,
    source: &SourceObject,
    record: &ReplicaRecord,
) -> UploadSpec {
    let mut metadata: Vec<(String, String)> =
        attributes::user_metadata(&source.attributes.user_metadata);
    metadata.extend(
        record
            .to_metadata()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    let headers = attributes::headers(&source.attributes);
    UploadSpec {
        bucket: bucket.to_owned(),
        name: target.name.to_owned(),
        content_type: headers.content_type,
        cache_control: headers.cache_control,
        content_disposition: headers.content_disposition,
        content_encoding: headers.content_encoding,
        content_language: headers.content_language,
        metadata,
        known_crc32c: None,
        known_md5: None,
        if_generation_match: Some(target.if_generation_match),
    }
}
