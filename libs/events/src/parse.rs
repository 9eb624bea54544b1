use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use thiserror::Error;
use yuba_model::{DeleteJob, Job, MAX_KEY_BYTES, MAX_OBJECT_BYTES, ReplicateJob, normalize_etag};

use crate::key::{KeyDecodeError, decode_event_key};
use crate::source::{ForeignBucket, MAX_BUCKET_BYTES, SourceBuckets, is_bucket_name};

/// The largest body read. SQS messages and asynchronous Lambda payloads are far smaller; a
/// synchronous invoke can carry 6 MB. Anything bigger is not from AWS and is refused before
/// it is parsed.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The most records one notification may hold. S3 sends one record per notification, so this
/// only bounds hand-made batches (tests, replays) and hostile input.
pub const MAX_RECORDS: usize = 10_000;

/// How many envelopes (SNS inside SNS...) are unwrapped. Real deliveries use at most one; the
/// bound keeps a crafted message from recursing without end.
pub const MAX_ENVELOPE_DEPTH: usize = 3;

/// The deepest nesting of arrays and objects read in one JSON document. AWS's notifications
/// nest five levels at most (an S3 record's `s3.object` inside `Records`); deeper input is
/// refused, with where it went too deep, before it is parsed. (serde_json would refuse it at
/// 128 levels anyway, with a less helpful "recursion limit exceeded".)
pub const MAX_JSON_DEPTH: usize = 32;

/// The longest value read for the other string fields that go into a job (version id, ETag,
/// sequencer). S3 writes a few dozen characters; the bound keeps every job well inside one SQS
/// message, whatever a record carries.
const MAX_FIELD_BYTES: usize = 1024;

/// The message attribute that says why ingest set a record aside on the events DLQ.
pub const REJECTED_REASON_ATTRIBUTE: &str = "yuba-rejected-reason";
/// The message attribute that names the message a set-aside record came in.
pub const REJECTED_FROM_ATTRIBUTE: &str = "yuba-rejected-from-message";

/// What became of one record of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Work to enqueue.
    Job(Job),
    /// A well-formed event that yuba has nothing to do for (a tag change, a restore, the
    /// `s3:TestEvent` S3 sends when notifications are configured, ...).
    Ignored { event: String, reason: &'static str },
    /// A record that cannot be trusted or read. The others in the same notification are still
    /// used.
    Rejected {
        error: RecordError,
        /// The record alone, as a notification ingest reads again: `{"Records":[record]}` for
        /// an S3 record, the event itself for EventBridge. What is set aside for a person, and
        /// what a redrive to the events queue brings back.
        notification: String,
    },
}

const EXPECTED_SHAPES: &str = "expected an S3 event notification (`{\"Records\":[...]}`), \
     an `s3:TestEvent`, an SNS notification envelope (`{\"Type\":\"Notification\",\"Message\":...}`) \
     or an EventBridge event from `aws.s3`";

/// Why a payload as a whole could not be read. Retrying the same bytes cannot help.
#[derive(Debug, Error)]
pub enum NotificationError {
    #[error(
        "the notification is {bytes} bytes, more than the {max} read; no AWS delivery is that \
         large, so it is not an S3 notification"
    )]
    TooLarge { bytes: usize, max: usize },
    #[error("the notification is not JSON ({0}); {EXPECTED_SHAPES}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "the notification nests arrays and objects more than {max} levels deep (at byte \
         {offset}); AWS notifications nest at most five, so this was not written by AWS: check \
         what sends to the events queue"
    )]
    TooDeeplyNested { offset: usize, max: usize },
    #[error("the notification is {found}; {EXPECTED_SHAPES}")]
    UnrecognisedShape { found: String },
    #[error("`Records` is {found}, expected an array of S3 event records")]
    RecordsNotAnArray { found: String },
    #[error(
        "the notification holds {count} records, more than the {max} accepted at once; \
         split it into smaller notifications"
    )]
    TooManyRecords { count: usize, max: usize },
    #[error(
        "this is a Lambda {trigger} trigger event, not a notification: pass the body of each \
         message (`Records[].body` for SQS, `Records[].Sns.Message` for SNS) on its own"
    )]
    LambdaTriggerEvent { trigger: &'static str },
    #[error(
        "the SNS notification has no `Message` string, expected the S3 notification as a \
         JSON string in it"
    )]
    SnsMessageMissing,
    #[error(
        "envelopes are nested more than {max} deep; S3 deliveries are wrapped at most once \
         (SNS to SQS)"
    )]
    TooDeep { max: usize },
    #[error("in the SNS message: {0}")]
    InSnsMessage(#[source] Box<NotificationError>),
}

