//! What one key's pair of listing entries says about its replica: pure, listing metadata only.

use serde::Serialize;
use yuba_aws::ListedObject;
use yuba_gcs::ObjectInfo;
use yuba_model::{CANARY_PREFIX, ReplicaRecord, keys};
use yuba_replicate::replica_name;
use yuba_variants::VariantConfig;

/// A key as the two listings see it: the S3 object, its GCS replica, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub source: Option<ListedObject>,
    pub replica: Option<ObjectInfo>,
}

/// How a replica differs from its source; `InSync` when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    InSync,
    /// No replica.
    Missing,
    /// The replica records another source object (ETag), or no yuba record at all.
    Stale,
    /// The replica's size or checksum differs from its record or from the source.
    Mismatch,
    /// Variants the configuration calls for are not there.
    VariantsMissing,
    /// A replica whose source is gone.
    Orphan,
    /// Content that `verify` could not prove either way.
    Unverified,
    /// A source key that cannot be replicated under its own name (GCS cannot hold the name, or
    /// yuba writes other objects under it): no copy can repair it, the key must change.
    Refused,
}

impl Kind {
    pub const DRIFT: [Kind; 7] = [
        Kind::Missing,
        Kind::Stale,
        Kind::Mismatch,
        Kind::VariantsMissing,
        Kind::Orphan,
        Kind::Unverified,
        Kind::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InSync => "in-sync",
            Kind::Missing => "missing",
            Kind::Stale => "stale",
            Kind::Mismatch => "mismatch",
            Kind::VariantsMissing => "variants-missing",
            Kind::Orphan => "orphan",
            Kind::Unverified => "unverified",
            Kind::Refused => "refused",
        }
    }

    /// Whether copying the source again repairs it.
    pub fn needs_copy(self) -> bool {
        matches!(
            self,
            Kind::Missing | Kind::Stale | Kind::Mismatch | Kind::VariantsMissing
        )
    }
}

/// The classification of one key, with the reason when it is drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: Kind,
    pub detail: Option<String>,
}

impl Verdict {
    pub fn in_sync() -> Verdict {
        Verdict {
            kind: Kind::InSync,
            detail: None,
        }
    }

    pub fn drift(kind: Kind, detail: impl Into<String>) -> Verdict {
        Verdict {
            kind,
            detail: Some(detail.into()),
        }
    }
}

/// What yuba keeps beside the replicas in the replica bucket, which is not a replica itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// A resized variant of a replica.
    Variant,
    /// A temporary part of a composite upload: removed when the upload ends, or by the
    /// bucket's lifecycle rule after a crash. It is never an orphan to repair: the upload it
    /// belongs to may still be going on.
    UploadPart,
    /// The deployment canary's replica (under [`CANARY_PREFIX`]): its source is in a bucket of
    /// the stack's own, never in the listed source bucket, so it is never an orphan to report
    /// or delete.
    Canary,
}

impl Companion {
    pub fn of(object: &ObjectInfo) -> Option<Companion> {
        if object.name.starts_with(CANARY_PREFIX) {
            Some(Companion::Canary)
        } else if object.metadata.contains_key(keys::VARIANT) {
            Some(Companion::Variant)
        } else if object.metadata.contains_key(keys::PART_OF) {
            Some(Companion::UploadPart)
        } else {
            None
        }
    }
}

