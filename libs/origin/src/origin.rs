//! [`Origin::answer`]: a request in, an answer out. Originals are served here; variants, which
//! may have to be made first, in `made`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use yuba_delivery::conditional::Validators;
use yuba_delivery::path::{self, Target};
use yuba_delivery::respond::{Asked, Body as Part, Method, Stored, respond};
use yuba_gcs::{Gcs, GcsError, ObjectInfo, ObjectReader};
use yuba_model::ReplicaRecord;
use yuba_replicate::{Renderer, replica_name};

use crate::made::Pending;
use crate::recent::Recent;
use crate::refusal::Refusal;
use crate::settings::OriginSettings;

/// Refusals may be cached briefly: a 404 for an object that is about to be replicated should
/// not outlive the replication by much (CloudFront's own default for error answers is 10 s).
const REFUSAL_CACHE_CONTROL: &str = "max-age=10";

/// A read, as the home received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target's path, still escaped, without its query.
    pub path: &'a str,
    pub asked: Asked<'a>,
}

/// How the object in an answer was found, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// An original, from its replica.
    Original,
    /// A variant that was stored.
    Hit,
    /// A variant rendered on demand for this request (or one it waited for).
    Rendered,
    /// Nothing: a refusal.
    Refused(&'static str),
}

impl Served {
    /// Every [`as_str`](Served::as_str): the metrics' `Served` dimension.
    pub const NAMES: [&'static str; 9] = [
        "original",
        "hit",
        "rendered",
        Refusal::KINDS[0],
        Refusal::KINDS[1],
        Refusal::KINDS[2],
        Refusal::KINDS[3],
        Refusal::KINDS[4],
        Refusal::KINDS[5],
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Served::Original => "original",
            Served::Hit => "hit",
            Served::Rendered => "rendered",
            Served::Refused(kind) => kind,
        }
    }
}

/// What to send.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    pub served: Served,
}

/// The bytes of an answer.
#[derive(Debug)]
pub enum Body {
    Empty,
    /// Held in memory: a refusal's message, a variant just rendered.
    Bytes(Bytes),
    /// Streamed from GCS as it is sent.
    Object(ObjectReader),
}

impl Body {
    /// The bytes as a stream of chunks, as both homes send them.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, GcsError>> {
        match self {
            Body::Empty => futures::stream::empty().boxed(),
            Body::Bytes(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
            Body::Object(reader) => futures::stream::unfold(reader, |mut reader| async move {
                let chunk = reader.next_chunk().await?;
                Some((chunk, reader))
            })
            .boxed(),
        }
    }
}

/// What the origin reports of its work, as it happens: the program turns it into metrics (the
/// libraries emit none of their own).
pub trait Observer: Send + Sync + std::fmt::Debug + 'static {
    /// A request was answered, `served` so, its head ready after `latency`.
    fn answered(&self, served: Served, latency: Duration);
    /// A variant was rendered on demand (once, however many requests waited for it).
    fn rendered(&self);
}

/// The delivery origin. Clones share the GCS connection, the images' memory budget and the
/// renders in flight.
#[derive(Debug, Clone)]
pub struct Origin {
    pub(crate) gcs: Gcs,
    pub(crate) settings: Arc<OriginSettings>,
    pub(crate) renderer: Renderer,
    /// Variants being made, by GCS name: a second request for one waits for the first's render.
    pub(crate) pending: Arc<Mutex<HashMap<String, Pending>>>,
    pub(crate) observer: Arc<dyn Observer>,
    /// Metadata read recently, shared by the clones.
    pub(crate) recent: Arc<Recent>,
}

/// What an answer is made from: an object's facts, and where its bytes come from.
pub(crate) struct Found {
    pub stored: Stored,
    pub content: Content,
    pub served: Served,
}

pub(crate) enum Content {
    /// Read from GCS when the answer has a body: this generation of this object.
    InBucket {
        name: String,
        generation: i64,
    },
    InMemory(Bytes),
}

impl Origin {
    pub fn new(gcs: Gcs, settings: OriginSettings, observer: Arc<dyn Observer>) -> Origin {
        let renderer = Renderer::new(settings.memory.images_bytes, settings.image_limits);
        let recent = Arc::new(Recent::new(settings.metadata_lifetime));
        Origin {
            gcs,
            settings: Arc::new(settings),
            renderer,
            recent,
            pending: Arc::default(),
            observer,
        }
    }

    /// The answer to `request`. Every failure is an answer too: a status and a message.
    pub async fn answer(&self, request: &Request<'_>) -> Answer {
        let started = Instant::now();
        let answer = self.answer_or_refuse(request).await;
        let latency = started.elapsed();
        tracing::info!(
            method = request.method,
            path = request.path,
            status = answer.status,
            served = answer.served.as_str(),
            millis = latency.as_secs_f64() * 1000.0,
            "answered"
        );
        self.observer.answered(answer.served, latency);
        answer
    }