/// Why one record was rejected. Each says which field is at fault; every one is permanent for
/// this record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error(
        "the record cannot be read ({problem}); S3 writes no such JSON, so the record was not \
         written by S3 or was altered on the way"
    )]
    Unreadable { problem: String },
    #[error("the record is {found}, expected a JSON object")]
    NotAnObject { found: String },
    #[error(
        "`{field}` is missing or empty; S3 always sets it, so the record was not written by S3 \
         or was altered on the way"
    )]
    Missing { field: &'static str },
    #[error("`{field}` is {found}, expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "`{field}` is {found:?}, this build reads {supported}; no job was made from the record: \
         upgrade yuba's ingest function, then backfill the key with the reconciler"
    )]
    UnsupportedVersion {
        field: &'static str,
        found: String,
        supported: &'static str,
    },
    #[error(
        "`{field}` is {found:?}, expected {expected:?}: the event is not from S3; check what \
         the ingest function and its queue are subscribed to"
    )]
    UnexpectedSource {
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "`{field}` is the unknown event type {found:?}; yuba acts on {known}; if AWS added a \
         new event type, upgrade yuba's ingest function"
    )]
    UnknownEvent {
        field: &'static str,
        found: String,
        known: &'static str,
    },
    #[error("the key {raw:?} cannot be decoded: {source}")]
    InvalidKey {
        raw: String,
        #[source]
        source: KeyDecodeError,
    },
    #[error(
        "the key is {bytes} bytes long; S3 keys are at most {MAX_KEY_BYTES} bytes, so the record \
         was not written by S3"
    )]
    KeyTooLong { bytes: usize },
    #[error(
        "`{field}` is {bytes} bytes long, more than the {max} read; S3 writes far shorter \
         values, so the record was not written by S3 or was altered on the way"
    )]
    FieldTooLong {
        field: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error(
        "`{field}` is {found:?}, which is not an S3 bucket name (3 to {MAX_BUCKET_BYTES} \
         letters, digits, `.`, `-` and `_`); the record was not written by S3"
    )]
    InvalidBucket { field: &'static str, found: String },
    #[error(
        "`{field}` is {bytes} bytes, more than any S3 object can hold ({MAX_OBJECT_BYTES}: \
         10,000 parts of 5 GiB); the record was not written by S3"
    )]
    ImpossibleSize { field: &'static str, bytes: u64 },
    #[error(transparent)]
    ForeignBucket(#[from] ForeignBucket),
}

impl RecordError {
    /// A record that is JSON but not one serde can hold (a number beyond `f64`, say); the
    /// parser's words say where.
    fn unreadable(error: &serde_json::Error) -> RecordError {
        RecordError::Unreadable {
            problem: error.to_string(),
        }
    }
}

/// Reads a notification body, whichever of the shapes AWS delivers it in, into one outcome per
/// record.
///
/// Accepted shapes, told apart by their fields: an S3 event notification (a direct Lambda
/// invoke, or the body of an SQS message); the `s3:TestEvent` S3 sends when notifications are
/// configured (one [`RecordOutcome::Ignored`]); an SNS envelope, as SQS holds it when a topic
/// fans out to the queue without raw delivery (its `Message` is read the same way); an
/// EventBridge `aws.s3` event (one outcome). `Err` only when no record can be identified at
/// all; a bad record becomes [`RecordOutcome::Rejected`] and the rest still count.
pub fn parse_notification(body: &str) -> Result<Vec<RecordOutcome>, NotificationError> {
    parse_checked(body, None)
}

/// [`parse_notification`], and a record whose object is not in `sources` rejected
/// ([`RecordError::ForeignBucket`]): what ingest reads.
pub fn parse_notification_of(
    body: &str,
    sources: &SourceBuckets,
) -> Result<Vec<RecordOutcome>, NotificationError> {
    parse_checked(body, Some(sources))
}

fn parse_checked(
    body: &str,
    sources: Option<&SourceBuckets>,
) -> Result<Vec<RecordOutcome>, NotificationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(NotificationError::TooLarge {
            bytes: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    parse_document(body, 0, sources)
}

/// A job's object checked against `sources` (when given): a foreign bucket's is rejected.
fn admitted(
    outcome: RecordOutcome,
    sources: Option<&SourceBuckets>,
) -> Result<RecordOutcome, RecordError> {
    if let (RecordOutcome::Job(job), Some(sources)) = (&outcome, sources) {
        sources.admit(job.bucket(), job.key())?;
    }
    Ok(outcome)
}

/// One JSON document's top-level fields, each left unparsed until it is needed: a record's
/// values (a number out of range, say) are read with the record, so they cost only it.
type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Reads one document (a notification, or an SNS envelope's message) after checking its
/// nesting without recursion: a document nested deeper than [`MAX_JSON_DEPTH`] is refused with
/// where, and never reaches the parser.
fn parse_document(
    text: &str,
    depth: usize,
    sources: Option<&SourceBuckets>,
) -> Result<Vec<RecordOutcome>, NotificationError> {
    if let Some(offset) = too_deep(text, MAX_JSON_DEPTH) {
        return Err(NotificationError::TooDeeplyNested {
            offset,
            max: MAX_JSON_DEPTH,
        });
    }
    // Syntax first: what is not JSON at all is told apart from JSON of the wrong shape.
    let raw: &RawValue = serde_json::from_str(text).map_err(NotificationError::NotJson)?;
    let Ok(fields) = serde_json::from_str::<Fields>(raw.get()) else {
        return Err(NotificationError::UnrecognisedShape {
            found: describe_raw(raw),
        });
    };
    let field = |name: &str| -> Option<Value> {
        let value = fields.get(name)?;
        serde_json::from_str(value.get()).ok()
    };
    if let Some(records) = fields.get("Records") {
        return s3_notification(records, sources);
    }
    if field("Event").as_ref().and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![RecordOutcome::Ignored {
            event: "s3:TestEvent".to_owned(),
            reason: "S3 sends it once to check the destination; it names no object",
        }]);
    }
    if fields.contains_key("detail-type") && fields.contains_key("detail") {
        return Ok(vec![eventbridge_event(text, sources)]);
    }
    if let Some(Value::String(kind)) = field("Type")
        && (fields.contains_key("Message") || fields.contains_key("TopicArn"))
    {
        return sns_envelope(&kind, field("Message"), depth, sources);
    }
    Err(NotificationError::UnrecognisedShape {
        found: describe_names(fields.keys()),
    })
}

/// The offset of the first `[` or `{` that nests deeper than `max`, if any. One pass, no
/// recursion; brackets inside strings do not count. Malformed JSON is left to the parser.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for (offset, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn s3_notification(
    records: &RawValue,
    sources: Option<&SourceBuckets>,
) -> Result<Vec<RecordOutcome>, NotificationError> {
    let Ok(records) = serde_json::from_str::<Vec<&RawValue>>(records.get()) else {
        return Err(NotificationError::RecordsNotAnArray {
            found: describe_raw(records),
        });
    };
    if records.len() > MAX_RECORDS {
        return Err(NotificationError::TooManyRecords {
            count: records.len(),
            max: MAX_RECORDS,
        });
    }
    let records: Vec<(&RawValue, Result<Value, serde_json::Error>)> = records
        .into_iter()
        .map(|raw| (raw, serde_json::from_str(raw.get())))
        .collect();
    // Lambda's SQS and SNS triggers also wrap their messages in `Records`. Reading their records
    // as S3 records would reject each with a misleading complaint; the handler has to unwrap
    // them (and answer SQS per message), so say that instead.
    if let Some((_, Ok(first))) = records.first() {
        let field = |name: &str| first.get(name).and_then(Value::as_str);
        if field("eventSource") == Some("aws:sqs") {
            return Err(NotificationError::LambdaTriggerEvent { trigger: "SQS" });
        }
        if field("EventSource") == Some("aws:sns") {
            return Err(NotificationError::LambdaTriggerEvent { trigger: "SNS" });
        }
    }
    Ok(records
        .into_iter()
        .map(|(raw, record)| {
            let alone = || format!("{{\"Records\":[{}]}}", raw.get());
            match record {
                Ok(record) => s3_record(&record)
                    .and_then(|outcome| admitted(outcome, sources))
                    .unwrap_or_else(|error| rejected(error, alone())),
                Err(error) => rejected(RecordError::unreadable(&error), alone()),
            }
        })
        .collect())
}

