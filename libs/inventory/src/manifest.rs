//! An inventory report's manifest: which bucket it lists, when, in what format, and its data
//! files.
//!
//! S3 writes each report's `manifest.json` to
//! `destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json`, the timestamp
//! being when the report began scanning the bucket; its `files` are the data files, each with
//! its MD5, and `fileSchema` names the CSV columns in order.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html>

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use thiserror::Error;

/// The name S3 gives every report's manifest.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Where the report is: a manifest, or the folder of a configuration's reports (the newest is
/// read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// A `manifest.json`, or a folder (ending in `/`) holding reports' timestamped folders.
    pub key: String,
}

impl Location {
    /// `s3://bucket/path/manifest.json`, or `s3://bucket/prefix/source-bucket/config-ID/`.
    pub fn parse(text: &str) -> Result<Location, ManifestError> {
        let invalid = |why: &str| ManifestError::Location {
            location: text.to_owned(),
            why: why.to_owned(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it does not start with s3://"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("it names no key after the bucket"))?;
        if bucket.is_empty() {
            return Err(invalid("it names no bucket"));
        }
        if !(key.ends_with('/') || key == MANIFEST_NAME || key.ends_with("/manifest.json")) {
            return Err(invalid(
                "name a report's manifest.json, or the folder of a configuration's reports \
                 (ending in /), whose newest report is read",
            ));
        }
        Ok(Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Whether it names a folder, whose newest report is to be found.
    pub fn is_folder(&self) -> bool {
        self.key.ends_with('/')
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The manifest of the newest report among a configuration folder's subfolders (as a delimiter
/// listing names them): the one with the greatest `YYYY-MM-DDTHH-MMZ` timestamp, which sorts as
/// text. Other subfolders (`data/`, `hive/`) are not reports.
pub fn newest_manifest<'a>(folders: impl IntoIterator<Item = &'a str>) -> Option<String> {
    folders
        .into_iter()
        .filter(|folder| {
            let name = folder
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            chrono::NaiveDateTime::parse_from_str(name, "%Y-%m-%dT%H-%MZ").is_ok()
        })
        .max()
        .map(|folder| format!("{folder}{MANIFEST_NAME}"))
}

/// A data file of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Its key in the destination bucket.
    pub key: String,
    pub size: u64,
    /// The hex MD5 of its bytes (as stored, compressed).
    pub md5: String,
}

/// Where each column the diff needs is, in a CSV data file's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub key: usize,
    pub size: usize,
    pub etag: usize,
    pub last_modified: usize,
    /// Present when the report lists all versions: only the current version is the object.
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub columns: usize,
}

/// The columns a diff cannot do without, and the inventory configuration's name for each
/// optional one (`OptionalFields`):
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_InventoryConfiguration.html>
const REQUIRED: [&str; 4] = ["Key", "Size", "LastModifiedDate", "ETag"];

impl Schema {
    /// The columns of `fileSchema` (`Bucket, Key, Size, ...`).
    pub fn parse(file_schema: &str) -> Result<Schema, ManifestError> {
        let columns: Vec<&str> = file_schema.split(',').map(str::trim).collect();
        let at = |name: &str| columns.iter().position(|column| *column == name);
        let [Some(key), Some(size), Some(last_modified), Some(etag)] = REQUIRED.map(at) else {
            let missing: Vec<&str> = REQUIRED
                .into_iter()
                .filter(|name| at(name).is_none())
                .collect();
            return Err(ManifestError::Columns {
                missing: missing.join(", "),
                schema: file_schema.to_owned(),
            });
        };
        Ok(Schema {
            key,
            size,
            etag,
            last_modified,
            is_latest: at("IsLatest"),
            is_delete_marker: at("IsDeleteMarker"),
            columns: columns.len(),
        })
    }
}

/// A report's manifest, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub source_bucket: String,
    /// When the report began scanning the bucket: what it says holds at this time, at best.
    pub created: DateTime<Utc>,
    pub schema: Schema,
    pub files: Vec<DataFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    source_bucket: String,
    /// Milliseconds since the epoch, as a string.
    creation_timestamp: String,
    file_format: String,
    file_schema: String,
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    key: String,
    size: u64,
    #[serde(rename = "MD5checksum")]
    md5: String,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
                .map_err(|error| ManifestError::Json(error.to_string()))?;
        if !raw.file_format.eq_ignore_ascii_case("CSV") {
            return Err(ManifestError::Format(raw.file_format));
        }
        let created = raw
            .creation_timestamp
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ManifestError::Created(raw.creation_timestamp.clone()))?;
        Ok(Manifest {
            source_bucket: raw.source_bucket,
            created,
            schema: Schema::parse(&raw.file_schema)?,
            files: raw
                .files
                .into_iter()
                .map(|file| DataFile {
                    key: file.key,
                    size: file.size,
                    md5: file.md5,
                })
                .collect(),
        })
    }

