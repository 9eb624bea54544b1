//! A Parquet data file's rows: Snappy-compressed, one row per object (or version), the columns
//! named in snake case (`key`, `size`, `last_modified_date`, `e_tag`, ...).
//!
//! Unlike CSV, a Parquet report does not URL-encode its keys: a key is read as it is, so `a+b`
//! stays `a+b` and `%2B` stays `%2B`. Each file carries its own schema, which is what the
//! columns are found by (the manifest's `fileSchema` is checked before anything is fetched).
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory.html#storage-inventory-contents>
//!
//! The columns are read a batch of rows at a time (the column readers, not the record API,
//! which allocates every row's column names and panics on a row group it cannot open), so
//! memory is bounded by the batch and the file's pages, never by its row groups' size.

use std::fs::File;

use chrono::{DateTime, Utc};
use parquet::basic::{ConvertedType, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{BoolType, ByteArrayType, DataType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

use crate::data::{DataError, Entry, Rows};
use crate::manifest::{
    ColumnName, ETAG, IS_DELETE_MARKER, IS_LATEST, KEY, LAST_MODIFIED, ManifestError, REQUIRED,
    SIZE,
};

/// Rows decoded at once: a batch of keys is about 100 bytes a row.
const BATCH_ROWS: usize = 4096;

/// Where each column a diff reads is among the file's leaf columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetColumns {
    key: usize,
    size: usize,
    etag: usize,
    last_modified: usize,
    /// How `last_modified_date` counts time since 1970.
    time_unit: TimeUnit,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    Millis,
    Micros,
}

impl ParquetColumns {
    /// The columns of a schema: the manifest's `fileSchema` or a data file's own. Each must be
    /// a top-level column of the physical type S3 writes, else it is refused naming it.
    pub fn find(schema: &SchemaDescriptor) -> Result<ParquetColumns, ManifestError> {
        let at = |name: &ColumnName| {
            schema
                .columns()
                .iter()
                .position(|column| column.path().parts() == [name.parquet])
        };
        let [Some(key), Some(size), Some(last_modified), Some(etag)] = REQUIRED.map(|c| at(&c))
        else {
            let missing: Vec<&str> = REQUIRED
                .iter()
                .filter(|name| at(name).is_none())
                .map(|name| name.parquet)
                .collect();
            return Err(ManifestError::Columns {
                missing: missing.join(", "),
                schema: describe(schema),
            });
        };
        let typed = |at: usize, name: &ColumnName, physical: PhysicalType| {
            let column = schema.column(at);
            if column.physical_type() == physical && column.max_rep_level() == 0 {
                Ok(at)
            } else {
                Err(ManifestError::ColumnType {
                    column: name.parquet,
                    found: format!("{}", column.physical_type()),
                    expected: format!("{physical}, not repeated"),
                })
            }
        };
        let optional = |name: &ColumnName, physical| at(name).map(|at| typed(at, name, physical));
        Ok(ParquetColumns {
            key: typed(key, &KEY, PhysicalType::BYTE_ARRAY)?,
            size: typed(size, &SIZE, PhysicalType::INT64)?,
            etag: typed(etag, &ETAG, PhysicalType::BYTE_ARRAY)?,
            last_modified: typed(last_modified, &LAST_MODIFIED, PhysicalType::INT64)?,
            time_unit: time_unit(&schema.column(last_modified))?,
            is_latest: optional(&IS_LATEST, PhysicalType::BOOLEAN).transpose()?,
            is_delete_marker: optional(&IS_DELETE_MARKER, PhysicalType::BOOLEAN).transpose()?,
        })
    }
}

/// A schema's columns, for an error message.
fn describe(schema: &SchemaDescriptor) -> String {
    let names: Vec<String> = schema
        .columns()
        .iter()
        .map(|column| column.path().string())
        .collect();
    names.join(", ")
}

fn time_unit(column: &ColumnDescriptor) -> Result<TimeUnit, ManifestError> {
    match column.converted_type() {
        ConvertedType::TIMESTAMP_MILLIS => Ok(TimeUnit::Millis),
        ConvertedType::TIMESTAMP_MICROS => Ok(TimeUnit::Micros),
        other => Err(ManifestError::ColumnType {
            column: LAST_MODIFIED.parquet,
            found: format!("int64 ({other})"),
            expected: "int64 (TIMESTAMP_MILLIS)".to_owned(),
        }),
    }
}

/// Reads a Parquet data file, passing each current object to `keep`.
pub fn read_parquet(
    file: File,
    mut keep: impl FnMut(Entry) -> std::io::Result<()>,
) -> Result<Rows, DataError> {
    let reader = SerializedFileReader::new(file).map_err(DataError::Parquet)?;
    let columns = ParquetColumns::find(reader.metadata().file_metadata().schema_descr())
        .map_err(|error| DataError::Schema(error.to_string()))?;
    let mut rows = Rows::default();
    let mut row = 0;
    for group in 0..reader.num_row_groups() {
        let group = reader.get_row_group(group).map_err(DataError::Parquet)?;
        let mut batches = Batches::open(group.as_ref(), &columns)?;
        while let Some(batch) = batches.next_batch()? {
            for at in 0..batch.rows {
                row += 1;
                match batch
                    .entry(at, &columns)
                    .map_err(|why| DataError::Row { row, why })?
                {
                    Some(entry) => {
                        rows.objects += 1;
                        keep(entry).map_err(DataError::Keep)?;
                    }
                    None => rows.noncurrent += 1,
                }
            }
        }
    }
    Ok(rows)
}

/// One column of a row group, read a batch at a time; a null is `None`.
struct Column<T: DataType> {
    reader: ColumnReaderImpl<T>,
    /// The definition level of a value that is there (0 for a required column).
    defined: i16,
    levels: Vec<i16>,
    values: Vec<T::T>,
}

impl<T: DataType> Column<T> {
    fn open(group: &dyn RowGroupReader, at: usize) -> Result<Column<T>, DataError> {
        let untyped: ColumnReader = group.get_column_reader(at).map_err(DataError::Parquet)?;
        // `find` checked the physical type, so the typed reader is this one.
        let reader = T::get_column_reader(untyped).ok_or_else(|| {
            DataError::Parquet(ParquetError::General(format!(
                "column {at} is not of type {}",
                T::get_physical_type()
            )))
        })?;
        Ok(Column {
            defined: group.metadata().column(at).column_descr().max_def_level(),
            reader,
            levels: Vec::with_capacity(BATCH_ROWS),
            values: Vec::with_capacity(BATCH_ROWS),
        })
    }

    /// The next `rows` rows' values (fewer at the row group's end).
    fn read(&mut self, rows: usize) -> Result<Vec<Option<T::T>>, DataError> {
        self.levels.clear();
        self.values.clear();
        let (records, _, _) = self
            .reader
            .read_records(rows, Some(&mut self.levels), None, &mut self.values)
            .map_err(DataError::Parquet)?;
        if self.defined == 0 {
            return Ok(self.values.drain(..).map(Some).collect());
        }
        let mut values = self.values.drain(..);
        // A file whose levels run short gives fewer values than rows: the batch refuses it.
        let read = self
            .levels
            .iter()
            .take(records)
            .map(|level| {
                if *level == self.defined {
                    values.next()
                } else {
                    None
                }
            })
            .collect();
        Ok(read)
    }
}

/// The columns a diff reads, of one row group.
struct Batches {
    key: Column<ByteArrayType>,
    size: Column<Int64Type>,
    etag: Column<ByteArrayType>,
    last_modified: Column<Int64Type>,
    is_latest: Option<Column<BoolType>>,
    is_delete_marker: Option<Column<BoolType>>,
    /// Rows of the row group not read yet.
    left: usize,
}

/// A batch of rows, column by column.
struct Batch {
    rows: usize,
    key: Vec<Option<parquet::data_type::ByteArray>>,
    size: Vec<Option<i64>>,
    etag: Vec<Option<parquet::data_type::ByteArray>>,
    last_modified: Vec<Option<i64>>,
    is_latest: Option<Vec<Option<bool>>>,
    is_delete_marker: Option<Vec<Option<bool>>>,
}

impl Batches {
    fn open(group: &dyn RowGroupReader, columns: &ParquetColumns) -> Result<Batches, DataError> {
        let optional = |at: Option<usize>| at.map(|at| Column::open(group, at)).transpose();
        Ok(Batches {
            key: Column::open(group, columns.key)?,
            size: Column::open(group, columns.size)?,
            etag: Column::open(group, columns.etag)?,
            last_modified: Column::open(group, columns.last_modified)?,
            is_latest: optional(columns.is_latest)?,
            is_delete_marker: optional(columns.is_delete_marker)?,
            left: usize::try_from(group.metadata().num_rows()).unwrap_or(0),
        })
    }

    fn next_batch(&mut self) -> Result<Option<Batch>, DataError> {
        let rows = self.left.min(BATCH_ROWS);
        if rows == 0 {
            return Ok(None);
        }
        self.left -= rows;
        let optional = |column: &mut Option<Column<BoolType>>| {
            column.as_mut().map(|column| column.read(rows)).transpose()
        };
        let batch = Batch {
            rows,
            key: self.key.read(rows)?,
            size: self.size.read(rows)?,
            etag: self.etag.read(rows)?,
            last_modified: self.last_modified.read(rows)?,
            is_latest: optional(&mut self.is_latest)?,
            is_delete_marker: optional(&mut self.is_delete_marker)?,
        };
        let lengths = [
            batch.key.len(),
            batch.size.len(),
            batch.etag.len(),
            batch.last_modified.len(),
            batch.is_latest.as_ref().map_or(rows, Vec::len),
            batch.is_delete_marker.as_ref().map_or(rows, Vec::len),
        ];
        if lengths.iter().any(|read| *read != rows) {
            return Err(DataError::Parquet(ParquetError::General(format!(
                "a row group says it has {rows} more rows, its columns hold {lengths:?}"
            ))));
        }
        Ok(Some(batch))
    }
}

impl Batch {
    /// Row `at`'s object; `None` for a noncurrent version or a delete marker.
    fn entry(&self, at: usize, columns: &ParquetColumns) -> Result<Option<Entry>, String> {
        let flag = |column: &Option<Vec<Option<bool>>>| column.as_ref().and_then(|c| c[at]);
        if !Entry::is_current(flag(&self.is_latest), flag(&self.is_delete_marker)) {
            return Ok(None);
        }
        let text = |value: &Option<parquet::data_type::ByteArray>, name: &str| match value {
            None => Err(format!("{name} is null")),
            Some(bytes) => std::str::from_utf8(bytes.data())
                .map(str::to_owned)
                .map_err(|_| format!("{name} is not UTF-8")),
        };
        let key = text(&self.key[at], KEY.parquet)?;
        let size = self.size[at]
            .and_then(|size| u64::try_from(size).ok())
            .ok_or_else(|| format!("the size of {key:?} is {:?}", self.size[at]))?;
        let last_modified = match self.last_modified[at] {
            None => None,
            Some(time) => Some(timestamp(time, columns.time_unit).ok_or_else(|| {
                format!("the last-modified date of {key:?} is {time}, out of range")
            })?),
        };
        let etag = text(&self.etag[at], ETAG.parquet)?;
        Ok(Some(Entry::new(key, size, &etag, last_modified)))
    }
}

fn timestamp(time: i64, unit: TimeUnit) -> Option<DateTime<Utc>> {
    match unit {
        TimeUnit::Millis => DateTime::from_timestamp_millis(time),
        TimeUnit::Micros => DateTime::from_timestamp_micros(time),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;
    use crate::manifest::tests::PARQUET_SCHEMA;
    use crate::write::tests::on_disk;

    #[derive(Clone, Copy)]
    enum Value {
        Text(&'static str),
        Bool(bool),
        Int(i64),
    }

    /// A Parquet file of `schema` with one row group of `rows`, a column absent from a row
    /// being null: the shape S3 writes, every optional field included.
    fn parquet_file(schema: &str, rows: &[HashMap<&str, Value>]) -> std::fs::File {
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let leaves = SchemaDescriptor::new(schema.clone());
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut out = SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties)).unwrap();
        let mut group = out.next_row_group().unwrap();
        for descr in leaves.columns() {
            let mut column = group.next_column().unwrap().unwrap();
            let values: Vec<Option<Value>> = rows
                .iter()
                .map(|row| row.get(descr.name()).copied())
                .collect();
            let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
            let levels = (descr.max_def_level() > 0).then_some(levels.as_slice());
            match descr.physical_type() {
                PhysicalType::BYTE_ARRAY => {
                    let texts: Vec<ByteArray> = values
                        .iter()
                        .flatten()
                        .map(|v| match v {
                            Value::Text(text) => ByteArray::from(*text),
                            _ => panic!("{} is text", descr.name()),
                        })
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&texts, levels, None)
                        .unwrap();
                }
                PhysicalType::INT64 => {
                    let ints: Vec<i64> = values
                        .iter()
                        .flatten()
                        .map(|v| match v {
                            Value::Int(int) => *int,
                            _ => panic!("{} is an integer", descr.name()),
                        })
                        .collect();
                    column
                        .typed::<Int64Type>()
                        .write_batch(&ints, levels, None)
                        .unwrap();
                }
                PhysicalType::BOOLEAN => {
                    let flags: Vec<bool> = values
                        .iter()
                        .flatten()
                        .map(|v| match v {
                            Value::Bool(flag) => *flag,
                            _ => panic!("{} is a flag", descr.name()),
                        })
                        .collect();
                    column
                        .typed::<BoolType>()
                        .write_batch(&flags, levels, None)
                        .unwrap();
                }
                other => panic!("no {other} column in an S3 report"),
            }
            column.close().unwrap();
        }
        group.close().unwrap();
        on_disk(&out.into_inner().unwrap())
    }

    fn read(file: std::fs::File) -> Result<(Vec<Entry>, Rows), DataError> {
        let mut entries = Vec::new();
        let rows = read_parquet(file, |entry| {
            entries.push(entry);
            Ok(())
        })?;
        Ok((entries, rows))
    }

    fn version(key: &'static str, latest: bool, marker: bool) -> HashMap<&'static str, Value> {
        let mut row = HashMap::from([
            ("bucket", Value::Text("photos")),
            ("key", Value::Text(key)),
            (
                "version_id",
                Value::Text("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
            ),
            ("is_latest", Value::Bool(latest)),
            ("is_delete_marker", Value::Bool(marker)),
            ("storage_class", Value::Text("STANDARD")),
            ("replication_status", Value::Text("COMPLETED")),
            ("checksum_algorithm", Value::Text("CRC64NVME")),
        ]);
        if !marker {
            row.extend([
                ("size", Value::Int(12)),
                ("last_modified_date", Value::Int(1_764_842_400_000)),
                ("e_tag", Value::Text("0cc175b9c0f1b6a831c399e269772661")),
            ]);
        }
        row
    }

    #[test]
    fn keys_are_read_as_they_are_and_only_current_versions_are_objects() {
        let rows = [
            version("a+b%2Bc é.jpg", true, false),
            version("a+b%2Bc é.jpg", false, false),
            version("gone.jpg", true, true),
        ];
        let (entries, counted) = read(parquet_file(PARQUET_SCHEMA, &rows)).unwrap();
        assert_eq!(
            entries,
            [Entry {
                key: "a+b%2Bc é.jpg".into(),
                size: 12,
                etag: "0cc175b9c0f1b6a831c399e269772661".into(),
                last_modified: Some("2025-12-04T10:00:00Z".parse().unwrap()),
            }]
        );
        assert_eq!(
            counted,
            Rows {
                objects: 1,
                noncurrent: 2
            }
        );
    }

    #[test]
    fn the_newer_timestamp_annotation_and_microseconds_read_the_same_time() {
        let micros = PARQUET_SCHEMA.replacen(
            "last_modified_date (TIMESTAMP_MILLIS)",
            "last_modified_date (TIMESTAMP(MICROS,true))",
            1,
        );
        let mut row = version("a.jpg", true, false);
        row.insert("last_modified_date", Value::Int(1_764_842_400_000_000));
        let (entries, _) = read(parquet_file(&micros, &[row])).unwrap();
        assert_eq!(
            entries[0].last_modified,
            Some("2025-12-04T10:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_bad_row_or_file_is_named_by_what_is_wrong() {
        let mut negative = version("b.jpg", true, false);
        negative.insert("size", Value::Int(-1));
        let mut no_etag = version("c.jpg", true, false);
        no_etag.remove("e_tag");
        for (bad, why) in [
            (negative, "row 2: the size of \"b.jpg\" is Some(-1)"),
            (no_etag, "row 2: e_tag is null"),
        ] {
            let rows = [version("a.jpg", true, false), bad];
            let error = read(parquet_file(PARQUET_SCHEMA, &rows)).unwrap_err();
            assert_eq!(error.to_string(), why);
        }
        let garbage = on_disk(b"\"photos\",\"a.jpg\"\n");
        assert!(matches!(read(garbage), Err(DataError::Parquet(_))));
        let without_etag = PARQUET_SCHEMA.replace(" optional binary e_tag (UTF8);", "");
        let error = read(parquet_file(&without_etag, &[])).unwrap_err();
        assert!(
            matches!(&error, DataError::Schema(why) if why.contains("lacks the columns e_tag")),
            "{error}"
        );
    }
}