fn rejected(error: RecordError, notification: String) -> RecordOutcome {
    RecordOutcome::Rejected {
        error,
        notification,
    }
}

fn sns_envelope(
    kind: &str,
    message: Option<Value>,
    depth: usize,
    sources: Option<&SourceBuckets>,
) -> Result<Vec<RecordOutcome>, NotificationError> {
    if kind != "Notification" {
        // A SubscriptionConfirmation reaches the queue when it is subscribed from another
        // account; it has to be confirmed by hand, which is not the ingest function's business.
        return Ok(vec![RecordOutcome::Ignored {
            event: format!("SNS {kind}"),
            reason: "an SNS control message names no object",
        }]);
    }
    let Some(Value::String(message)) = message else {
        return Err(NotificationError::SnsMessageMissing);
    };
    if depth >= MAX_ENVELOPE_DEPTH {
        return Err(NotificationError::TooDeep {
            max: MAX_ENVELOPE_DEPTH,
        });
    }
    parse_document(&message, depth + 1, sources)
        .map_err(|error| NotificationError::InSnsMessage(Box::new(error)))
}

enum JobKind {
    Replicate,
    Delete,
}

/// What a record asks of yuba; `None` from the classifiers: an event type this build does not
/// know.
enum Action {
    Job(JobKind),
    Ignore(&'static str),
}

const S3_KNOWN_EVENTS: &str = "ObjectCreated:* (replicate) and ObjectRemoved:Delete, \
     ObjectRemoved:DeleteMarkerCreated, LifecycleExpiration:Delete and \
     LifecycleExpiration:DeleteMarkerCreated (delete)";

fn s3_action(event_name: &str) -> Option<Action> {
    // AWS writes names without the `s3:` of the notification configuration; other emitters
    // keep it, and it is unambiguous either way.
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if name.starts_with("ObjectCreated:") {
        return Some(Action::Job(JobKind::Replicate));
    }
    if matches!(
        name,
        "ObjectRemoved:Delete"
            | "ObjectRemoved:DeleteMarkerCreated"
            | "LifecycleExpiration:Delete"
            | "LifecycleExpiration:DeleteMarkerCreated"
    ) {
        return Some(Action::Job(JobKind::Delete));
    }
    let family = name.split_once(':').map_or(name, |(family, _)| family);
    let reason = match family {
        "ObjectRestore" => RESTORE,
        "ObjectTagging" => TAGS,
        "ObjectAcl" => ACL,
        "Replication" => REPLICATION,
        "LifecycleTransition" => STORAGE_CLASS,
        "IntelligentTiering" => ACCESS_TIER,
        "ReducedRedundancyLostObject" => LOST,
        _ => return None,
    };
    Some(Action::Ignore(reason))
}

const EVENTBRIDGE_KNOWN_EVENTS: &str =
    "\"Object Created\" (replicate) and \"Object Deleted\" (delete)";

fn eventbridge_action(detail_type: &str) -> Option<Action> {
    let reason = match detail_type {
        "Object Created" => return Some(Action::Job(JobKind::Replicate)),
        // Either deletion type: a delete marker hides the object from readers as surely as a
        // permanent delete does.
        "Object Deleted" => return Some(Action::Job(JobKind::Delete)),
        "Object Restore Initiated" | "Object Restore Completed" | "Object Restore Expired" => {
            RESTORE
        }
        "Object Tags Added" | "Object Tags Deleted" => TAGS,
        "Object ACL Updated" => ACL,
        "Object Storage Class Changed" => STORAGE_CLASS,
        "Object Access Tier Changed" => ACCESS_TIER,
        _ => return None,
    };
    Some(Action::Ignore(reason))
}

const RESTORE: &str = "restoring an archived object does not change its content";
const TAGS: &str = "object tags are not replicated";
const ACL: &str = "ACLs are not replicated";
const REPLICATION: &str = "S3 Replication progress does not change the source object";
const STORAGE_CLASS: &str = "a storage-class change does not change the content";
const ACCESS_TIER: &str = "an access-tier change does not change the content";
const LOST: &str = "S3 lost the object; the replica is kept, as it may be the last copy";

fn ignored(event: &str, reason: &'static str) -> RecordOutcome {
    RecordOutcome::Ignored {
        event: preview(event),
        reason,
    }
}

/// The object fields a job is made of, decoded and checked.
struct ObjectEvent {
    bucket: String,
    key: String,
    version_id: Option<String>,
    etag: Option<String>,
    size: Option<u64>,
    sequencer: Option<String>,
    event_time: Option<DateTime<Utc>>,
}

impl ObjectEvent {
    fn into_job(self, kind: JobKind) -> Job {
        match kind {
            JobKind::Replicate => Job::Replicate(ReplicateJob {
                bucket: self.bucket,
                key: self.key,
                version_id: self.version_id,
                etag: self.etag,
                size: self.size,
                sequencer: self.sequencer,
                event_time: self.event_time,
                force: false,
            }),
            // For a delete marker the version is the marker's; the worker decides what a
            // versioned delete means for the replica.
            JobKind::Delete => Job::Delete(DeleteJob {
                bucket: self.bucket,
                key: self.key,
                version_id: self.version_id,
                sequencer: self.sequencer,
                event_time: self.event_time,
            }),
        }
    }
}

fn s3_record(record: &Value) -> Result<RecordOutcome, RecordError> {
    if !record.is_object() {
        return Err(RecordError::NotAnObject {
            found: describe(record),
        });
    }
    if let Some(source) = opt_str(record, "eventSource")?
        && source != "aws:s3"
    {
        return Err(RecordError::UnexpectedSource {
            field: "eventSource",
            found: preview(source),
            expected: "aws:s3",
        });
    }
    // The version is checked before anything else is read: a new major version may have moved
    // or redefined the fields below.
    let version = req_str(record, "eventVersion")?;
    if !has_major_version(version, "2") {
        return Err(RecordError::UnsupportedVersion {
            field: "eventVersion",
            found: preview(version),
            supported: "S3 event records of major version 2 (\"2.0\" to \"2.x\")",
        });
    }
    let name = req_str(record, "eventName")?;
    let kind = match s3_action(name) {
        Some(Action::Job(kind)) => kind,
        Some(Action::Ignore(reason)) => return Ok(ignored(name, reason)),
        None => {
            return Err(RecordError::UnknownEvent {
                field: "eventName",
                found: preview(name),
                known: S3_KNOWN_EVENTS,
            });
        }
    };
    let bucket = bucket_name(record, "s3.bucket.name")?;
    let raw_key = req_str(record, "s3.object.key")?;
    let key = decode_event_key(raw_key).map_err(|source| RecordError::InvalidKey {
        raw: preview(raw_key),
        source,
    })?;
    let object = ObjectEvent {
        bucket,
        key: checked_key(key)?,
        version_id: opt_string(record, "s3.object.versionId")?,
        etag: opt_etag(record, "s3.object.eTag")?,
        size: opt_size(record, "s3.object.size")?,
        sequencer: opt_string(record, "s3.object.sequencer")?,
        event_time: opt_time(record, "eventTime"),
    };
    Ok(RecordOutcome::Job(object.into_job(kind)))
}

/// An EventBridge event is one record: rejected, it is the event itself that is set aside.
fn eventbridge_event(text: &str, sources: Option<&SourceBuckets>) -> RecordOutcome {
    match serde_json::from_str::<Value>(text) {
        Ok(event) => eventbridge_record(&event)
            .and_then(|outcome| admitted(outcome, sources))
            .unwrap_or_else(|error| rejected(error, text.to_owned())),
        Err(error) => rejected(RecordError::unreadable(&error), text.to_owned()),
    }
}

fn eventbridge_record(event: &Value) -> Result<RecordOutcome, RecordError> {
    let source = req_str(event, "source")?;
    if source != "aws.s3" {
        return Err(RecordError::UnexpectedSource {
            field: "source",
            found: preview(source),
            expected: "aws.s3",
        });
    }
    for field in ["version", "detail.version"] {
        let version = req_str(event, field)?;
        if version != "0" {
            return Err(RecordError::UnsupportedVersion {
                field,
                found: preview(version),
                supported: "EventBridge S3 events of version \"0\"",
            });
        }
    }
    // AWS documents `detail.event-version` as the schema version of the S3 part; examples
    // without it are common, so only a present, unknown major version is refused.
    if let Some(version) = opt_str(event, "detail.event-version")?
        && !has_major_version(version, "1")
    {
        return Err(RecordError::UnsupportedVersion {
            field: "detail.event-version",
            found: preview(version),
            supported: "EventBridge S3 event details of major version 1 (\"1.0\" to \"1.x\")",
        });
    }
    let detail_type = req_str(event, "detail-type")?;
    let kind = match eventbridge_action(detail_type) {
        Some(Action::Job(kind)) => kind,
        Some(Action::Ignore(reason)) => return Ok(ignored(detail_type, reason)),
        None => {
            return Err(RecordError::UnknownEvent {
                field: "detail-type",
                found: preview(detail_type),
                known: EVENTBRIDGE_KNOWN_EVENTS,
            });
        }
    };
    let bucket = bucket_name(event, "detail.bucket.name")?;
    // Unlike `s3.object.key` in notifications, EventBridge's `detail.object.key` is the key
    // itself, not URL-encoded: decoding it would turn `a+b.jpg` into `a b.jpg`. AWS documents
    // the encoding only for notifications (AmazonS3 userguide, notification-content-structure);
    // its EventBridge page (ev-events) says nothing of it, and real events show raw keys: one
    // captured from AWS (gist vincentclaes/7a5eb53acc05b316c86769fed25d4e1a) carries
    // `raw/health-check/2023-08-08T14:03:40.532432.zip` with bare colons, which notifications
    // write as `%3A` (aws/aws-sdk-js#837); and aws-solutions-library-samples/
    // guidance-for-medialake-on-aws#21 fixed ingestion of keys like `test+b.png` and
    // `%2B%20%%%.png` by no longer decoding EventBridge keys.
    let key = req_str(event, "detail.object.key")?.to_owned();
    // moto spells the field `eTag` in its EventBridge events, AWS `etag`.
    let etag = match opt_etag(event, "detail.object.etag")? {
        Some(etag) => Some(etag),
        None => opt_etag(event, "detail.object.eTag")?,
    };
    let object = ObjectEvent {
        bucket,
        key: checked_key(key)?,
        version_id: opt_string(event, "detail.object.version-id")?,
        etag,
        size: opt_size(event, "detail.object.size")?,
        sequencer: opt_string(event, "detail.object.sequencer")?,
        event_time: opt_time(event, "time"),
    };
    Ok(RecordOutcome::Job(object.into_job(kind)))
}

/// The bucket a record names, checked to be one S3 could have.
fn bucket_name(root: &Value, path: &'static str) -> Result<String, RecordError> {
    let name = req_str(root, path)?;
    if !is_bucket_name(name) {
        return Err(RecordError::InvalidBucket {
            field: path,
            found: preview(name),
        });
    }
    Ok(name.to_owned())
}

fn checked_key(key: String) -> Result<String, RecordError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(RecordError::KeyTooLong { bytes: key.len() });
    }
    Ok(key)
}