    async fn answer_or_refuse(&self, request: &Request<'_>) -> Answer {
        let mut answered = self.try_answer(request).await;
        let gone =
            |refusal: &Refusal| matches!(refusal, Refusal::Gcs(error) if error.status == Some(404));
        if answered.as_ref().err().is_some_and(gone) {
            // The generation the metadata named (recent, or read a moment ago) is gone, replaced
            // or deleted since: look again, from GCS.
            self.recent.forget_all();
            answered = self.try_answer(request).await;
        }
        match answered {
            Ok(answer) => answer,
            Err(refusal) => {
                let mut answer = refused(&refusal);
                if request.method == "HEAD" {
                    answer.body = Body::Empty;
                }
                answer
            }
        }
    }

    async fn try_answer(&self, request: &Request<'_>) -> Result<Answer, Refusal> {
        let method =
            Method::parse(request.method).ok_or_else(|| Refusal::Method(request.method.into()))?;
        let found = match path::parse(request.path)? {
            Target::Original { key } => self.original(&key).await?,
            Target::Variant { profile, key } => self.variant(&profile, &key).await?,
        };
        let head = respond(method, &request.asked, &found.stored);
        let body = match (head.body, found.content) {
            (Part::Empty, _) => Body::Empty,
            (Part::Whole, Content::InMemory(bytes)) => Body::Bytes(bytes),
            (Part::Bytes { first, last }, Content::InMemory(bytes)) => {
                Body::Bytes(bytes.slice(first as usize..=last as usize))
            }
            (part, Content::InBucket { name, generation }) => {
                let range = match part {
                    Part::Bytes { first, last } => Some((first, last - first + 1)),
                    _ => None,
                };
                let bucket = &self.settings.replica_bucket;
                Body::Object(self.gcs.read_part(bucket, &name, generation, range).await?)
            }
        };
        Ok(Answer {
            status: head.status,
            headers: head.headers,
            body,
            served: found.served,
        })
    }

    /// The metadata of object `name`, from GCS or read recently.
    pub(crate) async fn metadata(&self, name: &str) -> Result<Option<ObjectInfo>, GcsError> {
        if let Some(info) = self.recent.get(name, Instant::now()) {
            return Ok(Some(info));
        }
        let info = self
            .gcs
            .objects()
            .get(&self.settings.replica_bucket, name)
            .await?;
        if let Some(info) = &info {
            self.recent.keep(info, Instant::now());
        }
        Ok(info)
    }

    /// The replica of `key`, with its record: only a complete replica is served.
    pub(crate) async fn replica(&self, key: &str) -> Result<(ObjectInfo, ReplicaRecord), Refusal> {
        let settings = &self.settings;
        let not_found = |why: &str| Refusal::NotFound(format!("no replica of {key:?}: {why}"));
        let name = replica_name(&settings.replica_bucket, key, &settings.variants)
            .map_err(|error| not_found(&error.to_string()))?;
        let Some(info) = self.metadata(name).await? else {
            return Err(not_found("it is not in the replica bucket"));
        };
        match ReplicaRecord::from_metadata(&info.metadata) {
            Ok(Some(record)) if record.is_complete() => Ok((info, record)),
            _ => Err(not_found(
                "the object there is not a complete replica (still being written, or not \
                 written by yuba)",
            )),
        }
    }

    async fn original(&self, key: &str) -> Result<Found, Refusal> {
        let (info, record) = self.replica(key).await?;
        Ok(Found {
            stored: Stored {
                size: info.size,
                // S3's ETag, so that CloudFront revalidates across the S3 primary and this
                // failover with one validator for one content.
                validators: validators(format!("\"{}\"", record.source.etag), {
                    record.source.last_modified.or(info.created)
                }),
                content_type: info.content_type,
                cache_control: info.cache_control,
                ranges: true,
            },
            content: Content::InBucket {
                name: info.name,
                generation: info.generation,
            },
            served: Served::Original,
        })
    }
}

/// HTTP dates carry whole seconds: a validator compared with one must be cut to them too.
pub(crate) fn validators(etag: String, modified: Option<DateTime<Utc>>) -> Validators {
    Validators {
        etag,
        last_modified: modified.and_then(|date| DateTime::from_timestamp(date.timestamp(), 0)),
    }
}

fn refused(refusal: &Refusal) -> Answer {
    let status = refusal.status();
    if status >= 500 {
        tracing::warn!(status, error = %refusal, "a read of the replica failed");
    }
    let message = Bytes::from(format!("{refusal}\n"));
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Content-Length", message.len().to_string()),
        ("Cache-Control", REFUSAL_CACHE_CONTROL.to_owned()),
    ];
    if status == 405 {
        headers.push(("Allow", "GET, HEAD".to_owned()));
    }
    if status == 503 {
        headers.push(("Retry-After", "1".to_owned()));
    }
    Answer {
        status,
        headers,
        body: Body::Bytes(message),
        served: Served::Refused(refusal.kind()),
    }
}
