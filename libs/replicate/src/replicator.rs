use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use thiserror::Error;
use yuba_aws::{S3Error, S3Source, SourceObject};
use yuba_config::Env;
use yuba_gcs::{
    CompositeUpload, Gcs, GcsError, ObjectInfo, ObjectUpdate, PARTS_PREFIX, SourceIdentity,
    UploadSpec,
};
use yuba_model::{
    Checksums, DeleteJob, FailureKind, Job, MadeVariant, ObjectNameError, RESERVED_METADATA_PREFIX,
    ReplicaRecord, ReplicateJob, SourceFacts, VariantRecord, VariantsError, crc32c_from_base64,
    gcs_object_name, keys,
};
use yuba_transform::{
    Identified, Limits, MemoryEstimate, TransformError, estimate_memory, identify, render,
};
use yuba_variants::{Profile, VariantConfig, VariantConfigError};

use crate::memory::{Footprint, ImageGate, MemoryBudget, OverBudget, Reservation};
use crate::source::{StreamFailure, StreamReport, VerifiedStream};
use crate::verify::{ContentVerifier, ExpectedContent, IntegrityError};

/// Enough of the start of an object to tell an image format by its magic number.
const SNIFF_BYTES: usize = 64;

/// How much of an image is read ahead for its header, to estimate its render before holding it
/// whole. JPEG's frame header follows the EXIF and ICC segments, which rarely pass this; an image
/// whose header does is admitted on the whole budget until it has been read.
const HEADER_BYTES: usize = 256 * 1024;

/// How many times a job looks at the replica again after another write of it came first. Each
/// lost race means another job made progress on the key, so a few suffice; past them the job
/// fails as transient and comes back after a backoff.
const MAX_LOST_RACES: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorSettings {
    /// The GCS bucket that holds the replicas.
    pub replica_bucket: String,
    /// Whether a delete in S3 removes the replica (the default), or the replica is kept.
    pub mirror_deletes: bool,
    /// Objects up to this size are read whole, hashed, and written in one request with their
    /// complete record; larger ones are streamed. The upload chunk size, so that memory is
    /// bounded by it either way.
    pub whole_object_limit: u64,
    /// The variants made of images, and where they go.
    pub variants: VariantConfig,
    /// What an image may be for variants to be made of it; larger ones are replicated only.
    pub image_limits: Limits,
    /// The process's memory, and what of it renders may take at once.
    pub memory: MemoryBudget,
}

impl ReplicatorSettings {
    /// `footprint` is the process's copies' buffers (chunk size, parallel parts, jobs at once),
    /// which the images' memory budget is what is left after.
    pub fn from_env(env: &Env, footprint: &Footprint) -> Result<Self, VariantConfigError> {
        let defaults = Limits::default();
        let variants = VariantConfig::from_env(env)?;
        let memory = MemoryBudget::from_env(env, footprint, !variants.profiles.is_empty())?;
        Ok(ReplicatorSettings {
            replica_bucket: env.required(
                "YUBA_GCS_BUCKET",
                "set it to the name of the GCS bucket that holds the replicas",
            )?,
            mirror_deletes: env.flag("YUBA_MIRROR_DELETES", true)?,
            whole_object_limit: footprint.upload_chunk_bytes,
            variants,
            memory,
            image_limits: Limits {
                max_pixels: env.number_in(
                    "YUBA_MAX_SOURCE_PIXELS",
                    defaults.max_pixels,
                    1..=1_000_000_000,
                )?,
                max_bytes: env.number_in(
                    "YUBA_MAX_SOURCE_BYTES",
                    defaults.max_bytes,
                    1..=1024 * 1024 * 1024,
                )?,
                max_frames: u32::try_from(env.number_in(
                    "YUBA_MAX_SOURCE_FRAMES",
                    u64::from(defaults.max_frames),
                    1..=100_000,
                )?)
                .unwrap_or(defaults.max_frames),
            },
        })
    }
}

/// The [`VariantsError`] kind when a variant's name cannot be a GCS object name (the
/// transform's own refusals have [`TransformError::kind`]).
pub const VARIANT_NAME_ERROR: &str = "name";

/// The [`VariantsError`] kind when the image's render would need more memory than the process
/// has for images at all ([`crate::MemoryBudget`]).
pub const TOO_LARGE_FOR_MEMORY: &str = "too_large_for_memory";

/// Every [`VariantsError`] kind the worker records: the metric catalog's `VariantError` values.
pub fn variants_error_kinds() -> impl Iterator<Item = &'static str> {
    TransformError::KINDS
        .into_iter()
        .chain([VARIANT_NAME_ERROR, TOO_LARGE_FOR_MEMORY])
}

/// What a job does about variants, decided before the source is read whole.
enum Admission {
    /// None are made; the reason, when there is one to record.
    NoVariants(Option<VariantsError>),
    /// They are made, under a reservation of the images' memory budget held until the job ends.
    Render {
        profiles: Vec<Profile>,
        reservation: Reservation,
        /// The reservation is the estimate; `false`: it is the whole budget, because the header
        /// was past the bytes read ahead (the estimate is made once the source is read).
        sized: bool,
    },
}