/// `"2.1"` has major version `"2"`; a bare `"2"` or `"2.x"` is not a version S3 writes.
fn has_major_version(version: &str, major: &str) -> bool {
    version.split_once('.').is_some_and(|(m, minor)| {
        m == major && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The value at a dot-separated path; `None` when a field along it is absent or null (S3
/// writes `"versionId": null` for unversioned buckets).
fn lookup<'v>(root: &'v Value, path: &'static str) -> Result<Option<&'v Value>, RecordError> {
    let mut current = root;
    let mut walked: usize = 0;
    for segment in path.split('.') {
        let Value::Object(map) = current else {
            return Err(RecordError::WrongType {
                field: &path[..walked.saturating_sub(1)],
                expected: "an object",
                found: describe(current),
            });
        };
        match map.get(segment) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => current = value,
        }
        walked += segment.len() + 1;
    }
    Ok(Some(current))
}

/// An empty string counts as absent: emulators write `""` for fields they do not fill.
fn opt_str<'v>(root: &'v Value, path: &'static str) -> Result<Option<&'v str>, RecordError> {
    match lookup(root, path)? {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RecordError::WrongType {
            field: path,
            expected: "a string",
            found: describe(other),
        }),
    }
}

fn req_str<'v>(root: &'v Value, path: &'static str) -> Result<&'v str, RecordError> {
    opt_str(root, path)?.ok_or(RecordError::Missing { field: path })
}

/// A string that goes into the job, at most [`MAX_FIELD_BYTES`] long.
fn opt_bounded_str<'v>(
    root: &'v Value,
    path: &'static str,
) -> Result<Option<&'v str>, RecordError> {
    match opt_str(root, path)? {
        Some(s) if s.len() > MAX_FIELD_BYTES => Err(RecordError::FieldTooLong {
            field: path,
            bytes: s.len(),
            max: MAX_FIELD_BYTES,
        }),
        other => Ok(other),
    }
}

