//! The server side of HTTP/1.1 that the loopback doubles (lambda_api, ecs_agent, the load test's
//! synthetic GCS replica) need: reading one request off a keep-alive connection. The doubles
//! write their answers themselves.

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// One request as a client sent it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked for the connection to be closed after the answer.
    pub close: bool,
    /// A Lambda function's streamed response (`Lambda-Runtime-Function-Response-Mode:
    /// streaming`): a metadata prelude, eight NUL bytes, then the body.
    pub streaming: bool,
}

/// The next request on the connection, `None` once the client has closed it. The body is read by
/// `content-length` or as `transfer-encoding: chunked`.
pub async fn read_request<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
) -> anyhow::Result<Option<Request>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut length, mut chunked, mut close, mut streaming) = (0_usize, false, false, false);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().context("content-length")?,
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                "lambda-runtime-function-response-mode" => {
                    streaming = value.trim().eq_ignore_ascii_case("streaming");
                }
                _ => {}
            }
        }
    }
    let body = if chunked {
        read_chunked(reader).await?
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(Some(Request {
        method,
        path,
        body,
        close,
        streaming,
    }))
}

async fn read_chunked<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).await?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).await?;
        if size == 0 {
            return Ok(body);
        }
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
    }
}
