//! Writing a report as S3 does: gzip CSV data files with URL-encoded keys or Snappy Parquet
//! files with keys as they are, and the manifest that lists them with their MD5s. For the local
//! stack, where no S3 makes reports: the tests and the benchmark write them into moto's S3 and
//! read them back through the same path as a real one.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use parquet::basic::Compression as ParquetCompression;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;
use serde::Serialize;

use crate::data::Entry;
use crate::manifest::{DataFile, ReportFormat};

/// The columns written: S3's names and order for the fields a diff reads.
pub const CSV_SCHEMA: &str = "Bucket, Key, Size, LastModifiedDate, ETag";

/// The same columns in a Parquet report, typed as S3 types them (storage-inventory-location.html).
pub const PARQUET_SCHEMA: &str = "message s3.inventory { required binary bucket (UTF8); \
    required binary key (UTF8); optional int64 size; \
    optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); }";

/// Rows per Parquet row group written.
const ROW_GROUP_ROWS: usize = 100_000;

/// What this crate writes in each format.
impl ReportFormat {
    /// The manifest's `fileSchema` for what [`DataWriter`] writes.
    pub fn file_schema(self) -> &'static str {
        match self {
            ReportFormat::Csv => CSV_SCHEMA,
            ReportFormat::Parquet => PARQUET_SCHEMA,
        }
    }

    /// A writer of one data file of `bucket`'s objects.
    pub fn writer(self, bucket: &str) -> DataWriter {
        match self {
            ReportFormat::Csv => DataWriter::Csv(Box::new(CsvWriter::new(bucket))),
            ReportFormat::Parquet => DataWriter::Parquet(Box::new(ParquetWriter::new(bucket))),
        }
    }
}

/// Writes objects as one data file of either format, in the order given.
#[derive(Debug)]
pub enum DataWriter {
    Csv(Box<CsvWriter>),
    Parquet(Box<ParquetWriter>),
}

impl DataWriter {
    pub fn write(&mut self, entry: &Entry) -> std::io::Result<()> {
        match self {
            DataWriter::Csv(writer) => writer.write(entry),
            DataWriter::Parquet(writer) => writer.write(entry),
        }
    }

    /// The data file's bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            DataWriter::Csv(writer) => writer.finish(),
            DataWriter::Parquet(writer) => writer.finish(),
        }
    }
}

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

/// Writes objects as one Snappy Parquet data file, a row group per [`ROW_GROUP_ROWS`] objects.
#[derive(Debug)]
pub struct ParquetWriter {
    bucket: ByteArray,
    rows: Vec<Entry>,
    out: Result<SerializedFileWriter<Vec<u8>>, ParquetError>,
}

impl ParquetWriter {
    pub fn new(bucket: &str) -> ParquetWriter {
        let out = parse_message_type(PARQUET_SCHEMA).and_then(|schema| {
            let properties = WriterProperties::builder()
                .set_compression(ParquetCompression::SNAPPY)
                .build();
            SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties))
        });
        ParquetWriter {
            bucket: ByteArray::from(bucket),
            rows: Vec::with_capacity(ROW_GROUP_ROWS),
            out,
        }
    }

    pub fn write(&mut self, entry: &Entry) -> std::io::Result<()> {
        self.rows.push(entry.clone());
        if self.rows.len() == ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held as a row group, its columns in the schema's order.
    fn flush(&mut self) -> std::io::Result<()> {
        let rows = std::mem::take(&mut self.rows);
        let out = self
            .out
            .as_mut()
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        write_row_group(out, &self.bucket, &rows)
            .map_err(|error| std::io::Error::other(error.to_string()))
    }

    /// The data file's bytes.
    pub fn finish(mut self) -> std::io::Result<Vec<u8>> {
        if !self.rows.is_empty() {
            self.flush()?;
        }
        self.out
            .and_then(SerializedFileWriter::into_inner)
            .map_err(|error| std::io::Error::other(error.to_string()))
    }
}

