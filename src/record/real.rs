//! Reading real data: JSONL (chat `messages`, `prompt`/`response`, alpaca, or `text`), CSV
//! (the same names as columns) and Parquet, into chat records tagged `source: "real"`.
//!
//! A bad line is reported with its file and line and skipped, or fails the read with
//! `strict`; it is never dropped without a word.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One source row: its line (or row number) and the fields, or why it is unreadable.
type Row = (usize, std::result::Result<Map<String, Value>, String>);

/// What a real-data file gave.
#[derive(Debug, Default)]
pub struct RealData {
    pub records: Vec<Value>,
    /// `file:line: why` for every row that could not be read.
    pub bad: Vec<String>,
}

/// Reads one real-data file by extension (`.jsonl`/`.json`, `.csv`, `.parquet`).
pub fn read(path: &Path, strict: bool) -> Result<RealData> {
    let mut out = RealData::default();
    for_each(
        path,
        strict,
        |r| {
            out.records.push(r);
            Ok(())
        },
        |b| out.bad.push(b),
    )?;
    Ok(out)
}

/// [`read`], streamed: `on_record` gets each record in file order and `on_bad` each
/// unreadable row's `file:line: why`; memory is one row (a Parquet batch), so real data
/// larger than memory can be blended and audited.
pub fn for_each(
    path: &Path,
    strict: bool,
    mut on_record: impl FnMut(Value) -> Result<()>,
    mut on_bad: impl FnMut(String),
) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("real");
    let mut each = |(line, row): Row| -> Result<()> {
        match row.and_then(|obj| to_chat(obj, file, line)) {
            Ok(r) => on_record(r),
            Err(why) if strict => Err(Error::BadInput {
                path: path.to_path_buf(),
                line,
                reason: why,
                advice: " (--strict: fix or remove it)",
            }),
            Err(why) => {
                on_bad(format!("{}:{line}: {why}", path.display()));
                Ok(())
            }
        }
    };
    match ext.as_str() {
        "jsonl" | "json" | "ndjson" => jsonl_rows(path, &mut each),
        "csv" => csv_rows(path, &mut each),
        "parquet" => parquet_rows(path, &mut each),
        _ => Err(Error::Spec(format!(
            "{}: unknown real-data format {ext:?}; use .jsonl, .csv or .parquet",
            path.display()
        ))),
    }
}

fn jsonl_rows(path: &Path, each: &mut impl FnMut(Row) -> Result<()>) -> Result<()> {
    crate::record::lines::for_each_raw(
        path,
        |_| {},
        |line, _, raw| {
            let row = match std::str::from_utf8(raw) {
                Err(_) => Err("not UTF-8".to_string()),
                Ok(s) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(o)) => Ok(o),
                    Ok(_) => Err("not a JSON object".into()),
                    Err(e) => Err(format!("invalid JSON ({e})")),
                },
            };
            each((line, row))
        },
    )
    .map_err(|e| match e {
        Error::Io { path, cause, .. } => Error::io("cannot read real data", path, cause),
        e => e,
    })
}

fn csv_rows(path: &Path, each: &mut impl FnMut(Row) -> Result<()>) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| Error::Spec(format!("{}: cannot read CSV: {e}", path.display())))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::BadInput {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("bad CSV header: {e}"),
            advice: "",
        })?
        .clone();
    for (i, rec) in rdr.byte_records().enumerate() {
        // Header is line 1; a record's own line is what csv reports (quoted newlines count).
        let (line, row) = match rec {
            Ok(r) => {
                let line = r.position().map_or(i + 2, |p| p.line() as usize);
                let mut o = Map::new();
                let mut bad = None;
                for (h, f) in headers.iter().zip(r.iter()) {
                    match std::str::from_utf8(f) {
                        Ok(s) => {
                            o.insert(h.to_string(), Value::String(s.to_string()));
                        }
                        Err(_) => bad = Some(format!("column {h:?} is not UTF-8")),
                    }
                }
                (line, bad.map_or(Ok(o), Err))
            }
            Err(e) => {
                let line = e.position().map_or(i + 2, |p| p.line() as usize);
                (line, Err(format!("bad CSV row ({e})")))
            }
        };
        each((line, row))?;
    }
    Ok(())
}

fn parquet_rows(path: &Path, each: &mut impl FnMut(Row) -> Result<()>) -> Result<()> {
    use arrow_array::{Array, StringArray};
    let bad = |e: &dyn std::fmt::Display| {
        Error::Spec(format!("{}: cannot read Parquet: {e}", path.display()))
    };
    let file =
        std::fs::File::open(path).map_err(|e| Error::io("cannot open real data", path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(&e))?
        .build()
        .map_err(|e| bad(&e))?;
    let mut n = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let schema = batch.schema();
        let mut maps: Vec<Map<String, Value>> = vec![Map::new(); batch.num_rows()];
        for (f, col) in schema.fields().iter().zip(batch.columns()) {
            if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                for (r, m) in maps.iter_mut().enumerate() {
                    if s.is_valid(r) {
                        m.insert(f.name().clone(), Value::String(s.value(r).to_string()));
                    }
                }
            } else if f.name() == "messages" {
                // list<struct<role, content>>, as our own dataset.parquet writes it.
                let arr = arrow_json_messages(col.as_ref());
                for (r, m) in maps.iter_mut().enumerate() {
                    if let Some(v) = arr.get(r).cloned().flatten() {
                        m.insert("messages".into(), v);
                    }
                }
            }
        }
        for m in maps {
            n += 1;
            each((n, Ok(m)))?;
        }
    }
    Ok(())
}

