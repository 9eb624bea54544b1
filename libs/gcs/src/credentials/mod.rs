//! Which Google credentials yuba uses, decided once, at start-up ([`GcsCredentials::from_env`]).
//!
//! 1. An `http://` `YUBA_GCS_ENDPOINT` is an emulator: no credentials (anonymous).
//! 2. Otherwise a workload identity federation configuration (`"type": "external_account"`),
//!    held inline in `YUBA_GCS_CREDENTIALS` (convenient in a Lambda function's environment) or in
//!    the file `GOOGLE_APPLICATION_CREDENTIALS` names (set one of them, not both). It is read
//!    and checked here, so a bad one stops the program with the variable and the field.
//! 3. Otherwise Application Default Credentials, which also take a service account key or
//!    gcloud's credentials named by `GOOGLE_APPLICATION_CREDENTIALS`.
//!
//! An AWS-sourced configuration (`credential_source.environment_id` `aws1`) proves the AWS
//! identity to Google's STS with a signed STS `GetCallerIdentity` request (the *subject
//! token*). Where the AWS keys are in the environment (`AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`: Lambda) google-cloud-auth's own AWS source signs it. Elsewhere
//! (Fargate and ECS, whose credentials come from the container credentials endpoint, or EC2,
//! or an AWS profile) [`AwsSubjectTokenProvider`] signs it with aws-config's default
//! credential chain, and the result is the same request in the same shape.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::error::CredentialsError as AwsCredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use google_cloud_auth::credentials::external_account::{self, ProgrammaticBuilder};
use google_cloud_auth::credentials::subject_token::{self, SubjectToken, SubjectTokenProvider};
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag, anonymous,
};
use google_cloud_auth::errors::{CredentialsError, SubjectTokenProviderError};
use http::{Extensions, HeaderMap, HeaderValue};
use reqwest::Url;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;
use yuba_config::{ConfigError, Env};

use crate::error::GcsError;

/// The configuration itself, as JSON.
pub const CREDENTIALS_VARIABLE: &str = "YUBA_GCS_CREDENTIALS";
/// The path of a credential file (Google's own variable, also read by ADC).
pub const CREDENTIALS_FILE_VARIABLE: &str = "GOOGLE_APPLICATION_CREDENTIALS";

const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope of the federated token that is only used to impersonate a service account (as
/// google-cloud-auth asks for it).
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// What an impersonated token is asked to live for (google-cloud-auth's default too), and how
/// long before it ends a new one is fetched.
const IMPERSONATION_LIFETIME: Duration = Duration::from_secs(3600);
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const IMPERSONATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The ADC file types google-cloud-auth builds credentials from.
const ADC_TYPES: [&str; 3] = [
    "service_account",
    "authorized_user",
    "impersonated_service_account",
];

/// The audience of a workload identity pool's provider; `NUMBER` is the project's number.
const POOL_AUDIENCE: &str = "//iam.googleapis.com/projects/NUMBER/locations/global/\
                             workloadIdentityPools/POOL/providers/PROVIDER";
const POOL_ID_DOC: &str = "https://cloud.google.com/iam/docs/reference/rest/v1/\
                           projects.locations.workloadIdentityPools/create";
const PROVIDER_ID_DOC: &str = "https://cloud.google.com/iam/docs/reference/rest/v1/\
                               projects.locations.workloadIdentityPools.providers/create";

/// What to do about a configuration that is not right.
const REEXPORT: &str = "re-export the credential configuration from terraform/ (`terraform \
                        output -raw worker_credentials_json`, or reconciler_credentials_json), or \
                        with `gcloud iam workload-identity-pools create-cred-config PROVIDER --aws \
                        --service-account=EMAIL --output-file=FILE`";

/// How yuba authenticates to GCS.
#[derive(Debug, Clone, PartialEq)]
pub enum GcsCredentials {
    /// An emulator: no credentials.
    Anonymous,
    /// Application Default Credentials: the file `GOOGLE_APPLICATION_CREDENTIALS` names (other
    /// than an external account), gcloud's own, or the metadata server.
    ApplicationDefault,
    /// Workload identity federation.
    ExternalAccount(Box<ExternalAccount>),
}

impl GcsCredentials {
    /// The choice the environment makes (see the module's documentation); `emulator`: the
    /// endpoint is an `http://` one, which is always used without credentials.
    pub fn from_env(env: &Env, emulator: bool) -> Result<GcsCredentials, ConfigError> {
        if emulator {
            return Ok(GcsCredentials::Anonymous);
        }
        let aws_keys_in_environment =
            env.is_set("AWS_ACCESS_KEY_ID") && env.is_set("AWS_SECRET_ACCESS_KEY");
        match (
            env.optional(CREDENTIALS_VARIABLE),
            env.optional(CREDENTIALS_FILE_VARIABLE),
        ) {
            (Some(_), Some(_)) => Err(env.invalid(
                CREDENTIALS_VARIABLE,
                format!(
                    "set either {CREDENTIALS_VARIABLE} (the credential configuration) or \
                     {CREDENTIALS_FILE_VARIABLE} (its path), not both"
                ),
            )),
            (Some(json), None) => {
                let origin = Origin {
                    variable: CREDENTIALS_VARIABLE,
                    shown: abbreviated(&json),
                };
                match origin.parse(&json, aws_keys_in_environment)? {
                    Parsed::ExternalAccount(account) => {
                        Ok(GcsCredentials::ExternalAccount(Box::new(account)))
                    }
                    Parsed::Adc(kind) => Err(origin.invalid(format!(
                        "`type` is \"{kind}\": {CREDENTIALS_VARIABLE} takes an external_account \
                         configuration; name a {kind} file in {CREDENTIALS_FILE_VARIABLE} instead"
                    ))),
                }
            }
            (None, Some(path)) => {
                let origin = Origin {
                    variable: CREDENTIALS_FILE_VARIABLE,
                    shown: path.clone(),
                };
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    origin.invalid(format!(
                        "cannot read the credential configuration: {error}; point it at the \
                         file, or {REEXPORT}"
                    ))
                })?;
                match origin.parse(&text, aws_keys_in_environment)? {
                    Parsed::ExternalAccount(account) => {
                        Ok(GcsCredentials::ExternalAccount(Box::new(account)))
                    }
                    Parsed::Adc(_) => Ok(GcsCredentials::ApplicationDefault),
                }
            }
            (None, None) => Ok(GcsCredentials::ApplicationDefault),
        }
    }

    /// The credentials, ready for the clients. For an AWS-sourced external account whose keys
    /// are not in the environment, this loads aws-config's default chain first.
    pub async fn build(&self) -> Result<Credentials, GcsError> {
        match self {
            GcsCredentials::Anonymous => Ok(anonymous::Builder::new().build()),
            GcsCredentials::ApplicationDefault => google_cloud_auth::credentials::Builder::default(
            )
            .build()
            .map_err(|error| {
                GcsError::permanent(format!(
                    "no usable Google credentials: {error}; set {CREDENTIALS_FILE_VARIABLE} \
                         to a credential configuration file or {CREDENTIALS_VARIABLE} to the \
                         configuration itself (for example the external_account configuration \
                         that terraform/ outputs), or set YUBA_GCS_ENDPOINT to an emulator"
                ))
            }),
            GcsCredentials::ExternalAccount(account) => account.build().await,
        }
    }
}

