//! Parallel composite uploads: a large object goes up as temporary part objects, several at
//! once, and is made from them by `compose` once all its bytes are known, with its complete
//! attributes. One resumable stream is slow for multi-GiB objects (and, on fake-gcs-server,
//! quadratic in their size); parts in parallel are what `gcloud storage` does for them.
//!
//! The object's name never exists partially: until the last compose it is untouched. The
//! temporaries live under `_yuba-parts/<upload id>/`, and the id is derived from what makes
//! them reusable ([`upload_id`]: the destination, the source's identity, the part size), so an
//! attempt cut short (a cancelled job, a transient failure) is resumed by the next attempt at
//! the same content: it lists what the first left, reads the whole source again (its digests
//! are of the whole content), and uploads only the parts it does not find intact.
//!
//! Temporaries are deleted when the object is made, and when the upload fails for good; after
//! a transient failure, or a cancellation, they are kept for the next attempt. Those no attempt
//! comes back for are the business of the bucket's lifecycle rule on [`PARTS_PREFIX`] (a day,
//! `terraform/modules/yuba-gcp`): if it removed some before the next attempt, that attempt
//! simply uploads them again.
//!
//! Two attempts at the same content at once (a message whose visibility expired) share the
//! temporaries. Neither can make a wrong object: each part is written on the generation its
//! attempt listed (or found), each compose names the generations it relies on, and the object
//! composed must have the whole content's size and crc32c or it is removed. When one attempt
//! finishes and deletes the temporaries while the other still composes from them, the other's
//! compose finds a source gone and fails as transient; its retry finds the object replicated.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use yuba_model::{ErrorChain, FailureKind, keys};

use crate::client::{Gcs, ListQuery, ObjectInfo, UploadSpec};
use crate::error::GcsError;

/// Where the temporaries of composite uploads live in a bucket, whatever the object's name
/// (its length does not matter: names of GCS objects are at most 1,024 bytes).
pub const PARTS_PREFIX: &str = "_yuba-parts/";
/// GCS composes at most this many objects in one request.
const MAX_SOURCES: usize = 32;
/// A composite object is made of at most this many components on GCS: parts per upload.
pub(crate) const MAX_PARTS: u64 = 1024;
/// Deletes of temporaries at once: a few hundred parts go in seconds, not minutes.
const CLEANUP_CONCURRENCY: usize = 16;
/// One upload's temporaries (at most 1,024 parts and 32 intermediates) in two listing pages.
const LIST_PAGE: u32 = 1000;

/// The content a composite upload carries, as its source identifies it: what decides whether
/// the parts an earlier attempt left can be this upload's (with the destination and the part
/// size, see [`Gcs::composite_upload`]). The parts are checked against the bytes anyway; the
/// identity only keeps the parts of different contents apart, so that attempts at two
/// versions of a key never overwrite each other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIdentity<'a> {
    /// Where the content is read from (`s3://bucket/key`): two sources replicated to one name
    /// never share parts.
    pub location: &'a str,
    /// The source's version, when its bucket keeps versions: one version's content never
    /// changes.
    pub version_id: Option<&'a str>,
    /// The source's entity tag and size: what tells a key's contents apart without versions.
    pub etag: &'a str,
    pub size: u64,
}

/// What a listing found under the upload's prefix for one part index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    generation: i64,
    size: u64,
    crc32c: Option<u32>,
}

/// A part in place.
#[derive(Debug, Clone, Copy)]
struct PartDone {
    index: usize,
    generation: i64,
    /// Found intact from an earlier attempt; nothing was uploaded.
    reused: bool,
}

