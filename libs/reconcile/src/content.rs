//! `verify`: proving that a replica's bytes are its source's, cheaply by checksums or deeply by
//! streaming both.

use sha2::{Digest, Sha256};
use yuba_aws::{ListedObject, S3Error, S3Source, SourceHead};
use yuba_gcs::{Gcs, GcsError, ObjectInfo};
use yuba_model::{ErrorChain, ReplicaRecord, crc32c_from_base64, crc32c_to_base64};
use yuba_replicate::attributes_digest;

use crate::classify::{Kind, Verdict};
use crate::report::Basis;

/// The result of checking one replica's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentCheck {
    Verified(Basis),
    Drift(Verdict),
}

/// Compares checksums only: the source's own (S3 CRC32C, else a single-part ETag's MD5) with
/// what GCS computed of the replica, else the digest the worker recorded. `listed` is the
/// source as the listing saw it, `head` as it is now.
pub fn judge(
    listed: &ListedObject,
    head: Option<&SourceHead>,
    replica: &ObjectInfo,
    record: &ReplicaRecord,
) -> ContentCheck {
    let head = match still_listed(listed, head) {
        Ok(head) => head,
        Err(verdict) => return ContentCheck::Drift(verdict),
    };
    let Some(stored_crc32c) = replica.crc32c else {
        return ContentCheck::Drift(Verdict::drift(
            Kind::Unverified,
            "GCS reports no crc32c for the replica; use --deep",
        ));
    };
    if let Some(source_crc32c) = head.full_object_crc32c.as_deref() {
        return match crc32c_from_base64(source_crc32c) {
            Some(source) if source == stored_crc32c => ContentCheck::Verified(Basis::S3Crc32c),
            Some(_) => ContentCheck::Drift(Verdict::drift(
                Kind::Mismatch,
                format!(
                    "S3's CRC32C is {source_crc32c}, the replica's is {}",
                    crc32c_to_base64(stored_crc32c)
                ),
            )),
            None => ContentCheck::Drift(Verdict::drift(
                Kind::Unverified,
                format!("S3 reports an unreadable CRC32C {source_crc32c:?}; use --deep"),
            )),
        };
    }
    if let (Some(source_md5), Some(stored_md5)) = (head.content_md5, replica.md5) {
        return if source_md5 == stored_md5 {
            ContentCheck::Verified(Basis::EtagMd5)
        } else {
            ContentCheck::Drift(Verdict::drift(
                Kind::Mismatch,
                format!(
                    "the source's MD5 (its ETag) is {}, the replica's is {}",
                    hex::encode(source_md5),
                    hex::encode(stored_md5)
                ),
            ))
        };
    }
    // `classify` already found the recorded crc32c equal to the stored one.
    if record.crc32c == Some(stored_crc32c) {
        return ContentCheck::Verified(Basis::RecordedCrc32c);
    }
    ContentCheck::Drift(Verdict::drift(
        Kind::Unverified,
        "no checksum to compare: S3 has no CRC32C or MD5 ETag for the source and the replica \
         records no crc32c; use --deep",
    ))
}

/// Compares the attributes the replica was written with (the digest its record keeps) with the
/// source's now (`verify --metadata`), by the worker's own rule: what differs, a replicate job
/// brings up to date with a metadata update. `None`: they agree.
pub fn judge_attributes(
    listed: &ListedObject,
    head: Option<&SourceHead>,
    record: &ReplicaRecord,
) -> Option<Verdict> {
    let head = match still_listed(listed, head) {
        Ok(head) => head,
        Err(verdict) => return Some(verdict),
    };
    let Some(recorded) = record.source.attributes.as_deref() else {
        return Some(Verdict::drift(
            Kind::Attributes,
            "the record keeps no digest of the source's headers and user metadata (written by \
             a yuba that did not keep them)",
        ));
    };
    if recorded == attributes_digest(&head.attributes) {
        return None;
    }
    let header =
        |value: Option<&str>| value.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
    Some(Verdict::drift(
        Kind::Attributes,
        format!(
            "the source's headers or user metadata changed since the replica was written (now \
             Content-Type {}, Cache-Control {}, {} user metadata entries)",
            header(head.attributes.content_type.as_deref()),
            header(head.attributes.cache_control.as_deref()),
            head.attributes.user_metadata.len(),
        ),
    ))
}

/// The source as it is now, if it is still the object listed; otherwise the drift that says
/// what became of it during the run.
fn still_listed<'a>(
    listed: &ListedObject,
    head: Option<&'a SourceHead>,
) -> Result<&'a SourceHead, Verdict> {
    match head {
        None => Err(Verdict::drift(
            Kind::Orphan,
            "the source object was deleted during the run",
        )),
        Some(head) if head.etag != listed.etag => Err(Verdict::drift(
            Kind::Stale,
            "the source object was overwritten during the run",
        )),
        Some(head) => Ok(head),
    }
}

