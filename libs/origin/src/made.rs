//! Variants: served from their object when it was made from the replica's current content,
//! else rendered on demand with the worker's transform, limits and memory budget, and written
//! back for the next request. A process renders each missing variant once however many ask for
//! it at the same time; across processes a duplicate render is allowed, and the later write
//! fails its precondition harmlessly.

use std::sync::PoisonError;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt, Shared};
use md5::{Digest, Md5};
use yuba_delivery::respond::Stored;
use yuba_gcs::{GcsError, ObjectInfo};
use yuba_model::{ErrorChain, ReplicaRecord, VariantRecord, VariantsError};
use yuba_replicate::{HEADER_BYTES, variant_name, variant_upload};
use yuba_transform::{OutputFormat, SourceFormat};
use yuba_variants::{Format, Profile};

use crate::origin::{Content, Found, Origin, Served, validators};
use crate::refusal::Refusal;

/// A variant whose source sets no `Cache-Control` is cached for a week. Its URL names the key,
/// not the content, so a replaced original's variants are revalidated by ETag after that.
pub const VARIANT_CACHE_CONTROL: &str = "public, max-age=604800";

/// A render in flight, which every request for the same variant waits for.
pub(crate) type Pending = Shared<BoxFuture<'static, Result<Made, Refusal>>>;

/// A variant rendered on demand.
#[derive(Debug, Clone)]
pub(crate) struct Made {
    bytes: Bytes,
    content_type: &'static str,
    etag: String,
    modified: DateTime<Utc>,
    cache_control: String,
}

/// A variant's object read by the name it would have before the replica's record confirmed it.
struct Guessed {
    name: String,
    object: Option<ObjectInfo>,
}

/// What a render on demand needs.
struct Order {
    profile: Profile,
    original: ObjectInfo,
    record: ReplicaRecord,
    name: String,
    /// Whether there is no object of that name (a stale one is not overwritten here: the worker
    /// or the reconciler replaces it, and the origin may only create).
    absent: bool,
}

impl Origin {
    /// Variant `profile_name` of the replica of `key`.
    pub(crate) async fn variant(&self, profile_name: &str, key: &str) -> Result<Found, Refusal> {
        let config = &self.settings.variants;
        let profile = config
            .profiles
            .iter()
            .find(|profile| profile.name == profile_name)
            .ok_or_else(|| no_such_profile(profile_name, &self.settings.variants.profiles))?;
        let ((original, record), guessed) = self.replica_and_variant(profile, key).await?;
        let name = self.name_of(profile, &record)?;
        let existing = match guessed {
            Some(guessed) if guessed.name == name => guessed.object,
            _ => self.metadata(&name).await?,
        };
        if let Some(stored) = existing
            .as_ref()
            .filter(|info| made_from(info, profile, &record))
        {
            return Ok(hit(stored));
        }
        let order = Order {
            profile: profile.clone(),
            original,
            record,
            name,
            absent: existing.is_none(),
        };
        Ok(self.make(order).await?.found())
    }

    /// The replica of `key` and, when `profile`'s output format does not depend on the source's,
    /// its variant's object (by the name it would have) read at the same time: a hit then costs
    /// one round trip to GCS before the bytes instead of two.
    async fn replica_and_variant(
        &self,
        profile: &Profile,
        key: &str,
    ) -> Result<((ObjectInfo, ReplicaRecord), Option<Guessed>), Refusal> {
        let config = &self.settings.variants;
        let guessed = match profile.format {
            Format::Same => None,
            fixed => {
                // Any source gives a fixed format's extension.
                let extension = OutputFormat::for_profile(fixed, SourceFormat::Jpeg).extension();
                variant_name(config, &profile.name, key, extension).ok()
            }
        };
        let Some(guessed) = guessed else {
            return Ok((self.replica(key).await?, None));
        };
        let (replica, object) = tokio::join!(self.replica(key), self.metadata(&guessed));
        Ok((
            replica?,
            Some(Guessed {
                name: guessed,
                object: object?,
            }),
        ))
    }

    /// The GCS name of `profile`'s variant of the replica `record` describes, or why it has none.
    fn name_of(&self, profile: &Profile, record: &ReplicaRecord) -> Result<String, Refusal> {
        let key = &record.source.key;
        let no_variant = |reason: VariantsError| Refusal::NoVariant {
            profile: profile.name.clone(),
            key: key.clone(),
            reason,
        };
        if let Some(reason) = &record.variants_error {
            return Err(no_variant(reason.clone()));
        }
        let Some(format) = record
            .image_format
            .as_deref()
            .and_then(SourceFormat::from_content_type)
        else {
            return Err(Refusal::NotFound(format!(
                "{key:?} is not an image yuba decodes, so it has no {} variant",
                profile.name
            )));
        };
        if !profile.applies_to(key, format.content_type()) {
            return Err(Refusal::NotFound(format!(
                "the {} profile does not apply to {key:?}: its prefixes or content types leave \
                 it out",
                profile.name
            )));
        }
        // The worker's choice where it made one; what the transform would choose otherwise.
        let extension = record
            .variants
            .iter()
            .find(|made| made.profile == profile.name)
            .map(|made| made.extension.clone())
            .unwrap_or_else(|| {
                OutputFormat::for_profile(profile.format, format)
                    .extension()
                    .to_owned()
            });
        variant_name(&self.settings.variants, &profile.name, key, &extension).map_err(no_variant)
    }