fn opt_string(root: &Value, path: &'static str) -> Result<Option<String>, RecordError> {
    Ok(opt_bounded_str(root, path)?.map(str::to_owned))
}

fn opt_etag(root: &Value, path: &'static str) -> Result<Option<String>, RecordError> {
    Ok(opt_bounded_str(root, path)?
        .map(normalize_etag)
        .filter(|etag| !etag.is_empty()))
}

/// An object size: a whole number of bytes that an S3 object can have.
fn opt_size(root: &Value, path: &'static str) -> Result<Option<u64>, RecordError> {
    match opt_u64(root, path)? {
        Some(bytes) if bytes > MAX_OBJECT_BYTES => {
            Err(RecordError::ImpossibleSize { field: path, bytes })
        }
        size => Ok(size),
    }
}

fn opt_u64(root: &Value, path: &'static str) -> Result<Option<u64>, RecordError> {
    match lookup(root, path)? {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| RecordError::WrongType {
                field: path,
                expected: "a whole number of bytes",
                found: describe(value),
            }),
    }
}

/// The time only orders and measures (latency metrics); a record without a readable one is
/// still worth its job, so an unreadable time is dropped rather than rejected.
fn opt_time(root: &Value, path: &'static str) -> Option<DateTime<Utc>> {
    match lookup(root, path) {
        Ok(Some(Value::String(time))) => parse_time(time),
        _ => None,
    }
}