/// What a job did. Every variant is a success: the message can be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The replica was written.
    Replicated {
        bytes: u64,
        checksums: Checksums,
        generation: i64,
        /// Streamed (in a resumable upload, or in parts composed at the end), rather than
        /// written whole.
        streamed: bool,
        /// Variants written beside it.
        variants: usize,
        /// Why no variants could be made of an image that should have had them.
        variants_error: Option<VariantsError>,
    },
    /// The replica already holds this content; nothing was read or written.
    AlreadyReplicated {
        generation: i64,
    },
    /// The replica was made from a later change of the key than the job's event (by S3's
    /// sequencer): the event is stale, nothing was read or written.
    Superseded {
        generation: i64,
    },
    /// The source object no longer exists; its delete event takes care of the replica.
    SourceGone,
    Deleted,
    /// Asked to delete a replica that was not there.
    AlreadyAbsent,
    /// A delete was not mirrored, by configuration.
    DeleteNotMirrored,
    /// A delete was not mirrored because the key exists in S3 again: a newer create won.
    SourceRecreated,
}

impl Outcome {
    /// Every name [`Outcome::as_str`] gives, in declaration order, for what iterates over them
    /// (the metric catalog's `Outcome` values); `names_are_exactly_what_as_str_gives` holds the
    /// two together.
    pub const NAMES: [&'static str; 8] = [
        "replicated",
        "already-replicated",
        "superseded",
        "source-gone",
        "deleted",
        "already-absent",
        "delete-not-mirrored",
        "source-recreated",
    ];

    /// For logs and metric dimensions.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Replicated { .. } => "replicated",
            Outcome::AlreadyReplicated { .. } => "already-replicated",
            Outcome::Superseded { .. } => "superseded",
            Outcome::SourceGone => "source-gone",
            Outcome::Deleted => "deleted",
            Outcome::AlreadyAbsent => "already-absent",
            Outcome::DeleteNotMirrored => "delete-not-mirrored",
            Outcome::SourceRecreated => "source-recreated",
        }
    }
}

#[derive(Debug, Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Source(#[from] S3Error),
    #[error(transparent)]
    Replica(#[from] GcsError),
    #[error("s3://{bucket}/{key} cannot be replicated under its own name: {reason}")]
    Name {
        bucket: String,
        key: String,
        reason: ObjectNameError,
    },
    #[error(
        "s3://{bucket}/{key} cannot be replicated under its own name: names under `{prefix}` \
         hold {holds} in the replica bucket, which the replica would collide with: copy the S3 \
         object to another key, or {remedy}"
    )]
    Reserved {
        bucket: String,
        key: String,
        prefix: String,
        holds: &'static str,
        remedy: &'static str,
    },
    #[error("s3://{bucket}/{key}: {reason}")]
    Integrity {
        bucket: String,
        key: String,
        reason: IntegrityError,
    },
    /// Another write or delete of the replica came between this job's look at it and its own
    /// write, whose generation precondition therefore failed. Caught and retried by the job
    /// itself; it escapes only after [`MAX_LOST_RACES`], as transient.
    #[error("another write of the replica came first: {conflict}")]
    LostRace {
        conflict: GcsError,
        /// Variants were written (or deleted) before the race was lost: they may now belong
        /// to the loser's content, so the winner's must be made again.
        variants_touched: bool,
    },
}

impl ReplicateError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ReplicateError::Source(error) => error.kind,
            ReplicateError::Replica(error) => error.kind,
            ReplicateError::Name { .. } | ReplicateError::Reserved { .. } => FailureKind::Permanent,
            ReplicateError::Integrity { .. } | ReplicateError::LostRace { .. } => {
                FailureKind::Transient
            }
        }
    }
}

/// Runs jobs: makes the replica of one key match its source.
#[derive(Debug, Clone)]
pub struct Replicator {
    s3: S3Source,
    gcs: Gcs,
    settings: ReplicatorSettings,
    /// Shared by the clones of one replicator: the process's renders pass it.
    images: ImageGate,
}

impl Replicator {
    pub fn new(s3: S3Source, gcs: Gcs, settings: ReplicatorSettings) -> Self {
        let images = ImageGate::new(settings.memory.images_bytes);
        Replicator {
            s3,
            gcs,
            settings,
            images,
        }
    }

    pub async fn run(&self, job: &Job) -> Result<Outcome, ReplicateError> {
        // A job's state (buffers, verifiers, the retry loops) is large: boxed here, it lives on
        // the heap instead of inside every caller's future, which a caller that blocks on it
        // (a test, a CLI) would otherwise hold on its stack.
        match job {
            Job::Replicate(job) => {
                let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
                let existing = self.gcs.object(&self.settings.replica_bucket, name).await?;
                Box::pin(self.replicate(job, existing)).await
            }
            Job::Delete(job) => Box::pin(self.delete(job)).await,
        }
    }