fn write_row_group(
    out: &mut SerializedFileWriter<Vec<u8>>,
    bucket: &ByteArray,
    rows: &[Entry],
) -> Result<(), ParquetError> {
    let text = |value: &str| ByteArray::from(value);
    let size = |entry: &Entry| i64::try_from(entry.size).unwrap_or(i64::MAX);
    let time = |entry: &Entry| entry.last_modified.map(|time| time.timestamp_millis());
    let every = vec![1; rows.len()];
    let mut group = out.next_row_group()?;
    let buckets = vec![bucket.clone(); rows.len()];
    write_column::<ByteArrayType>(&mut group, &buckets, None)?;
    let keys: Vec<ByteArray> = rows.iter().map(|entry| text(&entry.key)).collect();
    write_column::<ByteArrayType>(&mut group, &keys, None)?;
    let sizes: Vec<i64> = rows.iter().map(size).collect();
    write_column::<Int64Type>(&mut group, &sizes, Some(&every))?;
    let times: Vec<i64> = rows.iter().filter_map(time).collect();
    let time_levels: Vec<i16> = rows
        .iter()
        .map(|entry| i16::from(time(entry).is_some()))
        .collect();
    write_column::<Int64Type>(&mut group, &times, Some(&time_levels))?;
    let etags: Vec<ByteArray> = rows.iter().map(|entry| text(&entry.etag)).collect();
    write_column::<ByteArrayType>(&mut group, &etags, Some(&every))?;
    group.close().map(drop)
}

/// Writes the row group's next column: its non-null values, and with an optional column each
/// row's definition level (1 for a value, 0 for a null).
fn write_column<T: DataType>(
    group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    values: &[T::T],
    levels: Option<&[i16]>,
) -> Result<(), ParquetError> {
    let mut column = group
        .next_column()?
        .ok_or_else(|| ParquetError::General("the schema has fewer columns".to_owned()))?;
    column.typed::<T>().write_batch(values, levels, None)?;
    column.close()
}

/// The entry of a data file stored under `key` in the destination bucket.
pub fn data_file(key: &str, bytes: &[u8]) -> DataFile {
    DataFile {
        key: key.to_owned(),
        size: bytes.len() as u64,
        md5: hex::encode(Md5::digest(bytes)),
    }
}

/// The manifest of a report of `source_bucket` made at `created` (its files written by
/// `format`'s [`DataWriter`]), as S3 writes it.
pub fn manifest_json(
    format: ReportFormat,
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
        file_format: format.name(),
        file_schema: format.file_schema(),
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
pub(crate) mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::read_data_file;

    #[test]
    fn what_is_written_reads_back_the_same_in_both_formats() {
        let entries = [
            Entry {
                key: "a b+c/é%2B.jpg".into(),
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
        let created: DateTime<Utc> = "2026-12-05T00:00:00Z".parse().unwrap();
        for format in [ReportFormat::Csv, ReportFormat::Parquet] {
            let mut writer = format.writer("photos");
            for entry in &entries {
                writer.write(entry).unwrap();
            }
            let bytes = writer.finish().unwrap();
            let key = format!("inv/data/1.{}", format.extension());
            let file = data_file(&key, &bytes);
            let json = manifest_json(
                format,
                "photos",
                "inventories",
                created,
                std::slice::from_ref(&file),
            );
            let manifest = Manifest::parse(json.as_bytes()).unwrap();
            assert_eq!(manifest.created, created);
            assert_eq!(manifest.files, [file]);
            let mut read = Vec::new();
            read_data_file(on_disk(&bytes), &manifest.schema, |entry| {
                read.push(entry);
                Ok(())
            })
            .unwrap();
            assert_eq!(read, entries, "{format:?}");
        }
        assert_eq!(encode_key("a b+c"), "a+b%2Bc");
    }

    #[test]
    fn a_parquet_file_of_many_row_groups_reads_back_in_its_order() {
        let entries: Vec<Entry> = (0..ROW_GROUP_ROWS * 2 + 5)
            .map(|at| Entry {
                key: format!("k/{at:07}"),
                size: at as u64,
                etag: format!("{at:x}"),
                last_modified: (at % 3 != 0).then(|| "2026-12-04T10:00:00Z".parse().unwrap()),
            })
            .collect();
        let mut writer = ParquetWriter::new("photos");
        for entry in &entries {
            writer.write(entry).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let mut read = Vec::new();
        crate::parquet::read_parquet(on_disk(&bytes), |entry| {
            read.push(entry);
            Ok(())
        })
        .unwrap();
        assert!(read == entries, "{} rows read back differently", read.len());
    }

    /// `bytes` as a file, as the reconciler reads a downloaded data file.
    pub(crate) fn on_disk(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "yuba-inventory-write-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
