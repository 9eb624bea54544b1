//! A synthetic bucket pair for the reconciler at scale: a source of `count` keys (what its S3
//! Inventory report lists) and a replica of the same keys with seeded drift, the replica served
//! by a loopback server that speaks the part of GCS's JSON API a diff reads: `objects.list` with
//! `prefix`, `startOffset`, `endOffset`, `pageToken` and `maxResults`
//! (<https://cloud.google.com/storage/docs/json_api/v1/objects/list>).
//!
//! fake-gcs-server sorts its whole bucket for every page and cannot hold ten million objects; this
//! server holds none: key `i` and its replica are computed when a page asks for them, so a listing
//! of any size costs the same memory.
//!
//! Drift is seeded every `stride` keys: key `i` with `i % stride == 0` has no replica (missing),
//! `== 1` a replica whose record names another ETag (stale), `== 2` a replica and no source
//! (orphan); every other key is in sync. The missing and stale keys are also put into the source
//! bucket (the reconciler looks up what the report makes look drifting), with their real ETags
//! in the report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use yuba_e2e::http::read_request;
use yuba_model::{ReplicaRecord, SourceFacts, crc32c_to_base64};

/// What key `i` is on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    InSync,
    /// In the report and the source bucket, not in the replica.
    Missing,
    /// In the report and the source bucket; the replica records another ETag.
    Stale,
    /// In the replica only.
    Orphan,
}

impl Role {
    /// The kind the reconciler reports it as (`None`: in sync).
    pub fn finding(self) -> Option<&'static str> {
        match self {
            Role::InSync => None,
            Role::Missing => Some("missing"),
            Role::Stale => Some("stale"),
            Role::Orphan => Some("orphan"),
        }
    }
}

/// The pair of buckets, computed key by key.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub count: u64,
    pub stride: u64,
    pub source_bucket: String,
    /// The real ETags of the drifting sources put into the source bucket, by index.
    pub etags: HashMap<u64, String>,
    pub last_modified: DateTime<Utc>,
}

/// Keys per "directory": the key space has the shape of a photo bucket's date folders.
const KEYS_PER_FOLDER: u64 = 10_000;
/// What the replica's record names as the source's ETag for a stale key.
const STALE_ETAG: &str = "00000000000000000000000000000000";

impl Synthetic {
    /// Key `i`; keys sort as their indexes do (fixed-width numbers), so a listing is a run of
    /// indexes.
    pub fn key(i: u64) -> String {
        format!("photos/{:06}/{i:010}.jpg", i / KEYS_PER_FOLDER)
    }

    pub fn role(&self, i: u64) -> Role {
        match i % self.stride {
            0 => Role::Missing,
            1 => Role::Stale,
            2 => Role::Orphan,
            _ => Role::InSync,
        }
    }

    /// The indexes of the drifting sources to put into the source bucket.
    pub fn drifting_sources(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count)
            .step_by(usize::try_from(self.stride).unwrap_or(usize::MAX))
            .flat_map(|i| [i, i + 1])
            .filter(|&i| i < self.count)
    }

    /// The body a drifting source is put into the source bucket with.
    pub fn drifting_body(i: u64) -> Vec<u8> {
        format!("source {i}").into_bytes()
    }

    pub fn size(&self, i: u64) -> u64 {
        match self.role(i) {
            Role::Missing | Role::Stale => Self::drifting_body(i).len() as u64,
            Role::InSync | Role::Orphan => 1000 + i % 100_000,
        }
    }

    /// The source's ETag, as the report lists it.
    pub fn etag(&self, i: u64) -> String {
        self.etags.get(&i).cloned().unwrap_or_else(|| {
            format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        })
    }

    /// Whether the report lists key `i`.
    pub fn in_report(&self, i: u64) -> bool {
        self.role(i) != Role::Orphan
    }

    /// The findings a diff must report, as (kind, key).
    pub fn expected_findings(&self) -> std::collections::BTreeSet<(String, String)> {
        (0..self.count)
            .step_by(usize::try_from(self.stride).unwrap_or(usize::MAX))
            .flat_map(|i| [i, i + 1, i + 2])
            .filter(|&i| i < self.count)
            .filter_map(|i| Some((self.role(i).finding()?.to_owned(), Self::key(i))))
            .collect()
    }

    /// The first index whose key is at or after `key`.
    fn lower_bound(&self, key: &str) -> u64 {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            if Self::key(middle).as_str() < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// Replica `i` as the JSON API's object resource.
    fn write_object(&self, i: u64, out: &mut String) {
        let key = Self::key(i);
        let size = self.size(i);
        let crc32c = u32::try_from(i & 0xffff_ffff).unwrap_or_default();
        let record = ReplicaRecord {
            source: SourceFacts {
                bucket: self.source_bucket.clone(),
                key: key.clone(),
                version_id: None,
                etag: match self.role(i) {
                    Role::Stale => STALE_ETAG.to_owned(),
                    _ => self.etag(i),
                },
                size,
                last_modified: Some(self.last_modified),
                sequencer: None,
                attributes: None,
            },
            sha256: Some(format!("{:064x}", u128::from(i))),
            crc32c: Some(crc32c),
            replicated_at: self.last_modified,
            variants: Vec::new(),
            variants_error: None,
            image_format: None,
        };
        let text = |value: &str| serde_json::to_string(value).unwrap_or_default();
        let _ = write!(
            out,
            r#"{{"name":{},"generation":"1","metageneration":"1","size":"{size}","crc32c":{},"contentType":"image/jpeg","timeCreated":{},"metadata":{{"#,
            text(&key),
            text(&crc32c_to_base64(crc32c)),
            text(
                &self
                    .last_modified
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
        );
        for (n, (name, value)) in record.to_metadata().into_iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            let _ = write!(out, "{comma}{}:{}", text(name), text(&value));
        }
        out.push_str("}}");
    }

    /// One page of `objects.list`: the replicas from the token's index (or the start offset) on,
    /// before the end offset, under the prefix, at most `max` of them.
    fn page(&self, query: &HashMap<String, String>) -> String {
        let max = query
            .get("maxResults")
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(1000)
            .clamp(1, 1000);
        let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
        let mut i = match query.get("pageToken") {
            Some(token) => token.parse().unwrap_or(self.count),
            None => {
                let start = query.get("startOffset").map(String::as_str).unwrap_or("");
                self.lower_bound(start.max(prefix))
            }
        };
        let end = query
            .get("endOffset")
            .map_or(self.count, |end| self.lower_bound(end));
        let mut body = String::from(r#"{"items":["#);
        let mut listed = 0;
        while i < end && listed < max {
            if !Self::key(i).starts_with(prefix) {
                i = end;
                break;
            }
            if self.role(i) != Role::Missing {
                if listed > 0 {
                    body.push(',');
                }
                self.write_object(i, &mut body);
                listed += 1;
            }
            i += 1;
        }
        body.push(']');
        if i < end {
            let _ = write!(body, r#","nextPageToken":"{i}""#);
        }
        body.push('}');
        body
    }
}

/// Serves the replica of `synthetic` on a free loopback port until dropped with the runtime;
/// returns the endpoint (`http://127.0.0.1:PORT`).
pub async fn serve(synthetic: Synthetic) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let synthetic = Arc::new(synthetic);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let synthetic = Arc::clone(&synthetic);
            tokio::spawn(async move {
                let _ = connection(stream, &synthetic).await;
            });
        }
    });
    Ok(endpoint)
}