/// An object being uploaded as parts (see the module documentation). Made by
/// [`Gcs::composite_upload`]; [`push`](CompositeUpload::push) the content in order, then
/// [`finish`](CompositeUpload::finish), or [`abort`](CompositeUpload::abort) after an error
/// (from `push` or from the caller's source). Dropped without either (the job was cancelled),
/// it cancels its part uploads and leaves the parts in place for the next attempt.
#[derive(Debug)]
pub struct CompositeUpload {
    gcs: Gcs,
    bucket: String,
    name: String,
    /// `_yuba-parts/<upload id>/`.
    prefix: String,
    part_bytes: usize,
    parallel: usize,
    uploading: JoinSet<Result<PartDone, GcsError>>,
    /// The parts earlier attempts left under the prefix, by index.
    found: HashMap<usize, Found>,
    /// Parts pushed so far.
    pushed: usize,
    /// Parts in place, as (index, generation), in the order they finished.
    uploaded: Vec<(usize, i64)>,
    /// How many of them were found intact rather than uploaded.
    reused: usize,
    size: u64,
    /// Every temporary under the prefix: those listed at the start and those this upload may
    /// have created.
    temporaries: BTreeSet<String>,
    /// The object composed did not hold the content: some part is not what it claims to be,
    /// and no later attempt may build on the parts.
    discredited: bool,
}

impl CompositeUpload {
    /// Lists what earlier attempts at the same content left under the upload's prefix.
    pub(crate) async fn start(
        gcs: Gcs,
        bucket: &str,
        name: &str,
        source: &SourceIdentity<'_>,
        part_bytes: usize,
        parallel: usize,
    ) -> Result<Self, GcsError> {
        let prefix = upload_prefix(upload_id(bucket, name, source, part_bytes));
        let mut found = HashMap::new();
        let mut temporaries = BTreeSet::new();
        for object in list_temporaries(&gcs, bucket, &prefix).await? {
            if let Some(index) = object.name.strip_prefix(&prefix).and_then(part_index) {
                let part = Found {
                    generation: object.generation,
                    size: object.size,
                    crc32c: object.crc32c,
                };
                found.insert(index, part);
            }
            temporaries.insert(object.name);
        }
        if !found.is_empty() {
            tracing::info!(
                object = %format!("gs://{bucket}/{name}"),
                %prefix,
                parts = found.len(),
                "resuming a composite upload: an earlier attempt left parts"
            );
        }
        Ok(CompositeUpload {
            gcs,
            bucket: bucket.to_owned(),
            name: name.to_owned(),
            prefix,
            part_bytes,
            parallel,
            uploading: JoinSet::new(),
            found,
            pushed: 0,
            uploaded: Vec::new(),
            reused: 0,
            size: 0,
            temporaries,
            discredited: false,
        })
    }

    /// The size of the parts to push (the last may be smaller): the upload chunk size.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// Where this upload's temporaries live: `_yuba-parts/<upload id>/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Puts the next part of the content in place, after waiting for a free slot if the
    /// configured number of parts are on their way already: the part an earlier attempt left
    /// under its name if that holds these bytes, else an upload of them. An error is that of
    /// an earlier part (or this one being one too many).
    pub async fn push(&mut self, part: Bytes) -> Result<(), GcsError> {
        if self.pushed as u64 >= MAX_PARTS {
            return Err(GcsError::permanent(format!(
                "uploading gs://{}/{}: more than {MAX_PARTS} parts, which GCS cannot compose",
                self.bucket, self.name
            )));
        }
        while self.uploading.len() >= self.parallel {
            self.collect_one().await?;
        }
        // Parts that failed meanwhile fail the upload now, not after the whole source is read.
        while let Some(done) = self.uploading.try_join_next() {
            self.record(done)?;
        }
        let index = self.pushed;
        let name = part_name(&self.prefix, index);
        self.temporaries.insert(name.clone());
        self.pushed += 1;
        self.size += part.len() as u64;
        let spec = self.temporary(name);
        let gcs = self.gcs.clone();
        let found = self.found.get(&index).copied();
        self.uploading.spawn(async move {
            let (generation, reused) = put_part(&gcs, spec, part, found).await?;
            Ok(PartDone {
                index,
                generation,
                reused,
            })
        });
        Ok(())
    }

