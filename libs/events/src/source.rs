use thiserror::Error;
use yuba_model::CANARY_PREFIX;
use yuba_startup::{ConfigError, Env};

/// The longest bucket name S3 has ever allowed (legacy us-east-1 names; newer ones are at most
/// 63 characters).
pub(crate) const MAX_BUCKET_BYTES: usize = 255;

/// Whether `name` is one S3 could have given a bucket: it goes into jobs and the worker reads
/// from it, so nothing else (a path, a URL, megabytes of text) may pass.
pub(crate) fn is_bucket_name(name: &str) -> bool {
    (3..=MAX_BUCKET_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The buckets whose objects yuba replicates: the configured source bucket, and the stack's own
/// canary bucket for the deployment probe's keys (under [`CANARY_PREFIX`]) only.
///
/// Anyone who may send to the events queue or a work queue can name any bucket in a message,
/// and a notification of another bucket can be routed to the queue by mistake; with the
/// worker's read access that would copy a foreign bucket's objects into the replica. Ingest
/// refuses such a record and the worker such a job before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBuckets {
    source: String,
    canary: Option<String>,
}

/// A record or job that names a bucket yuba does not replicate. Permanent: no retry changes
/// the bucket a message names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "s3://{bucket}/{key} is not in the source bucket {source_bucket} (YUBA_SOURCE_BUCKET){canary}: \
     yuba replicates no other bucket, so nothing was read; check which bucket's notifications \
     reach the events queue, and who may send to it and to the work queues"
)]
pub struct ForeignBucket {
    pub bucket: String,
    pub key: String,
    source_bucket: String,
    canary: String,
}

impl SourceBuckets {
    /// Both names must be S3 bucket names; `canary`, if given, must differ from `source` (the
    /// source's keys under the canary prefix are replicated like any other).
    pub fn new(source: String, canary: Option<String>) -> Result<SourceBuckets, String> {
        for name in std::iter::once(&source).chain(canary.as_ref()) {
            if !is_bucket_name(name) {
                return Err(format!(
                    "{name:?} is not an S3 bucket name (3 to {MAX_BUCKET_BYTES} letters, \
                     digits, `.`, `-` and `_`)"
                ));
            }
        }
        let canary = canary.filter(|canary| *canary != source);
        Ok(SourceBuckets { source, canary })
    }

    /// `YUBA_SOURCE_BUCKET` (required) and `YUBA_CANARY_BUCKET` (the stack's probe bucket, if
    /// it has one).
    pub fn from_env(env: &Env) -> Result<SourceBuckets, ConfigError> {
        let source = env.required(
            "YUBA_SOURCE_BUCKET",
            "set it to the name of the S3 bucket that is replicated",
        )?;
        let canary = env.optional("YUBA_CANARY_BUCKET");
        SourceBuckets::new(source, canary).map_err(|problem| {
            let name = if is_bucket_name(&env.optional("YUBA_SOURCE_BUCKET").unwrap_or_default()) {
                "YUBA_CANARY_BUCKET"
            } else {
                "YUBA_SOURCE_BUCKET"
            };
            env.invalid(name, problem)
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn canary(&self) -> Option<&str> {
        self.canary.as_deref()
    }

    /// `Ok` when `key` of `bucket` is one yuba replicates.
    pub fn admit(&self, bucket: &str, key: &str) -> Result<(), ForeignBucket> {
        let is_probe = || self.canary.as_deref() == Some(bucket) && key.starts_with(CANARY_PREFIX);
        if bucket == self.source || is_probe() {
            return Ok(());
        }
        Err(ForeignBucket {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source_bucket: self.source.clone(),
            canary: match &self.canary {
                Some(canary) => format!(" nor a probe key (`{CANARY_PREFIX}...`) of {canary}"),
                None => String::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(source: &str, canary: Option<&str>) -> SourceBuckets {
        SourceBuckets::new(source.to_owned(), canary.map(str::to_owned)).unwrap()
    }

    #[test]
    fn only_the_source_bucket_is_admitted() {
        let only = buckets("photos", None);
        assert!(only.admit("photos", "a.jpg").is_ok());
        assert!(only.admit("photos", &format!("{CANARY_PREFIX}x")).is_ok());
        let refused = only.admit("payroll", "2026.csv").unwrap_err();
        assert_eq!(refused.bucket, "payroll");
        let message = refused.to_string();
        assert!(
            message.starts_with(
                "s3://payroll/2026.csv is not in the source bucket photos (YUBA_SOURCE_BUCKET): "
            ),
            "{message}"
        );
        assert!(
            only.admit("photos-old", "a.jpg").is_err(),
            "names are compared whole"
        );
    }

    #[test]
    fn the_canary_bucket_is_admitted_for_probe_keys_only() {
        let with_canary = buckets("photos", Some("stack-canary"));
        assert!(
            with_canary
                .admit("stack-canary", &format!("{CANARY_PREFIX}worker.png"))
                .is_ok()
        );
        let message = with_canary
            .admit("stack-canary", "other.png")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("nor a probe key (`_yuba-canary/...`) of stack-canary"),
            "{message}"
        );
        assert_eq!(buckets("photos", Some("photos")).canary(), None);
    }

    #[test]
    fn settings_are_checked_at_start_up() {
        let env = Env::from_pairs([
            ("YUBA_SOURCE_BUCKET", "photos"),
            ("YUBA_CANARY_BUCKET", "c-1"),
        ]);
        let ok = SourceBuckets::from_env(&env).unwrap();
        assert_eq!((ok.source(), ok.canary()), ("photos", Some("c-1")));
        let missing = SourceBuckets::from_env(&Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("YUBA_SOURCE_BUCKET is not set"),
            "{missing}"
        );
        let url = Env::from_pairs([("YUBA_SOURCE_BUCKET", "s3://photos")]);
        let message = SourceBuckets::from_env(&url).unwrap_err().to_string();
        assert!(
            message.contains("YUBA_SOURCE_BUCKET") && message.contains("not an S3 bucket name"),
            "{message}"
        );
        let bad_canary = Env::from_pairs([
            ("YUBA_SOURCE_BUCKET", "photos"),
            ("YUBA_CANARY_BUCKET", "a/b"),
        ]);
        let message = SourceBuckets::from_env(&bad_canary)
            .unwrap_err()
            .to_string();
        assert!(message.contains("YUBA_CANARY_BUCKET"), "{message}");
    }
}