async fn connection(stream: tokio::net::TcpStream, synthetic: &Synthetic) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = read_request(&mut read).await? {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let (status, body) = if request.method == "GET" && path.ends_with("/o") {
            // The blocking part (formatting up to a thousand objects) is short: microseconds each.
            ("200 OK", synthetic.page(&query))
        } else {
            (
                "404 Not Found",
                format!(
                    r#"{{"error":{{"code":404,"message":"the synthetic replica serves objects.list only, not {} {}"}}}}"#,
                    request.method, path
                ),
            )
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await?;
        write
            .write_all(body.as_bytes())
            .await
            .context("writing a page")?;
        if request.close {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(count: u64) -> Synthetic {
        Synthetic {
            count,
            stride: 10,
            source_bucket: "photos".into(),
            etags: HashMap::new(),
            last_modified: "2026-12-05T00:00:00Z".parse().unwrap(),
        }
    }

    /// The double through the real client: pages, offsets and the seeded drift.
    #[tokio::test]
    async fn the_client_lists_the_synthetic_replica_in_ranges() {
        let s = synthetic(2_500);
        let endpoint = serve(s.clone()).await.unwrap();
        let env = yuba_startup::Env::from_pairs([("YUBA_GCS_ENDPOINT", endpoint.as_str())]);
        let settings = yuba_gcs::GcsSettings::from_env(&env).unwrap();
        let gcs = yuba_gcs::Gcs::connect(&settings).await.unwrap();
        let list = |start: Option<String>, end: Option<String>| {
            let gcs = gcs.clone();
            async move {
                let mut names = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let query = yuba_gcs::ListQuery {
                        start_offset: start.as_deref().filter(|_| token.is_none()),
                        end_offset: end.as_deref(),
                        page_token: token.as_deref(),
                        page_size: 300,
                        ..yuba_gcs::ListQuery::default()
                    };
                    let page = gcs.objects().list("replica", &query).await.unwrap();
                    names.extend(page.objects.into_iter().map(|o| o.name));
                    match page.next_page_token {
                        Some(next) => token = Some(next),
                        None => return names,
                    }
                }
            }
        };
        let all = list(None, None).await;
        let expected: Vec<String> = (0..2_500)
            .filter(|&i| s.role(i) != Role::Missing)
            .map(Synthetic::key)
            .collect();
        assert_eq!(all, expected);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted, "in key order");
        let (from, to) = (Synthetic::key(1_234), Synthetic::key(2_001));
        let ranged = list(Some(from.clone()), Some(to.clone())).await;
        assert!(ranged.iter().all(|name| name >= &from && name < &to));
        assert_eq!(ranged.first(), Some(&from));
        assert_eq!(
            ranged.len(),
            expected.iter().filter(|n| **n >= from && **n < to).count()
        );
    }

    #[test]
    fn the_expected_findings_are_the_seeded_drift() {
        let s = synthetic(25);
        let kinds: Vec<(String, String)> = s.expected_findings().into_iter().collect();
        assert_eq!(kinds.len(), 9);
        assert!(kinds.contains(&("orphan".into(), Synthetic::key(22))));
        assert!(!s.in_report(12));
        assert_eq!(
            s.drifting_sources().collect::<Vec<_>>(),
            [0, 1, 10, 11, 20, 21]
        );
    }
}