/// `messages` column (list of struct{role, content}) as JSON values, row by row.
fn arrow_json_messages(col: &dyn arrow_array::Array) -> Vec<Option<Value>> {
    use arrow_array::{Array, ListArray, StringArray, StructArray};
    let Some(list) = col.as_any().downcast_ref::<ListArray>() else {
        return vec![None; col.len()];
    };
    (0..list.len())
        .map(|r| {
            if !list.is_valid(r) {
                return None;
            }
            let v = list.value(r);
            let s = v.as_any().downcast_ref::<StructArray>()?;
            let role = s
                .column_by_name("role")?
                .as_any()
                .downcast_ref::<StringArray>()?;
            let content = s
                .column_by_name("content")?
                .as_any()
                .downcast_ref::<StringArray>()?;
            Some(Value::Array(
                (0..s.len())
                    .map(|i| json!({"role": role.value(i), "content": content.value(i)}))
                    .collect(),
            ))
        })
        .collect()
}

/// A real row as a chat record with a stable id (hash of its content) and provenance.
/// The `Err` is the row's rejection reason, data rather than a failure: it is listed with
/// the row's `file:line` among the skipped rows (or, with `--strict`, stops the blend).
fn to_chat(
    mut o: Map<String, Value>,
    file: &str,
    line: usize,
) -> std::result::Result<Value, String> {
    let s = |o: &Map<String, Value>, k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let messages = if let Some(Value::Array(m)) = o.get("messages") {
        let ok = !m.is_empty()
            && m.iter().all(|x| {
                x.get("role").and_then(|r| r.as_str()).is_some()
                    && x.get("content").and_then(|c| c.as_str()).is_some()
            });
        if !ok {
            return Err("`messages` must be a non-empty list of {role, content} strings".into());
        }
        Value::Array(m.clone())
    } else if let (Some(p), Some(r)) = (s(&o, "prompt"), s(&o, "response")) {
        json!([{"role": "user", "content": p}, {"role": "assistant", "content": r}])
    } else if let (Some(p), Some(r)) = (s(&o, "instruction"), s(&o, "output")) {
        let p = match s(&o, "input").filter(|x| !x.trim().is_empty()) {
            Some(i) => format!("{p}\n\n{i}"),
            None => p,
        };
        json!([{"role": "user", "content": p}, {"role": "assistant", "content": r}])
    } else if let Some(t) = s(&o, "text") {
        json!([{"role": "assistant", "content": t}])
    } else {
        return Err(
            "no text: give `messages`, `prompt` + `response`, `instruction` + `output`, or `text`"
                .into(),
        );
    };
    let all_text: String = messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(|c| c.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if all_text.trim().is_empty() {
        return Err("empty text".into());
    }
    let id = match o.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => format!(
            "real-{}",
            &crate::models::checksum::sha256_bytes(all_text.as_bytes())[..24]
        ),
    };
    Ok(json!({
        "id": id,
        "source": "real",
        "messages": messages,
        "provenance": {"real": {"file": file, "line": line}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv_shapes_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("r.jsonl");
        std::fs::write(
            &j,
            b"{\"prompt\":\"P\",\"response\":\"R\"}\n{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}\nnot json\n\xff\xfe\n{\"text\":\"  \"}\n{\"instruction\":\"I\",\"input\":\"x\",\"output\":\"O\"}\n",
        )
        .unwrap();
        let r = read(&j, false).unwrap();
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.bad.len(), 3, "{:?}", r.bad);
        assert!(r.bad[0].ends_with("r.jsonl:3: invalid JSON (expected ident at line 1 column 2)"));
        assert!(r.bad[1].contains(":4: not UTF-8"));
        assert!(r.bad[2].contains(":5: empty text"));
        assert_eq!(r.records[2]["messages"][0]["content"], "I\n\nx");
        assert_eq!(r.records[0]["source"], "real");
        assert!(read(&j, true).unwrap_err().to_string().contains(":3:"));

        let c = dir.path().join("r.csv");
        std::fs::write(&c, "prompt,response\nP1,\"multi\nline\"\nP2,R2\nP3\n").unwrap();
        let r = read(&c, false).unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0]["messages"][1]["content"], "multi\nline");
        assert_eq!(r.bad.len(), 1);
        assert!(r.bad[0].contains("r.csv:5:"), "{:?}", r.bad);
    }
}