    /// [`run`](Replicator::run) for a caller that has just listed the replica bucket (the
    /// reconciler): the listing's entry for the replica (`None`: there was none) stands in for
    /// the metadata read a job starts with. A replica written since the listing costs at most
    /// a copy made again, never a skipped one: a stale entry is the reason the job exists.
    pub async fn run_listed(
        &self,
        job: &Job,
        listed: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        match job {
            Job::Replicate(job) => Box::pin(self.replicate(job, listed)).await,
            Job::Delete(job) => Box::pin(self.delete(job)).await,
        }
    }

    /// Makes the replica hold the source's current content. Every write is conditional on
    /// the generation the job saw at its start (or on there being none), so a job that read
    /// an older version of the source than a concurrent one cannot overwrite that one's
    /// replica; a job that loses such a race looks again and decides afresh (see
    /// ARCHITECTURE.md, "Ordering and convergence").
    async fn replicate(
        &self,
        job: &ReplicateJob,
        mut existing: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
        let mut job = std::borrow::Cow::Borrowed(job);
        let mut lost = 0;
        loop {
            let (conflict, variants_touched) = match self.replicate_once(&job, name, existing).await
            {
                Err(ReplicateError::LostRace {
                    conflict,
                    variants_touched,
                }) if lost + 1 < MAX_LOST_RACES => (conflict, variants_touched),
                done => return done,
            };
            lost += 1;
            tracing::info!(key = %job.key, lost, %conflict, "another write of the replica came first; looking again");
            // The winner's record may be complete while the variants under its names are the
            // loser's: only a forced copy of the current source puts them right.
            if variants_touched && !job.force {
                job = std::borrow::Cow::Owned(ReplicateJob {
                    force: true,
                    ..job.into_owned()
                });
            }
            existing = self.gcs.object(&self.settings.replica_bucket, name).await?;
        }
    }

    /// One look at the replica and the source, and the write if one is needed.
    async fn replicate_once(
        &self,
        job: &ReplicateJob,
        name: &str,
        existing: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        let record = existing.as_ref().and_then(read_record);
        let current = |describes: &dyn Fn(&ReplicaRecord) -> bool| {
            self.holds(existing.as_ref(), record.as_ref(), describes)
        };
        if let Some(generation) = current(&|record| record.satisfies(job)) {
            return Ok(Outcome::AlreadyReplicated { generation });
        }
        let later = |record: &ReplicaRecord| {
            !job.force
                && record.source.bucket == job.bucket
                && record.source.key == job.key
                && record.is_later_than(job.sequencer.as_deref())
        };
        if let Some(generation) = current(&later) {
            return Ok(Outcome::Superseded { generation });
        }
        let target = Target {
            name,
            if_generation_match: existing.as_ref().map_or(0, |e| e.generation),
        };

        let Some(mut source) = self.s3.get(&job.bucket, &job.key).await? else {
            return Ok(Outcome::SourceGone);
        };
        // The event may name an older version than the one S3 holds now, and the replica may
        // already hold the current one (written for a later event that came first).
        let describes_source = |record: &ReplicaRecord| {
            !job.force
                && record.source.etag == source.etag
                && record.source.size == source.size
                && record.source.version_id == source.version_id
        };
        if let Some(generation) = current(&describes_source) {
            return Ok(Outcome::AlreadyReplicated { generation });
        }

        // The event's sequencer orders the version the event was about; it is recorded only
        // when that is the version being copied, never against newer content.
        let event_describes_source = job.etag.as_deref().is_none_or(|etag| etag == source.etag);
        let facts = SourceFacts {
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            version_id: source.version_id.clone(),
            etag: source.etag.clone(),
            size: source.size,
            last_modified: source.last_modified,
            sequencer: job.sequencer.clone().filter(|_| event_describes_source),
        };
        let expected = ExpectedContent {
            size: source.size,
            md5: source.content_md5,
            crc32c: source
                .full_object_crc32c
                .as_deref()
                .and_then(crc32c_from_base64),
        };
        // What the bytes are decides, not what the upload claimed; the format is recorded so
        // that the variants a replica should have can be told from its record alone.
        let identified = identify(&source.peek(SNIFF_BYTES).await?);
        let admission = self.admit(&job.key, &mut source, identified).await?;
        // Images that get variants are held whole (bounded by the image byte limit, and
        // reserved in the images' budget); anything else larger than a chunk streams.
        let variants_error = match admission {
            Admission::NoVariants(error) if source.size > self.settings.whole_object_limit => error,
            admission => {
                return self
                    .write_whole(target, source, facts, expected, identified, admission)
                    .await;
            }
        };
        let streamed = Streamed {
            variants_error,
            image_format: image_format(identified),
        };
        if self.gcs.composes(source.size) {
            return self
                .write_composed(target, source, facts, expected, streamed)
                .await;
        }
        self.write_streamed(target, source, facts, expected, streamed)
            .await
    }