    /// Makes the object from the parts pushed, with `destination`'s attributes (its bucket
    /// and name must be the upload's), and checks it holds `crc32c`, the whole content's: a
    /// different one means a part went wrong after all, and that object is removed. The
    /// temporaries are deleted, unless the failure is transient and the parts are not to blame
    /// (see [`abort`](CompositeUpload::abort)).
    pub async fn finish(
        mut self,
        destination: UploadSpec,
        crc32c: u32,
    ) -> Result<ObjectInfo, GcsError> {
        let composed = self.compose(&destination, crc32c).await;
        match &composed {
            Ok(_) => {
                if self.reused > 0 {
                    tracing::info!(
                        object = %format!("gs://{}/{}", self.bucket, self.name),
                        parts = self.pushed,
                        reused = self.reused,
                        "composite upload resumed: parts of an earlier attempt were reused"
                    );
                }
                self.clean_up().await;
            }
            Err(error) if error.kind.is_transient() && !self.discredited => self.keep().await,
            Err(_) => self.clean_up().await,
        }
        composed
    }

    /// Ends the upload after a failure of kind `failure` (from `push`, or the caller's source).
    /// Transient: the parts are kept for the next attempt at the same content, once the part
    /// uploads on their way have ended (each one that completes is one fewer to upload again).
    /// Permanent: no attempt will come back for them, so they are deleted.
    pub async fn abort(mut self, failure: FailureKind) {
        if failure.is_transient() {
            self.keep().await;
        } else {
            self.clean_up().await;
        }
    }

    async fn compose(
        &mut self,
        destination: &UploadSpec,
        crc32c: u32,
    ) -> Result<ObjectInfo, GcsError> {
        if (destination.bucket.as_str(), destination.name.as_str())
            != (self.bucket.as_str(), self.name.as_str())
        {
            return Err(GcsError::permanent(format!(
                "a composite upload to gs://{}/{} cannot finish as gs://{}/{}",
                self.bucket, self.name, destination.bucket, destination.name
            )));
        }
        // Compose needs a source; an empty object is one empty part.
        if self.pushed == 0 {
            self.push(Bytes::new()).await?;
        }
        while !self.uploading.is_empty() {
            self.collect_one().await?;
        }
        self.uploaded.sort_unstable();
        let parts: Vec<(String, i64)> = self
            .uploaded
            .iter()
            .map(|&(index, generation)| (part_name(&self.prefix, index), generation))
            .collect();
        let (groups, mut rest) = intermediate_groups(parts.clone());
        let specs: Vec<UploadSpec> = (0..groups.len())
            .map(|index| self.temporary(intermediate_name(&self.prefix, index)))
            .collect();
        self.temporaries
            .extend(specs.iter().map(|spec| spec.name.clone()));
        // Owned requests: futures that borrow their closure's arguments do not pass for `Send`
        // in the callers' futures.
        let intermediates = futures::stream::iter(specs.into_iter().zip(groups))
            .map(|(spec, group)| {
                let gcs = self.gcs.clone();
                async move {
                    let stored = gcs.compose(&spec, &group).await?;
                    Ok::<_, GcsError>((stored.name, stored.generation))
                }
            })
            .buffered(self.parallel)
            .try_collect::<Vec<_>>()
            .await;
        let mut sources = match intermediates {
            Ok(sources) => sources,
            Err(error) => return Err(self.explain(error, &parts).await),
        };
        sources.append(&mut rest);
        let stored = match self.gcs.compose(destination, &sources).await {
            Ok(stored) => stored,
            Err(error) => {
                let relied_on: Vec<(String, i64)> = parts.into_iter().chain(sources).collect();
                return Err(self.explain(error, &relied_on).await);
            }
        };
        if stored.crc32c == Some(crc32c) && stored.size == self.size {
            return Ok(stored);
        }
        self.discredited = true;
        let error = GcsError::transient(format!(
            "composing gs://{}/{}: GCS made generation {} of {} bytes with crc32c {:?}, not the \
             {} bytes with crc32c {} that were read",
            self.bucket,
            self.name,
            stored.generation,
            stored.size,
            stored.crc32c.map(yuba_model::crc32c_to_base64),
            self.size,
            yuba_model::crc32c_to_base64(crc32c),
        ));
        Err(self
            .gcs
            .discard_corrupted(&self.bucket, &self.name, stored.generation, error)
            .await)
    }

