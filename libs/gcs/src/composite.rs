//! Parallel composite uploads: a large object goes up as temporary part objects, several at
//! once, and is made from them by `compose` once all its bytes are known, with its complete
//! attributes. One resumable stream is slow for multi-GiB objects (and, on fake-gcs-server,
//! quadratic in their size); parts in parallel are what `gcloud storage` does for them.
//!
//! The object's name never exists partially: until the last compose it is untouched. The
//! temporaries live under [`PARTS_PREFIX`] and are deleted whatever happens; those a crash
//! leaves behind are the business of a lifecycle rule on that prefix.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;
use yuba_model::keys;

use crate::client::{Gcs, ObjectInfo, UploadSpec};
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

/// An object being uploaded as parts (see the module documentation). Made by
/// [`Gcs::composite_upload`]; [`push`](CompositeUpload::push) the content in order, then
/// [`finish`](CompositeUpload::finish), or [`abort`](CompositeUpload::abort) after an error
/// (from `push` or from the caller's source). Both delete the temporaries. Dropped without
/// either (the job was cancelled), it cancels its part uploads and leaves their objects to the
/// lifecycle rule.
#[derive(Debug)]
pub struct CompositeUpload {
    gcs: Gcs,
    bucket: String,
    name: String,
    /// `_yuba-parts/<upload id>/`.
    prefix: String,
    part_bytes: usize,
    parallel: usize,
    uploading: JoinSet<Result<(usize, i64), GcsError>>,
    /// Parts pushed so far.
    pushed: usize,
    /// Parts uploaded, as (index, generation), in the order they finished.
    uploaded: Vec<(usize, i64)>,
    size: u64,
    /// Every temporary this upload may have created.
    temporaries: Vec<String>,
}

impl CompositeUpload {
    pub(crate) fn new(
        gcs: Gcs,
        bucket: &str,
        name: &str,
        part_bytes: usize,
        parallel: usize,
    ) -> Self {
        CompositeUpload {
            gcs,
            bucket: bucket.to_owned(),
            name: name.to_owned(),
            prefix: upload_prefix(rand::random()),
            part_bytes,
            parallel,
            uploading: JoinSet::new(),
            pushed: 0,
            uploaded: Vec::new(),
            size: 0,
            temporaries: Vec::new(),
        }
    }

    /// The size of the parts to push (the last may be smaller): the upload chunk size.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// Starts uploading the next part of the content, after waiting for a free slot if the
    /// configured number of parts are on their way already. An error is that of an earlier
    /// part (or this one being one too many).
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
        self.temporaries.push(name.clone());
        self.pushed += 1;
        self.size += part.len() as u64;
        let spec = self.temporary(name);
        let gcs = self.gcs.clone();
        self.uploading.spawn(async move {
            // The part's crc32c (computed by `upload_bytes`, at memory speed with SSE4.2/ARMv8
            // CRC instructions) is what GCS validates it against; an MD5 as well would cost
            // more CPU than the upload, for no detection a CRC lacks against damage in transit.
            let stored = gcs.upload_bytes(spec, part).await?;
            Ok((index, stored.generation))
        });
        Ok(())
    }

    /// Makes the object from the parts pushed, with `destination`'s attributes (its bucket
    /// and name must be the upload's), and checks it holds `crc32c`, the whole content's: a
    /// different one means a part went wrong after all, and that object is removed. The
    /// temporaries are deleted either way.
    pub async fn finish(
        mut self,
        destination: UploadSpec,
        crc32c: u32,
    ) -> Result<ObjectInfo, GcsError> {
        let composed = self.compose(&destination, crc32c).await;
        self.clean_up().await;
        composed
    }

    /// Deletes the temporaries, once the part uploads on their way have ended.
    pub async fn abort(mut self) {
        self.clean_up().await;
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
        let (groups, mut rest) = intermediate_groups(parts);
        let specs: Vec<UploadSpec> = (0..groups.len())
            .map(|index| self.temporary(intermediate_name(&self.prefix, index)))
            .collect();
        self.temporaries
            .extend(specs.iter().map(|spec| spec.name.clone()));
        // Owned requests: futures that borrow their closure's arguments do not pass for `Send`
        // in the callers' futures.
        let mut sources: Vec<(String, i64)> = futures::stream::iter(specs.into_iter().zip(groups))
            .map(|(spec, group)| {
                let gcs = self.gcs.clone();
                async move {
                    let stored = gcs.compose(&spec, &group).await?;
                    Ok::<_, GcsError>((stored.name, stored.generation))
                }
            })
            .buffered(self.parallel)
            .try_collect()
            .await?;
        sources.append(&mut rest);
        let stored = self.gcs.compose(destination, &sources).await?;
        if stored.crc32c == Some(crc32c) && stored.size == self.size {
            return Ok(stored);
        }
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
        done: Result<Result<(usize, i64), GcsError>, tokio::task::JoinError>,
    ) -> Result<(), GcsError> {
        let (index, generation) = done.map_err(|error| {
            GcsError::transient(format!(
                "uploading a part of gs://{}/{}: {error}",
                self.bucket, self.name
            ))
        })??;
        self.uploaded.push((index, generation));
        Ok(())
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
                    gcs.delete(bucket, &name, None)
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
                %error,
                "could not delete a temporary part of a composite upload; left to the bucket's \
                 lifecycle rule on {PARTS_PREFIX}"
            );
        }
    }
}

/// A fresh directory per upload: 128 random bits, so concurrent uploads of one name (a job
/// delivered twice) never share temporaries.
fn upload_prefix(id: u128) -> String {
    format!("{PARTS_PREFIX}{id:032x}/")
}

fn part_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:05}")
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
        assert_ne!(upload_prefix(rand::random()), upload_prefix(rand::random()));
    }
}
