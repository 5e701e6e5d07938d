//! `dataset.parquet`: the dataset as Hugging Face `datasets` and pandas load it, with
//! `messages` as a list of {role, content} structs (the chat column TRL reads) and the
//! nested provenance kept as JSON text.

use crate::error::{Error, Result};
use crate::store::AtomicWriter;
use arrow_array::{ArrayRef, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn msg_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// The last message with `role`, if any.
fn last(rec: &Value, role: &str) -> Option<String> {
    rec.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == role)
        .and_then(|m| m["content"].as_str())
        .map(str::to_string)
}

/// Writes records (chat JSON values) as a Parquet file, atomically.
pub fn write(path: &Path, rows: &[Value]) -> Result<()> {
    let mut w = Writer::create(path)?;
    for r in rows {
        w.push(r.clone())?;
    }
    w.finish()
}

/// Rows per Arrow batch: what the writer holds parsed at once.
const BATCH: usize = 8_192;
/// Rows per Parquet row group (held encoded until it is written out).
const ROW_GROUP: usize = 65_536;

/// `dataset.parquet` written as the records stream by: they are buffered a batch at a
/// time and the file is put in place atomically by [`Writer::finish`].
pub struct Writer {
    path: PathBuf,
    w: ArrowWriter<AtomicWriter>,
    rows: Vec<Value>,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .build();
        let file = AtomicWriter::create(path)?;
        let w = ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| perr(path, e))?;
        Ok(Writer {
            path: path.to_path_buf(),
            w,
            rows: Vec::new(),
        })
    }

    pub fn push(&mut self, row: Value) -> Result<()> {
        self.rows.push(row);
        if self.rows.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let b = batch(&self.rows)?;
        self.rows.clear();
        self.w.write(&b).map_err(|e| perr(&self.path, e))
    }

    /// Writes what is buffered and the footer, and puts the file in place.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        let file = self.w.into_inner().map_err(|e| perr(&self.path, e))?;
        file.commit()
    }
}

fn perr(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Model(format!("cannot write {}: {e}", path.display()))
}

fn schema() -> Arc<Schema> {
    let item = Arc::new(Field::new("item", DataType::Struct(msg_fields()), false));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("messages", DataType::List(item), false),
        Field::new("prompt", DataType::Utf8, true),
        Field::new("response", DataType::Utf8, true),
        Field::new("meta", DataType::Utf8, true),
        Field::new("provenance", DataType::Utf8, true),
        Field::new("scores", DataType::Utf8, true),
        Field::new("privacy", DataType::Utf8, true),
    ]))
}

/// One Arrow batch of records.
fn batch(rows: &[Value]) -> Result<RecordBatch> {
    let s = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.get(k).and_then(|v| v.as_str()).map(str::to_string))
                .collect::<Vec<_>>(),
        ))
    };
    let js = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.get(k).filter(|v| !v.is_null()).map(|v| v.to_string()))
                .collect::<Vec<_>>(),
        ))
    };
    let mut roles = Vec::new();
    let mut contents = Vec::new();
    let mut lens = Vec::with_capacity(rows.len());
    for r in rows {
        let msgs = r
            .get("messages")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        lens.push(msgs.len());
        for m in msgs {
            roles.push(m["role"].as_str().unwrap_or("").to_string());
            contents.push(m["content"].as_str().unwrap_or("").to_string());
        }
    }
    let structs = StructArray::new(
        msg_fields(),
        vec![
            Arc::new(StringArray::from(roles)) as ArrayRef,
            Arc::new(StringArray::from(contents)),
        ],
        None,
    );
    let item = Arc::new(Field::new("item", DataType::Struct(msg_fields()), false));
    let messages = ListArray::new(
        item.clone(),
        arrow_buffer::OffsetBuffer::from_lengths(lens),
        Arc::new(structs),
        None,
    );
    let opt = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter().map(|r| last(r, k)).collect::<Vec<_>>(),
        ))
    };
    let schema = schema();
    RecordBatch::try_new(
        schema,
        vec![
            s("id"),
            s("source"),
            Arc::new(messages),
            opt("user"),
            opt("assistant"),
            js("meta"),
            js("provenance"),
            js("scores"),
            js("privacy"),
        ],
    )
    .map_err(|e| Error::Internal(format!("dataset.parquet batch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parquet_round_trips_through_the_real_data_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let rows = vec![
            json!({"id":"a","source":"synthetic","messages":[{"role":"user","content":"Q1"},{"role":"assistant","content":"A1"}],"provenance":{"x":1}}),
            json!({"id":"b","source":"real","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]}),
        ];
        write(&p, &rows).unwrap();
        let back = crate::record::real::read(&p, true).unwrap();
        assert_eq!(back.records.len(), 2);
        assert_eq!(back.records[1]["messages"], rows[1]["messages"]);
        assert_eq!(back.records[0]["id"], "a");
    }
}
