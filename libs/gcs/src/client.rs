use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_gax::retry_throttler::CircuitBreaker;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model::Object;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{Payload, StreamingSource};
use yuba_model::ErrorChain;
use yuba_retry::{RetryBudget, RetryPolicy};
use yuba_startup::{ConfigError, Env};

use crate::composite::{CompositeUpload, MAX_PARTS, SourceIdentity};
use crate::credentials::GcsCredentials;
use crate::error::{Carried, GcsError};
use crate::json_api::JsonApi;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// GCS wants resumable-upload chunks in multiples of 256 KiB.
const UPLOAD_QUANTUM: u64 = 256 * 1024;
/// The pause after a first failed request, doubled after each further one up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Large enough that the compose requests and deletes a composite upload adds are few next to
/// its bytes; small enough that objects a single stream uploads quickly are not cut up.
const DEFAULT_COMPOSE_THRESHOLD: u64 = 32 * 1024 * 1024;

/// How to reach GCS, read from the environment by [`GcsSettings::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcsSettings {
    /// `None`: Google's production endpoint. An `http://` endpoint is an emulator and is used
    /// without credentials.
    pub endpoint: Option<String>,
    /// Anonymous for an emulator, else a workload identity federation configuration
    /// (`YUBA_GCS_CREDENTIALS`, or the file `GOOGLE_APPLICATION_CREDENTIALS` names), else
    /// Application Default Credentials; see [`GcsCredentials`].
    pub credentials: GcsCredentials,
    /// Bytes buffered per resumable-upload chunk, and the size up to which an object is sent in
    /// one request instead: what bounds an upload's memory.
    pub upload_chunk_bytes: usize,
    /// Parts of one composite upload sent at once: such an upload holds this many chunks, plus
    /// the one being read.
    pub parallel_uploads: usize,
    /// Streamed objects at least this large are uploaded as parts composed into the object
    /// ([`CompositeUpload`]) rather than in one resumable upload; `None`: never.
    pub compose_threshold_bytes: Option<u64>,
    pub request_attempts: u32,
    pub request_time_limit: Duration,
}

impl GcsSettings {
    pub fn from_env(env: &Env) -> Result<GcsSettings, ConfigError> {
        let endpoint = env.optional("YUBA_GCS_ENDPOINT");
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(env.invalid(
                "YUBA_GCS_ENDPOINT",
                "expected an http:// (emulator) or https:// URL",
            ));
        }
        let chunk = env.number_in(
            "YUBA_UPLOAD_CHUNK_BYTES",
            8 * 1024 * 1024,
            UPLOAD_QUANTUM..=256 * 1024 * 1024,
        )?;
        if chunk % UPLOAD_QUANTUM != 0 {
            return Err(env.invalid(
                "YUBA_UPLOAD_CHUNK_BYTES",
                "must be a multiple of 262144 (256 KiB), as GCS requires of resumable chunks",
            ));
        }
        // 0 switches composite uploads off; any other threshold below the chunk size would
        // only mean "every streamed object", so it is refused as a likely mistake.
        let compose_threshold = env.parsed(
            "YUBA_GCS_COMPOSE_THRESHOLD_BYTES",
            DEFAULT_COMPOSE_THRESHOLD.max(chunk),
        )?;
        if compose_threshold != 0 && compose_threshold < chunk {
            return Err(env.invalid(
                "YUBA_GCS_COMPOSE_THRESHOLD_BYTES",
                format!("must be 0 (off) or at least YUBA_UPLOAD_CHUNK_BYTES ({chunk})"),
            ));
        }
        let emulator = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        Ok(GcsSettings {
            credentials: GcsCredentials::from_env(env, emulator)?,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            upload_chunk_bytes: usize::try_from(chunk)
                .map_err(|_| env.invalid("YUBA_UPLOAD_CHUNK_BYTES", "too large"))?,
            parallel_uploads: usize::try_from(env.number_in(
                "YUBA_GCS_PARALLEL_UPLOADS",
                4,
                1..=32,
            )?)
            .unwrap_or(4),
            compose_threshold_bytes: Some(compose_threshold).filter(|&t| t != 0),
            request_attempts: u32::try_from(env.number_in(
                "YUBA_GCS_RETRY_ATTEMPTS",
                6,
                1..=100,
            )?)
            .unwrap_or(6),
            request_time_limit: env.seconds_in(
                "YUBA_GCS_RETRY_SECONDS",
                Duration::from_secs(60),
                0.1..=3600.0,
            )?,
        })
    }

    /// Whether a streamed object of `size` bytes goes up as a [`CompositeUpload`]: at least the
    /// threshold, and few enough chunks for one composite object (GCS allows 1,024
    /// components; a larger object streams in one resumable upload instead).
    pub fn composes(&self, size: u64) -> bool {
        self.compose_threshold_bytes
            .is_some_and(|threshold| size >= threshold)
            && size.div_ceil(self.upload_chunk_bytes as u64) <= MAX_PARTS
    }
}