/// Says which credentials, for a start-up log line.
impl fmt::Display for GcsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcsCredentials::Anonymous => f.write_str("none (emulator)"),
            GcsCredentials::ApplicationDefault => f.write_str("Application Default Credentials"),
            GcsCredentials::ExternalAccount(account) => account.fmt(f),
        }
    }
}

/// A workload identity federation configuration, checked.
#[derive(Clone, PartialEq)]
pub struct ExternalAccount {
    /// The variable it came from, for messages.
    variable: &'static str,
    config: Value,
    audience: String,
    subject_token_type: String,
    token_url: String,
    impersonation_url: Option<String>,
    scopes: Vec<String>,
    aws: Option<AwsSource>,
}

#[derive(Debug, Clone, PartialEq)]
struct AwsSource {
    /// `regional_cred_verification_url`, with `{region}` still in it.
    verification_url: String,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set (Lambda): google-cloud-auth's
    /// own AWS source signs with them.
    keys_in_environment: bool,
}

impl ExternalAccount {
    /// Whether the subject token is signed with aws-config's credential chain
    /// ([`AwsSubjectTokenProvider`]) rather than by google-cloud-auth.
    pub fn uses_aws_config(&self) -> bool {
        self.aws
            .as_ref()
            .is_some_and(|aws| !aws.keys_in_environment)
    }

    /// The credentials: google-cloud-auth's own from the configuration, or, where
    /// [`uses_aws_config`](Self::uses_aws_config), [`with_aws_config`](Self::with_aws_config)
    /// on aws-config's defaults.
    pub async fn build(&self) -> Result<Credentials, GcsError> {
        if self.uses_aws_config() {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            return self.with_aws_config(&aws);
        }
        external_account::Builder::new(self.config.clone())
            .build()
            .map_err(|error| self.unusable(error))
    }

    /// Credentials whose subject token [`AwsSubjectTokenProvider`] signs with `aws`'s
    /// credentials and region (Fargate, ECS, EC2, AWS profiles: anything aws-config resolves).
    /// The token exchange goes to the configuration's `token_url`; the service account, if
    /// any, is impersonated at its `service_account_impersonation_url`, exactly as configured.
    pub fn with_aws_config(&self, aws: &SdkConfig) -> Result<Credentials, GcsError> {
        let Some(source) = &self.aws else {
            return Err(GcsError::permanent(format!(
                "{}: the credential source is not AWS",
                self.variable
            )));
        };
        let provider = AwsSubjectTokenProvider::new(aws, &source.verification_url, &self.audience)
            .map_err(|error| GcsError::permanent(format!("{}: {error}", self.variable)))?;
        let builder = ProgrammaticBuilder::new(Arc::new(provider))
            .with_audience(self.audience.clone())
            .with_subject_token_type(self.subject_token_type.clone())
            .with_token_url(self.token_url.clone());
        let Some(url) = &self.impersonation_url else {
            return builder
                .with_scopes(self.scopes.clone())
                .build()
                .map_err(|error| self.unusable(error));
        };
        // google-cloud-auth's programmatic builder can only impersonate at Google's default
        // endpoint; the configuration's URL is used as it stands instead.
        let federated = builder
            .with_scopes([IAM_SCOPE])
            .build()
            .map_err(|error| self.unusable(error))?;
        Ok(Credentials::from(ImpersonatedCredentials::new(
            federated,
            url.clone(),
            self.scopes.clone(),
        )?))
    }

    fn unusable(&self, error: impl fmt::Display) -> GcsError {
        GcsError::permanent(format!(
            "{}: the external_account configuration cannot be used: {error}; {REEXPORT}",
            self.variable
        ))
    }
}

impl fmt::Debug for ExternalAccount {
    /// Without the configuration itself (a workforce pool's may hold a client secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccount")
            .field("variable", &self.variable)
            .field("audience", &self.audience)
            .field("token_url", &self.token_url)
            .field("impersonation_url", &self.impersonation_url)
            .field("aws", &self.aws)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "external account from {}", self.variable)?;
        match &self.aws {
            Some(aws) if aws.keys_in_environment => {
                f.write_str(", AWS identity from the environment's keys")?
            }
            Some(_) => f.write_str(", AWS identity from aws-config's credential chain")?,
            None => {}
        }
        if let Some(url) = &self.impersonation_url {
            write!(f, ", impersonating through {url}")?;
        }
        Ok(())
    }
}