    /// The replica's generation if it already holds what `describes` asks for: a record that
    /// describes it, the bytes that record says were written, and every variant the
    /// configuration calls for. Otherwise the job has work to do.
    fn holds(
        &self,
        replica: Option<&ObjectInfo>,
        record: Option<&ReplicaRecord>,
        describes: &dyn Fn(&ReplicaRecord) -> bool,
    ) -> Option<i64> {
        let (replica, record) = (replica?, record?);
        let whole = describes(record)
            && record.check_stored(replica.size, replica.crc32c).is_ok()
            && self.settings.variants.missing_for(record).is_empty();
        whole.then_some(replica.generation)
    }

    /// Small objects and images that get variants: read and verify everything first (held once,
    /// and bounded by the chunk size or the image byte limit), make and write the variants, then
    /// create the replica complete (record, digests and variant state) in one upload that GCS
    /// checks against the digests. Writing the original last means a replica whose record is
    /// complete always has its variants, so a retried job never skips missing ones.
    async fn write_whole(
        &self,
        target: Target<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        identified: Identified,
        admission: Admission,
    ) -> Result<Outcome, ReplicateError> {
        let integrity = |reason| ReplicateError::Integrity {
            bucket: facts.bucket.clone(),
            key: facts.key.clone(),
            reason,
        };
        let mut verifier = ContentVerifier::new(expected);
        let mut content = Vec::with_capacity(usize::try_from(source.size).unwrap_or_default());
        while let Some(chunk) = source.next_chunk().await {
            let chunk = chunk?;
            verifier.feed(&chunk).map_err(integrity)?;
            content.extend_from_slice(&chunk);
        }
        let checksums = verifier.finish().map_err(integrity)?;
        let content = Bytes::from(content);
        let (variants, variants_error) = self
            .write_variants(&facts, &source, &content, &checksums, admission)
            .await?;
        let record = ReplicaRecord {
            source: facts,
            sha256: Some(checksums.sha256_hex()),
            crc32c: Some(checksums.crc32c),
            replicated_at: Utc::now(),
            variants,
            variants_error: variants_error.clone(),
            image_format: image_format(identified),
        };
        let mut spec = upload_spec(&self.settings.replica_bucket, target, &source, &record);
        spec.known_crc32c = Some(checksums.crc32c);
        spec.known_md5 = Some(checksums.md5);
        let stored = self
            .gcs
            .upload_bytes(spec, content)
            .await
            .map_err(|error| lost_race(error, !record.variants.is_empty()))?;
        Ok(Outcome::Replicated {
            bytes: stored.size,
            checksums,
            generation: stored.generation,
            streamed: false,
            variants: record.variants.len(),
            variants_error,
        })
    }

    /// Decides what the job does about variants, before the source is read whole: an image the
    /// configuration makes variants of reserves its render's estimated memory (and its source's
    /// size) in the images' budget, waiting while it is taken. One that needs more than the
    /// whole budget gets none ([`TOO_LARGE_FOR_MEMORY`]); its original is replicated as always.
    async fn admit(
        &self,
        key: &str,
        source: &mut SourceObject,
        identified: Identified,
    ) -> Result<Admission, ReplicateError> {
        let config = &self.settings.variants;
        let covered = || {
            config
                .profiles
                .iter()
                .any(|profile| profile.covers_key(key))
        };
        let format = match identified {
            Identified::Decodable(format) => format,
            Identified::UnsupportedImage(format) => {
                return Ok(Admission::NoVariants(
                    covered().then(|| unsupported(format)),
                ));
            }
            Identified::NotAnImage => return Ok(Admission::NoVariants(None)),
        };
        let profiles: Vec<Profile> = config
            .profiles_for(key, format.content_type())
            .cloned()
            .collect();
        if profiles.is_empty() {
            return Ok(Admission::NoVariants(None));
        }
        let limits = &self.settings.image_limits;
        if source.size > limits.max_bytes {
            let error = TransformError::TooLarge {
                bytes: source.size,
                max: limits.max_bytes,
            };
            return Ok(Admission::NoVariants(Some(transform_failure(&error))));
        }
        let head = source.peek(HEADER_BYTES).await?;
        let complete = head.len() as u64 >= source.size;
        let estimate = {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            estimate_memory(&head, complete, &profiles, limits)
        };
        let (reservation, sized) = match estimate {
            MemoryEstimate::Bytes(render) => {
                let needed = render + source.size;
                if needed > self.images.available_bytes() {
                    tracing::info!(
                        needed_mib = needed / (1024 * 1024),
                        available_mib = self.images.available_bytes() / (1024 * 1024),
                        "waiting for memory to make variants"
                    );
                }
                match self.images.reserve(needed).await {
                    Ok(reservation) => (reservation, true),
                    Err(over) => {
                        return Ok(Admission::NoVariants(Some(too_large_for_memory(over))));
                    }
                }
            }
            MemoryEstimate::NeedMoreBytes => (self.images.reserve_all().await, false),
        };
        Ok(Admission::Render {
            profiles,
            reservation,
            sized,
        })
    }