/// What GCS says about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub generation: i64,
    pub metageneration: i64,
    pub size: u64,
    pub crc32c: Option<u32>,
    pub md5: Option<[u8; 16]>,
    pub content_type: Option<String>,
    /// The `Cache-Control` the object is served with. A listing does not ask for it (`None`);
    /// a read of one object's metadata does.
    pub cache_control: Option<String>,
    pub metadata: HashMap<String, String>,
    /// When this generation was created (GCS's `timeCreated`): when it became visible.
    pub created: Option<DateTime<Utc>>,
}

impl From<Object> for ObjectInfo {
    fn from(object: Object) -> Self {
        let checksums = object.checksums.unwrap_or_default();
        ObjectInfo {
            name: object.name,
            generation: object.generation,
            metageneration: object.metageneration,
            size: u64::try_from(object.size).unwrap_or_default(),
            crc32c: checksums.crc32c,
            md5: checksums.md5_hash.as_ref().try_into().ok(),
            content_type: Some(object.content_type).filter(|t| !t.is_empty()),
            cache_control: Some(object.cache_control).filter(|c| !c.is_empty()),
            metadata: object.metadata.into_iter().collect(),
            created: object.create_time.and_then(|t| {
                DateTime::from_timestamp(t.seconds(), u32::try_from(t.nanos()).unwrap_or(0))
            }),
        }
    }
}

/// One page of a listing request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Group the names that continue past the prefix up to this string into
    /// [`ListPage::prefixes`] instead of listing them: one level of a hierarchy.
    pub delimiter: Option<&'a str>,
    /// List names from this one on (inclusive), to resume a listing without its token.
    pub start_offset: Option<&'a str>,
    /// List names before this one (exclusive): with `start_offset`, one key range of a bucket
    /// (`endOffset`, https://cloud.google.com/storage/docs/json_api/v1/objects/list).
    pub end_offset: Option<&'a str>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<&'a str>,
    /// At most 1,000 (GCS's own cap).
    pub page_size: u32,
}

/// Objects in name order (UTF-8 byte order, as S3 lists keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    /// With a delimiter: the distinct name prefixes up to and including it, sorted.
    pub prefixes: Vec<String>,
    /// `None`: this was the last page.
    pub next_page_token: Option<String>,
}

/// An object's content being read, chunk by chunk.
#[derive(Debug)]
pub struct ObjectReader {
    response: google_cloud_storage::read_object::ReadObjectResponse,
    context: String,
}

impl ObjectReader {
    /// The next piece of the content; `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<Result<bytes::Bytes, GcsError>> {
        let chunk = self.response.next().await?;
        Some(
            chunk.map_err(|error| {
                GcsError::from_storage(&self.context, Carried::NoChecksums, error)
            }),
        )
    }
}

/// Attributes to change on a stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectUpdate {
    /// Set when `Some` (and [`ObjectUpdate::headers`] is `None`).
    pub content_type: Option<String>,
    /// Every HTTP header the object is served with, replaced: one that is `None` is cleared.
    /// `None`: the headers are left as they are.
    pub headers: Option<ObjectHeaders>,
    /// Custom-metadata entries to add or replace; the others are kept...
    pub metadata: Vec<(String, String)>,
    /// ...but for these keys, removed.
    pub removed_metadata: Vec<String>,
}

/// The HTTP headers an object is served with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
}

impl ObjectHeaders {
    /// Each header by its JSON API field name.
    pub fn fields(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("contentType", &self.content_type),
            ("cacheControl", &self.cache_control),
            ("contentDisposition", &self.content_disposition),
            ("contentEncoding", &self.content_encoding),
            ("contentLanguage", &self.content_language),
        ]
    }
}

