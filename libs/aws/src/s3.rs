use std::collections::HashMap;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ServerSideEncryption};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use thiserror::Error;
use yuba_model::{Cause, FailureKind, normalize_etag};

use crate::classify::{classify_sdk_error, describe_sdk_error};
use crate::permissions::{
    GET_OBJECT, GET_OBJECT_DECRYPT, GET_OBJECT_VERSION, HEAD_OBJECT, HEAD_OBJECT_DECRYPT,
    LIST_OBJECTS_V2, MISSING_KEY_IS_404, Need, PUT_RECONCILE_PLAN, Permission,
};

/// How often one read of an object picks up where a cut connection left it, before the cut
/// fails the read (and the job, which then starts over).
const MAX_RESUMES: u32 = 3;

/// What the role needs for each request, for the error when S3 refuses one: the permissions
/// declared in [`crate::permissions`], so the message and the contract cannot disagree.
const HEAD_NEEDS: &[&Permission] = &[&HEAD_OBJECT, &MISSING_KEY_IS_404, &HEAD_OBJECT_DECRYPT];
const GET_NEEDS: &[&Permission] = &[&GET_OBJECT, &MISSING_KEY_IS_404, &GET_OBJECT_DECRYPT];
const RESUME_NEEDS: &[&Permission] = &[&GET_OBJECT, &GET_OBJECT_VERSION, &GET_OBJECT_DECRYPT];
const LIST_NEEDS: &[&Permission] = &[&LIST_OBJECTS_V2];
const PUT_NEEDS: &[&Permission] = &[&PUT_RECONCILE_PLAN];

/// Reads source objects from S3 (and writes the reconciler's plans: [`put`](S3Source::put)).
#[derive(Debug, Clone)]
pub struct S3Source {
    client: aws_sdk_s3::Client,
}

/// What an object says besides its content: the HTTP headers it is served with and its user
/// metadata. GetObject and HeadObject both answer them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAttributes {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    /// `x-amz-meta-*`, names lowercased by S3.
    pub user_metadata: HashMap<String, String>,
}

/// The [`SourceAttributes`] of a GetObject or HeadObject answer (their accessors share names,
/// not a type).
macro_rules! attributes_of {
    ($output:expr) => {
        SourceAttributes {
            content_type: $output.content_type().map(str::to_owned),
            cache_control: $output.cache_control().map(str::to_owned),
            content_disposition: $output.content_disposition().map(str::to_owned),
            content_encoding: $output.content_encoding().map(str::to_owned),
            content_language: $output.content_language().map(str::to_owned),
            user_metadata: $output.metadata().cloned().unwrap_or_default(),
        }
    };
}

/// An S3 object being read: what S3 says about it, and its body as a stream.
#[derive(Debug)]
pub struct SourceObject {
    pub bucket: String,
    pub key: String,
    /// Bare, without quotes.
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    pub attributes: SourceAttributes,
    /// S3's CRC32C of the whole object, when it stores one (uploads made with that checksum).
    pub full_object_crc32c: Option<String>,
    /// The MD5 of the content, when the ETag is one: single-part uploads without SSE-KMS/SSE-C.
    pub content_md5: Option<[u8; 16]>,
    body: ByteStream,
    /// The start of the body, read ahead by [`SourceObject::peek`] and not yet handed out.
    peeked: Option<Bytes>,
    /// Bytes taken from `body` (and the bodies before it): where a resumed read starts.
    received: u64,
    resumes_left: u32,
    client: aws_sdk_s3::Client,
}