fn parse_time(time: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(time) {
        return Some(time.with_timezone(&Utc));
    }
    // Older moto releases write the time without an offset; it is UTC there.
    NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|time| time.and_utc())
}

const PREVIEW_CHARS: usize = 120;

/// Bounds what is copied from untrusted input into errors and logs.
fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", preview(s)),
        Value::Array(items) => format!("an array of {} elements", items.len()),
        Value::Object(map) => describe_object(map),
    }
}

fn describe_object(map: &Map<String, Value>) -> String {
    describe_names(map.keys())
}

/// A value left unparsed, described as [`describe`] would; one that cannot be read as a whole
/// (a number out of range somewhere in it) only by its first character.
fn describe_raw(raw: &RawValue) -> String {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(value) => describe(&value),
        Err(_) => match raw.get().trim_start().as_bytes().first() {
            Some(b'[') => "an array".to_owned(),
            Some(b'{') => "an object".to_owned(),
            _ => "a number out of range".to_owned(),
        },
    }
}

/// An object by its field names.
fn describe_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    const SHOWN: usize = 8;
    let count = names.len();
    if count == 0 {
        return "an empty object".to_owned();
    }
    let names: Vec<String> = names
        .take(SHOWN)
        .map(|name| format!("`{}`", preview(name)))
        .collect();
    let more = match count.saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!("an object with the fields {}{more}", names.join(", "))
}

#[cfg(test)]
mod tests;
