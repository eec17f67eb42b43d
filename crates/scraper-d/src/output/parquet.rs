//! Parquet output through the `parquet` crate's column writers (no Arrow, to keep the build small).

use std::fs::File;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::Row;
use crate::error::ScraperError;

const SCHEMA: &str = "message candidate {
    required int64 sample_id (INTEGER(64, false));
    required int32 half (INTEGER(8, false));
    required binary url (STRING);
    required binary alt (STRING);
    required binary page_url (STRING);
    optional binary license (STRING);
    optional binary language (STRING);
}";

/// Rows per row group.
const ROW_GROUP: usize = 65_536;

/// Buffers one row group of columns, then writes it.
pub(super) struct ParquetSink {
    writer: SerializedFileWriter<File>,
    sample_ids: Vec<i64>,
    halves: Vec<i32>,
    urls: Vec<ByteArray>,
    alts: Vec<ByteArray>,
    page_urls: Vec<ByteArray>,
    licenses: Vec<Option<ByteArray>>,
    languages: Vec<Option<ByteArray>>,
}

fn error(detail: impl std::fmt::Display) -> ScraperError {
    ScraperError::Output {
        format: "parquet",
        detail: detail.to_string(),
    }
}

impl ParquetSink {
    pub(super) fn new(file: File) -> Result<Self, ScraperError> {
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(error)?);
        let properties = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let writer = SerializedFileWriter::new(file, schema, properties).map_err(error)?;
        Ok(Self {
            writer,
            sample_ids: Vec::new(),
            halves: Vec::new(),
            urls: Vec::new(),
            alts: Vec::new(),
            page_urls: Vec::new(),
            licenses: Vec::new(),
            languages: Vec::new(),
        })
    }

    pub(super) fn write(&mut self, row: Row<'_>) -> Result<(), ScraperError> {
        // Sample IDs come from tracker ranges far below 2^63; the cast keeps the bit pattern.
        self.sample_ids.push(row.sample_id as i64);
        self.halves.push(i32::from(row.half));
        self.urls.push(ByteArray::from(row.url));
        self.alts.push(ByteArray::from(row.alt));
        self.page_urls.push(ByteArray::from(row.page_url));
        self.licenses.push(row.license.map(ByteArray::from));
        self.languages.push(row.language.map(ByteArray::from));
        if self.sample_ids.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ScraperError> {
        if self.sample_ids.is_empty() {
            return Ok(());
        }
        let mut group = self.writer.next_row_group().map_err(error)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(error)? {
            match index {
                0 => column
                    .typed::<Int64Type>()
                    .write_batch(&self.sample_ids, None, None)
                    .map(drop),
                1 => column
                    .typed::<Int32Type>()
                    .write_batch(&self.halves, None, None)
                    .map(drop),
                2..=4 => {
                    let values = match index {
                        2 => &self.urls,
                        3 => &self.alts,
                        _ => &self.page_urls,
                    };
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(values, None, None)
                        .map(drop)
                }
                _ => {
                    let optional = if index == 5 {
                        &self.licenses
                    } else {
                        &self.languages
                    };
                    let levels: Vec<i16> = optional
                        .iter()
                        .map(|value| i16::from(value.is_some()))
                        .collect();
                    let values: Vec<ByteArray> = optional.iter().flatten().cloned().collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&levels), None)
                        .map(drop)
                }
            }
            .map_err(error)?;
            column.close().map_err(error)?;
            index += 1;
        }
        group.close().map_err(error)?;
        self.sample_ids.clear();
        self.halves.clear();
        self.urls.clear();
        self.alts.clear();
        self.page_urls.clear();
        self.licenses.clear();
        self.languages.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<(), ScraperError> {
        self.flush()?;
        let file = self.writer.into_inner().map_err(error)?;
        super::destination::sync_if_regular(&file).map_err(error)
    }
}