    /// A compose answered 404: one of its sources is gone, or the bucket is. Sources go when
    /// another attempt at the same content finished (and deleted the temporaries the two
    /// share) or composed an intermediate again, or when the lifecycle rule removed parts a
    /// day old; a later attempt gets past each (it finds the object replicated, or puts the
    /// parts back), so the failure is transient then. Told from a listing of the temporaries,
    /// not from the answer's text; a source that is still there leaves the answer as it was.
    async fn explain(&self, error: GcsError, relied_on: &[(String, i64)]) -> GcsError {
        if error.status != Some(404) {
            return error;
        }
        let listed = match list_temporaries(&self.gcs, &self.bucket, &self.prefix).await {
            Ok(listed) => listed,
            // A bucket that is gone says so here, as permanent.
            Err(listing) => return listing,
        };
        let gone = gone_sources(relied_on, &listed);
        sources_gone(error, &gone)
    }

    /// A temporary's attributes: which object it is part of, so a stray one explains itself.
    fn temporary(&self, name: String) -> UploadSpec {
        UploadSpec {
            bucket: self.bucket.clone(),
            name,
            metadata: vec![(keys::PART_OF.to_owned(), self.name.clone())],
            ..UploadSpec::default()
        }
    }

    /// Waits for one part upload to end.
    async fn collect_one(&mut self) -> Result<(), GcsError> {
        match self.uploading.join_next().await {
            Some(done) => self.record(done),
            None => Ok(()),
        }
    }

    fn record(
        &mut self,
        done: Result<Result<PartDone, GcsError>, tokio::task::JoinError>,
    ) -> Result<(), GcsError> {
        let part = done.map_err(|error| {
            GcsError::transient(format!(
                "uploading a part of gs://{}/{}",
                self.bucket, self.name
            ))
            .caused_by(error)
        })??;
        self.uploaded.push((part.index, part.generation));
        self.reused += usize::from(part.reused);
        Ok(())
    }

    /// Leaves the temporaries for the next attempt, once the part uploads on their way have
    /// ended.
    async fn keep(&mut self) {
        while let Some(done) = self.uploading.join_next().await {
            // A part that failed is simply not there for the next attempt.
            let _ = self.record(done);
        }
        tracing::info!(
            object = %format!("gs://{}/{}", self.bucket, self.name),
            prefix = %self.prefix,
            parts = self.uploaded.len(),
            "composite upload stopped; its parts are kept for the next attempt (the lifecycle \
             rule on {PARTS_PREFIX} removes them if none comes)"
        );
    }

    /// Deletes every temporary, a few at once, after the part uploads still on their way have
    /// ended. They are waited for rather than cancelled: a part whose request reached GCS in
    /// full before it was cancelled could be created after its delete. That costs at most one
    /// part's upload (or its retries, if GCS is failing) on a path that fails anyway.
    async fn clean_up(&mut self) {
        while self.uploading.join_next().await.is_some() {}
        let (gcs, bucket) = (&self.gcs, self.bucket.as_str());
        let failed: Vec<(String, GcsError)> =
            futures::stream::iter(std::mem::take(&mut self.temporaries))
                .map(|name| async move {
                    gcs.objects()
                        .delete(bucket, &name, None)
                        .await
                        .err()
                        .map(|error| (name, error))
                })
                .buffer_unordered(CLEANUP_CONCURRENCY)
                .filter_map(std::future::ready)
                .collect()
                .await;
        for (name, error) in failed {
            tracing::warn!(
                object = %name,
                error = %ErrorChain(&error),
                "could not delete a temporary part of a composite upload; left to the bucket's \
                 lifecycle rule on {PARTS_PREFIX}"
            );
        }
    }
}

