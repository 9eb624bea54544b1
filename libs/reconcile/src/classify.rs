//! What one key's pair of listing entries says about its replica: pure, listing metadata only.

use serde::Serialize;
use yuba_aws::ListedObject;
use yuba_gcs::ObjectInfo;
use yuba_model::{CANARY_PREFIX, ReplicaRecord, VariantRecord, keys};
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
    /// A variant that nothing will serve or replace: its original is gone, holds other
    /// content, or no longer calls for its profile.
    OrphanVariant,
    /// The replica's content is its source's, not its headers or user metadata: the source's
    /// changed in place (`verify --metadata`). A metadata update repairs it, not a copy.
    Attributes,
    /// Content that `verify` could not prove either way.
    Unverified,
    /// A source key that cannot be replicated under its own name (GCS cannot hold the name, or
    /// yuba writes other objects under it): no copy can repair it, the key must change.
    Refused,
}

impl Kind {
    pub const DRIFT: [Kind; 9] = [
        Kind::Missing,
        Kind::Stale,
        Kind::Mismatch,
        Kind::VariantsMissing,
        Kind::Orphan,
        Kind::OrphanVariant,
        Kind::Attributes,
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
            Kind::OrphanVariant => "orphan-variant",
            Kind::Attributes => "attributes",
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

    /// Whether a replicate job repairs it: by a copy, or for [`Kind::Attributes`] by the
    /// metadata update the worker makes when it finds the content current and the attributes
    /// not (so that job must not be forced: a forced job copies the content again).
    pub fn needs_replicate_job(self) -> bool {
        self.needs_copy() || self == Kind::Attributes
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
    /// The deployment canary's replica (under [`CANARY_PREFIX`]), or a variant of it: its
    /// source is in a bucket of the stack's own, never in the listed source bucket, so it is
    /// never an orphan to report or delete.
    Canary,
}

impl Companion {
    pub fn of(object: &ObjectInfo) -> Option<Companion> {
        let canarys_variant = || {
            object
                .metadata
                .get(keys::SOURCE_KEY)
                .is_some_and(|key| key.starts_with(CANARY_PREFIX))
        };
        if object.name.starts_with(CANARY_PREFIX)
            || (object.metadata.contains_key(keys::VARIANT) && canarys_variant())
        {
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

/// Classifies a pair from what the listings say, reading no object. A listed variant with no
/// source of its name is judged by [`classify_variant`] and [`judge_variant`] instead.
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

/// What a listed variant's own record says, before its original is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantCheck {
    /// Told from the listing alone.
    Settled(Verdict),
    /// Whether it is an orphan depends on its original: the replica named `original`.
    Original {
        original: String,
        record: Box<VariantRecord>,
    },
}

/// A listed variant judged by its record and the configuration: an orphan if its record cannot
/// be read, names another source bucket, or names a profile no longer configured. Otherwise its
/// original must be looked at ([`judge_variant`]).
pub fn classify_variant(
    variant: &ObjectInfo,
    source_bucket: &str,
    config: &VariantConfig,
) -> VariantCheck {
    let orphan =
        |detail: String| VariantCheck::Settled(Verdict::drift(Kind::OrphanVariant, detail));
    let Some(record) = VariantRecord::from_metadata(&variant.metadata) else {
        return orphan("its yuba record cannot be read, so nothing ties it to an original".into());
    };
    if record.source_bucket != source_bucket {
        return orphan(format!(
            "made from s3://{}/{}, not from the source bucket",
            record.source_bucket, record.source_key
        ));
    }
    if !config.profiles.iter().any(|p| p.name == record.profile) {
        return orphan(format!(
            "profile {:?} is no longer configured",
            record.profile
        ));
    }
    VariantCheck::Original {
        original: record.source_key.clone(),
        record: Box::new(record),
    }
}

/// A variant judged against its original's replica (`None`: there is none). The variant its
/// original's record lists under this name is its original's concern, not an orphan: `verify`
/// proves it was made from the original's content, and a forced copy remakes it. Any other is
/// in sync only if made from the original's current content, for a profile that applies to it
/// and that its record does not list under another name (listed nowhere yet, it is the
/// original's `variants-missing`, whose repair writes it again).
pub fn judge_variant(
    variant: &ObjectInfo,
    record: &VariantRecord,
    original: Option<&ObjectInfo>,
    config: &VariantConfig,
) -> Verdict {
    let orphan = |detail: String| Verdict::drift(Kind::OrphanVariant, detail);
    let Some(original) = original else {
        return orphan(format!("its original {} is gone", record.source_key));
    };
    let Ok(Some(current)) = ReplicaRecord::from_metadata(&original.metadata) else {
        return orphan(format!(
            "the object at its original's name {} has no yuba record",
            original.name
        ));
    };
    let listed = current
        .variants
        .iter()
        .find(|made| made.profile == record.profile)
        .map(|made| config.name_of(&record.source_key, made));
    if listed.as_deref() == Some(variant.name.as_str()) {
        return Verdict::in_sync();
    }
    if current.sha256.as_deref() != Some(record.source_sha256.as_str()) {
        return orphan(format!(
            "made from content other than its original's (sha256 {}, the original's is {})",
            record.source_sha256,
            current.sha256.as_deref().unwrap_or("unrecorded")
        ));
    }
    let applies = current.image_format.as_deref().is_some_and(|format| {
        config
            .profiles_for(&record.source_key, format)
            .any(|profile| profile.name == record.profile)
    });
    if !applies {
        return orphan(format!(
            "profile {:?} no longer applies to {}",
            record.profile, record.source_key
        ));
    }
    if let Some(name) = listed {
        return orphan(format!(
            "its original's {} variant is {name}, not this object",
            record.profile
        ));
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

    fn variant_config() -> VariantConfig {
        VariantConfig::from_json(
            r#"{"profiles": [{"name": "thumb", "width": 100, "format": "webp",
                "content_types": ["image/jpeg"]}]}"#,
        )
        .unwrap()
    }

    /// The `thumb` variant of `k`, made from the content whose sha256 is `sha256`.
    fn variant_object(profile: &str, sha256: &str) -> ObjectInfo {
        let record = VariantRecord {
            source_bucket: "src".into(),
            source_key: "k".into(),
            source_etag: "e1".into(),
            source_sha256: sha256.into(),
            profile: profile.into(),
            width: 100,
            height: 75,
        };
        ObjectInfo {
            name: format!("_variants/{profile}/k.webp"),
            metadata: record
                .to_metadata()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..stored(&self::record("k", "e1", 5, 9), 3, 3)
        }
    }

    /// A JPEG original whose record lists its `thumb` variant.
    fn jpeg_original() -> ObjectInfo {
        let mut original = record("k", "e1", 5, 9);
        original.image_format = Some("image/jpeg".into());
        original.variants = vec![yuba_model::MadeVariant::new("thumb", "webp")];
        stored(&original, 5, 9)
    }

    /// The verdict on `variant` with `original` as its original's replica.
    fn variant_verdict(
        variant: &ObjectInfo,
        original: Option<&ObjectInfo>,
        config: &VariantConfig,
    ) -> Verdict {
        match classify_variant(variant, "src", config) {
            VariantCheck::Settled(verdict) => verdict,
            VariantCheck::Original {
                original: name,
                record,
            } => {
                assert_eq!(name, "k");
                judge_variant(variant, &record, original, config)
            }
        }
    }

    #[test]
    fn a_variant_is_in_sync_only_beside_the_content_it_was_made_from() {
        let config = variant_config();
        let sha = "ab".repeat(32);
        let jpeg = jpeg_original();
        // Content that got no variants: its record lists none.
        let text = stored(&record("k", "e1", 5, 9), 5, 9);
        let verdict = |variant: &ObjectInfo, original: Option<&ObjectInfo>| {
            let verdict = variant_verdict(variant, original, &config);
            (verdict.kind, verdict.detail.unwrap_or_default())
        };
        assert_eq!(
            verdict(&variant_object("thumb", &sha), Some(&jpeg)).0,
            Kind::InSync
        );
        let cases = [
            // Original missing.
            (variant_object("thumb", &sha), None, "is gone"),
            // Made from other content, which got no variants (no longer an image).
            (
                variant_object("thumb", &"cd".repeat(32)),
                Some(&text),
                "content other than",
            ),
            // A profile no longer configured, with no need to look at the original.
            (variant_object("large", &sha), None, "no longer configured"),
        ];
        for (variant, original, expected) in cases {
            let (kind, detail) = verdict(&variant, original);
            assert_eq!(kind, Kind::OrphanVariant, "{detail}");
            assert!(detail.contains(expected), "{detail:?} lacks {expected:?}");
            assert!(!kind.needs_copy());
        }
        // The variant its original lists is its original's concern (verify proves it), even
        // if made from other content.
        assert_eq!(
            verdict(&variant_object("thumb", &"cd".repeat(32)), Some(&jpeg)).0,
            Kind::InSync
        );
        // The profile still configured, but no longer for this original's format.
        let mut png = record("k", "e1", 5, 9);
        png.image_format = Some("image/png".into());
        let png = stored(&png, 5, 9);
        let (kind, detail) = verdict(&variant_object("thumb", &sha), Some(&png));
        assert_eq!(kind, Kind::OrphanVariant);
        assert!(detail.contains("no longer applies"), "{detail}");
        // Its original's record names another object for the profile (a format or template
        // since changed).
        let mut moved = variant_object("thumb", &sha);
        moved.name = "_variants/thumb/k.avif".into();
        let (kind, detail) = verdict(&moved, Some(&jpeg));
        assert_eq!(kind, Kind::OrphanVariant);
        assert!(detail.contains("_variants/thumb/k.webp"), "{detail}");
        // A damaged record, or another bucket's variant.
        let mut damaged = variant_object("thumb", &sha);
        damaged.metadata.remove(keys::SOURCE_SHA256);
        assert_eq!(verdict(&damaged, Some(&jpeg)).0, Kind::OrphanVariant);
        let mut foreign = variant_object("thumb", &sha);
        foreign
            .metadata
            .insert(keys::SOURCE_BUCKET.into(), "other".into());
        assert!(verdict(&foreign, Some(&jpeg)).1.contains("s3://other/k"));
    }

    #[test]
    fn the_canarys_variants_are_companions_left_alone() {
        let mut variant = variant_object("thumb", "ab");
        assert_eq!(Companion::of(&variant), Some(Companion::Variant));
        variant
            .metadata
            .insert(keys::SOURCE_KEY.into(), format!("{CANARY_PREFIX}probe.jpg"));
        assert_eq!(Companion::of(&variant), Some(Companion::Canary));
    }
}