    /// Makes and writes the variants `admission` calls for. Returns each one written, or why
    /// none could be made: a bad image is a fact to record, not a failure
    /// of the job. A failed upload is a failure (transient).
    async fn write_variants(
        &self,
        facts: &SourceFacts,
        source: &SourceObject,
        content: &Bytes,
        checksums: &Checksums,
        admission: Admission,
    ) -> Result<(Vec<MadeVariant>, Option<VariantsError>), ReplicateError> {
        let (profiles, mut reservation, sized) = match admission {
            Admission::NoVariants(error) => return Ok((Vec::new(), error)),
            Admission::Render {
                profiles,
                reservation,
                sized,
            } => (profiles, reservation, sized),
        };
        let limits = self.settings.image_limits;
        if !sized {
            let render = {
                let profiles: Vec<&Profile> = profiles.iter().collect();
                estimate_memory(content, true, &profiles, &limits)
            };
            let MemoryEstimate::Bytes(render) = render else {
                unreachable!("the whole source always gives an estimate")
            };
            if let Err(over) = reservation.keep(render + source.size) {
                return Ok((Vec::new(), Some(too_large_for_memory(over))));
            }
        }
        let image = content.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            render(&image, &profiles, &limits)
        })
        .await;
        // What the render allocated is freed; the source (part of the reservation) is held by
        // the caller until the original is written, a smaller share not worth splitting off.
        drop(reservation);
        let config = &self.settings.variants;
        let rendered = match rendered {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(error)) => {
                tracing::warn!(kind = error.kind(), %error, "no variants: the image cannot be transformed");
                return Ok((Vec::new(), Some(transform_failure(&error))));
            }
            Err(join) => {
                tracing::error!(error = %join, "the transform did not finish");
                return Ok((
                    Vec::new(),
                    Some(VariantsError::new("panicked", join.to_string())),
                ));
            }
        };
        let mut named = Vec::with_capacity(rendered.variants.len());
        for variant in rendered.variants {
            let name = config.key_template.render(
                &variant.profile,
                &facts.key,
                variant.format.extension(),
            );
            // A long key plus the template's prefix can outgrow GCS's name limit: that costs
            // the variants (all of them, none is written), never the original.
            if let Err(reason) = gcs_object_name(&name) {
                return Ok((
                    Vec::new(),
                    Some(VariantsError::new(
                        VARIANT_NAME_ERROR,
                        format!("variant {name:?}: {reason}"),
                    )),
                ));
            }
            named.push((name, variant));
        }
        let mut made = Vec::with_capacity(named.len());
        for (name, variant) in named {
            let record = VariantRecord {
                source_bucket: facts.bucket.clone(),
                source_key: facts.key.clone(),
                source_etag: facts.etag.clone(),
                source_sha256: checksums.sha256_hex(),
                profile: variant.profile.clone(),
                width: variant.width,
                height: variant.height,
            };
            let spec = UploadSpec {
                bucket: self.settings.replica_bucket.clone(),
                name,
                content_type: Some(variant.format.content_type().to_owned()),
                cache_control: source.cache_control.clone(),
                metadata: record
                    .to_metadata()
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect(),
                ..UploadSpec::default()
            };
            self.gcs
                .upload_bytes(spec, Bytes::from(variant.bytes))
                .await?;
            made.push(MadeVariant::new(
                variant.profile,
                variant.format.extension(),
            ));
        }
        Ok((made, None))
    }

    /// Large objects: stream through a resumable upload, hashing on the way. The digests are
    /// known only at the end, so they are added to the replica's record right after the upload
    /// is finalised (see [`ReplicaRecord`] on complete and incomplete records), in the one
    /// metadata update that also puts right a content type the server did not store.
    async fn write_streamed(
        &self,
        target: Target<'_>,
        source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        streamed: Streamed,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let Streamed {
            variants_error,
            image_format,
        } = streamed;
        let record = ReplicaRecord {
            source: facts.clone(),
            sha256: None,
            crc32c: None,
            replicated_at: Utc::now(),
            variants: Vec::new(),
            variants_error: variants_error.clone(),
            image_format,
        };
        let mut spec = upload_spec(bucket, target, &source, &record);
        // Checksums the source vouches for are given to GCS up front, so it checks the upload
        // end to end against S3's own record of the content.
        spec.known_crc32c = expected.crc32c;
        spec.known_md5 = expected.md5;
        let content_type = spec.content_type.clone();
        let (stream, report) = VerifiedStream::new(source, expected);
        let uploaded = self.gcs.upload(spec, stream).await;
        let (checksums, failure) = take_report(&report);
        if let Some(failure) = failure {
            return Err(stream_failed(failure, facts));
        }
        let stored = uploaded.map_err(|error| lost_race(error, false))?;
        let checksums = checksums.ok_or_else(|| ReplicateError::Integrity {
            bucket: facts.bucket.clone(),
            key: facts.key.clone(),
            reason: IntegrityError::TooShort {
                expected: facts.size,
                received: 0,
            },
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
        };
        self.gcs
            .update(bucket, target.name, stored.generation, completion)
            .await
            .map_err(|error| lost_race(error, false))?;
        Ok(Outcome::Replicated {
            bytes: stored.size,
            checksums,
            generation: stored.generation,
            streamed: true,
            variants: 0,
            variants_error,
        })
    }

    /// Large objects, the fast way: read once, verified and hashed on the way, in parts that
    /// upload several at once and are composed into the replica when the content is proven.
    /// The compose names the complete record, so no replica is ever without one, and no
    /// metadata update follows.
    ///
    /// The parts are keyed by the version being read (its version id, ETag and size), so an
    /// attempt cut short (cancelled, or failed transiently: its parts are kept) is resumed by
    /// the next attempt at the same version: the source is read whole again, for its digests,
    /// but a part GCS already holds with the same bytes is not uploaded again. A permanent
    /// failure removes the parts.
    async fn write_composed(
        &self,
        target: Target<'_>,
        mut source: SourceObject,
        facts: SourceFacts,
        expected: ExpectedContent,
        streamed: Streamed,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let location = format!("s3://{}/{}", facts.bucket, facts.key);
        let identity = SourceIdentity {
            location: &location,
            version_id: source.version_id.as_deref(),
            etag: &source.etag,
            size: source.size,
        };
        let mut upload = self
            .gcs
            .composite_upload(bucket, target.name, &identity)
            .await?;
        let checksums = match send_parts(&mut source, expected, &mut upload).await {
            Ok(checksums) => checksums,
            Err(failure) => {
                let error = match failure {
                    PartsFailure::Stream(failure) => stream_failed(failure, facts),
                    PartsFailure::Upload(error) => error.into(),
                };
                // Parts read from a stream that failed its checks are kept as well: the next
                // attempt compares each with the bytes it reads and replaces any that differ.
                upload.abort(error.kind()).await;
                return Err(error);
            }
        };
        let Streamed {
            variants_error,
            image_format,
        } = streamed;
        let record = ReplicaRecord {
            source: facts,
            sha256: Some(checksums.sha256_hex()),
            crc32c: Some(checksums.crc32c),
            replicated_at: Utc::now(),
            variants: Vec::new(),
            variants_error: variants_error.clone(),
            image_format,
        };
        let spec = upload_spec(bucket, target, &source, &record);
        let stored = upload
            .finish(spec, checksums.crc32c)
            .await
            .map_err(|error| lost_race(error, false))?;
        Ok(Outcome::Replicated {
            bytes: stored.size,
            checksums,
            generation: stored.generation,
            streamed: true,
            variants: 0,
            variants_error,
        })
    }

    /// Removes the replica and its variants, unless the key exists in S3 again or the replica
    /// was made from a later change than the delete. The replica is looked at before S3 is,
    /// and removed only if it is still the generation looked at, so a create that races the
    /// delete keeps its replica.
    async fn delete(&self, job: &DeleteJob) -> Result<Outcome, ReplicateError> {
        if !self.settings.mirror_deletes {
            return Ok(Outcome::DeleteNotMirrored);
        }
        let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
        let mut variants_deleted = false;
        let mut lost = 0;
        loop {
            match self.delete_once(job, name, &mut variants_deleted).await {
                Err(ReplicateError::LostRace { conflict, .. }) if lost + 1 < MAX_LOST_RACES => {
                    lost += 1;
                    tracing::info!(key = %job.key, lost, %conflict, "the replica changed while it was being deleted; looking again");
                }
                Ok(Outcome::SourceRecreated) if variants_deleted => {
                    // The variants went before the key was found re-created: they may have
                    // been the new replica's, so they are made again from the source.
                    let repair = ReplicateJob {
                        bucket: job.bucket.clone(),
                        key: job.key.clone(),
                        version_id: None,
                        etag: None,
                        size: None,
                        sequencer: None,
                        event_time: job.event_time,
                        force: true,
                    };
                    let existing = self.gcs.object(&self.settings.replica_bucket, name).await?;
                    Box::pin(self.replicate(&repair, existing)).await?;
                    return Ok(Outcome::SourceRecreated);
                }
                done => return done,
            }
        }
    }

    async fn delete_once(
        &self,
        job: &DeleteJob,
        name: &str,
        variants_deleted: &mut bool,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let existing = self.gcs.object(bucket, name).await?;
        let record = existing.as_ref().and_then(read_record);
        if record
            .as_ref()
            .is_some_and(|record| record.is_later_than(job.sequencer.as_deref()))
        {
            return Ok(Outcome::SourceRecreated);
        }
        if self.s3.exists(&job.bucket, &job.key).await? {
            return Ok(Outcome::SourceRecreated);
        }
        let Some(existing) = existing else {
            return Ok(Outcome::AlreadyAbsent);
        };
        // The record lists the variants; they go first, so that a failure part-way leaves the
        // record that names what is still to delete.
        for variant in record.iter().flat_map(|record| &record.variants) {
            let variant_name = self.settings.variants.key_template.render(
                &variant.profile,
                &job.key,
                &variant.extension,
            );
            *variants_deleted |= self.gcs.delete(bucket, &variant_name, None).await?;
        }
        match self
            .gcs
            .delete(bucket, name, Some(existing.generation))
            .await
        {
            Ok(true) => Ok(Outcome::Deleted),
            Ok(false) => Ok(Outcome::AlreadyAbsent),
            Err(error) => Err(lost_race(error, *variants_deleted)),
        }
    }
}

