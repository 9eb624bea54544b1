//! An inventory report's manifest: which bucket it lists, when, in what format, and its data
//! files.
//!
//! S3 writes each report's `manifest.json` to
//! `destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json`, the timestamp
//! being when the report began scanning the bucket; its `files` are the data files, each with
//! its MD5, `fileFormat` says whether they are CSV or Parquet, and `fileSchema` names their
//! columns (in order for CSV, a Parquet message type for Parquet).
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html>

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;
use serde::Deserialize;
use thiserror::Error;

pub use crate::parquet::ParquetColumns;

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

/// A column a diff reads, as each format names it: a CSV report's manifest lists S3's names in
/// `fileSchema`, a Parquet report names the same columns in snake case.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnName {
    pub csv: &'static str,
    pub parquet: &'static str,
}

pub const KEY: ColumnName = ColumnName {
    csv: "Key",
    parquet: "key",
};
pub const SIZE: ColumnName = ColumnName {
    csv: "Size",
    parquet: "size",
};
pub const LAST_MODIFIED: ColumnName = ColumnName {
    csv: "LastModifiedDate",
    parquet: "last_modified_date",
};
pub const ETAG: ColumnName = ColumnName {
    csv: "ETag",
    parquet: "e_tag",
};
/// Present when the report lists all versions: only the current version is the object.
pub const IS_LATEST: ColumnName = ColumnName {
    csv: "IsLatest",
    parquet: "is_latest",
};
pub const IS_DELETE_MARKER: ColumnName = ColumnName {
    csv: "IsDeleteMarker",
    parquet: "is_delete_marker",
};

/// The columns a diff cannot do without (the configuration's optional fields `Size`,
/// `LastModifiedDate` and `ETag`):
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_InventoryConfiguration.html>
pub const REQUIRED: [ColumnName; 4] = [KEY, SIZE, LAST_MODIFIED, ETAG];

/// Where each column the diff needs is, in a CSV data file's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    pub key: usize,
    pub size: usize,
    pub etag: usize,
    pub last_modified: usize,
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub columns: usize,
}

impl CsvColumns {
    /// The columns of `fileSchema` (`Bucket, Key, Size, ...`).
    pub fn parse(file_schema: &str) -> Result<CsvColumns, ManifestError> {
        let columns: Vec<&str> = file_schema.split(',').map(str::trim).collect();
        let at = |name: &ColumnName| columns.iter().position(|column| *column == name.csv);
        let [Some(key), Some(size), Some(last_modified), Some(etag)] = REQUIRED.map(|c| at(&c))
        else {
            let missing: Vec<&str> = REQUIRED
                .iter()
                .filter(|name| at(name).is_none())
                .map(|name| name.csv)
                .collect();
            return Err(ManifestError::Columns {
                missing: missing.join(", "),
                schema: file_schema.to_owned(),
            });
        };
        Ok(CsvColumns {
            key,
            size,
            etag,
            last_modified,
            is_latest: at(&IS_LATEST),
            is_delete_marker: at(&IS_DELETE_MARKER),
            columns: columns.len(),
        })
    }
}

/// The formats S3 writes that yuba reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Parquet,
}

impl ReportFormat {
    /// The manifest's `fileFormat`.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Csv => "CSV",
            ReportFormat::Parquet => "Parquet",
        }
    }

    /// How S3 ends a data file's name.
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv.gz",
            ReportFormat::Parquet => "parquet",
        }
    }

    /// The media type of a data file.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Csv => "application/gzip",
            ReportFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    /// `csv` or `parquet`, as the manifest's `fileFormat` names them in any case.
    fn from_str(name: &str) -> Result<ReportFormat, String> {
        [ReportFormat::Csv, ReportFormat::Parquet]
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("{name:?} is not a report format: csv or parquet"))
    }
}

/// How the report's data files are read: S3 writes CSV (gzip), Parquet (Snappy) or ORC; yuba
/// reads the first two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSchema {
    /// The columns' places, from `fileSchema`: a CSV row has no names.
    Csv(CsvColumns),
    /// Checked from `fileSchema` before any file is fetched; each file is read by its own
    /// schema, which names its columns.
    Parquet(ParquetColumns),
}

impl FileSchema {
    fn parse(file_format: &str, file_schema: &str) -> Result<FileSchema, ManifestError> {
        let format: ReportFormat = file_format
            .parse()
            .map_err(|_| ManifestError::Format(file_format.to_owned()))?;
        if format == ReportFormat::Csv {
            return CsvColumns::parse(file_schema).map(FileSchema::Csv);
        }
        let message = parse_message_type(file_schema).map_err(|error| ManifestError::Schema {
            schema: file_schema.to_owned(),
            why: error.to_string(),
        })?;
        ParquetColumns::find(&SchemaDescriptor::new(Arc::new(message))).map(FileSchema::Parquet)
    }
}

