//! The replica-metadata schema: what a GCS replica records about its S3 source.
//!
//! The reconciler and the delivery path read these keys, so they are a public contract: see
//! `docs/METADATA.md`. Keys are added, never renamed; an incompatible change bumps
//! [`SCHEMA_VERSION`].

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

use crate::checksum::{crc32c_from_base64, crc32c_to_base64};
use crate::job::{ReplicateJob, sequencer_order};

pub const SCHEMA_VERSION: &str = "1";

/// Custom-metadata keys that yuba owns. S3 user metadata with this prefix is not copied, so that
/// a source object can never forge a replica record.
pub const RESERVED_METADATA_PREFIX: &str = "yuba-";

pub mod keys {
    pub const SCHEMA: &str = "yuba-schema";
    pub const SOURCE_BUCKET: &str = "yuba-source-bucket";
    pub const SOURCE_KEY: &str = "yuba-source-key";
    pub const SOURCE_VERSION_ID: &str = "yuba-source-version-id";
    pub const SOURCE_ETAG: &str = "yuba-source-etag";
    pub const SOURCE_SIZE: &str = "yuba-source-size";
    pub const SOURCE_LAST_MODIFIED: &str = "yuba-source-last-modified";
    pub const SOURCE_SEQUENCER: &str = "yuba-source-sequencer";
    /// A digest of the source's attributes the replica keeps (its HTTP headers and user
    /// metadata), to tell a change of them alone (S3's copy onto itself) from none.
    pub const SOURCE_ATTRIBUTES: &str = "yuba-source-attributes";
    pub const SHA256: &str = "yuba-sha256";
    pub const CRC32C: &str = "yuba-crc32c";
    pub const REPLICATED_AT: &str = "yuba-replicated-at";
    /// On a replica: the variants made, as `profile.extension` entries, comma-separated.
    pub const VARIANTS: &str = "yuba-variants";
    /// On a replica: why no variants could be made (the transform's error).
    pub const VARIANTS_ERROR: &str = "yuba-variants-error";
    /// On a replica: the image format identified from the source's bytes (a content type such
    /// as `image/jpeg`); absent when the bytes are not an image yuba decodes.
    pub const IMAGE_FORMAT: &str = "yuba-image-format";
    /// On a variant: the profile that made it; the key marks an object as a variant.
    pub const VARIANT: &str = "yuba-variant";
    pub const VARIANT_WIDTH: &str = "yuba-variant-width";
    pub const VARIANT_HEIGHT: &str = "yuba-variant-height";
    /// On a variant: the sha256 of the source it was made from.
    pub const SOURCE_SHA256: &str = "yuba-source-sha256";
    /// On a temporary part of a composite upload: the name of the object it is part of.
    pub const PART_OF: &str = "yuba-part-of";
}

/// What S3 said about the object that was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFacts {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// Bare, without quotes.
    pub etag: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    pub sequencer: Option<String>,
    /// The digest of the attributes the replica was given (`None` in records written before
    /// yuba kept it: their attributes are brought up to date the next time the source is read).
    pub attributes: Option<String>,
}

/// The yuba part of a replica's custom metadata.
///
/// A replica is *complete* once its content digests are recorded. Objects small enough to be
/// hashed before upload, and those composed from parts, are written complete; ones streamed in
/// a single upload get their digests in a metadata update right after the upload is finalised,
/// so a crash in between leaves an incomplete record that the next delivery of the job repairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub source: SourceFacts,
    /// Lowercase hex.
    pub sha256: Option<String>,
    pub crc32c: Option<u32>,
    pub replicated_at: DateTime<Utc>,
    /// The variants made from this source; empty when none applied.
    pub variants: Vec<MadeVariant>,
    /// Why variants could not be made (corrupt, unsupported or over-limit image).
    pub variants_error: Option<VariantsError>,
    /// The decodable image format the bytes were identified as (`image/png`), whatever the
    /// source's declared content type: what decides which variant profiles apply.
    pub image_format: Option<String>,
}

