//! The shard's `NNNNN.parquet`: one row per kept pair, through the `parquet` column writers.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::Row;

const SCHEMA: &str = "message pair {
    required binary key (STRING);
    required int64 sample_id (INTEGER(64, false));
    required int64 hash (INTEGER(64, false));
    required int64 job (INTEGER(64, false));
    required binary url (STRING);
    required binary caption (STRING);
    required binary page_url (STRING);
    optional binary license (STRING);
    optional binary language (STRING);
    required int32 width;
    required int32 height;
    required int32 original_width;
    required int32 original_height;
    required float similarity;
    required binary NSFW (STRING);
    required binary sha256 (STRING);
}";

/// Writes `rows` as one row group to `path`.
pub(super) fn write(path: &Path, rows: &[Row]) -> Result<(), parquet::errors::ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = File::create(path)?;
    let mut writer = SerializedFileWriter::new(file, schema, properties)?;
    let mut group = writer.next_row_group()?;
    let strings = |get: fn(&Row) -> &str| -> Vec<ByteArray> {
        rows.iter().map(|row| ByteArray::from(get(row))).collect()
    };
    let optional = |get: fn(&Row) -> Option<&str>| -> (Vec<ByteArray>, Vec<i16>) {
        let levels = rows
            .iter()
            .map(|row| i16::from(get(row).is_some()))
            .collect();
        let values = rows
            .iter()
            .filter_map(|row| get(row))
            .map(ByteArray::from)
            .collect();
        (values, levels)
    };
    // Unsigned values keep their bit pattern in int64 (the logical type says unsigned).
    let int64 =
        |get: fn(&Row) -> u64| -> Vec<i64> { rows.iter().map(|row| get(row) as i64).collect() };
    let int32 = |get: fn(&Row) -> u32| -> Vec<i32> {
        rows.iter()
            .map(|row| i32::try_from(get(row)).unwrap_or(i32::MAX))
            .collect()
    };
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match index {
            0 => column
                .typed::<ByteArrayType>()
                .write_batch(&strings(|row| &row.key), None, None),
            1 => column.typed::<Int64Type>().write_batch(
                &int64(|row| row.sample.sample_id),
                None,
                None,
            ),
            2 => column
                .typed::<Int64Type>()
                .write_batch(&int64(|row| row.hash), None, None),
            3 => column
                .typed::<Int64Type>()
                .write_batch(&int64(|row| row.job), None, None),
            4 => column.typed::<ByteArrayType>().write_batch(
                &strings(|row| &row.sample.url),
                None,
                None,
            ),
            5 => column.typed::<ByteArrayType>().write_batch(
                &strings(|row| &row.sample.alt),
                None,
                None,
            ),
            6 => column.typed::<ByteArrayType>().write_batch(
                &strings(|row| &row.sample.page_url),
                None,
                None,
            ),
            7 | 8 => {
                let (values, levels) = if index == 7 {
                    optional(|row| row.sample.license.as_deref())
                } else {
                    optional(|row| row.sample.language.as_deref())
                };
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)
            }
            9 => {
                column
                    .typed::<Int32Type>()
                    .write_batch(&int32(|row| row.sample.width), None, None)
            }
            10 => {
                column
                    .typed::<Int32Type>()
                    .write_batch(&int32(|row| row.sample.height), None, None)
            }
            11 => column.typed::<Int32Type>().write_batch(
                &int32(|row| row.sample.original_width),
                None,
                None,
            ),
            12 => column.typed::<Int32Type>().write_batch(
                &int32(|row| row.sample.original_height),
                None,
                None,
            ),
            13 => {
                let values: Vec<f32> = rows.iter().map(|row| row.similarity).collect();
                column.typed::<FloatType>().write_batch(&values, None, None)
            }
            14 => column.typed::<ByteArrayType>().write_batch(
                &strings(|row| row.nsfw.as_str()),
                None,
                None,
            ),
            _ => column.typed::<ByteArrayType>().write_batch(
                &strings(|row| &row.sample.sha256),
                None,
                None,
            ),
        }?;
        column.close()?;
        index += 1;
    }
    group.close()?;
    let file = writer.into_inner()?;
    file.sync_all()?;
    Ok(())
}