/// A report's manifest, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub source_bucket: String,
    /// When the report began scanning the bucket: what it says holds at this time, at best.
    pub created: DateTime<Utc>,
    pub schema: FileSchema,
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
        let created = raw
            .creation_timestamp
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ManifestError::Created(raw.creation_timestamp.clone()))?;
        Ok(Manifest {
            source_bucket: raw.source_bucket,
            created,
            schema: FileSchema::parse(&raw.file_format, &raw.file_schema)?,
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
        "the inventory report is in {0} format; yuba reads CSV and Parquet reports: set the \
         inventory configuration's format to CSV or Parquet"
    )]
    Format(String),
    #[error("the inventory manifest's Parquet fileSchema {schema:?} does not parse: {why}")]
    Schema { schema: String, why: String },
    #[error(
        "the inventory report's column {column} is {found}, where S3 writes {expected}: is it an \
         S3 Inventory report?"
    )]
    ColumnType {
        column: &'static str,
        found: String,
        expected: String,
    },
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
pub(crate) mod tests {
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
            FileSchema::Csv(CsvColumns {
                key: 1,
                size: 5,
                etag: 7,
                last_modified: 6,
                is_latest: Some(3),
                is_delete_marker: Some(4),
                columns: 10,
            })
        );
        assert_eq!(manifest.files[0].md5, "f11166069f1990abeb9c97ace9cdfabc");
    }

    #[test]
    fn a_report_without_the_columns_a_diff_needs_is_refused_naming_them() {
        let error = CsvColumns::parse("Bucket, Key, Size").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("lacks the columns LastModifiedDate, ETag"),
            "{error}"
        );
    }

    /// The Parquet example of S3's documentation (storage-inventory-location.html), all
    /// optional fields chosen.
    pub(crate) const PARQUET_SCHEMA: &str = "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); optional boolean is_multipart_uploaded; optional binary replication_status (UTF8); optional binary encryption_status (UTF8); optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS); optional binary object_lock_mode (UTF8); optional binary object_lock_legal_hold_status (UTF8); optional binary intelligent_tiering_access_tier (UTF8); optional binary bucket_key_status (UTF8); optional binary checksum_algorithm (UTF8); }";

    fn parquet_manifest(schema: &str) -> String {
        MANIFEST
            .replace(r#""CSV""#, r#""Parquet""#)
            .replace(
                "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, ChecksumAlgorithm",
                schema,
            )
    }

    #[test]
    fn a_parquet_manifest_is_checked_by_its_message_type() {
        let manifest = Manifest::parse(parquet_manifest(PARQUET_SCHEMA).as_bytes()).unwrap();
        assert!(matches!(manifest.schema, FileSchema::Parquet(_)));
        // The newer spelling of the same types, as other tools show S3's manifests.
        let newer = PARQUET_SCHEMA
            .replace("(UTF8)", "(STRING)")
            .replace("(TIMESTAMP_MILLIS)", "(TIMESTAMP(MILLIS,true))");
        assert_eq!(
            Manifest::parse(parquet_manifest(&newer).as_bytes())
                .unwrap()
                .schema,
            manifest.schema
        );
        let without_etag = PARQUET_SCHEMA.replace(" optional binary e_tag (UTF8);", "");
        let error = Manifest::parse(parquet_manifest(&without_etag).as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("lacks the columns e_tag"),
            "{error}"
        );
        let text_size = PARQUET_SCHEMA.replace("optional int64 size;", "optional binary size;");
        let error = Manifest::parse(parquet_manifest(&text_size).as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("column size is BYTE_ARRAY"),
            "{error}"
        );
        let error = Manifest::parse(parquet_manifest("message {").as_bytes()).unwrap_err();
        assert!(matches!(error, ManifestError::Schema { .. }), "{error}");
    }

    #[test]
    fn orc_and_malformed_manifests_are_refused_with_what_to_do() {
        let orc = MANIFEST.replace(r#""CSV""#, r#""ORC""#);
        let error = Manifest::parse(orc.as_bytes()).unwrap_err();
        assert!(
            matches!(&error, ManifestError::Format(format) if format == "ORC")
                && error.to_string().contains("format to CSV or Parquet"),
            "{error}"
        );
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
