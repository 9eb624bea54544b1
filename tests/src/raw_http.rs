//! The client side of HTTP/1.1, raw: a request is sent with its path exactly as given. URL
//! libraries normalise paths (dot segments, `//`, escapes), which is what the delivery origin's
//! tests must be free to send as a browser or CDN might, or must not.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status, headers by lowercase name, and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends `method path` with `headers` on a connection of its own, and reads the answer to its
/// end (the request asks the server to close the connection after it).
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw, method == "HEAD").with_context(|| format!("the answer to {method} {path}"))
}

fn parse(raw: &[u8], head_only: bool) -> anyhow::Result<Answer> {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .context("no status line")?
        .parse()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = if head_only {
        Vec::new()
    } else {
        raw[end + 4..].to_vec()
    };
    if let Some(length) = headers.get("content-length").filter(|_| !head_only) {
        anyhow::ensure!(
            body.len() == length.parse::<usize>()?,
            "{} bytes of a body of {length}",
            body.len()
        );
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}