/// A new object's name and the attributes it is created with.
#[derive(Debug, Clone, Default)]
pub struct UploadSpec {
    pub bucket: String,
    pub name: String,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Checksums known before the upload starts: GCS refuses to create the object if the bytes
    /// it receives do not match them.
    pub known_crc32c: Option<u32>,
    pub known_md5: Option<[u8; 16]>,
    /// Write only if this generation is the live one (`Some(0)`: only if there is no object of
    /// that name), so that two writers of one name cannot both win: the one that finds the
    /// object changed since it looked gets a conflict ([`GcsError::is_conflict`]).
    pub if_generation_match: Option<i64>,
}

impl UploadSpec {
    /// Whether the upload carries our checksums, which decides what a 400 in answer means.
    pub(crate) fn carried(&self) -> Carried {
        if self.known_crc32c.is_some() || self.known_md5.is_some() {
            Carried::OurChecksums
        } else {
            Carried::NoChecksums
        }
    }
}

/// The object GCS stored when the client found its checksums differ from what was sent.
fn mismatched_upload(error: &google_cloud_storage::Error) -> Option<&Object> {
    use google_cloud_storage::error::WriteError;
    let source = std::error::Error::source(error)?;
    match source.downcast_ref::<WriteError>()? {
        WriteError::ChecksumMismatch { object, .. } => Some(object),
        _ => None,
    }
}

/// A GCS connection: uploads (checked, retried, composed) and reads through the official client
/// or the JSON API; the objects' metadata through [`objects`](Gcs::objects).
#[derive(Debug, Clone)]
pub struct Gcs {
    storage: Storage,
    json: JsonApi,
    /// For the retry limits of the requests made here (the official client's own) and the
    /// upload sizes.
    settings: GcsSettings,
    /// Shared by every clone, so that when GCS fails, this process as a whole stops retrying
    /// rather than each request spending its own attempts.
    budget: RetryBudget,
}

impl Gcs {
    pub async fn connect(settings: &GcsSettings) -> Result<Gcs, GcsError> {
        let credentials = settings.credentials.build().await?;
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let retry = RetryableErrors
            .with_attempt_limit(settings.request_attempts)
            .with_time_limit(settings.request_time_limit);
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(FIRST_BACKOFF)
            .with_maximum_delay(MAX_BACKOFF)
            .build()
            .map_err(|error| GcsError::permanent("bad backoff policy").caused_by(error))?;
        let chunk = settings.upload_chunk_bytes;
        let storage = Storage::builder()
            .with_endpoint(endpoint.clone())
            .with_credentials(credentials.clone())
            .with_retry_policy(retry)
            .with_backoff_policy(backoff)
            // The official client's own retry budget for the streams it uploads and reads (gRPC's
            // throttling, as in `yuba_retry`: each failed retry costs 10 tokens, each success
            // returns one, and no retries below 250 of 1,000).
            .with_retry_throttler(CircuitBreaker::clamp(1000, 250, 10))
            .with_resumable_upload_threshold(chunk)
            .with_resumable_upload_buffer_size(chunk)
            .build()
            .await
            .map_err(|error| {
                GcsError::permanent("could not build the GCS client").caused_by(error)
            })?;
        let json = JsonApi::new(endpoint, credentials, settings.request_time_limit)?;
        Ok(Gcs {
            storage,
            json,
            settings: settings.clone(),
            budget: RetryBudget::default(),
        })
    }

    /// The official client, for what this adapter does not wrap.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Objects' metadata: read, update, list, delete.
    pub fn objects(&self) -> &JsonApi {
        &self.json
    }

    /// What this connection was made with: its upload sizes (whether an object is composed,
    /// [`GcsSettings::composes`]) and retry limits.
    pub fn settings(&self) -> &GcsSettings {
        &self.settings
    }

    /// Creates or replaces `spec.name` with `content`, held in memory, in one request that
    /// carries the attributes and the checksums (the crc32c is computed here unless known), so
    /// GCS validates the bytes before it creates the object. Transient failures are retried
    /// within the settings' attempts and time limit: the same bytes sent again to the same
    /// name make the same object.
    pub async fn upload_bytes(
        &self,
        mut spec: UploadSpec,
        content: Bytes,
    ) -> Result<ObjectInfo, GcsError> {
        spec.known_crc32c
            .get_or_insert_with(|| crc32c::crc32c(&content));
        let what = format!("uploading gs://{}/{}", spec.bucket, spec.name);
        self.retrying(&what, || self.insert_checked(&spec, content.clone()))
            .await
    }