/// Puts one part in place. A part an earlier attempt left under its name is used as it is if
/// its size and crc32c (GCS's, of the bytes it stored) are those of the bytes just read;
/// otherwise the bytes are uploaded, conditional on the generation listed (0: none), so that
/// a part another attempt wrote since the listing is never replaced unseen. Such a conflict
/// is settled by what is there now: the same bytes (an attempt at the same content, or this
/// request's own earlier try whose answer was lost) are used at their generation; other ones
/// fail the part as transient. Returns the part's generation, and whether it was reused.
///
/// The part's crc32c (computed at memory speed with SSE4.2/ARMv8 CRC instructions) is what
/// GCS validates an upload against and what a found part is compared with; an MD5 as well
/// would cost more CPU than the upload, for no detection a CRC lacks against damage in
/// transit. It is no defence against a writer who forges parts in the replica bucket, who
/// could as well overwrite the replicas themselves.
async fn put_part(
    gcs: &Gcs,
    mut spec: UploadSpec,
    part: Bytes,
    found: Option<Found>,
) -> Result<(i64, bool), GcsError> {
    let crc32c = crc32c::crc32c(&part);
    let size = part.len() as u64;
    let holds = |stored_size: u64, stored_crc32c: Option<u32>| {
        stored_size == size && stored_crc32c == Some(crc32c)
    };
    if let Some(found) = found
        && holds(found.size, found.crc32c)
    {
        return Ok((found.generation, true));
    }
    spec.known_crc32c = Some(crc32c);
    spec.if_generation_match = Some(found.map_or(0, |found| found.generation));
    let (bucket, name) = (spec.bucket.clone(), spec.name.clone());
    match gcs.upload_bytes(spec, part).await {
        Ok(stored) => Ok((stored.generation, false)),
        Err(conflict) if conflict.is_conflict() => match gcs.objects().get(&bucket, &name).await? {
            Some(now) if holds(now.size, now.crc32c) => Ok((now.generation, false)),
            _ => Err(GcsError::transient(format!(
                "uploading gs://{bucket}/{name}: another writer replaced the part with other \
                 bytes since it was listed"
            ))
            .caused_by(conflict)),
        },
        Err(error) => Err(error),
    }
}

/// The sources in `relied_on` (name and generation) that `listed` no longer has at that
/// generation.
fn gone_sources<'a>(relied_on: &'a [(String, i64)], listed: &[ObjectInfo]) -> Vec<&'a str> {
    let live: HashMap<&str, i64> = listed
        .iter()
        .map(|object| (object.name.as_str(), object.generation))
        .collect();
    relied_on
        .iter()
        .filter(|(name, generation)| live.get(name.as_str()) != Some(generation))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// A compose's 404 when `gone` are the sources it named that are no longer there: transient
/// if there are any (see [`CompositeUpload::explain`]), the answer as it was otherwise.
fn sources_gone(mut error: GcsError, gone: &[&str]) -> GcsError {
    let Some(first) = gone.first() else {
        return error;
    };
    error.kind = FailureKind::Transient;
    error.message = format!(
        "{}: {} of its temporaries ({first}, ...) are gone or replaced, by another attempt at \
         the same content or by the lifecycle rule; the next attempt finds the object made or \
         puts them back",
        error.message,
        gone.len()
    );
    error
}

/// Every temporary under `prefix`, page after page, each page retried like any read.
async fn list_temporaries(
    gcs: &Gcs,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, GcsError> {
    let what = format!("listing gs://{bucket}/{prefix}");
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = ListQuery {
            prefix,
            page_size: LIST_PAGE,
            page_token: token.as_deref(),
            ..ListQuery::default()
        };
        let page = gcs
            .retrying(&what, || gcs.objects().list(bucket, &query))
            .await?;
        objects.extend(page.objects);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(objects),
        }
    }
}

/// The id of the upload of `source`'s content to `bucket/name` in parts of `part_bytes`: the
/// same for every attempt at that content, and different when any of these differs (another
/// version or content of the key, another destination, or a part size that cuts the content
/// elsewhere, so that no part could match). 128 bits of a SHA-256 of the fields, each one
/// length-prefixed so that no two lists of fields hash alike.
fn upload_id(bucket: &str, name: &str, source: &SourceIdentity<'_>, part_bytes: usize) -> u128 {
    fn field(hash: &mut Sha256, bytes: &[u8]) {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    let mut hash = Sha256::new();
    field(&mut hash, b"yuba-composite-upload-v1");
    field(&mut hash, bucket.as_bytes());
    field(&mut hash, name.as_bytes());
    field(&mut hash, source.location.as_bytes());
    // No version and an empty one are told apart.
    match source.version_id {
        Some(version) => {
            field(&mut hash, b"version");
            field(&mut hash, version.as_bytes());
        }
        None => field(&mut hash, b"unversioned"),
    }
    field(&mut hash, source.etag.as_bytes());
    field(&mut hash, &source.size.to_be_bytes());
    field(&mut hash, &(part_bytes as u64).to_be_bytes());
    let mut id = [0; 16];
    id.copy_from_slice(&hash.finalize()[..16]);
    u128::from_be_bytes(id)
}

/// Names of a fixed length whatever the object's.
fn upload_prefix(id: u128) -> String {
    format!("{PARTS_PREFIX}{id:032x}/")
}

fn part_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:05}")
}

