//! Records of a stage's file, in file order, each with a stable id.

use super::lines::{self, BadLine, Line};
use crate::error::Result;
use serde_json::{json, Value};
use std::path::Path;

/// Reads a JSONL file of records; a record without an `id` gets one from its content.
/// A line that is not a JSON object is an error naming `file:line` (never silently skipped).
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    Ok(read_input(path, true)?.0)
}

/// [`read_records`], or `None` when the file does not exist (a stage that has not run).
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<Value>>> {
    if !path.exists() {
        return Ok(None);
    }
    read_records(path).map(Some)
}

/// Calls `f` with each record of `path` in file order, streamed (memory is one record); a
/// record without an `id` gets one from its content, and a line that is not a JSON object
/// is an error naming `file:line`, as in [`read_records`].
pub fn for_each_record(path: &Path, mut f: impl FnMut(Value) -> Result<()>) -> Result<()> {
    lines::for_each(path, true, |l| match l {
        Line::Record { value, .. } => f(with_id(value)),
        Line::Bad(_) => Ok(()),
    })
}

/// Reads records in file order with [`lines::read`]. A bad line becomes a placeholder
/// record `{"id", "bad_input": {"line", "reason", "raw"}}` in its place (so it is carried
/// to the output, not lost) and is also returned in the list of bad lines.
pub fn read_input(path: &Path, strict: bool) -> Result<(Vec<Value>, Vec<BadLine>)> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for l in lines::read(path, strict)? {
        match l {
            Line::Record { value, .. } => out.push(with_id(value)),
            Line::Bad(b) => {
                out.push(json!({
                    "id": content_id(b.raw.as_bytes()),
                    "bad_input": {"line": b.line, "reason": b.reason, "raw": b.raw},
                }));
                bad.push(b);
            }
        }
    }
    Ok((out, bad))
}

fn content_id(bytes: &[u8]) -> String {
    crate::models::checksum::sha256_bytes(bytes)[..32].to_string()
}

/// The record, with an `id` made from its content if it has no string one (so a rerun
/// finds it again).
pub fn with_id(mut value: Value) -> Value {
    if let Some(obj) = value.as_object_mut() {
        if !obj.get("id").is_some_and(|x| x.is_string()) {
            let id = content_id(&serde_json::to_vec(obj).unwrap_or_default());
            obj.insert("id".into(), Value::String(id));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_bad_lines_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        std::fs::write(
            &p,
            "{\"text\":\"a\"}\nnot json\n{\"id\":\"x\",\"text\":\"b\"}\n",
        )
        .unwrap();
        let (recs, bad) = read_input(&p, false).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(bad.len(), 1);
        assert!(recs[1].get("bad_input").is_some(), "placeholder in place");
        assert_eq!(recs[2]["id"], "x");
        let again = read_input(&p, false).unwrap().0;
        assert_eq!(recs[0]["id"], again[0]["id"], "content ids are stable");
        assert_ne!(recs[0]["id"], recs[1]["id"]);
        assert!(read_records(&p).is_err(), "read_records is strict");
        assert!(read_if_exists(&dir.path().join("none.jsonl"))
            .unwrap()
            .is_none());
    }
}