    /// Runs `request` until it succeeds, fails permanently, or the settings' attempts or time
    /// limit or the process's retry budget are spent, with backoff in between. For requests
    /// that make the same object however often they are sent.
    pub(crate) async fn retrying<T, F, R>(&self, what: &str, request: F) -> Result<T, GcsError>
    where
        F: FnMut() -> R,
        R: Future<Output = Result<T, GcsError>>,
    {
        let policy = RetryPolicy {
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_attempts: self.settings.request_attempts,
            time_limit: self.settings.request_time_limit,
        };
        yuba_retry::run(&policy, &self.budget, what, request).await
    }

    /// One upload attempt, and the check that the object stored is the one sent.
    async fn insert_checked(
        &self,
        spec: &UploadSpec,
        content: Bytes,
    ) -> Result<ObjectInfo, GcsError> {
        let stored = self.json.insert(spec, content).await?;
        let crc32c_differs = spec
            .known_crc32c
            .is_some_and(|known| stored.crc32c.is_some_and(|crc32c| crc32c != known));
        let md5_differs = spec
            .known_md5
            .is_some_and(|known| stored.md5.is_some_and(|md5| md5 != known));
        if !(crc32c_differs || md5_differs) {
            return Ok(stored);
        }
        let error = GcsError::transient(format!(
            "uploading gs://{}/{}: GCS stored generation {} with other checksums than the \
             bytes sent",
            spec.bucket, spec.name, stored.generation
        ));
        Err(self
            .discard_corrupted(&spec.bucket, &spec.name, stored.generation, error)
            .await)
    }

    /// Makes `destination` from `sources` (at most 32, in order), retried like an upload: the
    /// same sources make the same object.
    pub(crate) async fn compose(
        &self,
        destination: &UploadSpec,
        sources: &[(String, i64)],
    ) -> Result<ObjectInfo, GcsError> {
        let what = format!("composing gs://{}/{}", destination.bucket, destination.name);
        self.retrying(&what, || self.json.compose(destination, sources))
            .await
    }

    /// Starts uploading `source`'s content to `bucket/name` in parts of
    /// [`CompositeUpload::part_bytes`], to be composed into it at the end. The parts go under
    /// a prefix of their own that every attempt at the same content (same destination, source
    /// identity and part size) shares, so this lists what an earlier attempt left there, to be
    /// reused where it holds the same bytes.
    pub async fn composite_upload(
        &self,
        bucket: &str,
        name: &str,
        source: &SourceIdentity<'_>,
    ) -> Result<CompositeUpload, GcsError> {
        CompositeUpload::start(
            self.clone(),
            bucket,
            name,
            source,
            self.settings.upload_chunk_bytes,
            self.settings.parallel_uploads,
        )
        .await
    }

    /// GCS finalised generation `generation` with checksums that differ from the bytes sent (a
    /// service that did not validate them, or damage after validation). It must not stand as
    /// a replica: that generation, and only it, is removed, and `error` (transient) returned so
    /// the job is redone.
    pub(crate) async fn discard_corrupted(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        error: GcsError,
    ) -> GcsError {
        if let Err(cleanup) = self.json.delete(bucket, name, Some(generation)).await {
            tracing::error!(
                cleanup = %ErrorChain(&cleanup),
                "could not remove a corrupted upload"
            );
        }
        error
    }

