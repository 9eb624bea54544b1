//! The attributes a replica keeps of its source, besides the content: the HTTP headers it is
//! served with and the user metadata (less yuba's reserved keys). Written with the content, and
//! on their own, in a metadata update, when only they changed (S3's copy of an object onto
//! itself with `MetadataDirective=REPLACE` keeps a single-part object's ETag and size).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use yuba_aws::SourceAttributes;
use yuba_gcs::{ObjectHeaders, ObjectInfo, ObjectUpdate};
use yuba_model::{RESERVED_METADATA_PREFIX, ReplicaRecord};

/// The source's HTTP headers, as the replica is served with them.
pub(super) fn headers(source: &SourceAttributes) -> ObjectHeaders {
    ObjectHeaders {
        content_type: source.content_type.clone(),
        cache_control: source.cache_control.clone(),
        content_disposition: source.content_disposition.clone(),
        content_encoding: source.content_encoding.clone(),
        content_language: source.content_language.clone(),
    }
}

/// The source's user metadata that the replica carries: all but yuba's reserved keys, so that a
/// source object can never forge a replica record. Sorted.
pub(super) fn user_metadata(source: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = source
        .iter()
        .filter(|(key, _)| {
            let reserved = is_reserved(key);
            if reserved {
                tracing::warn!(%key, "S3 user metadata uses yuba's reserved prefix; not copied");
            }
            !reserved
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    entries.sort();
    entries
}

fn is_reserved(key: &str) -> bool {
    key.to_ascii_lowercase()
        .starts_with(RESERVED_METADATA_PREFIX)
}

/// What the record keeps of the attributes (`yuba-source-attributes`): a sha256 over the headers
/// and the user metadata, each length-prefixed so that no two sets of attributes share one. The
/// reconciler's `verify --metadata` compares a source HEAD's digest with the record's.
pub fn attributes_digest(source: &SourceAttributes) -> String {
    digest_of(&headers(source), &user_metadata(&source.user_metadata))
}

fn digest_of(headers: &ObjectHeaders, user_metadata: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: Option<&str>| {
        let value = value.map_or_else(|| "-".to_owned(), |v| format!("={}:{v}", v.len()));
        hasher.update(format!("{}:{name}{value}\n", name.len()));
    };
    for (name, value) in headers.fields() {
        field(name, value.as_deref());
    }
    for (key, value) in user_metadata {
        field(&format!("x-amz-meta-{key}"), Some(value));
    }
    hex::encode(hasher.finalize())
}

/// The metadata update that gives `replica` the source's attributes and `record` (which names
/// them), and removes the user metadata the source no longer has.
pub(super) fn update(
    replica: &ObjectInfo,
    source: &SourceAttributes,
    record: &ReplicaRecord,
) -> ObjectUpdate {
    let kept = user_metadata(&source.user_metadata);
    let removed_metadata = replica
        .metadata
        .keys()
        .filter(|key| !is_reserved(key) && !kept.iter().any(|(k, _)| k == *key))
        .cloned()
        .collect();
    let mut metadata = kept;
    metadata.extend(
        record
            .to_metadata()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    ObjectUpdate {
        headers: Some(headers(source)),
        metadata,
        removed_metadata,
        ..ObjectUpdate::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_tells_every_change_of_the_attributes() {
        let typed = |content_type: Option<&str>, cache_control: Option<&str>| ObjectHeaders {
            content_type: content_type.map(str::to_owned),
            cache_control: cache_control.map(str::to_owned),
            ..ObjectHeaders::default()
        };
        let owner = vec![("owner".to_owned(), "ann".to_owned())];
        let base = digest_of(&typed(Some("text/plain"), Some("max-age=60")), &owner);
        assert_eq!(
            base,
            digest_of(&typed(Some("text/plain"), Some("max-age=60")), &owner)
        );
        assert_eq!(base.len(), 64);
        let others = [
            digest_of(&typed(Some("image/png"), Some("max-age=60")), &owner),
            digest_of(&typed(Some("text/plain"), None), &owner),
            digest_of(&typed(Some("text/plain"), Some("")), &owner),
            digest_of(&typed(Some("max-age=60"), Some("text/plain")), &owner),
            digest_of(&typed(Some("text/plain"), Some("max-age=60")), &[]),
            digest_of(
                &typed(Some("text/plain"), Some("max-age=60")),
                &[("owner".to_owned(), "bob".to_owned())],
            ),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "change {i}");
        }
    }

    #[test]
    fn user_metadata_cannot_forge_a_record() {
        let source = HashMap::from([
            ("owner".to_owned(), "ann".to_owned()),
            ("yuba-sha256".to_owned(), "forged".to_owned()),
            ("Yuba-Source-Etag".to_owned(), "forged".to_owned()),
        ]);
        assert_eq!(
            user_metadata(&source),
            vec![("owner".to_owned(), "ann".to_owned())]
        );
    }
}