/// The GCS name of `key`'s replica: the key itself, if GCS can hold it and it is not a name
/// yuba writes other objects under (variants, the parts of composite uploads). Replicating,
/// deleting and the reconciler all go through it, so such a key never touches another's
/// object and is reported rather than retried.
pub fn replica_name<'a>(
    bucket: &str,
    key: &'a str,
    variants: &VariantConfig,
) -> Result<&'a str, ReplicateError> {
    let name = gcs_object_name(key).map_err(|reason| ReplicateError::Name {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        reason,
    })?;
    let reserved = |prefix: String, holds, remedy| ReplicateError::Reserved {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        prefix,
        holds,
        remedy,
    };
    if key.starts_with(PARTS_PREFIX) {
        return Err(reserved(
            PARTS_PREFIX.to_owned(),
            "the temporary parts of composite uploads",
            "leave the prefix out with YUBA_FILTER_PREFIXES",
        ));
    }
    if let Some(prefix) = variants.reserved_prefix_of(key) {
        return Err(reserved(
            prefix,
            "image variants",
            "give the variants a key_template (YUBA_VARIANTS) whose prefix no source key uses",
        ));
    }
    Ok(name)
}

/// Where a job writes: the replica's name and the generation it saw there (0: none), which
/// its write must still find.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    name: &'a str,
    if_generation_match: i64,
}

