//! A CSV data file's rows: gzip-compressed, no header row, the columns of the manifest's
//! `fileSchema` in order.
//!
//! Only CSV reports URL-encode the key ("When you're using the CSV file format, the key name is
//! URL-encoded and must be decoded before you can use it"), the way S3 encodes keys in event
//! notifications: a space as `+`, a `+` as `%2B`, so both are decoded by one function.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory.html#storage-inventory-contents>

use std::io::Read;

use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use yuba_events::decode_event_key;

use crate::data::{DataError, Entry, Rows};
use crate::manifest::CsvColumns;

/// Reads a gzip CSV data file, passing each current object to `keep`.
pub fn read_csv_gz(
    file: impl Read,
    schema: &CsvColumns,
    mut keep: impl FnMut(Entry) -> std::io::Result<()>,
) -> Result<Rows, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(MultiGzDecoder::new(file));
    let mut rows = Rows::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0;
    while reader.read_record(&mut record).map_err(DataError::Csv)? {
        row += 1;
        match entry(&record, schema).map_err(|why| DataError::Row { row, why })? {
            Some(entry) => {
                rows.objects += 1;
                keep(entry).map_err(DataError::Keep)?;
            }
            None => rows.noncurrent += 1,
        }
    }
    Ok(rows)
}

/// A row's object; `None` for a noncurrent version or a delete marker.
fn entry(record: &csv::StringRecord, schema: &CsvColumns) -> Result<Option<Entry>, String> {
    if record.len() != schema.columns {
        return Err(format!(
            "{} columns, where the manifest's schema has {}",
            record.len(),
            schema.columns
        ));
    }
    let field = |at: usize| record.get(at).unwrap_or_default();
    let flag = |at: Option<usize>, name: &str| match at.map(field) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(format!("{name} is {other:?}, not true or false")),
    };
    if !Entry::is_current(
        flag(schema.is_latest, "IsLatest")?,
        flag(schema.is_delete_marker, "IsDeleteMarker")?,
    ) {
        return Ok(None);
    }
    let key = decode_event_key(field(schema.key))
        .map_err(|error| format!("the key {:?}: {error}", field(schema.key)))?;
    let size = field(schema.size)
        .parse::<u64>()
        .map_err(|_| format!("the size of {key:?} is {:?}", field(schema.size)))?;
    let last_modified = match field(schema.last_modified) {
        "" => None,
        text => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| format!("the last-modified date of {key:?} is {text:?}"))?
                .with_timezone(&Utc),
        ),
    };
    Ok(Some(Entry::new(
        key,
        size,
        field(schema.etag),
        last_modified,
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    pub(crate) fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    fn schema() -> CsvColumns {
        CsvColumns::parse(
            "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag",
        )
        .unwrap()
    }

    fn read(text: &str) -> Result<(Vec<Entry>, Rows), DataError> {
        let mut entries = Vec::new();
        let rows = read_csv_gz(gzip(text).as_slice(), &schema(), |entry| {
            entries.push(entry);
            Ok(())
        })?;
        Ok((entries, rows))
    }

    #[test]
    fn keys_are_url_decoded_and_only_current_versions_are_objects() {
        let (entries, rows) = read(concat!(
            "\"photos\",\"a+b%2Bc%C3%A9.jpg\",\"v2\",\"true\",\"false\",\"12\",\"2026-12-04T10:00:00.000Z\",\"0cc175b9c0f1b6a831c399e269772661\"\n",
            "\"photos\",\"a+b%2Bc%C3%A9.jpg\",\"v1\",\"false\",\"false\",\"10\",\"2026-12-01T10:00:00.000Z\",\"92eb5ffee6ae2fec3ad71c777531578f\"\n",
            "\"photos\",\"gone.jpg\",\"v3\",\"true\",\"true\",\"\",\"2026-12-04T11:00:00.000Z\",\"\"\n",
        ))
        .unwrap();
        assert_eq!(
            entries,
            [Entry {
                key: "a b+cé.jpg".into(),
                size: 12,
                etag: "0cc175b9c0f1b6a831c399e269772661".into(),
                last_modified: Some("2026-12-04T10:00:00Z".parse().unwrap()),
            }]
        );
        assert_eq!(
            rows,
            Rows {
                objects: 1,
                noncurrent: 2
            }
        );
    }

    #[test]
    fn a_bad_row_is_named_by_its_number_and_what_is_wrong() {
        let good = "\"p\",\"a.jpg\",\"\",\"\",\"\",\"1\",\"2026-12-04T10:00:00.000Z\",\"e\"\n";
        for (bad, why) in [
            (
                "\"p\",\"b.jpg\",\"1\"\n",
                "row 2: 3 columns, where the manifest's schema has 8",
            ),
            (
                "\"p\",\"b%zz\",\"\",\"\",\"\",\"1\",\"2026-12-04T10:00:00.000Z\",\"e\"\n",
                "row 2: the key \"b%zz\": `%` at byte 1",
            ),
            (
                "\"p\",\"b.jpg\",\"\",\"\",\"\",\"big\",\"2026-12-04T10:00:00.000Z\",\"e\"\n",
                "row 2: the size of \"b.jpg\" is \"big\"",
            ),
            (
                "\"p\",\"b.jpg\",\"\",\"maybe\",\"\",\"1\",\"2026-12-04T10:00:00.000Z\",\"e\"\n",
                "row 2: IsLatest is \"maybe\"",
            ),
            (
                "\"p\",\"b.jpg\",\"\",\"\",\"\",\"1\",\"Tuesday\",\"e\"\n",
                "row 2: the last-modified date of \"b.jpg\" is \"Tuesday\"",
            ),
        ] {
            let error = read(&format!("{good}{bad}")).unwrap_err().to_string();
            assert!(error.starts_with(why), "{error}");
        }
        assert!(matches!(
            read_csv_gz(&b"not gzip"[..], &schema(), |_| Ok(())),
            Err(DataError::Csv(_))
        ));
    }
}