/// The index of a part named `rest` under its upload's prefix; `None` for an intermediate
/// object or anything else.
fn part_index(rest: &str) -> Option<usize> {
    (rest.len() == 5 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

fn intermediate_name(prefix: &str, index: usize) -> String {
    format!("{prefix}compose-{index:05}")
}

/// The first level of the compose tree over `parts` (in content order, at most 1,024 = 32 × 32,
/// so that one level is enough): the groups of leading parts to compose into one intermediate
/// object each, and the parts that go into the final compose as they are, after those objects,
/// at most 32 sources in all. As few parts are grouped as that allows: each intermediate's
/// bytes are stored again while the upload lasts (billed, soft-deleted after it, and copied by
/// some servers).
fn intermediate_groups<T>(parts: Vec<T>) -> (Vec<Vec<T>>, Vec<T>) {
    let count = parts.len();
    // A group of g parts stands for g - 1 fewer sources: full groups, then one just large
    // enough.
    let groups = count.saturating_sub(MAX_SOURCES).div_ceil(MAX_SOURCES - 1);
    let last = count.saturating_sub((MAX_SOURCES - 1) * groups);
    let mut parts = parts.into_iter();
    let grouped = (0..groups)
        .map(|group| {
            let size = if group + 1 == groups {
                last
            } else {
                MAX_SOURCES
            };
            parts.by_ref().take(size).collect()
        })
        .collect();
    (grouped, parts.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Carried;

    #[test]
    fn intermediate_objects_bring_any_upload_to_one_final_compose() {
        for count in 1..=MAX_PARTS as usize {
            let (groups, rest) = intermediate_groups((0..count).collect::<Vec<_>>());
            assert!(groups.len() + rest.len() <= MAX_SOURCES, "{count}");
            for group in &groups {
                assert!(
                    (2..=MAX_SOURCES).contains(&group.len()),
                    "{count}: {group:?}"
                );
            }
            let order: Vec<usize> = groups.into_iter().flatten().chain(rest).collect();
            assert_eq!(order, (0..count).collect::<Vec<_>>(), "{count}");
        }
    }

    #[test]
    fn as_few_parts_as_possible_are_composed_twice() {
        let sizes = |count: usize| {
            let (groups, rest) = intermediate_groups((0..count).collect::<Vec<_>>());
            (groups.iter().map(Vec::len).collect::<Vec<_>>(), rest.len())
        };
        assert_eq!(sizes(1), (vec![], 1));
        assert_eq!(sizes(32), (vec![], 32));
        // 33 sources, one too many: two parts become one.
        assert_eq!(sizes(33), (vec![2], 31));
        assert_eq!(sizes(40), (vec![9], 31));
        assert_eq!(sizes(64), (vec![32, 2], 30));
        assert_eq!(sizes(256), (vec![32, 32, 32, 32, 32, 32, 32, 8], 24));
        assert_eq!(sizes(1024), (vec![32; 32], 0));
    }

    #[test]
    fn temporaries_are_named_apart_from_the_object_and_each_other() {
        let prefix = upload_prefix(0xabc);
        assert_eq!(prefix, "_yuba-parts/00000000000000000000000000000abc/");
        assert_eq!(part_name(&prefix, 7), format!("{prefix}00007"));
        assert_eq!(
            intermediate_name(&prefix, 2),
            format!("{prefix}compose-00002")
        );
    }

    #[test]
    fn parts_are_told_from_intermediates_by_name() {
        let prefix = upload_prefix(1);
        let index = |name: String| name.strip_prefix(&prefix).and_then(part_index);
        assert_eq!(index(part_name(&prefix, 0)), Some(0));
        assert_eq!(index(part_name(&prefix, 1023)), Some(1023));
        assert_eq!(index(intermediate_name(&prefix, 3)), None);
        for other in ["7", "000071", "0000x", "+0007", ""] {
            assert_eq!(part_index(other), None, "{other:?}");
        }
    }

    fn listed(name: &str, generation: i64) -> ObjectInfo {
        ObjectInfo {
            name: name.to_owned(),
            generation,
            metageneration: 1,
            size: 1,
            crc32c: None,
            md5: None,
            content_type: None,
            cache_control: None,
            metadata: HashMap::new(),
            created: None,
        }
    }

    #[test]
    fn a_compose_that_lost_its_sources_is_transient() {
        let relied_on = vec![("p/00000".to_owned(), 7), ("p/00001".to_owned(), 8)];
        let not_found =
            || GcsError::from_status(404, None, Carried::NoChecksums, "No such object".to_owned());
        assert_eq!(not_found().kind, FailureKind::Permanent);
        // All there at their generations: the 404 is not theirs (the bucket's, say).
        let all = [listed("p/00000", 7), listed("p/00001", 8)];
        let gone = gone_sources(&relied_on, &all);
        assert!(gone.is_empty());
        assert_eq!(
            sources_gone(not_found(), &gone).kind,
            FailureKind::Permanent
        );
        // One deleted, one replaced by another attempt: both count.
        let some = [listed("p/00001", 9), listed("p/compose-00000", 3)];
        let gone = gone_sources(&relied_on, &some);
        assert_eq!(gone, ["p/00000", "p/00001"]);
        let error = sources_gone(not_found(), &gone);
        assert_eq!(
            (error.kind, error.status),
            (FailureKind::Transient, Some(404))
        );
        assert!(error.message.starts_with("No such object: 2 of"), "{error}");
    }

    const SOURCE: SourceIdentity<'static> = SourceIdentity {
        location: "s3://photos/videos/a.mp4",
        version_id: Some("v1"),
        etag: "9b2cf535f27731c974343645a3985328-3",
        size: 40 << 20,
    };
    const PART: usize = 8 << 20;

    #[test]
    fn attempts_at_the_same_content_share_an_upload_id() {
        let id = upload_id("replica", "videos/a.mp4", &SOURCE, PART);
        assert_eq!(id, upload_id("replica", "videos/a.mp4", &SOURCE, PART));
        assert_eq!(
            upload_prefix(id),
            upload_prefix(upload_id("replica", "videos/a.mp4", &SOURCE, PART))
        );
    }

    #[test]
    fn anything_that_changes_the_parts_changes_the_upload_id() {
        let id =
            |bucket, name, source: SourceIdentity<'_>, part| upload_id(bucket, name, &source, part);
        let base = id("replica", "videos/a.mp4", SOURCE, PART);
        let others = [
            id("other", "videos/a.mp4", SOURCE, PART),
            id("replica", "videos/b.mp4", SOURCE, PART),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    location: "s3://other/videos/a.mp4",
                    ..SOURCE
                },
                PART,
            ),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    version_id: Some("v2"),
                    ..SOURCE
                },
                PART,
            ),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    version_id: None,
                    ..SOURCE
                },
                PART,
            ),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    version_id: Some(""),
                    ..SOURCE
                },
                PART,
            ),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    etag: "0cc175b9c0f1b6a831c399e269772661",
                    ..SOURCE
                },
                PART,
            ),
            id(
                "replica",
                "videos/a.mp4",
                SourceIdentity {
                    size: SOURCE.size + 1,
                    ..SOURCE
                },
                PART,
            ),
            id("replica", "videos/a.mp4", SOURCE, PART * 2),
            // Fields are length-prefixed: moving a boundary between two changes the id.
            id("replicav", "ideos/a.mp4", SOURCE, PART),
        ];
        for (which, other) in others.iter().enumerate() {
            assert_ne!(*other, base, "change {which} kept the id");
        }
        let distinct: BTreeSet<u128> = others.iter().copied().collect();
        assert_eq!(distinct.len(), others.len());
    }
}
