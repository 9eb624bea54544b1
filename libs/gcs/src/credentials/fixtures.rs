//! What the credentials' tests share: the configuration terraform/ outputs, and the choice
//! the environment makes with it.

use serde_json::Value;
use yuba_startup::{ConfigError, Env};

use super::{CREDENTIALS_VARIABLE, GcsCredentials};

/// terraform/'s defaults: pool `yuba-aws`, provider `aws-account`.
pub(super) const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/\
                        workloadIdentityPools/yuba-aws/providers/aws-account";
pub(super) const STS_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";

pub(super) fn aws_config_json() -> Value {
    // The shape of terraform/'s `worker_credentials_json` output.
    serde_json::json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
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

pub(super) fn choose(pairs: &[(&str, &str)]) -> Result<GcsCredentials, ConfigError> {
    GcsCredentials::from_env(&Env::from_pairs(pairs.iter().copied()), false)
}

/// The message for the inline configuration `config`.
pub(super) fn problem_with(config: &Value) -> String {
    choose(&[(CREDENTIALS_VARIABLE, &config.to_string())])
        .unwrap_err()
        .to_string()
}

/// The configuration without the field at `path`.
pub(super) fn without(path: &[&str]) -> Value {
    let mut config = aws_config_json();
    let (last, parents) = path.split_last().unwrap();
    let mut object = &mut config;
    for parent in parents {
        object = object.get_mut(*parent).unwrap();
    }
    object.as_object_mut().unwrap().remove(*last);
    config
}
