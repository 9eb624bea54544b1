use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version of the job message format written by this build. Readers refuse others, so a
/// mixed deployment fails loudly (to the DLQ) instead of misreading a job.
const JOB_FORMAT_VERSION: u32 = 1;

/// The largest object S3 can hold: 10,000 multipart parts of at most 5 GiB. An event or a job
/// that names a larger size was not written by S3.
pub const MAX_OBJECT_BYTES: u64 = 10_000 * 5 * 1024 * 1024 * 1024;

/// The most bytes an S3 key can have (UTF-8), which is also GCS's limit on object names. Anything
/// longer cannot name an S3 object, so an event or a job carrying one was not written by S3.
pub const MAX_KEY_BYTES: usize = 1024;

/// One unit of work on a work queue: make the replica of one S3 key match the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Job {
    Replicate(ReplicateJob),
    Delete(DeleteJob),
}

/// An object was created or overwritten in S3: copy it (the version the event names, or newer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateJob {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Without quotes (see [`normalize_etag`]); absent when the event did not carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// S3's per-key ordering token (hex, compare after left-padding); not sent by every emitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
    /// Copy even if the replica's record says it is up to date: the reconciler proved its
    /// content wrong by a means the record cannot show (a source checksum, a deep compare).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// An object was deleted in S3 (or a delete marker was put): remove the replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteJob {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct JobMessageOut<'a> {
    v: u32,
    #[serde(flatten)]
    job: &'a Job,
}

#[derive(Deserialize)]
struct JobMessageIn {
    // `v` is read (and checked) separately, before the job itself.
    #[serde(flatten)]
    job: Job,
}

/// Why a work-queue message is not a job this build can run. Always permanent: redelivering the
/// same bytes cannot help, so such messages belong in the DLQ.
#[derive(Debug, Error)]
pub enum JobDecodeError {
    #[error("the message is not a yuba job: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error(
        "the job is in format version {0}, this build reads version {JOB_FORMAT_VERSION}; \
         run a matching worker or redrive the message after upgrading"
    )]
    UnsupportedVersion(u32),
    #[error("the job cannot describe an S3 object: {0}; it was not made by yuba's ingest")]
    Impossible(String),
}

impl Job {
    pub fn bucket(&self) -> &str {
        match self {
            Job::Replicate(job) => &job.bucket,
            Job::Delete(job) => &job.bucket,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Job::Replicate(job) => &job.key,
            Job::Delete(job) => &job.key,
        }
    }

    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Job::Replicate(job) => job.event_time,
            Job::Delete(job) => job.event_time,
        }
    }

    /// The message body put on a work queue.
    pub fn to_message(&self) -> String {
        let message = JobMessageOut {
            v: JOB_FORMAT_VERSION,
            job: self,
        };
        // A job is plain strings and numbers: serialising it cannot fail.
        serde_json::to_string(&message).unwrap_or_else(|error| unreachable!("{error}"))
    }

    pub fn from_message(body: &str) -> Result<Job, JobDecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            v: u32,
        }
        // The version is checked first so that a future format gets the right complaint even
        // when its fields no longer parse as this one.
        let version: VersionOnly = serde_json::from_str(body).map_err(JobDecodeError::Malformed)?;
        if version.v != JOB_FORMAT_VERSION {
            return Err(JobDecodeError::UnsupportedVersion(version.v));
        }
        let message: JobMessageIn =
            serde_json::from_str(body).map_err(JobDecodeError::Malformed)?;
        message.job.check()?;
        Ok(message.job)
    }

    /// Refuses what no S3 event can say, so such a message goes to the DLQ with its reason
    /// instead of reaching S3 and GCS as requests.
    fn check(&self) -> Result<(), JobDecodeError> {
        let impossible = |reason: String| Err(JobDecodeError::Impossible(reason));
        let key = self.key();
        if self.bucket().is_empty() {
            return impossible("the bucket is empty".into());
        }
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return impossible(format!(
                "the key is {} bytes long; S3 keys are 1 to {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        match self {
            Job::Replicate(ReplicateJob {
                size: Some(size), ..
            }) if *size > MAX_OBJECT_BYTES => impossible(format!(
                "the size {size} is larger than any S3 object ({MAX_OBJECT_BYTES} bytes)"
            )),
            _ => Ok(()),
        }
    }
}

