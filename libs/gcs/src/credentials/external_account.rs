//! A workload identity federation configuration (`"type": "external_account"`): read and
//! checked at start-up ([`Origin::parse`]), so a bad one stops the program with the variable and
//! the field, and built into credentials when the clients connect.

use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;
use google_cloud_auth::credentials::Credentials;
use google_cloud_auth::credentials::external_account::{self, ProgrammaticBuilder};
use reqwest::Url;
use serde_json::{Map, Value};
use yuba_model::Cause;
use yuba_startup::ConfigError;

use super::aws::{AwsSubjectTokenProvider, sts_url};
use super::impersonated::ImpersonatedCredentials;
use super::{CREDENTIALS_FILE_VARIABLE, REEXPORT};
use crate::error::GcsError;

const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope of the federated token that is only used to impersonate a service account (as
/// google-cloud-auth asks for it).
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
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
            .map_err(|error| {
                GcsError::permanent(format!(
                    "{}: the AWS credential source cannot be used",
                    self.variable
                ))
                .caused_by(error)
            })?;
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

    fn unusable(&self, error: impl Into<Cause>) -> GcsError {
        GcsError::permanent(format!(
            "{}: the external_account configuration cannot be used; {REEXPORT}",
            self.variable
        ))
        .caused_by(error)
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
pub(super) enum Parsed {
    ExternalAccount(ExternalAccount),
    /// Another type ADC knows.
    Adc(String),
}

/// The variable a configuration came from, and its value as error messages quote it.
pub(super) struct Origin {
    pub(super) variable: &'static str,
    pub(super) shown: String,
}

impl Origin {
    pub(super) fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name: self.variable.to_owned(),
            value: self.shown.clone(),
            problem: problem.into(),
        }
    }

    /// The configuration in `text`: an external account, checked, or another type ADC knows
    /// (`aws_keys_in_environment`: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set).
    pub(super) fn parse(
        &self,
        text: &str,
        aws_keys_in_environment: bool,
    ) -> Result<Parsed, ConfigError> {
        let config: Value = serde_json::from_str(text).map_err(|error| {
            self.invalid(format!(
                "the credential configuration is not JSON ({error}); {REEXPORT}"
            ))
        })?;
        let Value::Object(fields) = config else {
            return Err(self.invalid(format!(
                "the credential configuration is not a JSON object; {REEXPORT}"
            )));
        };
        let kind = self.string(&fields, "", "type")?;
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
        self.external_account(fields, aws_keys_in_environment)
            .map(Parsed::ExternalAccount)
    }

    /// The fields of an `external_account` configuration, checked.
    fn external_account(
        &self,
        fields: Map<String, Value>,
        aws_keys_in_environment: bool,
    ) -> Result<ExternalAccount, ConfigError> {
        let audience = self.string(&fields, "", "audience")?;
        let subject_token_type = self.string(&fields, "", "subject_token_type")?;
        let token_url = self.url(&fields, "", "token_url")?;
        let impersonation_url = match fields.get("service_account_impersonation_url") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.url(&fields, "", "service_account_impersonation_url")?),
        };
        let scopes = self.scopes(&fields)?;
        let aws = self.credential_source(&fields, &subject_token_type, aws_keys_in_environment)?;
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
        Ok(ExternalAccount {
            variable: self.variable,
            audience,
            subject_token_type,
            token_url,
            impersonation_url,
            scopes,
            aws,
            config: Value::Object(fields),
        })
    }

    /// `scopes`, Google Cloud's whole platform if none.
    fn scopes(&self, fields: &Map<String, Value>) -> Result<Vec<String>, ConfigError> {
        let scopes: Vec<String> = match fields.get("scopes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(_) => return Err(self.invalid("`scopes` is not a list of strings")),
        };
        if scopes.is_empty() {
            return Ok(vec![CLOUD_PLATFORM_SCOPE.to_owned()]);
        }
        Ok(scopes)
    }

    /// `credential_source`: an AWS one, checked, or `None` for the other kinds (a file, a URL,
    /// an executable), which are google-cloud-auth's.
    fn credential_source(
        &self,
        fields: &Map<String, Value>,
        subject_token_type: &str,
        aws_keys_in_environment: bool,
    ) -> Result<Option<AwsSource>, ConfigError> {
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
        if source.contains_key("environment_id") {
            return self
                .aws_source(source, subject_token_type, aws_keys_in_environment)
                .map(Some);
        }
        if !["file", "url", "executable"]
            .iter()
            .any(|kind| source.contains_key(*kind))
        {
            return Err(self.invalid(format!(
                "`credential_source` names no source (environment_id for AWS, file, url or \
                 executable); {REEXPORT}"
            )));
        }
        Ok(None)
    }

    /// A `credential_source` with an `environment_id`, which must be AWS's, with the regional
    /// STS URL its subject token is signed for.
    fn aws_source(
        &self,
        source: &Map<String, Value>,
        subject_token_type: &str,
        aws_keys_in_environment: bool,
    ) -> Result<AwsSource, ConfigError> {
        let environment = self.string(source, "credential_source.", "environment_id")?;
        if !environment.starts_with("aws") {
            return Err(self.invalid(format!(
                "`credential_source.environment_id` is \"{environment}\", expected \"aws1\"; \
                 {REEXPORT}"
            )));
        }
        if source
            .get("regional_cred_verification_url")
            .is_none_or(Value::is_null)
        {
            return Err(self.invalid(format!(
                "field `credential_source.regional_cred_verification_url` is missing: an AWS \
                 source needs the regional STS GetCallerIdentity URL \
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
                "`subject_token_type` is \"{subject_token_type}\", but an AWS credential source \
                 needs \"{AWS_SUBJECT_TOKEN_TYPE}\"; {REEXPORT}"
            )));
        }
        Ok(AwsSource {
            verification_url,
            keys_in_environment: aws_keys_in_environment,
        })
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{STS_URL, aws_config_json, choose, problem_with, without};
    use super::super::{CREDENTIALS_VARIABLE, GcsCredentials};
    use super::*;

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
    fn other_sources_are_google_cloud_auths() {
        let mut file_sourced = aws_config_json();
        file_sourced["subject_token_type"] = "urn:ietf:params:oauth:token-type:jwt".into();
        file_sourced["credential_source"] = serde_json::json!({"file": "/var/run/token"});
        let GcsCredentials::ExternalAccount(account) =
            choose(&[(CREDENTIALS_VARIABLE, &file_sourced.to_string())]).unwrap()
        else {
            panic!()
        };
        assert!(!account.uses_aws_config() && account.aws.is_none());
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
}