    /// The render of `order`, shared with every request for the same variant while it runs. It
    /// runs as a task of its own, so a client that goes away does not cancel the write-back.
    async fn make(&self, order: Order) -> Result<Made, Refusal> {
        let pending = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending
                .entry(order.name.clone())
                .or_insert_with(|| {
                    let origin = self.clone();
                    let name = order.name.clone();
                    tokio::spawn(async move {
                        let made = origin.render(order).await;
                        let mut pending = origin
                            .pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        pending.remove(&name);
                        made
                    })
                    .map(|joined| {
                        joined.unwrap_or_else(|lost| Err(Refusal::Lost(lost.to_string())))
                    })
                    .boxed()
                    .shared()
                })
                .clone()
        };
        pending.await
    }

    async fn render(&self, order: Order) -> Result<Made, Refusal> {
        let Order {
            profile,
            original,
            record,
            name,
            absent,
        } = order;
        let no_variant = |reason: VariantsError| Refusal::NoVariant {
            profile: profile.name.clone(),
            key: record.source.key.clone(),
            reason,
        };
        // Admitted from its first bytes, before it is held whole.
        let size = original.size;
        let first = (size > HEADER_BYTES as u64).then_some((0, HEADER_BYTES as u64));
        let head = self.read_all(&original, first).await?;
        let admitted = self
            .renderer
            .admit(vec![profile.clone()], &head, size)
            .await
            .map_err(no_variant)?;
        let content = match first {
            Some(_) => self.read_all(&original, None).await?,
            None => head,
        };
        let variant = self
            .renderer
            .render(&content, admitted)
            .await
            .map_err(no_variant)?
            .pop()
            .ok_or_else(|| Refusal::Lost("the transform made no variant".to_owned()))?;
        drop(content);
        self.observer.rendered();
        let cache_control = original.cache_control.clone();
        let sha256 = record.sha256.clone().unwrap_or_default();
        let bucket = &self.settings.replica_bucket;
        let mut upload = variant_upload(
            bucket,
            name,
            &record.source,
            sha256,
            cache_control,
            &variant,
        );
        upload.if_generation_match = Some(0);
        let bytes = Bytes::from(variant.bytes);
        let mut made = Made {
            etag: quoted_hex(&Md5::digest(&bytes)),
            content_type: variant.format.content_type(),
            modified: Utc::now(),
            cache_control: original
                .cache_control
                .unwrap_or_else(|| VARIANT_CACHE_CONTROL.to_owned()),
            bytes,
        };
        if absent && let Some(created) = self.write_back(upload, made.bytes.clone()).await {
            made.modified = created;
        }
        Ok(made)
    }

    /// `part` (offset, count) of `original`, or all of it, held in memory: its size was admitted.
    async fn read_all(
        &self,
        original: &ObjectInfo,
        part: Option<(u64, u64)>,
    ) -> Result<Bytes, GcsError> {
        let bucket = &self.settings.replica_bucket;
        let mut reader = self
            .gcs
            .read_part(bucket, &original.name, original.generation, part)
            .await?;
        let expected = part.map_or(original.size, |(_, count)| count);
        let mut content = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = reader.next_chunk().await {
            content.extend_from_slice(&chunk?);
        }
        Ok(content.freeze())
    }

    /// Creates the variant's object for the next request, if no other writer came first; when
    /// it was created. A failure costs only a render at the next request.
    async fn write_back(
        &self,
        upload: yuba_gcs::UploadSpec,
        bytes: Bytes,
    ) -> Option<DateTime<Utc>> {
        let name = upload.name.clone();
        match self.gcs.upload_bytes(upload, bytes).await {
            Ok(stored) => stored.created,
            Err(error) if error.is_conflict() => {
                tracing::debug!(name, "another writer made the variant first");
                None
            }
            Err(error) => {
                tracing::warn!(name, error = %ErrorChain(&error), "a variant made on demand was not written back; the next request makes it again");
                None
            }
        }
    }
}

impl Made {
    fn found(self) -> Found {
        Found {
            stored: Stored {
                size: self.bytes.len() as u64,
                validators: validators(self.etag, Some(self.modified)),
                content_type: Some(self.content_type.to_owned()),
                cache_control: Some(self.cache_control),
                ranges: false,
            },
            content: Content::InMemory(self.bytes),
            served: Served::Rendered,
        }
    }
}

/// Whether `info` is `profile`'s variant of the content `record` describes: a variant of an
/// earlier content of the key is made again.
fn made_from(info: &ObjectInfo, profile: &Profile, record: &ReplicaRecord) -> bool {
    VariantRecord::from_metadata(&info.metadata).is_some_and(|variant| {
        variant.profile == profile.name && Some(&variant.source_sha256) == record.sha256.as_ref()
    })
}

fn hit(info: &ObjectInfo) -> Found {
    // GCS's MD5 of the bytes (variants are written whole, so they have one), as S3 would give
    // it; the generation for an object without one.
    let etag = info
        .md5
        .map(|md5| quoted_hex(&md5))
        .unwrap_or_else(|| format!("\"g{}\"", info.generation));
    Found {
        stored: Stored {
            size: info.size,
            validators: validators(etag, info.created),
            content_type: info.content_type.clone(),
            cache_control: Some(
                info.cache_control
                    .clone()
                    .unwrap_or_else(|| VARIANT_CACHE_CONTROL.to_owned()),
            ),
            ranges: false,
        },
        content: Content::InBucket {
            name: info.name.clone(),
            generation: info.generation,
        },
        served: Served::Hit,
    }
}

fn quoted_hex(digest: &[u8]) -> String {
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("\"{hex}\"")
}

fn no_such_profile(name: &str, profiles: &[Profile]) -> Refusal {
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    Refusal::NotFound(if names.is_empty() {
        format!("no variant profile is named {name:?}: this origin makes no variants")
    } else {
        format!(
            "no variant profile is named {name:?}: this origin makes {}",
            names.join(", ")
        )
    })
}
