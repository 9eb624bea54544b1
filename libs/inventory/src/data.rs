//! A data file's objects, whatever its format: what each row becomes, what a file held, and
//! what can be wrong with it.

use std::fs::File;
use std::io::BufReader;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::csv::read_csv_gz;
use crate::manifest::FileSchema;
use crate::parquet::read_parquet;

/// One current object of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    /// Bare, without quotes.
    pub etag: String,
    pub last_modified: Option<DateTime<Utc>>,
}

impl Entry {
    /// An object as a row gives it (an ETag with or without its quotes).
    pub fn new(key: String, size: u64, etag: &str, last_modified: Option<DateTime<Utc>>) -> Entry {
        Entry {
            key,
            size,
            etag: etag.trim_matches('"').to_owned(),
            last_modified,
        }
    }

    /// Whether a row is an object's current version, by its `IsLatest` and `IsDeleteMarker`
    /// (present when the report lists all versions): a noncurrent version or a delete marker
    /// is not the object.
    pub fn is_current(is_latest: Option<bool>, is_delete_marker: Option<bool>) -> bool {
        is_latest != Some(false) && is_delete_marker != Some(true)
    }
}

/// What a data file held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rows {
    /// Current objects, passed on.
    pub objects: u64,
    /// Rows of noncurrent versions and delete markers (a report of all versions), left out.
    pub noncurrent: u64,
}

#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read the data file (is it the gzip CSV the manifest says?)")]
    Csv(#[source] ::csv::Error),
    #[error("cannot read the data file (is it the Parquet the manifest says?)")]
    Parquet(#[source] ::parquet::errors::ParquetError),
    #[error("the data file's own schema: {0}")]
    Schema(String),
    #[error("row {row}: {why}")]
    Row { row: u64, why: String },
    #[error("cannot keep what was read")]
    Keep(#[source] std::io::Error),
}

/// Reads a data file of the manifest's format, passing each current object to `keep`.
pub fn read_data_file(
    file: File,
    schema: &FileSchema,
    keep: impl FnMut(Entry) -> std::io::Result<()>,
) -> Result<Rows, DataError> {
    match schema {
        FileSchema::Csv(columns) => read_csv_gz(BufReader::new(file), columns, keep),
        FileSchema::Parquet(_) => read_parquet(file, keep),
    }
}