/// What a credential configuration turned out to be.
enum Parsed {
    ExternalAccount(ExternalAccount),
    /// Another type ADC knows.
    Adc(String),
}

/// The variable a configuration came from, and its value as error messages quote it.
struct Origin {
    variable: &'static str,
    shown: String,
}

impl Origin {
    fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name: self.variable.to_owned(),
            value: self.shown.clone(),
            problem: problem.into(),
        }
    }

    fn parse(&self, text: &str, aws_keys_in_environment: bool) -> Result<Parsed, ConfigError> {
        let config: Value = serde_json::from_str(text).map_err(|error| {
            self.invalid(format!(
                "the credential configuration is not JSON ({error}); {REEXPORT}"
            ))
        })?;
        let Some(fields) = config.as_object() else {
            return Err(self.invalid(format!(
                "the credential configuration is not a JSON object; {REEXPORT}"
            )));
        };
        let kind = self.string(fields, "", "type")?;
        if ADC_TYPES.contains(&kind.as_str()) {
            return Ok(Parsed::Adc(kind));
        }
        if kind != "external_account" {
            return Err(self.invalid(format!(
                "`type` is \"{kind}\", expected \"external_account\" (workload identity \
                 federation; {CREDENTIALS_FILE_VARIABLE} may also name a {} file); {REEXPORT}",
                ADC_TYPES.join(", ")
            )));
        }
        let audience = self.string(fields, "", "audience")?;
        let subject_token_type = self.string(fields, "", "subject_token_type")?;
        let token_url = self.url(fields, "", "token_url")?;
        let impersonation_url = match fields.get("service_account_impersonation_url") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.url(fields, "", "service_account_impersonation_url")?),
        };
        let scopes = match fields.get("scopes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(_) => return Err(self.invalid("`scopes` is not a list of strings")),
        };
        let source = match fields.get("credential_source") {
            Some(Value::Object(source)) => source,
            None => {
                return Err(
                    self.invalid(format!("field `credential_source` is missing; {REEXPORT}"))
                );
            }
            Some(_) => {
                return Err(self.invalid(format!(
                    "`credential_source` is not a JSON object; {REEXPORT}"
                )));
            }
        };
        let aws = match source.get("environment_id") {
            None => {
                if !["file", "url", "executable"]
                    .iter()
                    .any(|kind| source.contains_key(*kind))
                {
                    return Err(self.invalid(format!(
                        "`credential_source` names no source (environment_id for AWS, file, \
                         url or executable); {REEXPORT}"
                    )));
                }
                None
            }
            Some(_) => {
                let environment = self.string(source, "credential_source.", "environment_id")?;
                if !environment.starts_with("aws") {
                    return Err(self.invalid(format!(
                        "`credential_source.environment_id` is \"{environment}\", expected \
                         \"aws1\"; {REEXPORT}"
                    )));
                }
                if source
                    .get("regional_cred_verification_url")
                    .is_none_or(Value::is_null)
                {
                    return Err(self.invalid(format!(
                        "field `credential_source.regional_cred_verification_url` is missing: \
                         an AWS source needs the regional STS GetCallerIdentity URL \
                         (\"https://sts.{{region}}.amazonaws.com?Action=GetCallerIdentity&\
                         Version=2011-06-15\"); {REEXPORT}"
                    )));
                }
                let verification_url = self.string(
                    source,
                    "credential_source.",
                    "regional_cred_verification_url",
                )?;
                sts_url(&verification_url, "us-east-1").map_err(|problem| {
                    self.invalid(format!(
                        "`credential_source.regional_cred_verification_url` {problem}; {REEXPORT}"
                    ))
                })?;
                if subject_token_type != AWS_SUBJECT_TOKEN_TYPE {
                    return Err(self.invalid(format!(
                        "`subject_token_type` is \"{subject_token_type}\", but an AWS \
                         credential source needs \"{AWS_SUBJECT_TOKEN_TYPE}\"; {REEXPORT}"
                    )));
                }
                Some(AwsSource {
                    verification_url,
                    keys_in_environment: aws_keys_in_environment,
                })
            }
        };
        // An AWS source only works with a workload identity pool; other sources may have a
        // workforce pool's audience, which is left to google-cloud-auth.
        if (aws.is_some() || audience.starts_with("//iam.googleapis.com/projects/"))
            && let Some(problem) = pool_audience_problem(&audience)
        {
            return Err(self.invalid(format!(
                "`audience` {problem}; no pool or provider can have it, so give the pool and its \
                 provider valid ids (terraform/: pool_id, pool_provider_id) and {REEXPORT}"
            )));
        }
        Ok(Parsed::ExternalAccount(ExternalAccount {
            variable: self.variable,
            audience,
            subject_token_type,
            token_url,
            impersonation_url,
            scopes: if scopes.is_empty() {
                vec![CLOUD_PLATFORM_SCOPE.to_owned()]
            } else {
                scopes
            },
            aws,
            config,
        }))
    }

    /// The non-empty string `field` of `fields` (`path`: where `fields` is, for messages).
    fn string(
        &self,
        fields: &Map<String, Value>,
        path: &str,
        field: &str,
    ) -> Result<String, ConfigError> {
        match fields.get(field) {
            Some(Value::String(value)) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
            None | Some(Value::Null) => {
                Err(self.invalid(format!("field `{path}{field}` is missing; {REEXPORT}")))
            }
            Some(_) => Err(self.invalid(format!(
                "`{path}{field}` is not a non-empty string; {REEXPORT}"
            ))),
        }
    }

    fn url(
        &self,
        fields: &Map<String, Value>,
        path: &str,
        field: &str,
    ) -> Result<String, ConfigError> {
        let value = self.string(fields, path, field)?;
        match Url::parse(&value) {
            Ok(url) if ["https", "http"].contains(&url.scheme()) && url.host().is_some() => {
                Ok(value)
            }
            _ => Err(self.invalid(format!(
                "`{path}{field}` is \"{value}\", not an https:// URL; {REEXPORT}"
            ))),
        }
    }
}

