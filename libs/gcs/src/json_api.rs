//! The few JSON API calls the official crate only offers over gRPC.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use http_body::{Frame, SizeHint};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::{ListPage, ListQuery, ObjectInfo, ObjectUpdate, UploadSpec};
use crate::error::{Carried, GcsError};

/// Everything but RFC 3986's unreserved characters is escaped in a path segment, `/` included:
/// an object name is one segment however many slashes it holds.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const OBJECT_FIELDS: &str = "name,generation,metageneration,size,crc32c,md5Hash,contentType,cacheControl,metadata,timeCreated";
/// A listing asks for the same fields of each object, and nothing else: the ACLs, links and
/// other timestamps GCS would add by default are most of a page's bytes.
const LIST_FIELDS: &str = "items(name,generation,metageneration,size,crc32c,md5Hash,contentType,metadata,timeCreated),prefixes,nextPageToken";

/// A stored object's metadata: read, update, list and delete, through the JSON API with the
/// connection's credentials ([`Gcs::objects`](crate::Gcs::objects)). Each call is one request,
/// not retried here: the caller knows whether repeating it is safe.
#[derive(Debug, Clone)]
pub struct JsonApi {
    http: reqwest::Client,
    endpoint: String,
    credentials: Credentials,
    /// Buckets a listing has shown to exist, shared by every clone: in them, an object's 404 is
    /// the object's ([`JsonApi::missing_object`]).
    existing_buckets: Arc<Mutex<HashSet<String>>>,
}