impl SourceObject {
    /// The next piece of the body; `None` at the end. Errors here are the connection's, and
    /// transient.
    ///
    /// A body cut short (an error, or an end before `size` bytes) is resumed where it stopped
    /// with a ranged GET on the same ETag (`If-Match`) and version, up to [`MAX_RESUMES`]
    /// times: the bytes that follow are of the same object or the read fails, so a copy is
    /// never assembled from two versions.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, S3Error>> {
        if let Some(peeked) = self.peeked.take() {
            return Some(Ok(peeked));
        }
        loop {
            let (cut, cause): (String, Option<Cause>) = match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.received += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                None if self.received >= self.size => return None,
                None => (
                    format!(
                        "the body ended after {} of {} bytes",
                        self.received, self.size
                    ),
                    None,
                ),
                Some(Err(error)) => (error.to_string(), Some(Box::new(error))),
            };
            let message = format!(
                "reading s3://{}/{} failed mid-body: {cut}",
                self.bucket, self.key
            );
            // Past the end there is nothing to resume (an error there is not the connection's),
            // and without an ETag nothing to pin the resumed read to.
            if self.resumes_left == 0 || self.received >= self.size || self.etag.is_empty() {
                return Some(Err(S3Error::transient(message, cause)));
            }
            self.resumes_left -= 1;
            tracing::warn!(
                bucket = %self.bucket,
                key = %self.key,
                offset = self.received,
                error = %cut,
                "source read cut short; resuming at the offset"
            );
            match self.resume().await {
                Ok(body) => self.body = body,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// The rest of the body from `received` on, of this very object.
    async fn resume(&self) -> Result<ByteStream, S3Error> {
        let location = format!("s3://{}/{}", self.bucket, self.key);
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_version_id(self.version_id.clone())
            .if_match(format!("\"{}\"", self.etag))
            .range(format!("bytes={}-", self.received))
            .send();
        // A task of its own: this read is polled from deep inside an upload's stack of futures,
        // and an SDK request's own is deep too (in debug builds, deeper than a thread's stack).
        let output = tokio::spawn(request)
            .await
            .map_err(|error| {
                S3Error::transient(
                    format!("resuming the read of {location} did not finish"),
                    Some(Box::new(error)),
                )
            })?
            .map_err(|error| {
                let changed = error
                    .raw_response()
                    .is_some_and(|response| response.status().as_u16() == 412);
                let request = format!("GET {location} (resuming at byte {})", self.received);
                if changed {
                    S3Error::transient(
                        format!(
                            "{location} changed while it was being read (its ETag is no longer \
                             {}); the copy starts over with the new version",
                            self.etag
                        ),
                        Some(Box::new(error)),
                    )
                } else {
                    failed(&self.client, &request, &self.bucket, RESUME_NEEDS, error)
                }
            })?;
        Ok(output.body)
    }

    /// The first `at_least` bytes of the body (fewer if the body is shorter), without consuming
    /// them: the next [`next_chunk`](SourceObject::next_chunk) starts from the beginning. For
    /// deciding what the content is before deciding how to copy it.
    pub async fn peek(&mut self, at_least: usize) -> Result<Bytes, S3Error> {
        let mut start = self.peeked.take().map(Vec::from).unwrap_or_default();
        while start.len() < at_least {
            match self.next_chunk().await {
                Some(chunk) => start.extend_from_slice(&chunk?),
                None => break,
            }
        }
        let start = Bytes::from(start);
        self.peeked = Some(start.clone()).filter(|b| !b.is_empty());
        Ok(start)
    }
}

#[derive(Debug, Error)]
#[error("{message}")]
pub struct S3Error {
    pub kind: FailureKind,
    pub message: String,
    /// What failed underneath: the SDK's error (with its own chain down to the connection's),
    /// or the body stream's.
    #[source]
    pub source: Option<Cause>,
}

impl S3Error {
    fn transient(message: String, source: Option<Cause>) -> Self {
        S3Error {
            kind: FailureKind::Transient,
            message,
            source,
        }
    }
}

impl S3Source {
    /// `force_path_style` is for endpoints that do not serve bucket subdomains (local emulators).
    pub fn new(sdk: &aws_config::SdkConfig, force_path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(force_path_style)
            .build();
        S3Source {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// Starts reading the current version of an object. `Ok(None)`: there is no such object
    /// (any more).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<SourceObject>, S3Error> {
        let response = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(error) => {
                // A 404 for the key (not for the bucket, which is a configuration error).
                let not_found = error.as_service_error().is_some_and(|e| {
                    e.is_no_such_key() || e.meta().code() == Some("NoSuchVersion")
                });
                if not_found {
                    return Ok(None);
                }
                let request = format!("GET s3://{bucket}/{key}");
                return Err(failed(&self.client, &request, bucket, GET_NEEDS, error));
            }
        };

        let etag = output.e_tag().map(normalize_etag).unwrap_or_default();
        let content_md5 = content_md5(
            &etag,
            output.server_side_encryption(),
            output.sse_customer_algorithm(),
        );
        let full_object_crc32c =
            full_object_crc32c(output.checksum_type(), output.checksum_crc32_c());
        let size = output
            .content_length()
            .and_then(|length| u64::try_from(length).ok())
            .ok_or_else(|| {
                S3Error::transient(
                    format!("GET s3://{bucket}/{key} answered without a Content-Length"),
                    None,
                )
            })?;
        Ok(Some(SourceObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag,
            size,
            version_id: version_id(output.version_id()),
            last_modified: timestamp(output.last_modified()),
            attributes: attributes_of!(output),
            full_object_crc32c,
            content_md5,
            body: output.body,
            peeked: None,
            received: 0,
            resumes_left: MAX_RESUMES,
            client: self.client.clone(),
        }))
    }
}

/// One entry of a bucket listing: what ListObjectsV2 tells without reading the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// Bare, without quotes.
    pub etag: String,
    pub last_modified: Option<DateTime<Utc>>,
}