/// What is wrong with a workload identity pool provider's audience ([`POOL_AUDIENCE`]), if
/// anything: its shape, or a pool or provider id that Google refuses.
fn pool_audience_problem(audience: &str) -> Option<String> {
    let parts: Option<Vec<&str>> = audience
        .strip_prefix("//iam.googleapis.com/projects/")
        .map(|rest| rest.split('/').collect());
    let Some(
        [
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ],
    ) = parts.as_deref()
    else {
        return Some(format!("is \"{audience}\", not {POOL_AUDIENCE}"));
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "is \"{audience}\": \"{number}\" is not a project number ({POOL_AUDIENCE})"
        ));
    }
    for (what, id, doc) in [
        ("pool", pool, POOL_ID_DOC),
        ("provider", provider, PROVIDER_ID_DOC),
    ] {
        if !is_pool_or_provider_id(id) {
            return Some(format!(
                "names the {what} id \"{id}\", which Google refuses: pool and provider ids are \
                 4-32 characters of [a-z0-9-] and do not begin with \"gcp-\" ({doc})"
            ));
        }
    }
    None
}

/// Google's rule for workload identity pool and provider ids alike ([`POOL_ID_DOC`],
/// [`PROVIDER_ID_DOC`]): "This value must be 4-32 characters, and may contain the characters
/// [a-z0-9-]. The prefix gcp- is reserved for use by Google, and may not be specified."
fn is_pool_or_provider_id(id: &str) -> bool {
    (4..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with("gcp-")
}

/// A long value cut short for an error message.
fn abbreviated(value: &str) -> String {
    const SHOWN: usize = 48;
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

/// The STS URL of `template` (`regional_cred_verification_url`) for `region`, as
/// google-cloud-auth makes it: `https://` if it names no scheme.
fn sts_url(template: &str, region: &str) -> Result<Url, String> {
    let url = template.replace("{region}", region);
    let url = if url.starts_with("http") {
        url
    } else {
        format!("https://{url}")
    };
    match Url::parse(&url) {
        Ok(parsed) if parsed.host_str().is_some() => Ok(parsed),
        Ok(_) => Err(format!("is \"{template}\", a URL without a host")),
        Err(error) => Err(format!("is \"{template}\", not a URL ({error})")),
    }
}

/// Signs the STS `GetCallerIdentity` request that proves the AWS identity to Google's STS,
/// with credentials from aws-config (so also ECS/Fargate container credentials), as Google's
/// AWS-sourced workload identity federation expects.
#[derive(Debug, Clone)]
pub struct AwsSubjectTokenProvider {
    credentials: SharedCredentialsProvider,
    region: String,
    /// `regional_cred_verification_url`, with `{region}` still in it.
    verification_url: String,
    audience: String,
}

impl AwsSubjectTokenProvider {
    /// `aws` gives the credentials and the region; `verification_url` is the configuration's
    /// `regional_cred_verification_url` and `audience` its `audience`.
    pub fn new(
        aws: &SdkConfig,
        verification_url: &str,
        audience: &str,
    ) -> Result<AwsSubjectTokenProvider, AwsSubjectTokenError> {
        let region = aws.region().ok_or_else(|| {
            AwsSubjectTokenError::permanent(
                "the AWS region is unknown, and the STS request is regional: set AWS_REGION",
            )
        })?;
        let credentials = aws.credentials_provider().ok_or_else(|| {
            AwsSubjectTokenError::permanent("aws-config has no credentials provider")
        })?;
        sts_url(verification_url, region.as_ref()).map_err(|problem| {
            AwsSubjectTokenError::permanent(format!("regional_cred_verification_url {problem}"))
        })?;
        Ok(AwsSubjectTokenProvider {
            credentials,
            region: region.to_string(),
            verification_url: verification_url.to_owned(),
            audience: audience.to_owned(),
        })
    }
}

impl SubjectTokenProvider for AwsSubjectTokenProvider {
    type Error = AwsSubjectTokenError;

    async fn subject_token(&self) -> Result<SubjectToken, AwsSubjectTokenError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(AwsSubjectTokenError::from_provider)?;
        let token = aws_subject_token(
            &credentials,
            &self.region,
            &self.verification_url,
            &self.audience,
            SystemTime::now(),
        )?;
        Ok(subject_token::Builder::new(token).build())
    }
}

/// Google's AWS subject token: the `GetCallerIdentity` POST to `verification_url` (its
/// `{region}` filled in), with the `x-goog-cloud-target-resource` header set to `audience`,
/// signed with SigV4 for `sts` in `region` at `time`, as URL-encoded JSON
/// `{"url","method","headers":[{"key","value"}...],"body"}`. The headers are `host`,
/// `x-amz-date`, `x-amz-security-token` (with a session token) and
/// `x-goog-cloud-target-resource` in that order, then `Authorization`: the shape
/// google-cloud-auth's own AWS source gives Google.
pub fn aws_subject_token(
    credentials: &AwsCredentials,
    region: &str,
    verification_url: &str,
    audience: &str,
    time: SystemTime,
) -> Result<String, AwsSubjectTokenError> {
    let url = sts_url(verification_url, region).map_err(|problem| {
        AwsSubjectTokenError::permanent(format!("regional_cred_verification_url {problem}"))
    })?;
    let headers = sign_v4(
        "POST",
        &url,
        &[("x-goog-cloud-target-resource", audience)],
        credentials,
        region,
        "sts",
        time,
    )?;
    let request = SignedRequest {
        url: url.as_str(),
        method: "POST",
        headers: headers
            .iter()
            .map(|(key, value)| RequestHeader { key, value })
            .collect(),
        body: "",
    };
    let json = serde_json::to_string(&request)
        .map_err(|error| AwsSubjectTokenError::permanent(error.to_string()))?;
    Ok(form_urlencoded::byte_serialize(json.as_bytes()).collect())
}

#[derive(Serialize)]
struct SignedRequest<'a> {
    url: &'a str,
    method: &'a str,
    headers: Vec<RequestHeader<'a>>,
    body: &'a str,
}

