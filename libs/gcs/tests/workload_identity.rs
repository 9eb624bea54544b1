//! Workload identity federation from AWS credentials that only aws-config can resolve (the
//! Fargate path), against a local stand-in for Google's STS and IAM Credentials endpoints: the
//! signed `GetCallerIdentity` request goes to the token exchange, the federated token to the
//! impersonation, and the impersonated token is what the GCS clients send.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use yuba_gcs::{GcsCredentials, GcsSettings, aws_subject_token};
use yuba_startup::Env;

/// terraform/'s defaults: pool `yuba-aws`, provider `aws-account`.
const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account";
const SERVICE_ACCOUNT: &str = "yuba-writer@yuba-test.iam.gserviceaccount.com";
const STS_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJH+MEUCIQ==";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// A request the local server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

type Answer = fn(&Seen) -> (u16, String);

/// An HTTP/1.1 server on 127.0.0.1 that records each request and answers it with `answer`,
/// one request per connection.
struct LocalServer {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl LocalServer {
    async fn start(answer: Answer) -> LocalServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    if let Some(request) = read_request(stream, answer).await {
                        log.lock().unwrap().push(request);
                    }
                });
            }
        });
        LocalServer { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn impersonation_path() -> String {
        format!("/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken")
    }
}

async fn read_request(mut stream: TcpStream, answer: Answer) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let request = Seen {
        method,
        path,
        headers,
        body: String::from_utf8(body).ok()?,
    };
    let (status, body) = answer(&request);
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.shutdown().await.ok()?;
    Some(request)
}

/// Google's side as it should go: the exchange issues `federated-token`, and the
/// impersonation, given that token, `impersonated-token`.
fn google(request: &Seen) -> (u16, String) {
    if request.method == "POST" && request.path == "/v1/token" {
        return (
            200,
            json!({
                "access_token": "federated-token",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            })
            .to_string(),
        );
    }
    if request.method == "POST" && request.path == LocalServer::impersonation_path() {
        if request.header("authorization") != Some("Bearer federated-token") {
            return (401, json!({"error": {"code": 401}}).to_string());
        }
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        return (
            200,
            json!({"accessToken": "impersonated-token", "expireTime": expires.to_rfc3339()})
                .to_string(),
        );
    }
    (404, "{}".to_owned())
}

/// The credential configuration `terraform/` would output, pointing at `server`.
fn configuration(server: &LocalServer, impersonate: bool) -> String {
    let mut config = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": AWS_TOKEN_TYPE,
        "token_url": format!("{}/v1/token", server.base),
        "credential_source": {
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": STS_URL,
        }
    });
    if impersonate {
        config["service_account_impersonation_url"] =
            format!("{}{}", server.base, LocalServer::impersonation_path()).into();
    }
    config.to_string()
}

/// What the worker builds on Fargate from `YUBA_GCS_CREDENTIALS`, with aws-config giving static
/// keys (as its ECS container provider would give the task role's).
fn fargate_credentials(config: &str) -> Credentials {
    // No AWS keys in the environment: the subject token is signed with aws-config's chain.
    let settings = GcsSettings::from_env(&Env::from_pairs([
        ("YUBA_GCS_CREDENTIALS", config),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/task",
        ),
    ]))
    .unwrap();
    let GcsCredentials::ExternalAccount(account) = &settings.credentials else {
        panic!("{:?}", settings.credentials)
    };
    assert!(account.uses_aws_config(), "{account}");
    let aws = SdkConfig::builder()
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some(SESSION_TOKEN.to_owned()),
            None,
            "static",
        )))
        .build();
    account.with_aws_config(&aws).unwrap()
}

async fn authorization(credentials: &Credentials) -> Result<String, String> {
    match credentials.headers(http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => Ok(data
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()),
        Ok(CacheableResource::NotModified) => Err("not modified".to_owned()),
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(" <- {cause}"));
                source = cause.source();
            }
            Err(format!("{text} (transient: {})", error.is_transient()))
        }
    }
}