/// Classifies a pair from what the listings say, reading no object.
pub fn classify(pair: &Pair, source_bucket: &str, variants: &VariantConfig) -> Verdict {
    // The worker's own rule: what it would refuse is reported, never sent to it as a job.
    if pair.source.is_some()
        && let Err(refusal) = replica_name(source_bucket, &pair.key, variants)
    {
        return Verdict::drift(Kind::Refused, refusal.to_string());
    }
    let (source, replica) = match (&pair.source, &pair.replica) {
        (None, None) => return Verdict::in_sync(),
        (Some(_), None) => return Verdict::drift(Kind::Missing, "no replica"),
        (None, Some(replica)) => {
            let detail = match ReplicaRecord::from_metadata(&replica.metadata) {
                Ok(Some(_)) => "the source object is gone",
                _ => "no source object, and not written by yuba",
            };
            return Verdict::drift(Kind::Orphan, detail);
        }
        (Some(source), Some(replica)) => (source, replica),
    };
    if Companion::of(replica) == Some(Companion::Variant) {
        return Verdict::drift(
            Kind::Stale,
            "a variant occupies the replica's name (made under a key template since changed)",
        );
    }
    let record = match ReplicaRecord::from_metadata(&replica.metadata) {
        Ok(Some(record)) => record,
        Ok(None) => return Verdict::drift(Kind::Stale, "the replica has no yuba record"),
        Err(error) => return Verdict::drift(Kind::Stale, error.to_string()),
    };
    if record.source.bucket != source_bucket || record.source.key != pair.key {
        return Verdict::drift(
            Kind::Stale,
            format!(
                "the replica records s3://{}/{}",
                record.source.bucket, record.source.key
            ),
        );
    }
    if record.source.etag != source.etag {
        return Verdict::drift(
            Kind::Stale,
            format!(
                "the replica records ETag {}, the source has {}",
                record.source.etag, source.etag
            ),
        );
    }
    if record.source.size != source.size {
        return Verdict::drift(
            Kind::Mismatch,
            format!(
                "the replica records {} bytes, the source has {}",
                record.source.size, source.size
            ),
        );
    }
    if let Err(drift) = record.check_stored(replica.size, replica.crc32c) {
        return Verdict::drift(Kind::Mismatch, drift.to_string());
    }
    let missing = variants.missing_for(&record);
    if !missing.is_empty() {
        return Verdict::drift(
            Kind::VariantsMissing,
            format!("no {} variant", missing.join(", ")),
        );
    }
    Verdict::in_sync()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use yuba_model::SourceFacts;

    use super::*;

    pub(crate) fn listed(key: &str, etag: &str, size: u64) -> ListedObject {
        ListedObject {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: Some("2026-11-22T10:00:00Z".parse().unwrap()),
        }
    }

    pub(crate) fn record(key: &str, etag: &str, size: u64, crc32c: u32) -> ReplicaRecord {
        ReplicaRecord {
            source: SourceFacts {
                bucket: "src".into(),
                key: key.into(),
                version_id: None,
                etag: etag.into(),
                size,
                last_modified: Some("2026-11-22T10:00:00Z".parse().unwrap()),
                sequencer: None,
                attributes: None,
            },
            sha256: Some("ab".repeat(32)),
            crc32c: Some(crc32c),
            replicated_at: "2026-11-22T10:00:01Z".parse().unwrap(),
            variants: Vec::new(),
            variants_error: None,
            image_format: None,
        }
    }

    pub(crate) fn stored(record: &ReplicaRecord, size: u64, crc32c: u32) -> ObjectInfo {
        ObjectInfo {
            name: record.source.key.clone(),
            generation: 7,
            metageneration: 1,
            size,
            crc32c: Some(crc32c),
            md5: None,
            content_type: None,
            cache_control: None,
            metadata: record
                .to_metadata()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            created: None,
        }
    }

    #[test]
    fn variants_and_upload_parts_are_companions_not_replicas() {
        let mut object = stored(&record("k", "e", 1, 1), 1, 1);
        assert_eq!(Companion::of(&object), None);
        object.metadata.insert(keys::PART_OF.into(), "k".into());
        assert_eq!(Companion::of(&object), Some(Companion::UploadPart));
        object.metadata.insert(keys::VARIANT.into(), "thumb".into());
        assert_eq!(Companion::of(&object), Some(Companion::Variant));
    }

    #[test]
    fn the_canarys_replicas_are_companions_by_their_prefix() {
        let mut object = stored(&record("k", "e", 1, 1), 1, 1);
        object.name = format!("{CANARY_PREFIX}probe.jpg");
        assert_eq!(Companion::of(&object), Some(Companion::Canary));
        // Only the prefix at the start of the name: a key that merely contains it is a replica.
        object.name = format!("photos/{CANARY_PREFIX}probe.jpg");
        assert_eq!(Companion::of(&object), None);
    }

    fn pair(source: Option<ListedObject>, replica: Option<ObjectInfo>) -> Pair {
        Pair {
            key: "k".into(),
            source,
            replica,
        }
    }

    fn kind(pair: &Pair) -> Kind {
        classify(pair, "src", &VariantConfig::none()).kind
    }

    #[test]
    fn every_kind_of_drift_is_told_from_the_listings() {
        let good = record("k", "e1", 5, 9);
        assert_eq!(
            kind(&pair(Some(listed("k", "e1", 5)), Some(stored(&good, 5, 9)))),
            Kind::InSync
        );
        assert_eq!(kind(&pair(Some(listed("k", "e1", 5)), None)), Kind::Missing);
        assert_eq!(kind(&pair(None, Some(stored(&good, 5, 9)))), Kind::Orphan);
        assert_eq!(
            kind(&pair(Some(listed("k", "e2", 5)), Some(stored(&good, 5, 9)))),
            Kind::Stale,
            "overwritten in S3"
        );
        assert_eq!(
            kind(&pair(
                Some(listed("k", "e1", 5)),
                Some(stored(&good, 5, 10))
            )),
            Kind::Mismatch,
            "bytes replaced under the old record"
        );
        assert_eq!(
            kind(&pair(Some(listed("k", "e1", 5)), Some(stored(&good, 6, 9)))),
            Kind::Mismatch
        );
        let foreign = ObjectInfo {
            metadata: HashMap::new(),
            ..stored(&good, 5, 9)
        };
        assert_eq!(
            kind(&pair(Some(listed("k", "e1", 5)), Some(foreign))),
            Kind::Stale
        );
        let other_key = record("other", "e1", 5, 9);
        assert_eq!(
            kind(&pair(
                Some(listed("k", "e1", 5)),
                Some(stored(&other_key, 5, 9))
            )),
            Kind::Stale
        );
    }

    #[test]
    fn keys_the_worker_would_refuse_are_reported_not_copied() {
        let config =
            VariantConfig::from_json(r#"{"profiles": [{"name": "thumb", "width": 9}]}"#).unwrap();
        let refused = |key: &str| {
            let pair = Pair {
                key: key.into(),
                source: Some(listed(key, "e1", 5)),
                replica: None,
            };
            classify(&pair, "src", &config)
        };
        for key in ["_variants/thumb/a.jpg", "_yuba-parts/x/00001", "a\rb", ".."] {
            let verdict = refused(key);
            assert_eq!(verdict.kind, Kind::Refused, "{key:?}");
            assert!(!verdict.kind.needs_copy());
            assert!(verdict.detail.is_some_and(|d| d.contains("key")), "{key:?}");
        }
        assert_eq!(refused("photos/a.jpg").kind, Kind::Missing);
        // A replica under such a name, with no source, is whatever the listing says it is.
        let orphan = Pair {
            key: "_variants/thumb/a.jpg".into(),
            source: None,
            replica: Some(stored(&record("k", "e", 1, 1), 1, 1)),
        };
        assert_eq!(classify(&orphan, "src", &config).kind, Kind::Orphan);
    }

    #[test]
    fn variants_are_expected_by_the_recorded_image_format() {
        let config = VariantConfig::from_json(
            r#"{"profiles": [{"name": "thumb", "width": 100, "format": "webp"}]}"#,
        )
        .unwrap();
        let mut image = record("k", "e1", 5, 9);
        image.image_format = Some("image/png".into());
        let verdict = classify(
            &pair(Some(listed("k", "e1", 5)), Some(stored(&image, 5, 9))),
            "src",
            &config,
        );
        assert_eq!(verdict.kind, Kind::VariantsMissing);
        assert_eq!(verdict.detail.as_deref(), Some("no thumb variant"));
        image.variants = vec![yuba_model::MadeVariant::new("thumb", "webp")];
        let verdict = classify(
            &pair(Some(listed("k", "e1", 5)), Some(stored(&image, 5, 9))),
            "src",
            &config,
        );
        assert_eq!(verdict.kind, Kind::InSync);
    }
}
