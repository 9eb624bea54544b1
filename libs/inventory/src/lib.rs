//! S3 Inventory reports as the reconciler's source listing.
//!
//! A daily report lists a bucket without a ListObjectsV2 request: at a billion keys, a million
//! requests fewer per run. This crate reads it; the reconciler fetches its files.
//!
//! - [`manifest`] the report's `manifest.json`: its bucket, time, columns and data files, and
//!   the checks that refuse a report of another bucket or too old;
//! - [`data`] a data file's rows as objects, whatever its format (noncurrent versions and
//!   delete markers left out): [`csv`] gzip CSV (keys URL-decoded), [`parquet`] Parquet (keys
//!   as they are);
//! - [`sort`] the objects in key order with bounded memory, spilling sorted runs to disk;
//! - [`write`] a report written as S3 writes one, for the local stack (tests, benchmark).
//!
//! Invariant: what comes out is in UTF-8 byte order, each key once, whatever order and
//! however many files the report has; memory is bounded by the sort's budget, never by the
//! report's size.

pub mod csv;
pub mod data;
pub mod manifest;
pub mod parquet;
pub mod sort;
pub mod write;

pub use data::{DataError, Entry, Rows, read_data_file};
pub use manifest::{
    CsvColumns, DataFile, FileSchema, Location, MANIFEST_NAME, Manifest, ManifestError,
    ReportFormat, newest_manifest,
};
pub use sort::{ExternalSort, MAX_FAN_IN, SortSettings, Sorted};