/// The object resource as the JSON API spells it (numbers as strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectResource {
    name: String,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    metageneration: Option<String>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    crc32c: Option<String>,
    #[serde(default)]
    md5_hash: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    cache_control: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    time_created: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResource {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl ObjectResource {
    fn into_info(self) -> Result<ObjectInfo, GcsError> {
        let number = |field: &str, value: Option<String>| -> Result<i64, GcsError> {
            value.unwrap_or_default().parse().map_err(|error| {
                GcsError::permanent(format!("GCS returned an object without a numeric {field}"))
                    .caused_by(error)
            })
        };
        let md5 = self
            .md5_hash
            .and_then(|m| BASE64.decode(m).ok())
            .and_then(|m| <[u8; 16]>::try_from(m).ok());
        Ok(ObjectInfo {
            generation: number("generation", self.generation)?,
            metageneration: number("metageneration", self.metageneration).unwrap_or(1),
            size: u64::try_from(number("size", self.size)?).unwrap_or_default(),
            crc32c: self
                .crc32c
                .as_deref()
                .and_then(yuba_model::crc32c_from_base64),
            md5,
            content_type: self.content_type,
            cache_control: self.cache_control,
            metadata: self.metadata.unwrap_or_default(),
            created: self
                .time_created
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            name: self.name,
        })
    }
}

impl JsonApi {
    pub(crate) fn new(
        endpoint: String,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Self, GcsError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| {
                GcsError::permanent("could not build an HTTP client").caused_by(error)
            })?;
        Ok(JsonApi {
            http,
            endpoint,
            credentials,
            existing_buckets: Arc::default(),
        })
    }

    /// After an object's 404: `Ok` if the object is what is missing. GCS answers 404, with
    /// the same reason (`notFound`), for a missing object and for a missing bucket; the second
    /// is a configuration error that must not pass for "no replica yet". A listing's 404 can
    /// only be the bucket's, so one listing per bucket (`storage.objects.list`, which the
    /// replica's roles grant) tells them apart, and a bucket once seen is not asked again.
    async fn missing_object(&self, context: &str, bucket: &str) -> Result<(), GcsError> {
        if lock(&self.existing_buckets).contains(bucket) {
            return Ok(());
        }
        let probe = ListQuery {
            prefix: "",
            delimiter: None,
            start_offset: None,
            end_offset: None,
            page_token: None,
            page_size: 1,
        };
        self.list(bucket, &probe).await.map_err(|mut error| {
            error.message = format!("{context}: {}", error.message);
            error
        })?;
        lock(&self.existing_buckets).insert(bucket.to_owned());
        Ok(())
    }

    fn object_url(&self, bucket: &str, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            utf8_percent_encode(bucket, SEGMENT),
            utf8_percent_encode(name, SEGMENT)
        )
    }

    async fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, GcsError> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(error) => {
                const SUMMARY: &str = "could not get Google credentials";
                let summary = if error.is_transient() {
                    GcsError::transient(SUMMARY)
                } else {
                    GcsError::permanent(SUMMARY)
                };
                return Err(summary.caused_by(error));
            }
        };
        Ok(self.http.request(method, url).headers(headers))
    }

    async fn send(&self, context: &str, request: RequestBuilder) -> Result<Response, GcsError> {
        let response = request
            .send()
            .await
            .map_err(|error| GcsError::from_http(context, error))?;
        Ok(response)
    }

    /// The error for an answer that is not a success ([`refusal`]).
    async fn fail(context: &str, carried: Carried, response: Response) -> GcsError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        refusal(context, carried, status, &body)
    }

    async fn object_from(context: &str, response: Response) -> Result<ObjectInfo, GcsError> {
        let resource: ObjectResource = response
            .json()
            .await
            .map_err(|error| GcsError::from_http(context, error))?;
        resource.into_info()
    }

    /// The object's metadata; `Ok(None)`: no such object (a missing bucket is an error).
    pub async fn get(&self, bucket: &str, name: &str) -> Result<Option<ObjectInfo>, GcsError> {
        let context = format!("reading the metadata of gs://{bucket}/{name}");
        let request = self
            .request(Method::GET, &self.object_url(bucket, name))
            .await?
            .query(&[("fields", OBJECT_FIELDS)]);
        let response = self.send(&context, request).await?;
        match response.status() {
            StatusCode::OK => Self::object_from(&context, response).await.map(Some),
            StatusCode::NOT_FOUND => self.missing_object(&context, bucket).await.map(|()| None),
            _ => Err(Self::fail(&context, Carried::NoChecksums, response).await),
        }
    }

    /// One page of the objects in `bucket`, in name order, with their custom metadata.
    pub async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListPage, GcsError> {
        let context = format!("listing gs://{bucket}/{}", query.prefix);
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.endpoint,
            utf8_percent_encode(bucket, SEGMENT)
        );
        let mut parameters = vec![
            ("fields", LIST_FIELDS.to_owned()),
            ("maxResults", query.page_size.to_string()),
        ];
        if !query.prefix.is_empty() {
            parameters.push(("prefix", query.prefix.to_owned()));
        }
        if let Some(delimiter) = query.delimiter {
            parameters.push(("delimiter", delimiter.to_owned()));
        }
        if let Some(start) = query.start_offset {
            parameters.push(("startOffset", start.to_owned()));
        }
        if let Some(end) = query.end_offset {
            parameters.push(("endOffset", end.to_owned()));
        }
        if let Some(token) = query.page_token {
            parameters.push(("pageToken", token.to_owned()));
        }
        let request = self.request(Method::GET, &url).await?.query(&parameters);
        let response = self.send(&context, request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(GcsError::permanent(format!(
                "{context}: the bucket does not exist; check YUBA_GCS_BUCKET"
            )));
        }
        if !response.status().is_success() {
            return Err(Self::fail(&context, Carried::NoChecksums, response).await);
        }
        let page: ListResource = response
            .json()
            .await
            .map_err(|error| GcsError::from_http(&context, error))?;
        Ok(ListPage {
            objects: page
                .items
                .into_iter()
                .map(ObjectResource::into_info)
                .collect::<Result<_, _>>()?,
            prefixes: page.prefixes,
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// Creates `spec.name` from `content` in one multipart request, the object resource then
    /// the bytes. GCS checks the bytes against the resource's `crc32c` and `md5Hash` before it
    /// creates the object.
    pub(crate) async fn insert(
        &self,
        spec: &UploadSpec,
        content: Bytes,
    ) -> Result<ObjectInfo, GcsError> {
        let context = format!("uploading gs://{}/{}", spec.bucket, spec.name);
        let url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.endpoint,
            utf8_percent_encode(&spec.bucket, SEGMENT)
        );
        let body = MultipartRelated::new(
            &upload_resource(spec),
            spec.content_type.as_deref(),
            content,
            &new_boundary(),
        );
        let request = self
            .request(Method::POST, &url)
            .await?
            .query(&[("uploadType", "multipart"), ("fields", OBJECT_FIELDS)])
            .query(&precondition(spec.if_generation_match))
            .header(CONTENT_TYPE, body.content_type.clone())
            .body(reqwest::Body::wrap(body));
        let response = self.send(&context, request).await?;
        match response.status() {
            status if status.is_success() => Self::object_from(&context, response).await,
            // An upload creates its object: nothing but the bucket can be missing.
            StatusCode::NOT_FOUND => Err(GcsError::permanent(format!(
                "{context}: HTTP 404, the bucket does not exist; check YUBA_GCS_BUCKET"
            ))),
            _ => Err(Self::fail(&context, spec.carried(), response).await),
        }
    }

    /// Creates (or replaces) `destination.name` from the concatenation of `sources` (name and
    /// generation, at most 32), with `destination`'s attributes. GCS makes composite objects
    /// without an MD5; their crc32c is that of the whole content.
    pub(crate) async fn compose(
        &self,
        destination: &UploadSpec,
        sources: &[(String, i64)],
    ) -> Result<ObjectInfo, GcsError> {
        let context = format!(
            "composing gs://{}/{} from {} objects",
            destination.bucket,
            destination.name,
            sources.len()
        );
        let body = compose_request(destination, sources);
        let url = format!(
            "{}/compose",
            self.object_url(&destination.bucket, &destination.name)
        );
        let request = self
            .request(Method::POST, &url)
            .await?
            .query(&[("fields", OBJECT_FIELDS)])
            .query(&precondition(destination.if_generation_match))
            .json(&body);
        let response = self.send(&context, request).await?;
        if response.status().is_success() {
            Self::object_from(&context, response).await
        } else {
            Err(Self::fail(&context, Carried::NoChecksums, response).await)
        }
    }

    /// Applies `update` to generation `generation` of the object, and only that generation: if
    /// the object was replaced or removed meanwhile, the answer is a conflict
    /// ([`GcsError::is_conflict`]) and the newer object keeps its own attributes.
    pub async fn update(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, GcsError> {
        let context = format!("updating gs://{bucket}/{name}#{generation}");
        let resource = update_resource(update);
        let request = self
            .request(Method::PATCH, &self.object_url(bucket, name))
            .await?
            .query(&[
                ("ifGenerationMatch", generation.to_string().as_str()),
                ("fields", OBJECT_FIELDS),
            ])
            .json(&resource);
        let response = self.send(&context, request).await?;
        match response.status() {
            status if status.is_success() => Self::object_from(&context, response).await,
            // The generation is not the live one: GCS says 412, fake-gcs-server 404 (and a
            // removed object is 404 anyway). Either way the update lost to a newer write.
            StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {
                let mut error = Self::fail(&context, Carried::NoChecksums, response).await;
                error.status = Some(StatusCode::PRECONDITION_FAILED.as_u16());
                Err(error)
            }
            _ => Err(Self::fail(&context, Carried::NoChecksums, response).await),
        }
    }

    /// Deletes the object; with `if_generation_match`, only if that generation is the live one
    /// (a conflict otherwise), so a newer object under the same name survives. `Ok(false)`: it
    /// was not there.
    pub async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation_match: Option<i64>,
    ) -> Result<bool, GcsError> {
        let context = match if_generation_match {
            Some(generation) => format!("deleting gs://{bucket}/{name}#{generation}"),
            None => format!("deleting gs://{bucket}/{name}"),
        };
        let request = self
            .request(Method::DELETE, &self.object_url(bucket, name))
            .await?
            .query(&precondition(if_generation_match));
        let response = self.send(&context, request).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => self.missing_object(&context, bucket).await.map(|()| false),
            _ => Err(Self::fail(&context, Carried::NoChecksums, response).await),
        }
    }
}