/// Checks the STS exchange's form, and that its subject token is the signed
/// `GetCallerIdentity` request for the test's AWS credentials, region and audience.
fn assert_exchange(exchange: &Seen, scope: &str) {
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.path, "/v1/token");
    let form = exchange.form();
    assert_eq!(form["grant_type"], TOKEN_EXCHANGE, "{form:?}");
    assert_eq!(form["subject_token_type"], AWS_TOKEN_TYPE, "{form:?}");
    assert_eq!(form["audience"], AUDIENCE, "{form:?}");
    assert_eq!(form["scope"], scope, "{form:?}");
    assert_eq!(
        form["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );

    let subject_token = &form["subject_token"];
    let json: String = form_urlencoded::parse(subject_token.as_bytes())
        .map(|(key, _)| key.into_owned())
        .collect();
    let request: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        request["url"],
        "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
    );
    assert_eq!(request["method"], "POST");
    let headers: Vec<(&str, &str)> = request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["key"].as_str().unwrap(), h["value"].as_str().unwrap()))
        .collect();
    let keys: Vec<&str> = headers.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        [
            "host",
            "x-amz-date",
            "x-amz-security-token",
            "x-goog-cloud-target-resource",
            "Authorization"
        ]
    );
    assert_eq!(headers[0].1, "sts.eu-west-1.amazonaws.com");
    assert_eq!(headers[2].1, SESSION_TOKEN);
    assert_eq!(headers[3].1, AUDIENCE);
    assert!(
        headers[4].1.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && headers[4].1.contains("/eu-west-1/sts/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, Signature="),
        "{}",
        headers[4].1
    );
    // Signed at the time it names: the same token comes out of the signer for that time.
    let signed_at = chrono::NaiveDateTime::parse_from_str(headers[1].1, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        .timestamp();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(signed_at).unwrap());
    let credentials = AwsCredentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some(SESSION_TOKEN.to_owned()),
        None,
        "static",
    );
    assert_eq!(
        subject_token,
        &aws_subject_token(&credentials, "eu-west-1", STS_URL, AUDIENCE, time).unwrap()
    );
}

#[tokio::test]
async fn fargate_exchanges_a_signed_caller_identity_and_impersonates_the_service_account() {
    let server = LocalServer::start(google).await;
    let credentials = fargate_credentials(&configuration(&server, true));

    assert_eq!(
        authorization(&credentials).await.unwrap(),
        "Bearer impersonated-token"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    // The federated token is only asked for what impersonation needs.
    assert_exchange(&seen[0], "https://www.googleapis.com/auth/iam");
    let impersonation = &seen[1];
    assert_eq!(impersonation.method, "POST");
    assert_eq!(impersonation.path, LocalServer::impersonation_path());
    assert_eq!(
        impersonation.header("authorization"),
        Some("Bearer federated-token")
    );
    let body: Value = serde_json::from_str(&impersonation.body).unwrap();
    assert_eq!(
        body,
        json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"})
    );

    // The token is kept: asking again costs no request.
    assert_eq!(
        authorization(&credentials).await.unwrap(),
        "Bearer impersonated-token"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn without_impersonation_the_federated_token_is_sent() {
    let server = LocalServer::start(google).await;
    let credentials = fargate_credentials(&configuration(&server, false));

    assert_eq!(
        authorization(&credentials).await.unwrap(),
        "Bearer federated-token"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_exchange(&seen[0], "https://www.googleapis.com/auth/cloud-platform");
}

#[tokio::test]
async fn a_refused_exchange_or_impersonation_is_a_permanent_error() {
    fn refuses_the_exchange(request: &Seen) -> (u16, String) {
        if request.path == "/v1/token" {
            return (
                400,
                json!({"error": "invalid_grant", "error_description": "audience mismatch"})
                    .to_string(),
            );
        }
        google(request)
    }
    let server = LocalServer::start(refuses_the_exchange).await;
    let error = authorization(&fargate_credentials(&configuration(&server, true)))
        .await
        .unwrap_err();
    assert!(
        error.contains("audience mismatch") && error.ends_with("(transient: false)"),
        "{error}"
    );
    assert_eq!(server.seen().len(), 1, "not retried");

    fn refuses_the_impersonation(request: &Seen) -> (u16, String) {
        if request.path == LocalServer::impersonation_path() {
            return (
                403,
                json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}})
                    .to_string(),
            );
        }
        google(request)
    }
    let server = LocalServer::start(refuses_the_impersonation).await;
    let error = authorization(&fargate_credentials(&configuration(&server, true)))
        .await
        .unwrap_err();
    assert!(
        error.contains("HTTP 403")
            && error.contains("getAccessToken")
            && error.ends_with("(transient: false)"),
        "{error}"
    );
}