/// A variant a replica's record lists: the profile that made it and its file extension, which
/// with the key template name the variant's object. Recorded as `profile.extension`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeVariant {
    pub profile: String,
    pub extension: String,
}

impl MadeVariant {
    pub fn new(profile: impl Into<String>, extension: impl Into<String>) -> MadeVariant {
        MadeVariant {
            profile: profile.into(),
            extension: extension.into(),
        }
    }

    /// `None`: not `profile.extension` (profile names hold no `.`; extensions are a format's).
    fn from_recorded(recorded: &str) -> Option<MadeVariant> {
        let (profile, extension) = recorded.rsplit_once('.')?;
        (!profile.is_empty() && !extension.is_empty()).then(|| MadeVariant::new(profile, extension))
    }
}

impl std::fmt::Display for MadeVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.profile, self.extension)
    }
}

/// Why an image that should have had variants has none: its kind, one of a closed set that is
/// also a metric's dimension value (`yuba_replicate::variants_error_kinds`), and the details.
/// Recorded as `kind: details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantsError {
    pub kind: String,
    pub details: String,
}

impl VariantsError {
    pub fn new(kind: impl Into<String>, details: impl Into<String>) -> VariantsError {
        VariantsError {
            kind: kind.into(),
            details: details.into(),
        }
    }

    fn from_recorded(recorded: &str) -> VariantsError {
        match recorded.split_once(": ") {
            Some((kind, details)) => VariantsError::new(kind, details),
            None => VariantsError::new(recorded, ""),
        }
    }
}

impl std::fmt::Display for VariantsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.details)
        }
    }
}