/// One ListObjectsV2 request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Group the keys that continue past the prefix up to this string into
    /// [`ListedPage::prefixes`] instead of listing them: one level of a hierarchy.
    pub delimiter: Option<&'a str>,
    /// Keys after this one, for the first page (S3 ignores it once a listing continues).
    pub start_after: Option<&'a str>,
    /// The previous page's `continuation`.
    pub continuation: Option<&'a str>,
    /// At most 1,000 (S3's own cap).
    pub page_size: u32,
}

/// Keys in UTF-8 byte order, as ListObjectsV2 returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPage {
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the distinct key prefixes up to and including it, sorted.
    pub prefixes: Vec<String>,
    /// `None`: this was the last page.
    pub continuation: Option<String>,
}

/// What HeadObject tells about the current version of an object, checksums included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHead {
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    /// Base64, as S3 reports it.
    pub full_object_crc32c: Option<String>,
    pub content_md5: Option<[u8; 16]>,
    pub attributes: SourceAttributes,
}

impl SourceHead {
    /// What a listing would have said of the object.
    pub fn into_listed(self, key: String) -> ListedObject {
        ListedObject {
            key,
            size: self.size,
            etag: self.etag,
            last_modified: self.last_modified,
        }
    }
}

impl S3Source {
    /// One page of the keys under `query.prefix`.
    pub async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListedPage, S3Error> {
        let prefix = query.prefix;
        let response = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(query.delimiter.map(str::to_owned))
            .set_start_after(query.start_after.map(str::to_owned))
            .set_continuation_token(query.continuation.map(str::to_owned))
            .max_keys(i32::try_from(query.page_size).unwrap_or(1000))
            .send()
            .await
            .map_err(|error| {
                let request = format!("ListObjectsV2 s3://{bucket}/{prefix}");
                failed(&self.client, &request, bucket, LIST_NEEDS, error)
            })?;
        let objects = response
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    size: object
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or_default(),
                    etag: object.e_tag().map(normalize_etag).unwrap_or_default(),
                    last_modified: timestamp(object.last_modified()),
                })
            })
            .collect();
        let continuation = response
            .next_continuation_token()
            .filter(|_| response.is_truncated() == Some(true))
            .map(str::to_owned);
        let prefixes = response
            .common_prefixes()
            .iter()
            .filter_map(|common| common.prefix().map(str::to_owned))
            .collect();
        Ok(ListedPage {
            objects,
            prefixes,
            continuation,
        })
    }

    /// The current version's attributes and checksums. `Ok(None)`: no such key.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<SourceHead>, S3Error> {
        let response = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None);
            }
            Err(error) => {
                let request = format!("HEAD s3://{bucket}/{key}");
                return Err(failed(&self.client, &request, bucket, HEAD_NEEDS, error));
            }
        };
        let etag = output.e_tag().map(normalize_etag).unwrap_or_default();
        Ok(Some(SourceHead {
            content_md5: content_md5(
                &etag,
                output.server_side_encryption(),
                output.sse_customer_algorithm(),
            ),
            full_object_crc32c: full_object_crc32c(
                output.checksum_type(),
                output.checksum_crc32_c(),
            ),
            size: output
                .content_length()
                .and_then(|length| u64::try_from(length).ok())
                .unwrap_or_default(),
            version_id: version_id(output.version_id()),
            last_modified: timestamp(output.last_modified()),
            attributes: attributes_of!(output),
            etag,
        }))
    }

    /// Stores `body` under `key` whole, in one PutObject (the SDK sends the body's CRC32 with
    /// it by default, and S3 refuses a body that arrived other than sent). For the reconciler's
    /// plans and summaries, never a source: a body is at most tens of megabytes.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| {
                let request = format!("PUT s3://{bucket}/{key}");
                failed(&self.client, &request, bucket, PUT_NEEDS, error)
            })?;
        Ok(())
    }

    /// Whether the key exists now (HeadObject). Used before mirroring a delete, so that a delete
    /// event that arrives after the key was created again does not remove the new replica.
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, S3Error> {
        Ok(self.head(bucket, key).await?.is_some())
    }
}