/// Streams the source and the replica (the generation listed) and compares their sha256 with
/// each other and with the recorded one. Errors reading either side leave it unverified.
pub async fn compare_deep(
    s3: &S3Source,
    gcs: &Gcs,
    source_bucket: &str,
    replica_bucket: &str,
    listed: &ListedObject,
    replica: &ObjectInfo,
    record: &ReplicaRecord,
) -> ContentCheck {
    let (source, stored) = tokio::join!(
        source_sha256(s3, source_bucket, listed),
        replica_sha256(gcs, replica_bucket, replica)
    );
    // The report's detail is text: the whole chain, so that it says why the read failed.
    let unverified = |error: &(dyn std::error::Error + 'static)| {
        ContentCheck::Drift(Verdict::drift(
            Kind::Unverified,
            format!("could not read it: {}", ErrorChain(error)),
        ))
    };
    let source = match source {
        Ok(Some(digest)) => digest,
        Ok(None) => {
            return ContentCheck::Drift(Verdict::drift(
                Kind::Stale,
                "the source object changed or was deleted during the run",
            ));
        }
        Err(error) => return unverified(&error),
    };
    let stored = match stored {
        Ok(digest) => digest,
        Err(error) => return unverified(&error),
    };
    if source != stored {
        return ContentCheck::Drift(Verdict::drift(
            Kind::Mismatch,
            format!("sha256 differs: source {source}, replica {stored}"),
        ));
    }
    if record.sha256.as_deref() != Some(source.as_str()) {
        return ContentCheck::Drift(Verdict::drift(
            Kind::Mismatch,
            format!(
                "the contents agree (sha256 {source}) but the record says {}",
                record.sha256.as_deref().unwrap_or("nothing")
            ),
        ));
    }
    ContentCheck::Verified(Basis::Sha256)
}

/// `Ok(None)`: the object is gone or is no longer the version listed.
async fn source_sha256(
    s3: &S3Source,
    bucket: &str,
    listed: &ListedObject,
) -> Result<Option<String>, S3Error> {
    let Some(mut object) = s3.get(bucket, &listed.key).await? else {
        return Ok(None);
    };
    if object.etag != listed.etag {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    while let Some(chunk) = object.next_chunk().await {
        hasher.update(chunk?);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

async fn replica_sha256(gcs: &Gcs, bucket: &str, replica: &ObjectInfo) -> Result<String, GcsError> {
    let mut reader = gcs.read(bucket, &replica.name, replica.generation).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = reader.next_chunk().await {
        hasher.update(chunk?);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuba_aws::SourceAttributes;

    use crate::classify::tests::{listed, record, stored};

    fn head(etag: &str, crc32c: Option<u32>, md5: Option<[u8; 16]>) -> SourceHead {
        SourceHead {
            etag: etag.into(),
            size: 5,
            version_id: None,
            last_modified: None,
            full_object_crc32c: crc32c.map(crc32c_to_base64),
            content_md5: md5,
            attributes: SourceAttributes::default(),
        }
    }

    fn kind(check: ContentCheck) -> Result<Basis, Kind> {
        match check {
            ContentCheck::Verified(basis) => Ok(basis),
            ContentCheck::Drift(verdict) => Err(verdict.kind),
        }
    }

    #[test]
    fn the_strongest_available_checksum_decides() {
        let source = listed("k", "e1", 5);
        let rec = record("k", "e1", 5, 9);
        let mut replica = stored(&rec, 5, 9);
        replica.md5 = Some([1; 16]);
        let check = |head: Option<SourceHead>| kind(judge(&source, head.as_ref(), &replica, &rec));
        assert_eq!(check(Some(head("e1", Some(9), None))), Ok(Basis::S3Crc32c));
        assert_eq!(
            check(Some(head("e1", Some(8), Some([1; 16])))),
            Err(Kind::Mismatch),
            "S3's CRC32C outranks an agreeing MD5"
        );
        assert_eq!(
            check(Some(head("e1", None, Some([1; 16])))),
            Ok(Basis::EtagMd5)
        );
        assert_eq!(
            check(Some(head("e1", None, Some([2; 16])))),
            Err(Kind::Mismatch)
        );
        assert_eq!(
            check(Some(head("e1", None, None))),
            Ok(Basis::RecordedCrc32c)
        );
        assert_eq!(check(Some(head("e2", Some(9), None))), Err(Kind::Stale));
        assert_eq!(check(None), Err(Kind::Orphan));
    }

    #[test]
    fn without_any_checksum_the_replica_is_unverified_not_passed() {
        let source = listed("k", "e1", 5);
        let rec = record("k", "e1", 5, 9);
        let mut replica = stored(&rec, 5, 9);
        replica.crc32c = None;
        let check = judge(&source, Some(&head("e1", None, None)), &replica, &rec);
        assert_eq!(kind(check), Err(Kind::Unverified));
    }

    #[test]
    fn attributes_drift_when_the_source_changed_them_or_the_record_never_kept_them() {
        let written = SourceAttributes {
            content_type: Some("text/plain".into()),
            cache_control: Some("max-age=60".into()),
            ..SourceAttributes::default()
        };
        let changed = SourceAttributes {
            content_type: Some("image/png".into()),
            ..written.clone()
        };
        let with = |etag: &str, attributes: &SourceAttributes| SourceHead {
            attributes: attributes.clone(),
            ..head(etag, None, None)
        };
        let source = listed("k", "e1", 5);
        let mut rec = record("k", "e1", 5, 9);
        rec.source.attributes = Some(attributes_digest(&written));
        let mut undigested = rec.clone();
        undigested.source.attributes = None;
        let judged = |head: Option<SourceHead>, rec: &ReplicaRecord| {
            judge_attributes(&source, head.as_ref(), rec)
        };
        let kind = |head, rec: &ReplicaRecord| judged(head, rec).map(|verdict| verdict.kind);
        assert_eq!(kind(Some(with("e1", &written)), &rec), None);
        let drift = judged(Some(with("e1", &changed)), &rec);
        assert_eq!(drift.as_ref().map(|v| v.kind), Some(Kind::Attributes));
        let detail = drift.and_then(|v| v.detail).unwrap_or_default();
        assert!(detail.contains("\"image/png\""), "{detail}");
        assert_eq!(kind(Some(with("e2", &written)), &rec), Some(Kind::Stale));
        assert_eq!(kind(None, &rec), Some(Kind::Orphan));
        assert_eq!(
            kind(Some(with("e1", &written)), &undigested),
            Some(Kind::Attributes),
            "a record without the digest cannot show the attributes current"
        );
    }
}