/// How a stored replica's content differs from what its record says was written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentDrift {
    #[error("the record lacks the content digests (the copy did not finish)")]
    Incomplete,
    #[error("the replica holds {stored} bytes, its record says {recorded}")]
    Size { recorded: u64, stored: u64 },
    #[error(
        "the replica's crc32c is {stored}, its record says {recorded}: the bytes changed after the copy"
    )]
    Crc32c { recorded: String, stored: String },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error(
        "the replica's metadata is in schema {found:?}; this build reads schema {SCHEMA_VERSION}"
    )]
    UnknownSchema { found: String },
    #[error("the replica's metadata lacks `{0}`")]
    Missing(&'static str),
    #[error("the replica's metadata has an unreadable `{key}`: {value:?}")]
    Invalid { key: &'static str, value: String },
}

impl ReplicaRecord {
    pub fn is_complete(&self) -> bool {
        self.sha256.is_some() && self.crc32c.is_some()
    }

    /// Whether this record was made from a later change of its key than the event `sequencer`
    /// (of the same key) came from: the event is stale and its job has nothing to do. Only
    /// sequencers order changes here; without both, nothing is newer.
    pub fn is_later_than(&self, sequencer: Option<&str>) -> bool {
        let recorded = self.source.sequencer.as_deref();
        recorded
            .zip(sequencer)
            .and_then(|(recorded, event)| sequencer_order(recorded, event))
            == Some(std::cmp::Ordering::Greater)
    }

    /// Whether the event `sequencer` may be of a later change of the key than this record was
    /// made from: it is, or there are not two sequencers to tell (S3 always sends one; a
    /// hand-made job or an emulator's event may not). A later change with the same content
    /// (S3's copy of an object onto itself with new metadata keeps a single-part object's
    /// ETag) may have changed the attributes, which only the source can tell.
    pub fn may_be_older_than(&self, sequencer: Option<&str>) -> bool {
        let order = self
            .source
            .sequencer
            .as_deref()
            .zip(sequencer)
            .and_then(|(recorded, event)| sequencer_order(recorded, event));
        !matches!(
            order,
            Some(std::cmp::Ordering::Equal | std::cmp::Ordering::Greater)
        )
    }

    /// Whether this replica already holds what `job` asks to copy, so the job can be skipped
    /// without reading the source. Only a complete record counts, every identity the job
    /// carries must agree, the job's event must be of no later change than the record's, and a
    /// forced job is never satisfied.
    pub fn satisfies(&self, job: &ReplicateJob) -> bool {
        let agrees =
            |wanted: Option<&str>, have: Option<&str>| wanted.is_none_or(|w| have == Some(w));
        !job.force
            && !self.may_be_older_than(job.sequencer.as_deref())
            && self.is_complete()
            && self.source.bucket == job.bucket
            && self.source.key == job.key
            && agrees(job.etag.as_deref(), Some(self.source.etag.as_str()))
            && agrees(job.version_id.as_deref(), self.source.version_id.as_deref())
            && job.size.is_none_or(|size| size == self.source.size)
    }

    /// Whether the stored object still holds what this record says was written: the digests
    /// are recorded, and the size and crc32c GCS reports for the object agree with them. A
    /// replica whose bytes were replaced or damaged after the copy fails this even though its
    /// record still names the right source.
    pub fn check_stored(
        &self,
        stored_size: u64,
        stored_crc32c: Option<u32>,
    ) -> Result<(), ContentDrift> {
        let Some(recorded_crc32c) = self.crc32c.filter(|_| self.sha256.is_some()) else {
            return Err(ContentDrift::Incomplete);
        };
        if stored_size != self.source.size {
            return Err(ContentDrift::Size {
                recorded: self.source.size,
                stored: stored_size,
            });
        }
        match stored_crc32c {
            Some(stored) if stored != recorded_crc32c => Err(ContentDrift::Crc32c {
                recorded: crc32c_to_base64(recorded_crc32c),
                stored: crc32c_to_base64(stored),
            }),
            _ => Ok(()),
        }
    }

    /// The custom-metadata entries to write, in a stable order.
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let timestamp = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let source = &self.source;
        let mut entries = vec![
            (keys::SCHEMA, SCHEMA_VERSION.to_owned()),
            (keys::SOURCE_BUCKET, source.bucket.clone()),
            (keys::SOURCE_KEY, source.key.clone()),
            (keys::SOURCE_ETAG, source.etag.clone()),
            (keys::SOURCE_SIZE, source.size.to_string()),
            (keys::REPLICATED_AT, timestamp(&self.replicated_at)),
        ];
        let optional = [
            (keys::SOURCE_VERSION_ID, source.version_id.clone()),
            (
                keys::SOURCE_LAST_MODIFIED,
                source.last_modified.as_ref().map(timestamp),
            ),
            (keys::SOURCE_SEQUENCER, source.sequencer.clone()),
            (keys::SOURCE_ATTRIBUTES, source.attributes.clone()),
            (keys::SHA256, self.sha256.clone()),
            (keys::CRC32C, self.crc32c.map(crc32c_to_base64)),
            (
                keys::VARIANTS,
                Some(
                    self.variants
                        .iter()
                        .map(MadeVariant::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .filter(|v| !v.is_empty()),
            ),
            (
                keys::VARIANTS_ERROR,
                self.variants_error.as_ref().map(VariantsError::to_string),
            ),
            (keys::IMAGE_FORMAT, self.image_format.clone()),
        ];
        entries.extend(
            optional
                .into_iter()
                .filter_map(|(key, value)| value.map(|v| (key, v))),
        );
        entries
    }

    /// Reads the record back from a replica's custom metadata. `Ok(None)`: the object carries no
    /// yuba record (it was not written by yuba).
    pub fn from_metadata(
        metadata: &HashMap<String, String>,
    ) -> Result<Option<Self>, MetadataError> {
        let Some(schema) = metadata.get(keys::SCHEMA) else {
            return Ok(None);
        };
        if schema != SCHEMA_VERSION {
            return Err(MetadataError::UnknownSchema {
                found: schema.clone(),
            });
        }
        let optional = |key: &'static str| metadata.get(key).cloned();
        let required = |key: &'static str| optional(key).ok_or(MetadataError::Missing(key));
        let invalid = |key: &'static str| MetadataError::Invalid {
            key,
            value: metadata.get(key).cloned().unwrap_or_default(),
        };
        let timestamp = |key: &'static str, value: String| {
            DateTime::parse_from_rfc3339(&value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(key))
        };

        let size = required(keys::SOURCE_SIZE)?
            .parse()
            .map_err(|_| invalid(keys::SOURCE_SIZE))?;
        let last_modified = optional(keys::SOURCE_LAST_MODIFIED)
            .map(|v| timestamp(keys::SOURCE_LAST_MODIFIED, v))
            .transpose()?;
        let crc32c = optional(keys::CRC32C)
            .map(|v| crc32c_from_base64(&v).ok_or_else(|| invalid(keys::CRC32C)))
            .transpose()?;
        let sha256 = optional(keys::SHA256);
        if sha256
            .as_deref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(invalid(keys::SHA256));
        }
        Ok(Some(ReplicaRecord {
            source: SourceFacts {
                bucket: required(keys::SOURCE_BUCKET)?,
                key: required(keys::SOURCE_KEY)?,
                version_id: optional(keys::SOURCE_VERSION_ID),
                etag: required(keys::SOURCE_ETAG)?,
                size,
                last_modified,
                sequencer: optional(keys::SOURCE_SEQUENCER),
                attributes: optional(keys::SOURCE_ATTRIBUTES),
            },
            sha256,
            crc32c,
            replicated_at: timestamp(keys::REPLICATED_AT, required(keys::REPLICATED_AT)?)?,
            variants: optional(keys::VARIANTS)
                .map(|v| {
                    v.split(',')
                        .filter_map(MadeVariant::from_recorded)
                        .collect()
                })
                .unwrap_or_default(),
            variants_error: optional(keys::VARIANTS_ERROR)
                .map(|recorded| VariantsError::from_recorded(&recorded)),
            image_format: optional(keys::IMAGE_FORMAT),
        }))
    }
}

