//! The end-to-end tests, one module per concern, in one test binary: one link instead of one per
//! file, and one binary on disk (each links the AWS SDKs, the GCS client and the codecs).
//! Run one concern with a filter: `cargo nextest run -p yuba-e2e -E 'test(/^soak::/)'`.

mod attributes;
mod consumer;
mod eventbridge;
mod events;
mod fault_proxy;
mod faults;
mod gallery;
mod gcs;
mod hostile;
mod iam;
mod inventory;
mod lambda;
mod loadtest;
mod memory;
mod metrics;
mod ordering;
mod package;
mod permissions;
mod protection;
mod reconciler;
mod replication;
mod resume;
mod sender;
mod serve;
mod shards;
mod soak;
mod sources;
mod startup;
mod tidy;
mod variants;
mod versions;
