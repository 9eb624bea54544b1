//! Writing a report as S3 does: gzip CSV data files with URL-encoded keys, and the manifest
//! that lists them with their MD5s. For the local stack, where no S3 makes reports: the tests
//! and the benchmark write them into moto's S3 and read them back through the same path as a
//! real one.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use serde::Serialize;

use crate::csv::Entry;
use crate::manifest::DataFile;

/// The columns written: S3's names and order for the fields a diff reads.
pub const CSV_SCHEMA: &str = "Bucket, Key, Size, LastModifiedDate, ETag";

/// A key as a CSV report writes it: form-URL-encoded, a space as `+` and a `+` as `%2B`.
pub fn encode_key(key: &str) -> String {
    form_urlencoded::byte_serialize(key.as_bytes()).collect()
}

/// Writes objects as one gzip CSV data file, in the order given.
#[derive(Debug)]
pub struct CsvWriter {
    bucket: String,
    out: csv::Writer<GzEncoder<Vec<u8>>>,
}

impl CsvWriter {
    pub fn new(bucket: &str) -> CsvWriter {
        CsvWriter {
            bucket: bucket.to_owned(),
            out: csv::WriterBuilder::new()
                .has_headers(false)
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }

    pub fn write(&mut self, entry: &Entry) -> std::io::Result<()> {
        let modified = entry
            .last_modified
            .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default();
        self.out
            .write_record([
                self.bucket.as_str(),
                &encode_key(&entry.key),
                &entry.size.to_string(),
                &modified,
                &entry.etag,
            ])
            .map_err(std::io::Error::other)
    }

    /// The data file's bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        let mut gzip = self
            .out
            .into_inner()
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        gzip.flush()?;
        gzip.finish()
    }
}

/// The entry of a data file stored under `key` in the destination bucket.
pub fn data_file(key: &str, bytes: &[u8]) -> DataFile {
    DataFile {
        key: key.to_owned(),
        size: bytes.len() as u64,
        md5: hex::encode(Md5::digest(bytes)),
    }
}

/// The manifest of a CSV report of `source_bucket` made at `created` (its files written with
/// [`CsvWriter`]), as S3 writes it.
pub fn manifest_json(
    source_bucket: &str,
    destination_bucket: &str,
    created: DateTime<Utc>,
    files: &[DataFile],
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw<'a> {
        source_bucket: &'a str,
        destination_bucket: String,
        version: &'static str,
        creation_timestamp: String,
        file_format: &'static str,
        file_schema: &'static str,
        files: Vec<RawFile<'a>>,
    }
    #[derive(Serialize)]
    struct RawFile<'a> {
        key: &'a str,
        size: u64,
        #[serde(rename = "MD5checksum")]
        md5: &'a str,
    }
    let raw = Raw {
        source_bucket,
        destination_bucket: format!("arn:aws:s3:::{destination_bucket}"),
        version: "2016-11-30",
        creation_timestamp: created.timestamp_millis().to_string(),
        file_format: "CSV",
        file_schema: CSV_SCHEMA,
        files: files
            .iter()
            .map(|file| RawFile {
                key: &file.key,
                size: file.size,
                md5: &file.md5,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::read_csv_gz;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let entries = [
            Entry {
                key: "a b+c/é%.jpg".into(),
                size: 7,
                etag: "0cc175b9c0f1b6a831c399e269772661-2".into(),
                last_modified: Some("2026-12-04T10:00:00.123Z".parse().unwrap()),
            },
            Entry {
                key: "plain".into(),
                size: 0,
                etag: "e".into(),
                last_modified: None,
            },
        ];
        let mut writer = CsvWriter::new("photos");
        for entry in &entries {
            writer.write(entry).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let created = "2026-12-05T00:00:00Z".parse().unwrap();
        let file = data_file("inv/data/1.csv.gz", &bytes);
        let manifest = Manifest::parse(
            manifest_json(
                "photos",
                "inventories",
                created,
                std::slice::from_ref(&file),
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(manifest.created, created);
        assert_eq!(manifest.files, [file]);
        let mut read = Vec::new();
        read_csv_gz(bytes.as_slice(), &manifest.schema, |entry| {
            read.push(entry);
            Ok(())
        })
        .unwrap();
        assert_eq!(read, entries);
        assert_eq!(encode_key("a b+c"), "a+b%2Bc");
    }
}