/// What a variant object records about the source it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRecord {
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    /// Lowercase hex.
    pub source_sha256: String,
    pub profile: String,
    pub width: u32,
    pub height: u32,
}

impl VariantRecord {
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::VARIANT, self.profile.clone()),
            (keys::VARIANT_WIDTH, self.width.to_string()),
            (keys::VARIANT_HEIGHT, self.height.to_string()),
            (keys::SOURCE_BUCKET, self.source_bucket.clone()),
            (keys::SOURCE_KEY, self.source_key.clone()),
            (keys::SOURCE_ETAG, self.source_etag.clone()),
            (keys::SOURCE_SHA256, self.source_sha256.clone()),
        ]
    }

    /// The record a variant object carries; `None` for an object that is not a variant (or
    /// whose record is damaged: it is then made again, not trusted).
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Option<VariantRecord> {
        let text = |key: &str| metadata.get(key).cloned();
        let number = |key: &str| metadata.get(key)?.parse().ok();
        Some(VariantRecord {
            source_bucket: text(keys::SOURCE_BUCKET)?,
            source_key: text(keys::SOURCE_KEY)?,
            source_etag: text(keys::SOURCE_ETAG)?,
            source_sha256: text(keys::SOURCE_SHA256)?,
            profile: text(keys::VARIANT)?,
            width: number(keys::VARIANT_WIDTH)?,
            height: number(keys::VARIANT_HEIGHT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ReplicaRecord {
        ReplicaRecord {
            source: SourceFacts {
                bucket: "src".into(),
                key: "a/b.jpg".into(),
                version_id: None,
                etag: "9a0364b9e99bb480dd25e1f0284c8555".into(),
                size: 7,
                last_modified: Some("2026-11-22T10:00:00Z".parse().unwrap()),
                sequencer: Some("0055AED6DCD90281E5".into()),
                attributes: Some("5d".repeat(32)),
            },
            sha256: Some("ed7002b439e9ac845f22357d822bac1444730fbdb6016d3ec9432297b9ec9f73".into()),
            crc32c: Some(0xc994_65aa),
            replicated_at: "2026-11-22T10:00:01.5Z".parse().unwrap(),
            variants: vec![
                MadeVariant::new("large", "jpg"),
                MadeVariant::new("thumb", "webp"),
            ],
            variants_error: None,
            image_format: Some("image/jpeg".into()),
        }
    }

    #[test]
    fn a_variant_record_reads_back_what_it_wrote() {
        let variant = VariantRecord {
            source_bucket: "src".into(),
            source_key: "a/b.jpg".into(),
            source_etag: "9a0364b9e99bb480dd25e1f0284c8555".into(),
            source_sha256: "ed7002b4".into(),
            profile: "thumb".into(),
            width: 200,
            height: 150,
        };
        let mut metadata: HashMap<String, String> = variant
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(VariantRecord::from_metadata(&metadata), Some(variant));
        metadata.insert(keys::VARIANT_WIDTH.into(), "wide".into());
        assert_eq!(VariantRecord::from_metadata(&metadata), None);
        // A replica's record is not a variant's.
        assert_eq!(VariantRecord::from_metadata(&as_map(&record())), None);
    }

    fn as_map(record: &ReplicaRecord) -> HashMap<String, String> {
        record
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    fn job() -> ReplicateJob {
        ReplicateJob {
            bucket: "src".into(),
            key: "a/b.jpg".into(),
            version_id: None,
            etag: Some("9a0364b9e99bb480dd25e1f0284c8555".into()),
            size: Some(7),
            // The event the record was made from, delivered again.
            sequencer: Some("0055AED6DCD90281E5".into()),
            event_time: None,
            force: false,
        }
    }

    #[test]
    fn a_record_is_later_than_an_event_only_by_sequencer() {
        let record = record();
        assert!(record.is_later_than(Some("0055AED6DCD90281E4")));
        assert!(
            !record.is_later_than(Some("0055AED6DCD90281E5")),
            "the same change"
        );
        assert!(!record.is_later_than(Some("0055AED6DCD90281E6")));
        assert!(!record.is_later_than(None), "an event without a sequencer");
        let unordered = ReplicaRecord {
            source: SourceFacts {
                sequencer: None,
                ..record.source.clone()
            },
            ..record
        };
        assert!(!unordered.is_later_than(Some("00")));
    }

    #[test]
    fn records_round_trip_through_metadata() {
        let record = record();
        let mut map = as_map(&record);
        map.insert("owner".into(), "user metadata is ignored".into());
        assert_eq!(ReplicaRecord::from_metadata(&map), Ok(Some(record)));
        assert_eq!(map["yuba-crc32c"], "yZRlqg==");
        assert_eq!(map["yuba-replicated-at"], "2026-11-22T10:00:01.500Z");
        assert!(!map.contains_key("yuba-source-version-id"));
        assert_eq!(map["yuba-variants"], "large.jpg,thumb.webp");
    }

    #[test]
    fn a_variants_error_is_recorded_as_kind_and_details() {
        let failed = ReplicaRecord {
            variants: Vec::new(),
            variants_error: Some(VariantsError::new("corrupt", "bad Huffman code: at 12")),
            ..record()
        };
        let map = as_map(&failed);
        assert_eq!(
            map["yuba-variants-error"],
            "corrupt: bad Huffman code: at 12"
        );
        let read = ReplicaRecord::from_metadata(&map).unwrap().unwrap();
        assert_eq!(read, failed);
        assert_eq!(read.variants_error.unwrap().kind, "corrupt");
        // A kind alone (no details) reads back as itself.
        assert_eq!(
            VariantsError::from_recorded("panicked").to_string(),
            "panicked"
        );
        // Entries that are not `profile.extension` are not variants.
        let mut map = as_map(&record());
        map.insert("yuba-variants".into(), "large.jpg,nodot,.jpg,thumb.".into());
        let read = ReplicaRecord::from_metadata(&map).unwrap().unwrap();
        assert_eq!(read.variants, [MadeVariant::new("large", "jpg")]);
    }

    #[test]
    fn objects_without_a_record_are_not_replicas() {
        let map = HashMap::from([("owner".to_owned(), "x".to_owned())]);
        assert_eq!(ReplicaRecord::from_metadata(&map), Ok(None));
    }

    #[test]
    fn damaged_records_name_the_field() {
        let mut map = as_map(&record());
        map.insert("yuba-source-size".into(), "seven".into());
        assert_eq!(
            ReplicaRecord::from_metadata(&map),
            Err(MetadataError::Invalid {
                key: "yuba-source-size",
                value: "seven".into()
            })
        );
        map.remove("yuba-source-size");
        assert_eq!(
            ReplicaRecord::from_metadata(&map),
            Err(MetadataError::Missing("yuba-source-size"))
        );
        map.insert("yuba-schema".into(), "9".into());
        assert!(matches!(
            ReplicaRecord::from_metadata(&map),
            Err(MetadataError::UnknownSchema { .. })
        ));
    }

    #[test]
    fn a_complete_record_of_the_same_object_satisfies_the_job() {
        assert!(record().satisfies(&job()));
        let without_identity = ReplicateJob {
            etag: None,
            size: None,
            ..job()
        };
        assert!(record().satisfies(&without_identity));
    }

    #[test]
    fn other_content_or_an_incomplete_record_does_not() {
        let other_etag = ReplicateJob {
            etag: Some("other".into()),
            ..job()
        };
        let other_size = ReplicateJob {
            size: Some(8),
            ..job()
        };
        let other_version = ReplicateJob {
            version_id: Some("v2".into()),
            ..job()
        };
        let forced = ReplicateJob {
            force: true,
            ..job()
        };
        // A later change of the key, or one that cannot be ordered, may have changed the
        // attributes alone: only the source can tell.
        let later = ReplicateJob {
            sequencer: Some("0055AED6DCD90281E6".into()),
            ..job()
        };
        let unordered = ReplicateJob {
            sequencer: None,
            ..job()
        };
        for job in [
            other_etag,
            other_size,
            other_version,
            forced,
            later,
            unordered,
        ] {
            assert!(!record().satisfies(&job), "{job:?}");
        }
        let earlier = ReplicateJob {
            sequencer: Some("0055AED6DCD90281E4".into()),
            ..job()
        };
        assert!(
            record().satisfies(&earlier),
            "an earlier event of the same content"
        );
        let incomplete = ReplicaRecord {
            sha256: None,
            ..record()
        };
        assert!(!incomplete.satisfies(&job()));
    }
}

#[cfg(test)]
mod stored_content_tests {
    use super::*;

    fn record() -> ReplicaRecord {
        ReplicaRecord {
            source: SourceFacts {
                bucket: "src".into(),
                key: "k".into(),
                version_id: None,
                etag: "e".into(),
                size: 7,
                last_modified: None,
                sequencer: None,
                attributes: None,
            },
            sha256: Some("0".repeat(64)),
            crc32c: Some(1),
            replicated_at: "2026-11-22T10:00:00Z".parse().unwrap(),
            variants: Vec::new(),
            variants_error: None,
            image_format: None,
        }
    }

    #[test]
    fn a_replica_matches_its_record_by_size_and_crc32c() {
        assert_eq!(record().check_stored(7, Some(1)), Ok(()));
        assert_eq!(
            record().check_stored(7, None),
            Ok(()),
            "a server that reports no crc32c cannot contradict the record"
        );
        assert_eq!(
            record().check_stored(8, Some(1)),
            Err(ContentDrift::Size {
                recorded: 7,
                stored: 8
            })
        );
        assert!(matches!(
            record().check_stored(7, Some(2)),
            Err(ContentDrift::Crc32c { .. })
        ));
        let incomplete = ReplicaRecord {
            sha256: None,
            ..record()
        };
        assert_eq!(
            incomplete.check_stored(7, Some(1)),
            Err(ContentDrift::Incomplete)
        );
    }
}
