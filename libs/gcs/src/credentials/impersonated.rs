//! Service-account impersonation at the exact `service_account_impersonation_url` of a
//! configuration, with federated credentials (google-cloud-auth's programmatic builder can only
//! impersonate at Google's default endpoint).

use std::fmt;
use std::time::Duration;

use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_auth::errors::CredentialsError;
use http::{Extensions, HeaderMap, HeaderValue};
use tokio::time::Instant;
use yuba_model::ErrorChain;

use crate::error::GcsError;

/// What an impersonated token is asked to live for (google-cloud-auth's default too), and how
/// long before it ends a new one is fetched.
const IMPERSONATION_LIFETIME: Duration = Duration::from_secs(3600);
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const IMPERSONATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A service account impersonated with federated credentials at an exact
/// `generateAccessToken` URL (google-cloud-auth's programmatic builder only takes the
/// account's email). Tokens are kept until shortly before they end; one refresh at a time.
#[derive(Debug)]
pub(super) struct ImpersonatedCredentials {
    federated: Credentials,
    url: String,
    scopes: Vec<String>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<ImpersonatedToken>>,
}

struct ImpersonatedToken {
    headers: HeaderMap,
    entity_tag: EntityTag,
    /// When a new one is fetched; until `expires_at` this one still serves if that fails.
    refresh_at: Instant,
    expires_at: Instant,
}

impl fmt::Debug for ImpersonatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpersonatedToken")
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: String,
    expire_time: Option<String>,
}

impl ImpersonatedCredentials {
    pub(super) fn new(
        federated: Credentials,
        url: String,
        scopes: Vec<String>,
    ) -> Result<ImpersonatedCredentials, GcsError> {
        let http = reqwest::Client::builder()
            .timeout(IMPERSONATION_TIMEOUT)
            .build()
            .map_err(|error| {
                GcsError::permanent("could not build the HTTP client for impersonation")
                    .caused_by(error)
            })?;
        Ok(ImpersonatedCredentials {
            federated,
            url,
            scopes,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<ImpersonatedToken, CredentialsError> {
        let federated = match self.federated.headers(Extensions::new()).await? {
            CacheableResource::New { data, .. } => data,
            CacheableResource::NotModified => {
                return Err(CredentialsError::from_msg(
                    true,
                    "the federated credentials returned no headers",
                ));
            }
        };
        let asked = Instant::now();
        let context = format!("impersonating at {}", self.url);
        let response = self
            .http
            .post(&self.url)
            .headers(federated)
            .json(&serde_json::json!({
                "scope": self.scopes,
                "lifetime": format!("{}s", IMPERSONATION_LIFETIME.as_secs()),
            }))
            .send()
            .await
            .map_err(|error| CredentialsError::new(true, context.clone(), error))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let transient = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            return Err(CredentialsError::from_msg(
                transient,
                format!("{context}: HTTP {status}: {}", body.trim()),
            ));
        }
        let token: GenerateAccessTokenResponse = response
            .json()
            .await
            .map_err(|error| CredentialsError::new(!error.is_decode(), context.clone(), error))?;
        let lifetime = token
            .expire_time
            .as_deref()
            .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
            .and_then(|end| (end.to_utc() - chrono::Utc::now()).to_std().ok())
            .unwrap_or(IMPERSONATION_LIFETIME);
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
            .map_err(|error| CredentialsError::new(false, context, error))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(ImpersonatedToken {
            headers,
            entity_tag: EntityTag::new(),
            refresh_at: asked + lifetime.saturating_sub(REFRESH_MARGIN),
            expires_at: asked + lifetime,
        })
    }
}

impl CredentialsProvider for ImpersonatedCredentials {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        let mut token = self.token.lock().await;
        let now = Instant::now();
        if token.as_ref().is_none_or(|token| now >= token.refresh_at) {
            match self.fetch().await {
                Ok(fresh) => *token = Some(fresh),
                // The token in hand is refreshed early: it still serves while it lasts.
                Err(error) if token.as_ref().is_some_and(|token| now < token.expires_at) => {
                    tracing::warn!(
                        error = %ErrorChain(&error),
                        "could not refresh the impersonated token"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        let Some(token) = token.as_ref() else {
            return Err(CredentialsError::from_msg(true, "no impersonated token"));
        };
        if extensions.get::<EntityTag>() == Some(&token.entity_tag) {
            return Ok(CacheableResource::NotModified);
        }
        Ok(CacheableResource::New {
            entity_tag: token.entity_tag.clone(),
            data: token.headers.clone(),
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}