/// A failed generation precondition is a lost race, for the job to look again; any other
/// error is the replica's.
fn lost_race(error: GcsError, variants_touched: bool) -> ReplicateError {
    if error.is_conflict() {
        ReplicateError::LostRace {
            conflict: error,
            variants_touched,
        }
    } else {
        ReplicateError::Replica(error)
    }
}

fn stream_failed(failure: StreamFailure, facts: SourceFacts) -> ReplicateError {
    match failure {
        StreamFailure::Source(error) => error.into(),
        StreamFailure::Integrity(reason) => ReplicateError::Integrity {
            bucket: facts.bucket,
            key: facts.key,
            reason,
        },
    }
}

/// Why the parts of a composite upload stopped before the content was complete.
enum PartsFailure {
    Stream(StreamFailure),
    Upload(GcsError),
}

/// Reads the source to its end through the verifier, cutting it into parts of the upload's
/// size and pushing each as it fills (the last one once the content is proven). Holds one
/// part besides those uploading.
async fn send_parts(
    source: &mut SourceObject,
    expected: ExpectedContent,
    upload: &mut CompositeUpload,
) -> Result<Checksums, PartsFailure> {
    let part_bytes = upload.part_bytes();
    let mut verifier = ContentVerifier::new(expected);
    let mut part = BytesMut::with_capacity(part_bytes);
    while let Some(chunk) = source.next_chunk().await {
        let mut chunk =
            chunk.map_err(|error| PartsFailure::Stream(StreamFailure::Source(error)))?;
        verifier
            .feed(&chunk)
            .map_err(|error| PartsFailure::Stream(StreamFailure::Integrity(error)))?;
        while !chunk.is_empty() {
            let take = chunk.len().min(part_bytes - part.len());
            part.extend_from_slice(&chunk.split_to(take));
            if part.len() == part_bytes {
                // The next part's buffer only once this one is on its way: while `push` waits
                // for a free slot, one full part is held, not two.
                upload
                    .push(std::mem::take(&mut part).freeze())
                    .await
                    .map_err(PartsFailure::Upload)?;
                part.reserve(part_bytes);
            }
        }
    }
    let checksums = verifier
        .finish()
        .map_err(|error| PartsFailure::Stream(StreamFailure::Integrity(error)))?;
    if !part.is_empty() {
        upload
            .push(part.freeze())
            .await
            .map_err(PartsFailure::Upload)?;
    }
    Ok(checksums)
}

/// What a streamed replica records about its content's format and variants.
struct Streamed {
    variants_error: Option<VariantsError>,
    image_format: Option<String>,
}

/// The `yuba-image-format` of a source: set for the images yuba decodes.
fn image_format(identified: Identified) -> Option<String> {
    match identified {
        Identified::Decodable(format) => Some(format.content_type().to_owned()),
        Identified::UnsupportedImage(_) | Identified::NotAnImage => None,
    }
}

/// The recorded reason for a transform's refusal.
fn transform_failure(error: &TransformError) -> VariantsError {
    VariantsError::new(error.kind(), error.to_string())
}

/// The recorded reason for an image whose render needs more than the images' whole budget.
fn too_large_for_memory(over: OverBudget) -> VariantsError {
    const MIB: u64 = 1024 * 1024;
    VariantsError::new(
        TOO_LARGE_FOR_MEMORY,
        format!(
            "making its variants needs about {} MiB with the source, more than the {} MiB this \
             process has for images; give it more memory (README \"Memory\")",
            over.needed.div_ceil(MIB),
            over.budget / MIB
        ),
    )
}

