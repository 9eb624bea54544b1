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
//!
//! Here the choice; in `external_account` a federation configuration, parsed, checked and
//! built into credentials; in `aws` the AWS subject token; in `impersonated` the service
//! account impersonated at the configuration's own URL.

mod aws;
mod external_account;
#[cfg(test)]
mod fixtures;
mod impersonated;

use std::fmt;

use google_cloud_auth::credentials::{Credentials, anonymous};
use yuba_startup::{ConfigError, Env};

use crate::error::GcsError;
pub use aws::{AwsSubjectTokenError, AwsSubjectTokenProvider, aws_subject_token};
pub use external_account::ExternalAccount;
use external_account::{Origin, Parsed};

/// The configuration itself, as JSON.
pub const CREDENTIALS_VARIABLE: &str = "YUBA_GCS_CREDENTIALS";
/// The path of a credential file (Google's own variable, also read by ADC).
pub const CREDENTIALS_FILE_VARIABLE: &str = "GOOGLE_APPLICATION_CREDENTIALS";

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
            GcsCredentials::ApplicationDefault => {
                google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|error| {
                        GcsError::permanent(format!(
                            "no usable Google credentials; set {CREDENTIALS_FILE_VARIABLE} to a \
                     credential configuration file or {CREDENTIALS_VARIABLE} to the \
                     configuration itself (for example the external_account configuration that \
                     terraform/ outputs), or set YUBA_GCS_ENDPOINT to an emulator"
                        ))
                        .caused_by(error)
                    })
            }
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

/// A long value cut short for an error message.
fn abbreviated(value: &str) -> String {
    const SHOWN: usize = 48;
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{aws_config_json, choose};
    use super::*;

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
    fn a_file_is_read_at_start_up() {
        let path = temp_file("aws.json", &aws_config_json().to_string());
        let chosen = choose(&[(CREDENTIALS_FILE_VARIABLE, path.to_str().unwrap())]).unwrap();
        assert!(
            chosen
                .to_string()
                .starts_with("external account from GOOGLE_APPLICATION_CREDENTIALS"),
            "{chosen:?}"
        );
        // A service account key is left to ADC, which reads it itself.
        let key = temp_file("key.json", r#"{"type": "service_account"}"#);
        assert_eq!(
            choose(&[(CREDENTIALS_FILE_VARIABLE, key.to_str().unwrap())]),
            Ok(GcsCredentials::ApplicationDefault)
        );
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
    fn a_service_account_key_is_not_for_the_inline_variable() {
        let error = choose(&[(CREDENTIALS_VARIABLE, r#"{"type": "service_account"}"#)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`type` is \"service_account\"")
                && error.contains("name a service_account file in GOOGLE_APPLICATION_CREDENTIALS"),
            "{error}"
        );
    }
}
