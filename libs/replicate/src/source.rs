use std::sync::{Arc, Mutex};

use bytes::Bytes;
use yuba_aws::{S3Error, SourceObject};
use yuba_gcs::{SizeHint, StreamingSource};
use yuba_model::Checksums;

use crate::verify::{ContentVerifier, ExpectedContent, IntegrityError};

/// Why reading the source for an upload stopped early. A resumable upload's stream keeps it
/// beside itself, because the upload client reports source errors only as opaque text.
#[derive(Debug)]
pub(crate) enum StreamFailure {
    Source(S3Error),
    Integrity(IntegrityError),
}

/// What the stream learned, readable after the upload has consumed it.
#[derive(Debug, Default)]
pub(crate) struct StreamReport {
    pub checksums: Option<Checksums>,
    pub failure: Option<StreamFailure>,
}

/// The S3 body as an upload source: every byte is hashed and verified on its way to GCS, and a
/// stream that is short, long or damaged ends in an error before the upload can be finalised.
#[derive(Debug)]
pub(crate) struct VerifiedStream {
    source: SourceObject,
    verifier: ContentVerifier,
    report: Arc<Mutex<StreamReport>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the source stream failed; see the replication error for why")]
pub(crate) struct StreamStopped;

impl VerifiedStream {
    pub(crate) fn new(
        source: SourceObject,
        expected: ExpectedContent,
    ) -> (Self, Arc<Mutex<StreamReport>>) {
        let report = Arc::new(Mutex::new(StreamReport::default()));
        let stream = VerifiedStream {
            source,
            verifier: ContentVerifier::new(expected),
            report: Arc::clone(&report),
        };
        (stream, report)
    }

    fn record(&self, outcome: Result<Checksums, StreamFailure>) {
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(checksums) => report.checksums = Some(checksums),
            Err(failure) => report.failure = Some(failure),
        }
    }
}

impl StreamingSource for VerifiedStream {
    type Error = StreamStopped;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        match self.source.next_chunk().await {
            Some(Ok(chunk)) => match self.verifier.feed(&chunk) {
                Ok(Some(checksums)) => {
                    self.record(Ok(checksums));
                    Some(Ok(chunk))
                }
                Ok(None) => Some(Ok(chunk)),
                Err(error) => {
                    self.record(Err(StreamFailure::Integrity(error)));
                    Some(Err(StreamStopped))
                }
            },
            Some(Err(error)) => {
                self.record(Err(StreamFailure::Source(error)));
                Some(Err(StreamStopped))
            }
            None => match self.verifier.finish() {
                Ok(checksums) => {
                    self.record(Ok(checksums));
                    None
                }
                Err(error) => {
                    self.record(Err(StreamFailure::Integrity(error)));
                    Some(Err(StreamStopped))
                }
            },
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, Self::Error> {
        Ok(SizeHint::with_exact(self.source.size))
    }
}
