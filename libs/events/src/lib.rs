//! Turns the notifications S3 emits about a source bucket into yuba's replication jobs, and
//! decides which of them to run and where.
//!
//! The ingest function receives the same facts in several wrappings: S3 event notifications
//! (invoked directly, or as the body of an SQS message), SNS envelopes around them (a topic
//! fanning out to the queue), EventBridge `aws.s3` events, and the `s3:TestEvent` S3 sends
//! when notifications are set up. [`parse_notification`] tells them apart and yields one
//! [`RecordOutcome`] per record: a [`yuba_model::Job`], an event yuba deliberately ignores, or
//! a rejection that names the faulty field. Every payload is untrusted: sizes and nesting are
//! bounded, versions are checked, keys are decoded strictly, and one bad record never costs
//! the others their jobs.
//!
//! [`SourceBuckets`] names the only buckets whose objects are replicated, [`KeyFilter`] narrows
//! the keys replicated and [`Router`] sends each job to the Lambda or the
//! Fargate worker pool by object size.
//!
//! Everything here is pure (no I/O, no async), so it is tested with fixtures alone.

mod filter;
mod key;
mod parse;
mod route;
mod source;

pub use filter::KeyFilter;
pub use key::{KeyDecodeError, decode_event_key};
pub use parse::{
    MAX_BODY_BYTES, MAX_ENVELOPE_DEPTH, MAX_JSON_DEPTH, MAX_RECORDS, NotificationError,
    REJECTED_FROM_ATTRIBUTE, REJECTED_REASON_ATTRIBUTE, RecordError, RecordOutcome,
    parse_notification, parse_notification_of,
};
pub use route::{Route, Router, WorkQueues};
pub use source::{ForeignBucket, SourceBuckets};
