//! The AWS subject token: the signed STS `GetCallerIdentity` request that proves the AWS
//! identity to Google's STS, made with aws-config's credential chain (Fargate and ECS, EC2, AWS
//! profiles) in the shape google-cloud-auth's own AWS source gives.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::error::CredentialsError as AwsCredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use google_cloud_auth::credentials::subject_token::{self, SubjectToken, SubjectTokenProvider};
use google_cloud_auth::errors::SubjectTokenProviderError;
use reqwest::Url;
use serde::Serialize;
use yuba_model::Cause;

/// The STS URL of `template` (`regional_cred_verification_url`) for `region`, as
/// google-cloud-auth makes it: `https://` if it names no scheme.
pub(super) fn sts_url(template: &str, region: &str) -> Result<Url, String> {
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
    let json = serde_json::to_string(&request).map_err(|error| {
        AwsSubjectTokenError::permanent("the signed request cannot be written as JSON")
            .caused_by(error)
    })?;
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
        .map_err(|error| {
            AwsSubjectTokenError::permanent("the SigV4 signing parameters are incomplete")
                .caused_by(error)
        })?
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
    .map_err(|error| {
        AwsSubjectTokenError::permanent("the STS request cannot be signed with SigV4")
            .caused_by(error)
    })?;
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
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AwsSubjectTokenError {
    message: String,
    transient: bool,
    /// aws-config's, SigV4's or serde's own error, when one is underneath.
    #[source]
    source: Option<Cause>,
}

impl AwsSubjectTokenError {
    fn permanent(message: impl Into<String>) -> Self {
        AwsSubjectTokenError {
            message: message.into(),
            transient: false,
            source: None,
        }
    }

    fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// Missing or misconfigured credentials need a person; the rest (a timeout, the container
    /// credentials endpoint failing) may clear up.
    fn from_provider(error: AwsCredentialsError) -> Self {
        let transient = !matches!(
            error,
            AwsCredentialsError::CredentialsNotLoaded(_)
                | AwsCredentialsError::InvalidConfiguration(_)
        );
        AwsSubjectTokenError {
            message: "no AWS credentials from aws-config".to_owned(),
            transient,
            source: Some(error.into()),
        }
    }
}

impl SubjectTokenProviderError for AwsSubjectTokenError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::super::fixtures::{AUDIENCE, STS_URL};
    use super::*;

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
