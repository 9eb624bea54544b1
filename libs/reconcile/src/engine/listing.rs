//! One bucket's listing, a page at a time into a channel, each request retried; and the error
//! a listing request ends with.

use std::fmt;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use yuba_aws::{ListedObject, S3Error};
use yuba_gcs::{GcsError, ListQuery, ObjectInfo};
use yuba_model::{Cause, ErrorChain, FailureKind};

use super::{ReconcileError, Reconciler};
use crate::ranges::KeyRange;

/// Attempts at one listing page before the run fails (the SDKs retry inside each attempt too).
const LISTING_ATTEMPTS: u32 = 5;
/// How listing requests are retried: pauses drawn up to 1, 2, 4 and 8 s (on average the 7.5 s
/// in all that a fixed 0.5 s doubling waited), and a time limit that lets five attempts time
/// out at the clients' 60 s but stops a listing that hangs longer.
const LISTING_RETRIES: yuba_retry::RetryPolicy = yuba_retry::RetryPolicy {
    first_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(8),
    max_attempts: LISTING_ATTEMPTS,
    time_limit: Duration::from_secs(300),
};
/// The retries all the listing tasks of the process may make: when a bucket fails every
/// request, the ranges listed at once do not each retry it `LISTING_ATTEMPTS` times.
static LISTING_BUDGET: std::sync::LazyLock<yuba_retry::RetryBudget> =
    std::sync::LazyLock::new(yuba_retry::RetryBudget::default);

/// A request for a listing (or a manifest key's lookup) that failed: what was asked, and the
/// client's error that answered it.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct ListingFailure {
    pub kind: FailureKind,
    /// What was asked: `listing s3://bucket/prefix`, `looking up gs://bucket/key`.
    pub message: String,
    #[source]
    pub source: Option<Cause>,
}

impl ListingFailure {
    pub(super) fn s3(what: &str, error: S3Error) -> ListingFailure {
        ListingFailure {
            kind: error.kind,
            message: what.to_owned(),
            source: Some(Box::new(error)),
        }
    }

    pub(super) fn gcs(what: &str, error: GcsError) -> ListingFailure {
        ListingFailure {
            kind: error.kind,
            message: what.to_owned(),
            source: Some(Box::new(error)),
        }
    }
}

impl Reconciler {
    pub(super) fn list_sources(
        &self,
        prefix: String,
        after: Option<String>,
        page_size: u32,
    ) -> mpsc::Receiver<Result<(Vec<ListedObject>, bool), ReconcileError>> {
        let s3 = self.s3.clone();
        let bucket = self.buckets.source.clone();
        let what = format!("listing s3://{bucket}/{prefix}");
        spawn_listing(what.clone(), move |continuation| {
            let (s3, bucket, prefix, after, what) = (
                s3.clone(),
                bucket.clone(),
                prefix.clone(),
                after.clone(),
                what.clone(),
            );
            async move {
                // S3 ignores StartAfter once it continues a listing.
                let start_after = after.filter(|_| continuation.is_none());
                let query = yuba_aws::ListQuery {
                    prefix: &prefix,
                    delimiter: None,
                    start_after: start_after.as_deref(),
                    continuation: continuation.as_deref(),
                    page_size,
                };
                let page = s3
                    .list(&bucket, &query)
                    .await
                    .map_err(|error| ListingFailure::s3(&what, error))?;
                Ok((page.objects, page.continuation))
            }
        })
    }