    /// Creates or replaces `spec.name` with the bytes of a stream (content already in memory
    /// goes through [`upload_bytes`](Gcs::upload_bytes)). Objects smaller than the chunk size
    /// go in one request; larger ones in a resumable upload that buffers one chunk at a time.
    /// Either way the client computes the crc32c as the bytes go by and sends it with the last
    /// request, so GCS refuses to finalise a corrupted upload.
    ///
    /// GCS takes the content type from the object resource; servers that take it from the
    /// media request (fake-gcs-server) store `application/octet-stream`, which is what this
    /// client sends the media as. The answer's `content_type` says which: a caller that cares
    /// corrects it in the metadata update it makes anyway, rather than here in one of its own
    /// (a PATCH rewrites the whole object on such a server).
    pub async fn upload<T, S>(&self, spec: UploadSpec, payload: T) -> Result<ObjectInfo, GcsError>
    where
        T: Into<Payload<S>>,
        S: StreamingSource + Send + Sync + 'static,
    {
        let bucket = format!("projects/_/buckets/{}", spec.bucket);
        let carried = spec.carried();
        let mut request = self
            .storage
            .write_object(bucket, spec.name.clone(), payload)
            .set_metadata(spec.metadata);
        if let Some(v) = spec.content_type {
            request = request.set_content_type(v);
        }
        if let Some(v) = spec.cache_control {
            request = request.set_cache_control(v);
        }
        if let Some(v) = spec.content_disposition {
            request = request.set_content_disposition(v);
        }
        if let Some(v) = spec.content_encoding {
            request = request.set_content_encoding(v);
        }
        if let Some(v) = spec.content_language {
            request = request.set_content_language(v);
        }
        if let Some(crc32c) = spec.known_crc32c {
            request = request.with_known_crc32c(crc32c);
        }
        if let Some(md5) = spec.known_md5 {
            request = request.with_known_md5_hash(md5);
        }
        if let Some(generation) = spec.if_generation_match {
            request = request.set_if_generation_match(generation);
        }
        let context = format!("uploading gs://{}/{}", spec.bucket, spec.name);
        match request.send_buffered().await {
            Ok(object) => Ok(ObjectInfo::from(object)),
            Err(error) => {
                let corrupted = mismatched_upload(&error).map(|stored| stored.generation);
                let error = GcsError::from_storage(&context, carried, error);
                match corrupted {
                    Some(generation) => Err(self
                        .discard_corrupted(&spec.bucket, &spec.name, generation, error)
                        .await),
                    None => Err(error),
                }
            }
        }
    }

    /// Starts reading generation `generation` of an object (so a replacement midway cannot mix
    /// two contents). The client checks the bytes against the object's crc32c as they arrive.
    pub async fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
    ) -> Result<ObjectReader, GcsError> {
        self.read_part(bucket, name, generation, None).await
    }

    /// Starts reading generation `generation` of an object, whole (`None`, checked against its
    /// crc32c as the bytes arrive) or `count` bytes from `offset` (a part has no checksum of its
    /// own to check).
    pub async fn read_part(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        part: Option<(u64, u64)>,
    ) -> Result<ObjectReader, GcsError> {
        let context = format!("reading gs://{bucket}/{name}#{generation}");
        let mut request = self
            .storage
            .read_object(format!("projects/_/buckets/{bucket}"), name)
            .set_generation(generation);
        if let Some((offset, count)) = part {
            request = request.set_read_range(ReadRange::segment(offset, count));
        }
        let response = request
            .send()
            .await
            .map_err(|error| GcsError::from_storage(&context, Carried::NoChecksums, error))?;
        Ok(ObjectReader { response, context })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn settings(pairs: &[(&str, &str)]) -> Result<GcsSettings, ConfigError> {
        GcsSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn large_streams_are_composed_by_default() {
        let defaults = settings(&[]).unwrap();
        assert_eq!(defaults.parallel_uploads, 4);
        assert_eq!(defaults.compose_threshold_bytes, Some(32 * MIB));
        assert!(!defaults.composes(32 * MIB - 1));
        assert!(defaults.composes(32 * MIB));
        // 1,024 parts of 8 MiB is all one composite object can hold.
        assert!(defaults.composes(8 * 1024 * MIB));
        assert!(!defaults.composes(8 * 1024 * MIB + 1));
        // A chunk above the default threshold raises it: objects up to a chunk are not streamed.
        let large_chunks = settings(&[("YUBA_UPLOAD_CHUNK_BYTES", "67108864")]).unwrap();
        assert_eq!(large_chunks.compose_threshold_bytes, Some(64 * MIB));
    }

    #[test]
    fn composite_upload_settings_are_checked() {
        let off = settings(&[("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", "0")]).unwrap();
        assert_eq!(off.compose_threshold_bytes, None);
        assert!(!off.composes(u64::MAX));
        let problem = |pairs: &[(&str, &str)]| settings(pairs).unwrap_err().to_string();
        let below_chunk = problem(&[
            ("YUBA_UPLOAD_CHUNK_BYTES", "1048576"),
            ("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", "524288"),
        ]);
        assert!(
            below_chunk.starts_with("YUBA_GCS_COMPOSE_THRESHOLD_BYTES=\"524288\"")
                && below_chunk.contains("1048576"),
            "{below_chunk}"
        );
        for parallel in ["0", "33", "many"] {
            let error = problem(&[("YUBA_GCS_PARALLEL_UPLOADS", parallel)]);
            assert!(error.starts_with("YUBA_GCS_PARALLEL_UPLOADS="), "{error}");
        }
    }
}
