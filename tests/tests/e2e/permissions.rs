//! A role that S3 refuses gets an error that names what the role lacks. moto enforces no IAM,
//! so the refusal comes from a loopback server that answers every request `403 Forbidden`
//! with no body, as S3 answers a HEAD (and, without s3:ListBucket, a HEAD or GET of a missing
//! key).

use aws_sdk_s3::config::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use yuba_aws::{ListQuery, S3Source};
use yuba_model::FailureKind;

/// An S3 endpoint that refuses everything: `http://127.0.0.1:PORT`.
async fn refusing_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("the listener's address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request's head; none of our requests here has a body.
                let mut request = Vec::new();
                let mut buffer = [0_u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer =
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

async fn source_at(endpoint: &str) -> S3Source {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    S3Source::new(&sdk, true)
}

const HEAD_REFUSED: &str = "HEAD s3://images/photos/cat.jpg was refused (403): the role needs \
    s3:GetObject on arn:aws:s3:::images/* and s3:ListBucket on arn:aws:s3:::images (without \
    s3:ListBucket S3 answers 403 instead of 404 for a missing key)";

#[tokio::test]
async fn a_refused_head_names_the_permissions_the_role_needs() {
    let s3 = source_at(&refusing_endpoint().await).await;
    // What a delete job asks before it removes the replica.
    let error = s3.exists("images", "photos/cat.jpg").await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(error.message.starts_with(HEAD_REFUSED), "{}", error.message);
    // An SSE-KMS bucket's checksums need the key too.
    assert!(
        error
            .message
            .contains(", and kms:Decrypt on the source bucket's KMS key if"),
        "{}",
        error.message
    );
    let head = s3.head("images", "photos/cat.jpg").await.unwrap_err();
    assert_eq!(head.message, error.message);
}

#[tokio::test]
async fn a_refused_get_names_the_permissions_the_role_needs() {
    let s3 = source_at(&refusing_endpoint().await).await;
    let error = s3.get("images", "photos/cat.jpg").await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(
        error.message.starts_with(
            "GET s3://images/photos/cat.jpg was refused (403): the role needs s3:GetObject on \
             arn:aws:s3:::images/* and s3:ListBucket on arn:aws:s3:::images (without \
             s3:ListBucket S3 answers 403 instead of 404 for a missing key)"
        ),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_refused_listing_names_the_permission_the_role_needs() {
    let s3 = source_at(&refusing_endpoint().await).await;
    let query = ListQuery {
        prefix: "photos/",
        page_size: 10,
        ..ListQuery::default()
    };
    let error = s3.list("images", &query).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Permanent);
    assert_eq!(
        error.message,
        "ListObjectsV2 s3://images/photos/ was refused (403): the role needs s3:ListBucket on \
         arn:aws:s3:::images"
    );
}

/// A request that never reached S3 is transient, and its error keeps what the connection said
/// underneath (its source chain), for the log line that shows it with `ErrorChain`.
#[tokio::test]
async fn a_request_that_cannot_connect_is_transient_and_keeps_its_cause() {
    // A port that was just free: nothing listens on it.
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port");
    let s3 = source_at(&format!("http://{address}")).await;
    let error = s3.head("images", "photos/cat.jpg").await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Transient, "{}", error.message);
    assert!(std::error::Error::source(&error).is_some(), "{error:?}");
    let shown = yuba_model::ErrorChain(&error).to_string();
    assert!(
        shown.starts_with("HEAD s3://images/photos/cat.jpg failed: ")
            && shown.contains("dispatch failure"),
        "{shown}"
    );
    // A refusal keeps the answer it was read from, too.
    let refused = source_at(&refusing_endpoint().await)
        .await
        .head("images", "photos/cat.jpg")
        .await
        .unwrap_err();
    assert!(std::error::Error::source(&refused).is_some(), "{refused:?}");
}