/// An answer that is not a success, classified by its status and what the request `carried`,
/// with GCS's reason and message when the body is a JSON API error (the raw body otherwise).
fn refusal(context: &str, carried: Carried, status: u16, body: &str) -> GcsError {
    let (reason, detail) = match serde_json::from_str::<ErrorResponse>(body) {
        Ok(ErrorResponse { error }) => (
            error.errors.into_iter().find_map(|e| e.reason),
            error.message.unwrap_or_default(),
        ),
        Err(_) => (None, body.to_owned()),
    };
    let detail = detail.chars().take(500).collect::<String>();
    GcsError::from_status(
        status,
        reason,
        carried,
        format!("{context}: HTTP {status}: {detail}"),
    )
}

/// The JSON API's error body: `{"error": {"code", "message", "errors": [{"reason", ...}]}}`
/// (https://cloud.google.com/storage/docs/json_api/v1/status-codes).
#[derive(Debug, Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    reason: Option<String>,
}

/// The set of buckets seen; a poisoned lock still holds a valid set (inserts cannot half-happen).
fn lock(buckets: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `ifGenerationMatch` query parameter, when there is a precondition.
fn precondition(if_generation_match: Option<i64>) -> Vec<(&'static str, String)> {
    if_generation_match
        .map(|generation| ("ifGenerationMatch", generation.to_string()))
        .into_iter()
        .collect()
}

/// Custom metadata as the JSON API spells it.
/// The PATCH body of an update. A PATCH writes the fields it names and keeps the others; a
/// field or metadata key named with `null` is cleared
/// (https://cloud.google.com/storage/docs/json_api/v1/how-tos/performance#patch, "Patch
/// semantics"; Google's client libraries clear custom-metadata keys the same way, as
/// googleapis/python-storage#383 documents). fake-gcs-server ignores `null` and keeps the value,
/// so clearing is proven by this body (a unit test), not by the local stack.
fn update_resource(update: ObjectUpdate) -> Map<String, Value> {
    let mut resource = Map::new();
    match &update.headers {
        Some(headers) => {
            for (field, value) in headers.fields() {
                let value = value.clone().map_or(Value::Null, Value::String);
                resource.insert(field.into(), value);
            }
        }
        None => {
            if let Some(content_type) = update.content_type {
                resource.insert("contentType".into(), content_type.into());
            }
        }
    }
    let mut metadata = metadata_map(&update.metadata);
    for key in update.removed_metadata {
        metadata.insert(key, Value::Null);
    }
    if !metadata.is_empty() {
        resource.insert("metadata".into(), metadata.into());
    }
    resource
}

fn metadata_object(entries: &[(String, String)]) -> Value {
    metadata_map(entries).into()
}

fn metadata_map(entries: &[(String, String)]) -> Map<String, Value> {
    entries
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect()
}

/// The resource a new object is created with. Its checksums are what GCS validates the bytes
/// against.
fn upload_resource(spec: &UploadSpec) -> Value {
    let mut resource = attributes_resource(spec);
    resource.insert("name".into(), spec.name.clone().into());
    if let Some(crc32c) = spec.known_crc32c {
        resource.insert("crc32c".into(), yuba_model::crc32c_to_base64(crc32c).into());
    }
    if let Some(md5) = spec.known_md5 {
        resource.insert("md5Hash".into(), BASE64.encode(md5).into());
    }
    Value::Object(resource)
}

/// A compose request: the sources, pinned to the generations that were written, so a
/// replacement in between cannot slip other bytes in; the destination's attributes.
fn compose_request(destination: &UploadSpec, sources: &[(String, i64)]) -> Value {
    let sources: Vec<Value> = sources
        .iter()
        .map(|(name, generation)| {
            serde_json::json!({"name": name, "generation": generation.to_string()})
        })
        .collect();
    serde_json::json!({
        "sourceObjects": sources,
        "destination": attributes_resource(destination),
    })
}

/// A new object's HTTP attributes and custom metadata, however its content is made.
fn attributes_resource(spec: &UploadSpec) -> Map<String, Value> {
    let mut resource = Map::new();
    let attributes = [
        ("contentType", &spec.content_type),
        ("cacheControl", &spec.cache_control),
        ("contentDisposition", &spec.content_disposition),
        ("contentEncoding", &spec.content_encoding),
        ("contentLanguage", &spec.content_language),
    ];
    for (field, value) in attributes {
        if let Some(value) = value {
            resource.insert(field.into(), value.clone().into());
        }
    }
    if !spec.metadata.is_empty() {
        resource.insert("metadata".into(), metadata_object(&spec.metadata));
    }
    resource
}

/// A fresh delimiter per request. A body must not contain its own delimiter; 128 random bits
/// drawn after the body exists make that about n·2⁻¹²⁸ likely for n bytes, even for content
/// made to collide, so the body is not scanned for it (a pass over every byte, for nothing).
fn new_boundary() -> String {
    format!("yuba-{:032x}", rand::random::<u128>())
}

/// A `multipart/related` upload body: the object resource, then the content. Sent part after
/// part, so content already in memory is not copied into a second buffer.
#[derive(Debug)]
struct MultipartRelated {
    /// The request's `Content-Type`, naming the boundary.
    content_type: String,
    parts: std::array::IntoIter<Bytes, 3>,
}

impl MultipartRelated {
    fn new(resource: &Value, media_type: Option<&str>, content: Bytes, boundary: &str) -> Self {
        // GCS takes the content type from the resource, but other servers (fake-gcs-server)
        // from the media part, so both say it. A type that is no valid header value (CR, LF)
        // would break the part's headers; the resource still carries it to GCS.
        let media_type = media_type
            .filter(|t| HeaderValue::from_str(t).is_ok())
            .unwrap_or("application/octet-stream");
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n\
             --{boundary}\r\nContent-Type: {media_type}\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        MultipartRelated {
            content_type: format!("multipart/related; boundary={boundary}"),
            parts: [Bytes::from(head), content, Bytes::from(tail)].into_iter(),
        }
    }
}

impl http_body::Body for MultipartRelated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .parts
                .next()
                .map(|part| Ok(Frame::data(part))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.parts.as_slice().is_empty()
    }

    /// Exact, so the request goes with a `Content-Length` rather than chunked.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.parts.as_slice().iter().map(|p| p.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_of_the_headers_clears_the_absent_ones_and_removes_keys_with_null() {
        let update = ObjectUpdate {
            headers: Some(crate::ObjectHeaders {
                content_type: Some("image/png".to_owned()),
                cache_control: None,
                ..Default::default()
            }),
            metadata: vec![("owner".to_owned(), "ann".to_owned())],
            removed_metadata: vec!["team".to_owned()],
            ..Default::default()
        };
        assert_eq!(
            Value::Object(update_resource(update)),
            serde_json::json!({
                "contentType": "image/png", "cacheControl": null, "contentDisposition": null,
                "contentEncoding": null, "contentLanguage": null,
                "metadata": {"owner": "ann", "team": null}
            })
        );
        // Without headers, only what is named is written: the completion of a streamed copy.
        let completion = ObjectUpdate {
            content_type: Some("image/jpeg".to_owned()),
            ..Default::default()
        };
        assert_eq!(
            Value::Object(update_resource(completion)),
            serde_json::json!({"contentType": "image/jpeg"})
        );
    }

    #[test]
    fn a_refusal_keeps_gcs_reason_and_is_classified_by_the_request() {
        // The body GCS sends when an upload's bytes do not match its checksums: reason
        // `invalid`, as for any malformed request.
        let body = r#"{"error": {"code": 400, "message": "Provided CRC32C \"AAAAAA==\" doesn't match calculated CRC32C \"yZRlqg==\".", "errors": [{"message": "Provided CRC32C ...", "domain": "global", "reason": "invalid"}]}}"#;
        let upload = refusal("uploading gs://b/k", Carried::OurChecksums, 400, body);
        assert_eq!(upload.kind, yuba_model::FailureKind::Transient);
        assert_eq!(upload.reason.as_deref(), Some("invalid"));
        assert_eq!(upload.status, Some(400));
        assert!(
            upload
                .message
                .starts_with("uploading gs://b/k: HTTP 400: Provided CRC32C"),
            "{upload}"
        );
        // The same words in answer to a request without our checksums are a refusal.
        let update = refusal(
            "updating gs://b/md5sums.txt#1",
            Carried::NoChecksums,
            400,
            body,
        );
        assert_eq!(update.kind, yuba_model::FailureKind::Permanent);
        // A body that is not a JSON API error is kept as it came.
        let plain = refusal(
            "listing gs://b/",
            Carried::NoChecksums,
            503,
            "upstream reset",
        );
        assert_eq!(plain.kind, yuba_model::FailureKind::Transient);
        assert_eq!(plain.reason, None);
        assert_eq!(plain.message, "listing gs://b/: HTTP 503: upstream reset");
    }

    #[test]
    fn uploads_send_the_resource_then_the_content() {
        use http_body::Body;
        let md5 = BASE64.decode("XrY7u+Ae7tCTyyK7j1rNww==").unwrap();
        let spec = UploadSpec {
            bucket: "replica".into(),
            name: "photos/a b.jpg".into(),
            content_type: Some("image/jpeg".into()),
            cache_control: Some("no-cache".into()),
            content_language: Some("en".into()),
            metadata: vec![("owner".into(), "ann".into())],
            // GCS's documented digests of "hello world".
            known_crc32c: Some(0xc994_65aa),
            known_md5: Some(md5.try_into().unwrap()),
            ..UploadSpec::default()
        };
        let body = MultipartRelated::new(
            &upload_resource(&spec),
            spec.content_type.as_deref(),
            Bytes::from_static(b"hello world"),
            "yuba-0123",
        );
        assert_eq!(body.content_type, "multipart/related; boundary=yuba-0123");
        let bytes = body.parts.as_slice().concat();
        assert_eq!(body.size_hint().exact(), Some(bytes.len() as u64));
        let text = String::from_utf8(bytes).unwrap();
        let resource = text
            .strip_prefix("--yuba-0123\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n")
            .and_then(|rest| rest.strip_suffix(
                "\r\n--yuba-0123\r\nContent-Type: image/jpeg\r\n\r\nhello world\r\n--yuba-0123--\r\n",
            ))
            .unwrap_or_else(|| panic!("not the expected parts: {text:?}"));
        assert_eq!(
            serde_json::from_str::<Value>(resource).unwrap(),
            serde_json::json!({
                "name": "photos/a b.jpg",
                "contentType": "image/jpeg",
                "cacheControl": "no-cache",
                "contentLanguage": "en",
                "metadata": {"owner": "ann"},
                "crc32c": "yZRlqg==",
                "md5Hash": "XrY7u+Ae7tCTyyK7j1rNww==",
            })
        );
    }

    #[test]
    fn composes_name_their_sources_and_the_destination_attributes() {
        let destination = UploadSpec {
            bucket: "replica".into(),
            name: "big/file.bin".into(),
            content_type: Some("video/mp4".into()),
            content_encoding: Some("identity".into()),
            metadata: vec![("yuba-sha256".into(), "ab".into())],
            known_crc32c: Some(1),
            ..UploadSpec::default()
        };
        let sources = [
            ("_yuba-parts/x/00000".to_owned(), 7),
            ("_yuba-parts/x/00001".to_owned(), 8),
        ];
        assert_eq!(
            compose_request(&destination, &sources),
            serde_json::json!({
                "sourceObjects": [
                    {"name": "_yuba-parts/x/00000", "generation": "7"},
                    {"name": "_yuba-parts/x/00001", "generation": "8"},
                ],
                // The name is the request's path; checksums are GCS's to compute.
                "destination": {
                    "contentType": "video/mp4",
                    "contentEncoding": "identity",
                    "metadata": {"yuba-sha256": "ab"},
                },
            })
        );
    }

    #[test]
    fn content_without_a_usable_type_is_sent_as_octets() {
        for media_type in [None, Some("text/plain\r\nX-Injected: 1")] {
            let body = MultipartRelated::new(
                &upload_resource(&UploadSpec::default()),
                media_type,
                Bytes::new(),
                "b",
            );
            let text = String::from_utf8(body.parts.as_slice().concat()).unwrap();
            assert!(
                text.ends_with(
                    "--b\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--b--\r\n"
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn boundaries_are_fresh() {
        let (a, b) = (new_boundary(), new_boundary());
        assert_ne!(a, b);
        assert_eq!(a.len(), "yuba-".len() + 32);
    }

    #[test]
    fn object_names_are_one_escaped_path_segment() {
        let encoded = utf8_percent_encode("a b/c+d%e/日.jpg", SEGMENT).to_string();
        assert_eq!(encoded, "a%20b%2Fc%2Bd%25e%2F%E6%97%A5.jpg");
    }
}
