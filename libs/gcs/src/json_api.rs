//! The few JSON API calls the official crate only offers over gRPC.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::client::{ListPage, ListQuery, ObjectInfo, ObjectUpdate};
use crate::error::GcsError;

/// Everything but RFC 3986's unreserved characters is escaped in a path segment, `/` included:
/// an object name is one segment however many slashes it holds.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const OBJECT_FIELDS: &str =
    "name,generation,metageneration,size,crc32c,md5Hash,contentType,metadata";
/// A listing asks for the same fields of each object, and nothing else: the ACLs, links and
/// timestamps GCS would add by default are most of a page's bytes.
const LIST_FIELDS: &str =
    "items(name,generation,metageneration,size,crc32c,md5Hash,contentType,metadata),nextPageToken";

#[derive(Debug, Clone)]
pub(crate) struct JsonApi {
    http: reqwest::Client,
    endpoint: String,
    credentials: Credentials,
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
    metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResource {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl ObjectResource {
    fn into_info(self) -> Result<ObjectInfo, GcsError> {
        let number = |field: &str, value: Option<String>| -> Result<i64, GcsError> {
            value.unwrap_or_default().parse().map_err(|_| {
                GcsError::permanent(format!("GCS returned an object without a numeric {field}"))
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
            metadata: self.metadata.unwrap_or_default(),
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
                GcsError::permanent(format!("could not build an HTTP client: {error}"))
            })?;
        Ok(JsonApi {
            http,
            endpoint,
            credentials,
        })
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
                let kind = if error.is_transient() {
                    yuba_model::FailureKind::Transient
                } else {
                    yuba_model::FailureKind::Permanent
                };
                return Err(GcsError {
                    kind,
                    status: None,
                    message: format!("could not get Google credentials: {error}"),
                });
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

    async fn fail(context: &str, response: Response) -> GcsError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let detail = body.chars().take(500).collect::<String>();
        GcsError::from_status(status, format!("{context}: HTTP {status}: {detail}"))
    }

    async fn object_from(context: &str, response: Response) -> Result<ObjectInfo, GcsError> {
        let resource: ObjectResource = response
            .json()
            .await
            .map_err(|error| GcsError::from_http(context, error))?;
        resource.into_info()
    }

    pub(crate) async fn get(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<Option<ObjectInfo>, GcsError> {
        let context = format!("reading the metadata of gs://{bucket}/{name}");
        let request = self
            .request(Method::GET, &self.object_url(bucket, name))
            .await?
            .query(&[("fields", OBJECT_FIELDS)]);
        let response = self.send(&context, request).await?;
        match response.status() {
            StatusCode::OK => Self::object_from(&context, response).await.map(Some),
            StatusCode::NOT_FOUND => missing_object_or_error(&context, response)
                .await
                .map(|()| None),
            _ => Err(Self::fail(&context, response).await),
        }
    }

    pub(crate) async fn list(
        &self,
        bucket: &str,
        query: &ListQuery<'_>,
    ) -> Result<ListPage, GcsError> {
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
        if let Some(start) = query.start_offset {
            parameters.push(("startOffset", start.to_owned()));
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
            return Err(Self::fail(&context, response).await);
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
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    pub(crate) async fn patch(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, GcsError> {
        let context = format!("updating gs://{bucket}/{name}#{generation}");
        let mut resource = serde_json::Map::new();
        if let Some(content_type) = update.content_type {
            resource.insert("contentType".into(), content_type.into());
        }
        if !update.metadata.is_empty() {
            let metadata: serde_json::Map<String, serde_json::Value> = update
                .metadata
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            resource.insert("metadata".into(), metadata.into());
        }
        let request = self
            .request(Method::PATCH, &self.object_url(bucket, name))
            .await?
            .query(&[
                ("ifGenerationMatch", generation.to_string().as_str()),
                ("fields", OBJECT_FIELDS),
            ])
            .json(&resource);
        let response = self.send(&context, request).await?;
        if response.status().is_success() {
            Self::object_from(&context, response).await
        } else {
            Err(Self::fail(&context, response).await)
        }
    }

    pub(crate) async fn delete(&self, bucket: &str, name: &str) -> Result<bool, GcsError> {
        let context = format!("deleting gs://{bucket}/{name}");
        let request = self
            .request(Method::DELETE, &self.object_url(bucket, name))
            .await?;
        self.send_delete(&context, request).await
    }

    /// Deletes one generation only, so a newer object under the same name survives.
    pub(crate) async fn delete_generation(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
    ) -> Result<bool, GcsError> {
        let context = format!("deleting gs://{bucket}/{name}#{generation}");
        let request = self
            .request(Method::DELETE, &self.object_url(bucket, name))
            .await?
            .query(&[("ifGenerationMatch", generation.to_string())]);
        self.send_delete(&context, request).await
    }

    async fn send_delete(&self, context: &str, request: RequestBuilder) -> Result<bool, GcsError> {
        let response = self.send(context, request).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => missing_object_or_error(context, response)
                .await
                .map(|()| false),
            _ => Err(Self::fail(context, response).await),
        }
    }
}

/// GCS answers 404 both for a missing object and for a missing bucket. Only the first is an
/// answer; the second is a configuration error and must not pass for "no replica yet".
async fn missing_object_or_error(context: &str, response: Response) -> Result<(), GcsError> {
    let body = response.text().await.unwrap_or_default();
    if body.to_ascii_lowercase().contains("bucket does not exist") {
        return Err(GcsError::permanent(format!(
            "{context}: the bucket does not exist; check YUBA_GCS_BUCKET"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_escaped_path_segment() {
        let encoded = utf8_percent_encode("a b/c+d%e/日.jpg", SEGMENT).to_string();
        assert_eq!(encoded, "a%20b%2Fc%2Bd%25e%2F%E6%97%A5.jpg");
    }
}