#[derive(Serialize)]
struct RequestHeader<'a> {
    key: &'a str,
    value: &'a str,
}

/// The headers of `method url` with `headers` (names in lower case) signed with SigV4 (the
/// session token signed too, the body empty): `host`, `headers`, `x-amz-date`,
/// `x-amz-security-token` if there is a session token, sorted by name, then `Authorization`.
fn sign_v4(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, AwsSubjectTokenError> {
    let host = url
        .host_str()
        .ok_or_else(|| AwsSubjectTokenError::permanent(format!("{url} names no host")))?;
    let mut signed: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
        .collect();
    signed.insert(
        "host".to_owned(),
        match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        },
    );
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| AwsSubjectTokenError::permanent(format!("SigV4: {error}")))?
        .into();
    let request = SignableRequest::new(
        method,
        url.as_str(),
        signed
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        SignableBody::Bytes(&[]),
    )
    .and_then(|request| sign(request, &params))
    .map_err(|error| AwsSubjectTokenError::permanent(format!("SigV4: {error}")))?;
    let (instructions, _signature) = request.into_parts();
    let mut authorization = None;
    for (name, value) in instructions.headers() {
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_owned());
        } else {
            signed.insert(name.to_ascii_lowercase(), value.to_owned());
        }
    }
    let authorization = authorization
        .ok_or_else(|| AwsSubjectTokenError::permanent("SigV4 gave no Authorization header"))?;
    Ok(signed
        .into_iter()
        .chain([("Authorization".to_owned(), authorization)])
        .collect())
}

/// Why no AWS subject token could be made.
#[derive(Debug)]
pub struct AwsSubjectTokenError {
    message: String,
    transient: bool,
}

impl AwsSubjectTokenError {
    fn permanent(message: impl Into<String>) -> Self {
        AwsSubjectTokenError {
            message: message.into(),
            transient: false,
        }
    }

    /// Missing or misconfigured credentials need a person; the rest (a timeout, the container
    /// credentials endpoint failing) may clear up.
    fn from_provider(error: AwsCredentialsError) -> Self {
        let transient = !matches!(
            error,
            AwsCredentialsError::CredentialsNotLoaded(_)
                | AwsCredentialsError::InvalidConfiguration(_)
        );
        let mut message = format!("no AWS credentials from aws-config: {error}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        AwsSubjectTokenError { message, transient }
    }
}

impl fmt::Display for AwsSubjectTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AwsSubjectTokenError {}

impl SubjectTokenProviderError for AwsSubjectTokenError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// A service account impersonated with federated credentials at an exact
/// `generateAccessToken` URL (google-cloud-auth's programmatic builder only takes the
/// account's email). Tokens are kept until shortly before they end; one refresh at a time.
#[derive(Debug)]
struct ImpersonatedCredentials {
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
    fn new(
        federated: Credentials,
        url: String,
        scopes: Vec<String>,
    ) -> Result<ImpersonatedCredentials, GcsError> {
        let http = reqwest::Client::builder()
            .timeout(IMPERSONATION_TIMEOUT)
            .build()
            .map_err(|error| GcsError::permanent(format!("HTTP client: {error}")))?;
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
                    tracing::warn!(%error, "could not refresh the impersonated token");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// terraform/'s defaults: pool `yuba-aws`, provider `aws-account`.
    const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/\
                            workloadIdentityPools/yuba-aws/providers/aws-account";
    const STS_URL: &str =
        "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";

    fn aws_config_json() -> Value {
        // The shape of terraform/'s `worker_credentials_json` output.
        serde_json::json!({
            "universe_domain": "googleapis.com",
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": AWS_SUBJECT_TOKEN_TYPE,
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/yuba@p.iam.gserviceaccount.com:generateAccessToken",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {
                "environment_id": "aws1",
                "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
                "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
                "regional_cred_verification_url": STS_URL,
                "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token",
            }
        })
    }

    fn choose(pairs: &[(&str, &str)]) -> Result<GcsCredentials, ConfigError> {
        GcsCredentials::from_env(&Env::from_pairs(pairs.iter().copied()), false)
    }

    /// The message for the inline configuration `config`.
    fn problem_with(config: &Value) -> String {
        choose(&[(CREDENTIALS_VARIABLE, &config.to_string())])
            .unwrap_err()
            .to_string()
    }

    fn without(path: &[&str]) -> Value {
        let mut config = aws_config_json();
        let (last, parents) = path.split_last().unwrap();
        let mut object = &mut config;
        for parent in parents {
            object = object.get_mut(*parent).unwrap();
        }
        object.as_object_mut().unwrap().remove(*last);
        config
    }

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("yuba-gcs-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn the_emulator_is_anonymous_and_nothing_set_is_adc() {
        let env = Env::from_pairs([(CREDENTIALS_VARIABLE, "not even JSON")]);
        assert_eq!(
            GcsCredentials::from_env(&env, true),
            Ok(GcsCredentials::Anonymous)
        );
        assert_eq!(choose(&[]), Ok(GcsCredentials::ApplicationDefault));
    }

