use std::collections::HashMap;
use std::time::Duration;

use google_cloud_auth::credentials::{self, Credentials};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model::Object;
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{Payload, StreamingSource};
use yuba_config::{ConfigError, Env};

use crate::error::GcsError;
use crate::json_api::JsonApi;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// GCS wants resumable-upload chunks in multiples of 256 KiB.
const UPLOAD_QUANTUM: u64 = 256 * 1024;

/// How to reach GCS, read from the environment by [`GcsSettings::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcsSettings {
    /// `None`: Google's production endpoint with Application Default Credentials (which include
    /// `external_account` workload-identity configurations). An `http://` endpoint is an
    /// emulator and is used without credentials.
    pub endpoint: Option<String>,
    /// Bytes buffered per resumable-upload chunk, and the size up to which an object is sent in
    /// one request instead: what bounds an upload's memory.
    pub upload_chunk_bytes: usize,
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
        Ok(GcsSettings {
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            upload_chunk_bytes: usize::try_from(chunk)
                .map_err(|_| env.invalid("YUBA_UPLOAD_CHUNK_BYTES", "too large"))?,
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

    fn is_emulator(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
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
    pub metadata: HashMap<String, String>,
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
            metadata: object.metadata.into_iter().collect(),
        }
    }
}

/// One page of a listing request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// List names from this one on (inclusive), to resume a listing without its token.
    pub start_offset: Option<&'a str>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<&'a str>,
    /// At most 1,000 (GCS's own cap).
    pub page_size: u32,
}

/// Objects in name order (UTF-8 byte order, as S3 lists keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
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
        Some(chunk.map_err(|error| GcsError::from_storage(&self.context, error)))
    }
}

/// Attributes to change on a stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectUpdate {
    pub content_type: Option<String>,
    /// Custom-metadata entries to add or replace; the others are kept.
    pub metadata: Vec<(String, String)>,
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

/// A GCS connection: the official client for uploads, the JSON API for the rest.
#[derive(Debug, Clone)]
pub struct Gcs {
    storage: Storage,
    json: JsonApi,
}

impl Gcs {
    pub async fn connect(settings: &GcsSettings) -> Result<Gcs, GcsError> {
        let credentials: Credentials = if settings.is_emulator() {
            credentials::anonymous::Builder::new().build()
        } else {
            credentials::Builder::default().build().map_err(|error| {
                GcsError::permanent(format!(
                    "no usable Google credentials: {error}; set GOOGLE_APPLICATION_CREDENTIALS to \
                     a credential configuration (for example the external_account file that \
                     terraform/ outputs), or set YUBA_GCS_ENDPOINT to an emulator"
                ))
            })?
        };
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let retry = RetryableErrors
            .with_attempt_limit(settings.request_attempts)
            .with_time_limit(settings.request_time_limit);
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(Duration::from_millis(100))
            .with_maximum_delay(Duration::from_secs(10))
            .build()
            .map_err(|error| GcsError::permanent(format!("bad backoff policy: {error}")))?;
        let chunk = settings.upload_chunk_bytes;
        let storage = Storage::builder()
            .with_endpoint(endpoint.clone())
            .with_credentials(credentials.clone())
            .with_retry_policy(retry)
            .with_backoff_policy(backoff)
            .with_resumable_upload_threshold(chunk)
            .with_resumable_upload_buffer_size(chunk)
            .build()
            .await
            .map_err(|error| {
                GcsError::permanent(format!("could not build the GCS client: {error}"))
            })?;
        let json = JsonApi::new(endpoint, credentials, settings.request_time_limit)?;
        Ok(Gcs { storage, json })
    }

    /// The official client, for what this adapter does not wrap.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Creates or replaces `spec.name` with the bytes of `payload`. Objects smaller than the
    /// chunk size go in one request; larger ones in a resumable upload that buffers one chunk
    /// at a time. Either way the client computes the crc32c as the bytes go by and sends it
    /// with the last request, so GCS refuses to finalise a corrupted upload.
    pub async fn upload<T, S>(&self, spec: UploadSpec, payload: T) -> Result<ObjectInfo, GcsError>
    where
        T: Into<Payload<S>>,
        S: StreamingSource + Send + Sync + 'static,
    {
        let bucket = format!("projects/_/buckets/{}", spec.bucket);
        let mut request = self
            .storage
            .write_object(bucket, spec.name.clone(), payload)
            .set_metadata(spec.metadata);
        if let Some(v) = spec.content_type.clone() {
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
        let context = format!("uploading gs://{}/{}", spec.bucket, spec.name);
        match request.send_buffered().await {
            Ok(object) => {
                let stored = ObjectInfo::from(object);
                match spec.content_type {
                    // GCS takes the content type from the object resource sent first; some
                    // GCS-compatible servers (fake-gcs-server) take it from the media request
                    // instead. Checking the answer costs nothing against GCS and puts right
                    // what such a server got wrong.
                    Some(wanted) if stored.content_type.as_deref() != Some(wanted.as_str()) => {
                        let update = ObjectUpdate {
                            content_type: Some(wanted),
                            metadata: Vec::new(),
                        };
                        self.update(&spec.bucket, &spec.name, stored.generation, update)
                            .await
                    }
                    _ => Ok(stored),
                }
            }
            Err(error) => {
                if let Some(stored) = mismatched_upload(&error) {
                    // GCS finalised an object whose checksums differ from the bytes sent (a
                    // service that did not validate them, or damage after validation). It must
                    // not stand as a replica: remove that generation, then report a transient
                    // failure so the job is redone.
                    let removed = self
                        .json
                        .delete_generation(&spec.bucket, &spec.name, stored.generation)
                        .await;
                    if let Err(cleanup) = removed {
                        tracing::error!(%cleanup, "could not remove a corrupted upload");
                    }
                }
                Err(GcsError::from_storage(&context, error))
            }
        }
    }

    /// `Ok(None)`: no such object.
    pub async fn object(&self, bucket: &str, name: &str) -> Result<Option<ObjectInfo>, GcsError> {
        self.json.get(bucket, name).await
    }

    /// Applies `update` to generation `generation` of the object, and only that generation: if
    /// the object was replaced meanwhile, GCS refuses (412) and the newer object keeps its own
    /// attributes.
    pub async fn update(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, GcsError> {
        self.json.patch(bucket, name, generation, update).await
    }

    /// One page of the objects in `bucket`, in name order, with their custom metadata.
    pub async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListPage, GcsError> {
        self.json.list(bucket, query).await
    }

    /// Starts reading generation `generation` of an object (so a replacement midway cannot mix
    /// two contents). The client checks the bytes against the object's crc32c as they arrive.
    pub async fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
    ) -> Result<ObjectReader, GcsError> {
        let context = format!("reading gs://{bucket}/{name}#{generation}");
        let response = self
            .storage
            .read_object(format!("projects/_/buckets/{bucket}"), name)
            .set_generation(generation)
            .send()
            .await
            .map_err(|error| GcsError::from_storage(&context, error))?;
        Ok(ObjectReader { response, context })
    }

    /// Deletes the object. `Ok(false)`: it was not there.
    pub async fn delete(&self, bucket: &str, name: &str) -> Result<bool, GcsError> {
        self.json.delete(bucket, name).await
    }
}
