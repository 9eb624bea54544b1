//! A Lambda Runtime API on loopback, so the real binaries can be run "under Lambda" in tests:
//! it hands invocations to the function through `GET /runtime/invocation/next` and collects
//! what the function posts back, as the Lambda service does.
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::http::{Request, read_request};

/// One record of an SQS event as Lambda's event source mapping delivers it, with `body`.
pub fn sqs_record(id: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": id, "receiptHandle": format!("receipt-{id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795300000000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795300000001"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue", "awsRegion": "us-east-1"
    })
}

/// An S3 `ObjectCreated:Put` notification of one key (`key_encoded` as S3 encodes keys in events),
/// as S3 delivers it to a function directly.
pub fn s3_notification(
    bucket: &str,
    key_encoded: &str,
    size: usize,
    etag: &str,
) -> serde_json::Value {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key_encoded, "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5"}}}]})
}

/// A function URL's invocation of `method path` with `headers`, as Lambda delivers it (payload
/// format 2.0: <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads>).
/// The path is the client's, still percent-encoded.
pub fn function_url_event(method: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), serde_json::json!(value)))
        .collect();
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abcdefghij", "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij", "requestId": "req-1", "routeKey": "$default", "stage": "$default",
            "time": "03/Dec/2026:12:00:00 +0000", "timeEpoch": 1796299200000_u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "130.176.0.1", "userAgent": "Amazon CloudFront"}
        },
        "isBase64Encoded": false
    })
}

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum InvocationResult {
    Response(serde_json::Value),
    Error(serde_json::Value),
    /// A streamed response: its metadata prelude (status code, headers, cookies), and the
    /// bytes after it (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming>).
    Streamed {
        prelude: serde_json::Value,
        body: Vec<u8>,
    },
}

/// The eight NUL bytes between a streamed response's metadata prelude and its body.
const PRELUDE_END: [u8; 8] = [0; 8];

/// A streamed response's body split into its prelude and the bytes after it.
fn streamed(body: &[u8]) -> anyhow::Result<InvocationResult> {
    let end = body
        .windows(PRELUDE_END.len())
        .position(|window| window == PRELUDE_END)
        .context("a streamed response without the eight NUL bytes after its prelude")?;
    Ok(InvocationResult::Streamed {
        prelude: serde_json::from_slice(&body[..end]).context("the metadata prelude")?,
        body: body[end + PRELUDE_END.len()..].to_vec(),
    })
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<InvocationResult>>>>;

#[derive(Debug)]
pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    invocations: mpsc::UnboundedSender<(String, String)>,
    pending: Pending,
    /// When the function first asked for an invocation: the end of its init phase.
    first_poll: watch::Receiver<Option<Instant>>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> anyhow::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (invocations, queue) = mpsc::unbounded_channel::<(String, String)>();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let pending: Pending = Arc::default();
        let shared = Arc::clone(&pending);
        let (polled, first_poll) = watch::channel(None);
        let polled = Arc::new(polled);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let queue = Arc::clone(&queue);
                let pending = Arc::clone(&shared);
                let polled = Arc::clone(&polled);
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, queue, pending, &polled).await {
                        eprintln!("lambda runtime api: {error:#}");
                    }
                });
            }
        });
        Ok(RuntimeApi {
            address,
            invocations,
            pending,
            first_poll,
            server,
        })
    }

    /// When the function first asked for an invocation (`GET .../invocation/next`), which is
    /// when Lambda's init phase ends; waits up to `timeout` for it.
    pub async fn first_poll(&self, timeout: Duration) -> anyhow::Result<Instant> {
        let mut first_poll = self.first_poll.clone();
        let polled = tokio::time::timeout(timeout, first_poll.wait_for(Option::is_some))
            .await
            .context("the function did not ask for an invocation in time")??;
        polled.context("a poll without its time")
    }

    /// Invokes the function with `payload` and waits for its answer.
    pub async fn invoke(
        &self,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<InvocationResult> {
        let request_id = format!("req-{}", rand_id());
        let (answer, answered) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(request_id.clone(), answer);
        self.invocations.send((request_id, payload.to_string()))?;
        Ok(tokio::time::timeout(timeout, answered)
            .await
            .context("the function did not answer in time")??)
    }

    /// The environment a Lambda execution environment gives the function.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", "yuba-test".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ]
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One keep-alive connection from the runtime client.
async fn serve(
    stream: TcpStream,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>>,
    pending: Pending,
    polled: &watch::Sender<Option<Instant>>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(Request {
            method,
            path,
            body,
            streaming,
            ..
        }) = read_request(&mut reader).await?
        else {
            return Ok(());
        };

        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            polled.send_if_modified(|first| {
                let unset = first.is_none();
                if unset {
                    *first = Some(Instant::now());
                }
                unset
            });
            let Some((request_id, payload)) = queue.lock().await.recv().await else {
                return Ok(());
            };
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
                + 900_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 lambda-runtime-aws-request-id: {request_id}\r\nlambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:yuba-test\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\r\n",
                payload.len()
            );
            write.write_all(head.as_bytes()).await?;
            write.write_all(payload.as_bytes()).await?;
            continue;
        }
        let value = || serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let request_id = |rest: &str| rest.rsplit('/').next().unwrap_or_default().to_owned();
        let result = match (path.strip_suffix("/response"), path.strip_suffix("/error")) {
            (Some(rest), _) if streaming => Some((request_id(rest), streamed(&body)?)),
            (Some(rest), _) => Some((request_id(rest), InvocationResult::Response(value()))),
            (None, Some(rest)) => Some((request_id(rest), InvocationResult::Error(value()))),
            (None, None) => None,
        };
        if let Some((request_id, result)) = result
            && let Some(waiter) = pending
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .remove(&request_id)
        {
            let _ = waiter.send(result);
        } else if !path.ends_with("/init/error") {
            bail!("unexpected request {method} {path}");
        }
        write
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 16\r\ncontent-type: application/json\r\n\r\n{\"status\":\"OK\"}\n")
            .await?;
    }
}