    #[test]
    fn lambda_keys_choose_the_crates_aws_source_and_anything_else_aws_config() {
        let inline = aws_config_json().to_string();
        let lambda = choose(&[
            (CREDENTIALS_VARIABLE, &inline),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ])
        .unwrap();
        let GcsCredentials::ExternalAccount(lambda) = lambda else {
            panic!("{lambda:?}")
        };
        assert!(!lambda.uses_aws_config());
        assert_eq!(
            lambda.to_string(),
            "external account from YUBA_GCS_CREDENTIALS, AWS identity from the environment's \
             keys, impersonating through https://iamcredentials.googleapis.com/v1/projects/-/\
             serviceAccounts/yuba@p.iam.gserviceaccount.com:generateAccessToken"
        );
        let fargate = choose(&[
            (CREDENTIALS_VARIABLE, &inline),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
        ])
        .unwrap();
        let GcsCredentials::ExternalAccount(fargate) = fargate else {
            panic!("{fargate:?}")
        };
        assert!(fargate.uses_aws_config());
        assert_eq!(fargate.scopes, [CLOUD_PLATFORM_SCOPE]);
        assert_eq!(
            fargate
                .aws
                .as_ref()
                .map(|aws| aws.verification_url.as_str()),
            Some(STS_URL)
        );
    }