    /// The replicas under `prefix` within `range`, past `after` (where a run resumes).
    pub(super) fn list_replicas(
        &self,
        prefix: String,
        range: KeyRange,
        after: Option<String>,
        page_size: u32,
    ) -> mpsc::Receiver<Result<(Vec<ObjectInfo>, bool), ReconcileError>> {
        if range.is_empty() {
            // A shard of a plan with more shards than keys.
            return listed(Vec::new());
        }
        let gcs = self.gcs.clone();
        let bucket = self.buckets.replica.clone();
        let what = format!("listing gs://{bucket}/{prefix}");
        // The listing starts at the later of the two; `after` itself is done, which the filter
        // below sees to.
        let start = match (range.start.clone(), after.clone()) {
            (Some(start), Some(after)) => Some(start.max(after)),
            (start, after) => start.or(after),
        };
        spawn_listing(what.clone(), move |token| {
            let (gcs, bucket, prefix, after, range, start, what) = (
                gcs.clone(),
                bucket.clone(),
                prefix.clone(),
                after.clone(),
                range.clone(),
                start.clone(),
                what.clone(),
            );
            async move {
                let query = ListQuery {
                    prefix: &prefix,
                    delimiter: None,
                    start_offset: start.as_deref().filter(|_| token.is_none()),
                    end_offset: range.end.as_deref(),
                    page_token: token.as_deref(),
                    page_size,
                };
                let page = gcs
                    .objects()
                    .list(&bucket, &query)
                    .await
                    .map_err(|error| ListingFailure::gcs(&what, error))?;
                // GCS's startOffset is inclusive: the key `after` names is already done. The
                // range is held here too, whatever the server makes of the offsets.
                let objects = page
                    .objects
                    .into_iter()
                    .filter(|o| {
                        after.as_deref().is_none_or(|after| o.name.as_str() > after)
                            && range.contains(&o.name)
                    })
                    .collect();
                Ok((objects, page.next_page_token))
            }
        })
    }
}

/// Runs a listing in a task, a page at a time into a channel of one page (so it runs ahead of
/// the join by one page, no more). `fetch` gets the previous page's token (`None` first) and
/// returns a page and the next token; the channel carries each page and whether it was the last.
fn spawn_listing<T, F, Fut>(
    what: String,
    mut fetch: F,
) -> mpsc::Receiver<Result<(Vec<T>, bool), ReconcileError>>
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ListingFailure>> + Send,
{
    let (pages, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut token: Option<String> = None;
        loop {
            match with_retries(&what, || fetch(token.clone())).await {
                Ok((objects, next)) => {
                    let last = next.is_none();
                    if pages.send(Ok((objects, last))).await.is_err() || last {
                        return;
                    }
                    token = next;
                }
                Err(error) => {
                    let _ = pages.send(Err(error.into())).await;
                    return;
                }
            }
        }
    });
    receiver
}

/// A listing already made, as the one page of a listing.
pub(super) fn listed<T: Send + 'static>(
    objects: Vec<T>,
) -> mpsc::Receiver<Result<(Vec<T>, bool), ReconcileError>> {
    let (page, receiver) = mpsc::channel(1);
    // Cannot fail: the channel is new, with room for one.
    let _ = page.try_send(Ok((objects, true)));
    receiver
}

/// Runs one listing request, retrying transient failures ([`LISTING_RETRIES`], within
/// [`LISTING_BUDGET`]); the last failure is the run's.
pub(super) async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ListingFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ListingFailure>>,
{
    yuba_retry::run(&LISTING_RETRIES, &LISTING_BUDGET, what, || {
        let listing = attempt();
        async move { listing.await.map_err(Attempt) }
    })
    .await
    .map_err(|Attempt(failure)| failure)
}

/// A failed attempt as the retry loop sees it: its kind, and for its log line what answered
/// (the line names what was asked already).
struct Attempt(ListingFailure);

impl yuba_retry::Retryable for Attempt {
    fn kind(&self) -> FailureKind {
        self.0.kind
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.source {
            Some(cause) => write!(f, "{}", ErrorChain(cause.as_ref())),
            None => f.write_str(&self.0.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_request_and_keeps_the_answer_as_its_source() {
        let answer = S3Error {
            kind: FailureKind::Permanent,
            message: "NoSuchBucket: the bucket does not exist".to_owned(),
            source: None,
        };
        let failure = ListingFailure::s3("listing s3://photos/2026/", answer);
        assert_eq!(failure.kind, FailureKind::Permanent);
        let run_error = ReconcileError::from(failure);
        assert_eq!(
            ErrorChain(&run_error).to_string(),
            "listing s3://photos/2026/: NoSuchBucket: the bucket does not exist"
        );
        // The retry loop's line names the request already: an attempt shows only the answer.
        let ReconcileError::Listing(failure) = run_error else {
            unreachable!("a listing failure is a listing error");
        };
        assert_eq!(
            Attempt(failure).to_string(),
            "NoSuchBucket: the bucket does not exist"
        );
    }
}