/// The error for a request that S3 answered with 403, naming what the role needs (`needs`, for
/// the source bucket `bucket`); `None` for any other answer. Told by the status and by which
/// request it answers, never by the message: the answer to a HEAD has no body, so no error
/// code, and a role without s3:ListBucket gets this 403 for every key that does not exist.
/// Permanent: the role will not change by itself.
fn refused<E>(
    client: &aws_sdk_s3::Client,
    request: &str,
    bucket: &str,
    needs: &[&Permission],
    error: &SdkError<E, HttpResponse>,
) -> Option<String>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let status = error.raw_response()?.status().as_u16();
    if status != 403 {
        return None;
    }
    let partition = partition(client.config().region().map(|region| region.as_ref()));
    let (always, sometimes): (Vec<&Permission>, Vec<&Permission>) = needs
        .iter()
        .partition(|permission| permission.condition.is_none());
    let grants: Vec<String> = always
        .iter()
        .map(|permission| permission.grant(partition, bucket))
        .collect();
    let mut message = format!(
        "{request} was refused (403): the role needs {}",
        grants.join(" and ")
    );
    // The rules (a 403 for a missing key) say why: nobody guesses those from the request.
    let reasons: Vec<&str> = always
        .iter()
        .filter(|permission| matches!(permission.need, Need::Other(_)))
        .map(|permission| permission.why)
        .collect();
    if !reasons.is_empty() {
        message.push_str(&format!(" ({})", reasons.join("; ")));
    }
    for permission in sometimes.iter() {
        if let Some(condition) = permission.condition {
            message.push_str(&format!(
                ", and {} if {}",
                permission.grant(partition, bucket),
                condition.meaning()
            ));
        }
    }
    // A GET's answer has a body: S3's own code and message (a KMS denial names the key).
    if error.as_service_error().and_then(|e| e.code()).is_some() {
        message.push_str(&format!("; S3 said: {}", describe_sdk_error(error)));
    }
    Some(message)
}

/// The error for a request S3 answered with `error`: a refusal (403) names the permissions the
/// role needs, anything else is classified from the SDK's error and described by S3's answer.
/// Either way the SDK's error stays underneath as the source.
fn failed<E>(
    client: &aws_sdk_s3::Client,
    request: &str,
    bucket: &str,
    needs: &[&Permission],
    error: SdkError<E, HttpResponse>,
) -> S3Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let (kind, message) = match refused(client, request, bucket, needs, &error) {
        Some(refusal) => (FailureKind::Permanent, refusal),
        None => (
            classify_sdk_error(&error),
            format!("{request} failed: {}", describe_sdk_error(&error)),
        ),
    };
    S3Error {
        kind,
        message,
        source: Some(Box::new(error)),
    }
}

/// The ARN partition of a region (`arn:aws-cn:...` in China).
fn partition(region: Option<&str>) -> &'static str {
    match region {
        Some(region) if region.starts_with("cn-") => "aws-cn",
        Some(region) if region.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    }
}

/// S3 says `null` for the version of an object put while versioning was off.
fn version_id(version: Option<&str>) -> Option<String> {
    version.filter(|v| *v != "null").map(str::to_owned)
}

fn timestamp(time: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    time.and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
}

/// The MD5 of the content, when the ETag is one: not for objects encrypted with KMS or customer
/// keys, whose ETags are not digests of the plaintext.
fn content_md5(
    etag: &str,
    encryption: Option<&ServerSideEncryption>,
    customer_algorithm: Option<&str>,
) -> Option<[u8; 16]> {
    let encrypted_with_own_keys = matches!(
        encryption,
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    ) || customer_algorithm.is_some();
    if encrypted_with_own_keys {
        None
    } else {
        md5_of_single_part_etag(etag)
    }
}

/// S3's CRC32C of the whole object; a composite one (of parts, `xxx-3`) is not comparable.
fn full_object_crc32c(kind: Option<&ChecksumType>, crc32c: Option<&str>) -> Option<String> {
    match kind {
        Some(ChecksumType::FullObject) | None => crc32c.map(str::to_owned),
        Some(_) => None,
    }
    .filter(|crc| !crc.contains('-'))
}

/// A single-part upload's ETag is the hex MD5 of the content; a multipart one is
/// `<md5 of part md5s>-<parts>`, which says nothing about the content as a whole.
fn md5_of_single_part_etag(etag: &str) -> Option<[u8; 16]> {
    if etag.len() != 32 {
        return None;
    }
    let mut md5 = [0_u8; 16];
    hex::decode_to_slice(etag, &mut md5).ok()?;
    Some(md5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_in_the_region_s_partition() {
        assert_eq!(partition(Some("eu-west-1")), "aws");
        assert_eq!(partition(Some("cn-north-1")), "aws-cn");
        assert_eq!(partition(Some("us-gov-west-1")), "aws-us-gov");
        assert_eq!(partition(None), "aws");
    }

    #[test]
    fn only_single_part_etags_are_md5s() {
        assert_eq!(
            md5_of_single_part_etag("d41d8cd98f00b204e9800998ecf8427e").map(hex::encode),
            Some("d41d8cd98f00b204e9800998ecf8427e".to_owned())
        );
        assert_eq!(
            md5_of_single_part_etag("d41d8cd98f00b204e9800998ecf8427e-3"),
            None
        );
        assert_eq!(
            md5_of_single_part_etag("not-an-md5-not-an-md5-not-an-md"),
            None
        );
    }
}