    #[test]
    fn a_file_is_read_at_start_up() {
        let path = temp_file("aws.json", &aws_config_json().to_string());
        let chosen = choose(&[(CREDENTIALS_FILE_VARIABLE, path.to_str().unwrap())]).unwrap();
        assert!(
            matches!(&chosen, GcsCredentials::ExternalAccount(account) if account.variable == CREDENTIALS_FILE_VARIABLE),
            "{chosen:?}"
        );
        // A service account key is left to ADC, which reads it itself.
        let key = temp_file("key.json", r#"{"type": "service_account"}"#);
        assert_eq!(
            choose(&[(CREDENTIALS_FILE_VARIABLE, key.to_str().unwrap())]),
            Ok(GcsCredentials::ApplicationDefault)
        );
        // Non-AWS sources are google-cloud-auth's.
        let mut file_sourced = aws_config_json();
        file_sourced["subject_token_type"] = "urn:ietf:params:oauth:token-type:jwt".into();
        file_sourced["credential_source"] = serde_json::json!({"file": "/var/run/token"});
        let GcsCredentials::ExternalAccount(account) =
            choose(&[(CREDENTIALS_VARIABLE, &file_sourced.to_string())]).unwrap()
        else {
            panic!()
        };
        assert!(!account.uses_aws_config() && account.aws.is_none());
        for file in [path, key] {
            std::fs::remove_file(file).unwrap();
        }
    }

    #[test]
    fn a_missing_or_unreadable_file_names_the_variable() {
        let missing = choose(&[(CREDENTIALS_FILE_VARIABLE, "/nonexistent/yuba-gcp.json")])
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with(
                "GOOGLE_APPLICATION_CREDENTIALS=\"/nonexistent/yuba-gcp.json\" is not valid: \
                 cannot read the credential configuration"
            ) && missing.contains("re-export the credential configuration"),
            "{missing}"
        );
        let garbage = temp_file("garbage.json", "{\"type\": \"external_account\",");
        let error = choose(&[(CREDENTIALS_FILE_VARIABLE, garbage.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&garbage).unwrap();
        assert!(
            error.starts_with("GOOGLE_APPLICATION_CREDENTIALS=") && error.contains("is not JSON"),
            "{error}"
        );
    }

    #[test]
    fn inline_json_that_is_not_json_or_not_an_object_is_refused() {
        let error = choose(&[(CREDENTIALS_VARIABLE, "external_account")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("YUBA_GCS_CREDENTIALS=\"external_account\" is not valid: the credential configuration is not JSON"),
            "{error}"
        );
        let error = choose(&[(CREDENTIALS_VARIABLE, "[1]")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a JSON object"), "{error}");
    }

    #[test]
    fn both_variables_at_once_are_refused() {
        let error = choose(&[
            (CREDENTIALS_VARIABLE, &aws_config_json().to_string()),
            (CREDENTIALS_FILE_VARIABLE, "/etc/gcp.json"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("YUBA_GCS_CREDENTIALS=") && error.contains("not both"),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_type_is_named() {
        let mut config = aws_config_json();
        config["type"] = "external_account_authorized_user".into();
        let error = problem_with(&config);
        assert!(
            error.contains(
                "`type` is \"external_account_authorized_user\", expected \"external_account\""
            ),
            "{error}"
        );
        // A service account key is not for the inline variable.
        let error = choose(&[(CREDENTIALS_VARIABLE, r#"{"type": "service_account"}"#)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`type` is \"service_account\"")
                && error.contains("name a service_account file in GOOGLE_APPLICATION_CREDENTIALS"),
            "{error}"
        );
        assert!(problem_with(&without(&["type"])).contains("field `type` is missing"));
    }

    #[test]
    fn each_missing_required_field_is_named() {
        for (path, named) in [
            (&["audience"][..], "field `audience` is missing"),
            (
                &["subject_token_type"],
                "field `subject_token_type` is missing",
            ),
            (&["token_url"], "field `token_url` is missing"),
            (
                &["credential_source"],
                "field `credential_source` is missing",
            ),
            (
                &["credential_source", "regional_cred_verification_url"],
                "field `credential_source.regional_cred_verification_url` is missing",
            ),
        ] {
            let error = problem_with(&without(path));
            assert!(
                error.starts_with("YUBA_GCS_CREDENTIALS=\"{")
                    && error.contains(named)
                    && error.contains("terraform/"),
                "{path:?}: {error}"
            );
        }
    }

    #[test]
    fn malformed_fields_are_named() {
        let mut config = aws_config_json();
        config["audience"] = 7.into();
        assert!(problem_with(&config).contains("`audience` is not a non-empty string"));

        let mut config = aws_config_json();
        config["token_url"] = "sts.googleapis.com/v1/token".into();
        assert!(problem_with(&config).contains("`token_url` is \"sts.googleapis.com/v1/token\""));

        let mut config = aws_config_json();
        config["credential_source"] = serde_json::json!({});
        assert!(problem_with(&config).contains("`credential_source` names no source"));

        let mut config = aws_config_json();
        config["credential_source"]["environment_id"] = "azure1".into();
        assert!(problem_with(&config).contains("`credential_source.environment_id` is \"azure1\""));

        let mut config = aws_config_json();
        config["credential_source"]["regional_cred_verification_url"] = "https://".into();
        assert!(
            problem_with(&config).contains("`credential_source.regional_cred_verification_url`")
        );

        let mut config = aws_config_json();
        config["subject_token_type"] = "urn:ietf:params:oauth:token-type:jwt".into();
        assert!(problem_with(&config).contains(
            "an AWS credential source needs \"urn:ietf:params:aws:token-type:aws4_request\""
        ));
    }

    /// The configuration with the audience of `pool` and `provider` in project 123456789012.
    fn with_pool_and_provider(pool: &str, provider: &str) -> Value {
        let mut config = aws_config_json();
        config["audience"] = format!(
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/\
             {pool}/providers/{provider}"
        )
        .into();
        config
    }

    #[test]
    fn pool_and_provider_ids_follow_googles_rule() {
        for (pool, provider) in [
            ("yuba", "aws-account"),
            ("yuba-dev-aws", "aws1"),
            (&"a".repeat(32), "0-9-"),
            ("gcpx", "x-gcp-y"),
        ] {
            let config = with_pool_and_provider(pool, provider);
            assert!(
                choose(&[(CREDENTIALS_VARIABLE, &config.to_string())]).is_ok(),
                "{pool}/{provider}"
            );
        }
        for (pool, provider, named) in [
            ("yuba", "aws", "the provider id \"aws\""),
            ("yub", "aws-account", "the pool id \"yub\""),
            (&"a".repeat(33), "aws-account", "the pool id \"aaa"),
            ("gcp-yuba", "aws-account", "the pool id \"gcp-yuba\""),
            ("yuba-aws", "gcp-aws", "the provider id \"gcp-aws\""),
            ("Yuba-aws", "aws-account", "the pool id \"Yuba-aws\""),
            ("yuba_aws", "aws-account", "the pool id \"yuba_aws\""),
        ] {
            let error = problem_with(&with_pool_and_provider(pool, provider));
            let doc = if named.contains("provider") {
                PROVIDER_ID_DOC
            } else {
                POOL_ID_DOC
            };
            assert!(
                error.contains(&format!("`audience` names {named}"))
                    && error.contains(
                        "which Google refuses: pool and provider ids are 4-32 characters of \
                         [a-z0-9-] and do not begin with \"gcp-\""
                    )
                    && error.contains(doc)
                    && error.contains("terraform/: pool_id, pool_provider_id")
                    && error.contains("re-export the credential configuration"),
                "{pool}/{provider}: {error}"
            );
        }
    }

    #[test]
    fn an_aws_source_needs_a_workload_identity_pools_audience() {
        for audience in [
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws",
            "//iam.googleapis.com/projects/123456789012/locations/europe-west1/workloadIdentityPools/yuba-aws/providers/aws-account",
            "//iam.googleapis.com/locations/global/workforcePools/yuba-aws/providers/aws-account",
            "//sts.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account",
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account/",
        ] {
            let mut config = aws_config_json();
            config["audience"] = audience.into();
            let error = problem_with(&config);
            assert!(
                error.contains(&format!(
                    "`audience` is \"{audience}\", not {POOL_AUDIENCE}"
                )),
                "{error}"
            );
        }
        let mut config = aws_config_json();
        config["audience"] = "//iam.googleapis.com/projects/my-project/locations/global/\
                              workloadIdentityPools/yuba-aws/providers/aws-account"
            .into();
        assert!(problem_with(&config).contains("\"my-project\" is not a project number"));
    }

    #[test]
    fn other_sources_are_held_to_it_for_a_workload_identity_pool_only() {
        let file_sourced = |audience: &str| {
            let mut config = aws_config_json();
            config["audience"] = audience.into();
            config["subject_token_type"] = "urn:ietf:params:oauth:token-type:jwt".into();
            config["credential_source"] = serde_json::json!({"file": "/var/run/token"});
            choose(&[(CREDENTIALS_VARIABLE, &config.to_string())])
        };
        // A workforce pool's audience is google-cloud-auth's to judge.
        assert!(
            file_sourced(
                "//iam.googleapis.com/locations/global/workforcePools/staff/providers/oidc"
            )
            .is_ok()
        );
        let error = file_sourced(
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/\
             yuba/providers/gcp-oidc",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("the provider id \"gcp-oidc\""), "{error}");
    }

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// 2015-08-30T12:36:00Z, the time of AWS's SigV4 test suite.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn suite_credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials::new(AKID, SECRET, token.map(str::to_owned), None, "test")
    }

    /// The Authorization header `sign_v4` gives for a request of AWS's SigV4 test suite
    /// (host `example.amazonaws.com`, region `us-east-1`, service `service`).
    fn suite_authorization(method: &str, path_and_query: &str, token: Option<&str>) -> String {
        let url = Url::parse(&format!("https://example.amazonaws.com{path_and_query}")).unwrap();
        let headers = sign_v4(
            method,
            &url,
            &[],
            &suite_credentials(token),
            "us-east-1",
            "service",
            suite_time(),
        )
        .unwrap();
        let (name, value) = headers.last().unwrap();
        assert_eq!(name, "Authorization");
        value.clone()
    }

    /// The expected values are the `header-signed-request.txt` of each case in AWS's SigV4
    /// test suite (as shipped in aws-sigv4's `aws-signing-test-suite/v4/`).
    #[test]
    fn sigv4_matches_the_aws_test_suite() {
        let expect = |signed_headers: &str, signature: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={signed_headers}, Signature={signature}"
            )
        };
        // get-vanilla
        assert_eq!(
            suite_authorization("GET", "/", None),
            expect(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        // post-vanilla
        assert_eq!(
            suite_authorization("POST", "/", None),
            expect(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        // post-vanilla-query
        assert_eq!(
            suite_authorization("POST", "/?Param1=value1", None),
            expect(
                "host;x-amz-date",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"
            )
        );
        // get-vanilla-query-order-key-case
        assert_eq!(
            suite_authorization("GET", "/?Param2=value2&Param1=value1", None),
            expect(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
        // get-vanilla-with-session-token
        assert_eq!(
            suite_authorization(
                "GET",
                "/",
                Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")
            ),
            expect(
                "host;x-amz-date;x-amz-security-token",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
        // post-sts-header-before (the session token signed, as Google's STS expects)
        assert_eq!(
            suite_authorization(
                "POST",
                "/",
                Some(
                    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBu\
                     FqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp\
                     2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6\
                     d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4r\
                     vx3iSIlTJabIQwj2ICCR/oLxBA=="
                )
            ),
            expect(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
    }

    const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJH+MEUCIQ==";

    /// The subject token for fixed credentials and time, byte for byte. The signatures were
    /// recorded with an independent signer, botocore 1.44.5's `SigV4Auth` (which reproduces the
    /// suite's post-vanilla signature), on the same request: POST
    /// `https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15` with
    /// `host` and `x-goog-cloud-target-resource`, service `sts`, at 20150830T123600Z.
    #[test]
    fn the_subject_token_is_the_recorded_signed_request() {
        let token = aws_subject_token(
            &suite_credentials(Some(SESSION_TOKEN)),
            "us-east-1",
            STS_URL,
            AUDIENCE,
            suite_time(),
        )
        .unwrap();
        let expected = concat!(
            "%7B%22url%22%3A%22https%3A%2F%2Fsts.us-east-1.amazonaws.com%2F%3FAction%3DGetCallerIde",
            "ntity%26Version%3D2011-06-15%22%2C%22method%22%3A%22POST%22%2C%22headers%22%3A%5B%7B%2",
            "2key%22%3A%22host%22%2C%22value%22%3A%22sts.us-east-1.amazonaws.com%22%7D%2C%7B%22key%",
            "22%3A%22x-amz-date%22%2C%22value%22%3A%2220150830T123600Z%22%7D%2C%7B%22key%22%3A%22x-",
            "amz-security-token%22%2C%22value%22%3A%22IQoJb3JpZ2luX2VjEXAMPLE%2F%2F%2F%2F%2F%2F%2F%",
            "2F%2F%2FwEaCXVzLWVhc3QtMSJH%2BMEUCIQ%3D%3D%22%7D%2C%7B%22key%22%3A%22x-goog-cloud-targ",
            "et-resource%22%2C%22value%22%3A%22%2F%2Fiam.googleapis.com%2Fprojects%2F123456789012%2",
            "Flocations%2Fglobal%2FworkloadIdentityPools%2Fyuba-aws%2Fproviders%2Faws-account%22%7D",
            "%2C%7B%22key%22%3A%22Authorization%22%2C%22value%22%3A%22AWS4-HMAC-SHA256+Credential%3",
            "DAKIDEXAMPLE%2F20150830%2Fus-east-1%2Fsts%2Faws4_request%2C+SignedHeaders%3Dhost%3Bx-a",
            "mz-date%3Bx-amz-security-token%3Bx-goog-cloud-target-resource%2C+Signature%3D9de2bdc43",
            "4a9c3056abf351c42dfc9c80d71f2c547281e72f0ad0c05c09ec024%22%7D%5D%2C%22body%22%3A%22%22",
            "%7D",
        );
        assert_eq!(token, expected);

        // Decoded, it is the request google-cloud-auth's AWS source describes.
        let json: String = form_urlencoded::parse(token.as_bytes())
            .map(|(key, _)| key.into_owned())
            .collect();
        let request: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            request,
            serde_json::json!({
                "url": "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
                "method": "POST",
                "headers": [
                    {"key": "host", "value": "sts.us-east-1.amazonaws.com"},
                    {"key": "x-amz-date", "value": "20150830T123600Z"},
                    {"key": "x-amz-security-token", "value": SESSION_TOKEN},
                    {"key": "x-goog-cloud-target-resource", "value": AUDIENCE},
                    {"key": "Authorization", "value": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, Signature=9de2bdc434a9c3056abf351c42dfc9c80d71f2c547281e72f0ad0c05c09ec024"},
                ],
                "body": "",
            })
        );
    }

    #[test]
    fn without_a_session_token_none_is_sent() {
        let token = aws_subject_token(
            &suite_credentials(None),
            "us-east-1",
            STS_URL,
            AUDIENCE,
            suite_time(),
        )
        .unwrap();
        let json: String = form_urlencoded::parse(token.as_bytes())
            .map(|(key, _)| key.into_owned())
            .collect();
        let request: Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|header| header["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "host",
                "x-amz-date",
                "x-goog-cloud-target-resource",
                "Authorization"
            ]
        );
        // Recorded with botocore as above, without the session token.
        assert_eq!(
            request["headers"][3]["value"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, \
             SignedHeaders=host;x-amz-date;x-goog-cloud-target-resource, \
             Signature=09c4a8fcf40307ff2c54c236191a16e667fed1136f39d5d882db44c1e84d6a50"
        );
    }

    #[test]
    fn the_provider_needs_a_region() {
        let aws = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(suite_credentials(None)))
            .build();
        let error = AwsSubjectTokenProvider::new(&aws, STS_URL, AUDIENCE).unwrap_err();
        assert!(error.to_string().contains("set AWS_REGION"), "{error}");
        assert!(!error.is_transient());
    }
}