/// The recorded reason for an image in a format the transform does not decode, of the same
/// kind as the transform's own refusal of one.
fn unsupported(format: &str) -> VariantsError {
    VariantsError::new(
        "unsupported",
        format!("{format} images are replicated without variants"),
    )
}

/// A replica's record, if it has a readable one. An unreadable record is treated as none, so the
/// replica is rewritten with a good one.
fn read_record(replica: &ObjectInfo) -> Option<ReplicaRecord> {
    ReplicaRecord::from_metadata(&replica.metadata)
        .inspect_err(|error| {
            tracing::warn!(object = %replica.name, %error, "replica has an unreadable record; rewriting it");
        })
        .ok()
        .flatten()
}

fn take_report(report: &Arc<Mutex<StreamReport>>) -> (Option<Checksums>, Option<StreamFailure>) {
    let mut report = report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (report.checksums.take(), report.failure.take())
}

/// The replica's attributes: the source's HTTP headers, its user metadata (less yuba's reserved
/// keys) and the record.
fn upload_spec(
    bucket: &str,
    target: Target<'_>,
    source: &SourceObject,
    record: &ReplicaRecord,
) -> UploadSpec {
    let mut metadata: Vec<(String, String)> = user_metadata(&source.user_metadata);
    metadata.extend(
        record
            .to_metadata()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    UploadSpec {
        bucket: bucket.to_owned(),
        name: target.name.to_owned(),
        content_type: source.content_type.clone(),
        cache_control: source.cache_control.clone(),
        content_disposition: source.content_disposition.clone(),
        content_encoding: source.content_encoding.clone(),
        content_language: source.content_language.clone(),
        metadata,
        known_crc32c: None,
        known_md5: None,
        if_generation_match: Some(target.if_generation_match),
    }
}

fn user_metadata(source: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = source
        .iter()
        .filter(|(key, _)| {
            let reserved = key
                .to_ascii_lowercase()
                .starts_with(RESERVED_METADATA_PREFIX);
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

#[cfg(test)]
mod tests {
    use super::*;

    const FOOTPRINT: Footprint = Footprint {
        upload_chunk_bytes: 256 * 1024,
        parallel_uploads: 1,
        concurrency: 1,
    };

    /// One outcome of each variant (the match is exhaustive, so a new variant must be added
    /// here before this compiles) against the hand-written list.
    #[test]
    fn names_are_exactly_what_as_str_gives() {
        let every = |outcome: &Outcome| match outcome {
            Outcome::Replicated { .. }
            | Outcome::AlreadyReplicated { .. }
            | Outcome::Superseded { .. }
            | Outcome::SourceGone
            | Outcome::Deleted
            | Outcome::AlreadyAbsent
            | Outcome::DeleteNotMirrored
            | Outcome::SourceRecreated => outcome.as_str(),
        };
        let outcomes = [
            Outcome::Replicated {
                bytes: 0,
                checksums: Checksums {
                    sha256: [0; 32],
                    crc32c: 0,
                    md5: [0; 16],
                },
                generation: 1,
                streamed: false,
                variants: 0,
                variants_error: None,
            },
            Outcome::AlreadyReplicated { generation: 1 },
            Outcome::Superseded { generation: 1 },
            Outcome::SourceGone,
            Outcome::Deleted,
            Outcome::AlreadyAbsent,
            Outcome::DeleteNotMirrored,
            Outcome::SourceRecreated,
        ];
        let names: Vec<&str> = outcomes.iter().map(every).collect();
        assert_eq!(names, Outcome::NAMES);
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

    #[test]
    fn settings_come_from_the_environment() {
        let env = Env::from_pairs([
            ("YUBA_GCS_BUCKET", "replica"),
            ("YUBA_MIRROR_DELETES", "false"),
        ]);
        let settings = ReplicatorSettings::from_env(&env, &FOOTPRINT).unwrap();
        assert_eq!(settings.replica_bucket, "replica");
        assert!(!settings.mirror_deletes);
        let missing = ReplicatorSettings::from_env(&Env::default(), &FOOTPRINT).unwrap_err();
        assert!(missing.to_string().contains("YUBA_GCS_BUCKET"));
    }

    #[test]
    fn variant_settings_are_checked_at_start_up() {
        let with = |name, value| {
            ReplicatorSettings::from_env(
                &Env::from_pairs([("YUBA_GCS_BUCKET", "replica"), (name, value)]),
                &FOOTPRINT,
            )
        };
        let settings = with("YUBA_MAX_SOURCE_PIXELS", "1000").unwrap();
        assert_eq!(settings.image_limits.max_pixels, 1000);
        assert!(
            settings.variants.profiles.is_empty(),
            "no document, no variants"
        );
        let zero = with("YUBA_MAX_SOURCE_BYTES", "0").unwrap_err().to_string();
        assert!(zero.starts_with("YUBA_MAX_SOURCE_BYTES=\"0\""), "{zero}");
        let bad = with(
            "YUBA_VARIANTS",
            r#"{"profiles": [{"name": "t", "width": 0}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.starts_with("profiles[0].width"), "{bad}");
    }
}