    /// Refuses a report of another bucket than `source_bucket`, or one older than `max_age` at
    /// `now`: a diff on its word would call everything written since missing from the report.
    pub fn check(
        &self,
        source_bucket: &str,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<(), ManifestError> {
        if self.source_bucket != source_bucket {
            return Err(ManifestError::Bucket {
                listed: self.source_bucket.clone(),
                configured: source_bucket.to_owned(),
            });
        }
        let age = now.signed_duration_since(self.created);
        if age.to_std().is_ok_and(|age| age > max_age) {
            return Err(ManifestError::TooOld {
                created: self.created,
                age_hours: age.num_hours(),
                max_age_hours: max_age.as_secs() / 3600,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("the inventory location {location:?} is not usable: {why}")]
    Location { location: String, why: String },
    #[error("the inventory manifest is not an S3 Inventory manifest.json: {0}")]
    Json(String),
    #[error(
        "the inventory report is in {0} format; yuba reads CSV reports: set the inventory \
         configuration's format to CSV"
    )]
    Format(String),
    #[error("the inventory manifest's creationTimestamp {0:?} is not milliseconds since 1970")]
    Created(String),
    #[error(
        "the inventory report lacks the columns {missing} (its schema: {schema}); add them to the \
         inventory configuration's optional fields"
    )]
    Columns { missing: String, schema: String },
    #[error(
        "the inventory report lists bucket {listed}, not the source bucket {configured}: point \
         --source-inventory at a report of {configured}"
    )]
    Bucket { listed: String, configured: String },
    #[error(
        "the inventory report was made at {created} ({age_hours} h ago), older than the \
         {max_age_hours} h allowed: wait for the next report, or raise --inventory-max-age"
    )]
    TooOld {
        created: DateTime<Utc>,
        age_hours: i64,
        max_age_hours: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the example in S3's documentation (storage-inventory-location.html).
    pub(crate) const MANIFEST: &str = r#"{
        "sourceBucket": "photos",
        "destinationBucket": "arn:aws:s3:::inventories",
        "version": "2016-11-30",
        "creationTimestamp": "1764892800000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, ChecksumAlgorithm",
        "files": [
            {"key": "inv/photos/daily/data/a.csv.gz", "size": 2147483647, "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"}
        ]
    }"#;

    #[test]
    fn a_manifest_names_its_bucket_time_columns_and_files() {
        let manifest = Manifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(manifest.source_bucket, "photos");
        assert_eq!(manifest.created.to_rfc3339(), "2025-12-05T00:00:00+00:00");
        assert_eq!(
            manifest.schema,
            Schema {
                key: 1,
                size: 5,
                etag: 7,
                last_modified: 6,
                is_latest: Some(3),
                is_delete_marker: Some(4),
                columns: 10,
            }
        );
        assert_eq!(manifest.files[0].md5, "f11166069f1990abeb9c97ace9cdfabc");
    }

    #[test]
    fn a_report_without_the_columns_a_diff_needs_is_refused_naming_them() {
        let error = Schema::parse("Bucket, Key, Size").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("lacks the columns LastModifiedDate, ETag"),
            "{error}"
        );
    }

    #[test]
    fn parquet_orc_and_malformed_manifests_are_refused_with_what_to_do() {
        let parquet = MANIFEST.replace(r#""CSV""#, r#""Parquet""#);
        assert!(matches!(
            Manifest::parse(parquet.as_bytes()),
            Err(ManifestError::Format(format)) if format == "Parquet"
        ));
        let error = Manifest::parse(br#"{"sourceBucket": "photos"}"#).unwrap_err();
        assert!(error.to_string().contains("creationTimestamp"), "{error}");
        let when = MANIFEST.replace("1764892800000", "yesterday");
        assert!(matches!(
            Manifest::parse(when.as_bytes()),
            Err(ManifestError::Created(_))
        ));
    }

    #[test]
    fn a_report_of_another_bucket_or_too_old_is_refused_with_its_date() {
        let manifest = Manifest::parse(MANIFEST.as_bytes()).unwrap();
        let day = Duration::from_secs(24 * 3600);
        let created = manifest.created;
        assert!(manifest.check("photos", created, day).is_ok());
        assert!(manifest.check("photos", created + day, day).is_ok());
        let error = manifest
            .check("photos", created + day * 3, day * 2)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the inventory report was made at 2025-12-05 00:00:00 UTC (72 h ago), older than the \
             48 h allowed: wait for the next report, or raise --inventory-max-age"
        );
        assert!(matches!(
            manifest.check("other", created, day),
            Err(ManifestError::Bucket { .. })
        ));
    }

    #[test]
    fn locations_name_a_manifest_or_a_configuration_folder() {
        let manifest =
            Location::parse("s3://inv/photos/daily/2026-12-05T00-00Z/manifest.json").unwrap();
        assert_eq!(manifest.bucket, "inv");
        assert!(!manifest.is_folder());
        assert!(
            Location::parse("s3://inv/photos/daily/")
                .unwrap()
                .is_folder()
        );
        for bad in [
            "inv/manifest.json",
            "s3://inv",
            "s3:///manifest.json",
            "s3://inv/a.csv",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_newest_report_is_the_greatest_timestamp_folder() {
        let folders = [
            "p/photos/daily/2026-12-04T00-00Z/",
            "p/photos/daily/2026-12-05T00-00Z/",
            "p/photos/daily/data/",
            "p/photos/daily/hive/",
        ];
        assert_eq!(
            newest_manifest(folders).as_deref(),
            Some("p/photos/daily/2026-12-05T00-00Z/manifest.json")
        );
        assert_eq!(newest_manifest(["p/data/"]), None);
    }
}