/// Orders two S3 event sequencers of the same key: S3 documents them as hexadecimal strings
/// to compare after left-padding the shorter with zeros, the greater being the later change.
/// `None` when either is not hexadecimal (an emitter that sends something else orders nothing).
pub fn sequencer_order(a: &str, b: &str) -> Option<Ordering> {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(a) && hex(b)) {
        return None;
    }
    let significant = |s: &str| s.trim_start_matches('0').to_ascii_uppercase();
    let (a, b) = (significant(a), significant(b));
    Some(a.len().cmp(&b.len()).then_with(|| a.cmp(&b)))
}

/// ETags arrive quoted from S3's HTTP API (`"abc"`) and bare in events (`abc`); yuba stores and
/// compares them bare.
pub fn normalize_etag(etag: &str) -> String {
    let trimmed = etag.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(trimmed);
    unquoted.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicate() -> Job {
        Job::Replicate(ReplicateJob {
            bucket: "src".into(),
            key: "photos/a b+c.jpg".into(),
            version_id: Some("v1".into()),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            size: Some(0),
            sequencer: Some("0055AED6DCD90281E5".into()),
            event_time: Some("2026-11-22T10:00:00.123Z".parse().unwrap()),
            force: true,
        })
    }

    #[test]
    fn jobs_round_trip_through_the_message_format() {
        let delete = Job::Delete(DeleteJob {
            bucket: "src".into(),
            key: "k".into(),
            version_id: None,
            sequencer: None,
            event_time: None,
        });
        for job in [replicate(), delete] {
            assert_eq!(Job::from_message(&job.to_message()).unwrap(), job);
        }
    }

    #[test]
    fn the_message_format_is_stable() {
        let body = replicate().to_message();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "v": 1, "op": "replicate", "bucket": "src", "key": "photos/a b+c.jpg",
                "version_id": "v1", "etag": "d41d8cd98f00b204e9800998ecf8427e", "size": 0,
                "sequencer": "0055AED6DCD90281E5", "event_time": "2026-11-22T10:00:00.123Z",
                "force": true
            })
        );
    }

    #[test]
    fn foreign_and_future_messages_are_refused() {
        assert!(matches!(
            Job::from_message("not json"),
            Err(JobDecodeError::Malformed(_))
        ));
        assert!(matches!(
            Job::from_message(r#"{"v":1,"op":"replicate"}"#),
            Err(JobDecodeError::Malformed(_))
        ));
        assert!(matches!(
            Job::from_message(r#"{"v":2,"op":"teleport"}"#),
            Err(JobDecodeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            Job::from_message(r#"{"v":1,"op":"replicate","bucket":"b","key":"k","size":-1}"#),
            Err(JobDecodeError::Malformed(_))
        ));
        let long_key = "k".repeat(1025);
        for impossible in [
            r#"{"v":1,"op":"replicate","bucket":"b","key":"k","size":18446744073709551615}"#
                .to_owned(),
            r#"{"v":1,"op":"delete","bucket":"","key":"k"}"#.to_owned(),
            r#"{"v":1,"op":"delete","bucket":"b","key":""}"#.to_owned(),
            format!(r#"{{"v":1,"op":"delete","bucket":"b","key":"{long_key}"}}"#),
        ] {
            let error = Job::from_message(&impossible).unwrap_err();
            assert!(
                matches!(error, JobDecodeError::Impossible(_)),
                "{impossible}: {error}"
            );
        }
        let largest = format!(
            r#"{{"v":1,"op":"replicate","bucket":"b","key":"k","size":{MAX_OBJECT_BYTES}}}"#
        );
        assert!(Job::from_message(&largest).is_ok());
    }

    #[test]
    fn sequencers_compare_as_left_padded_hex() {
        use Ordering::*;
        assert_eq!(
            sequencer_order("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Some(Less)
        );
        // Lengths differ between events of one key; padding makes them comparable.
        assert_eq!(
            sequencer_order("55AED6DCD90281E5", "0055AED6DCD90281E5"),
            Some(Equal)
        );
        assert_eq!(sequencer_order("0056", "0055AED6DCD90281E5"), Some(Less));
        assert_eq!(
            sequencer_order("0055AED6DCD90281E5", "55aed6dcd90281e4"),
            Some(Greater)
        );
        assert_eq!(sequencer_order("1", "0"), Some(Greater));
        assert_eq!(sequencer_order("", "00"), None);
        assert_eq!(sequencer_order("0x12", "12"), None);
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert_eq!(normalize_etag("\"abc-2\""), "abc-2");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(normalize_etag(" \"abc\" "), "abc");
    }
}
