//! Seed lists: inline TOML arrays or files (one value per line, or JSONL).

use super::Locator;
use crate::error::Result;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// The values of one seed variable, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedValues {
    pub values: Vec<String>,
    /// Where they came from, for messages ("inline" or the file path).
    pub origin: String,
}

/// Loads every seed list under `[seeds]`, by variable name.
pub(super) fn validate(
    raw: &BTreeMap<String, Spanned<toml::Value>>,
    loc: &Locator<'_>,
) -> Result<BTreeMap<String, SeedValues>> {
    raw.iter()
        .map(|(var, value)| {
            let values = load(value, &format!("seeds.{var}"), loc.base_dir(), loc)?;
            Ok((var.clone(), values))
        })
        .collect()
}

/// Loads `[seeds] var = [...]` or `var = { file = "...", field = "..." }`.
fn load(
    value: &Spanned<toml::Value>,
    field: &str,
    base_dir: &Path,
    loc: &Locator<'_>,
) -> Result<SeedValues> {
    let span = value.span();
    let bad = |m: String| loc.err(span.clone(), field, m);
    match value.get_ref() {
        toml::Value::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                values.push(scalar_to_string(item).ok_or_else(|| {
                    bad(format!(
                        "item {i} is {}, expected a string",
                        item.type_str()
                    ))
                })?);
            }
            if values.is_empty() {
                return Err(bad("the list is empty; give at least one value".into()));
            }
            Ok(SeedValues {
                values: distinct(values),
                origin: "inline".into(),
            })
        }
        toml::Value::Table(t) => {
            for k in t.keys() {
                if k != "file" && k != "field" {
                    return Err(bad(format!(
                        "unknown key `{k}`; expected `file` and optionally `field`"
                    )));
                }
            }
            let file = t.get("file").and_then(|v| v.as_str()).ok_or_else(|| {
                bad("expected `file = \"path\"` (one value per line, or JSONL)".into())
            })?;
            let json_field = match t.get("field") {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .ok_or_else(|| bad("`field` must be a string".into()))?
                        .to_string(),
                ),
            };
            let path = base_dir.join(file);
            let text = read_capped(&path).map_err(|e| {
                bad(format!(
                    "cannot read seed file {}: {e} (paths are relative to the spec file)",
                    path.display()
                ))
            })?;
            let values = parse_lines(&text, json_field.as_deref())
                .map_err(|(line, m)| bad(format!("{}:{line}: {m}", path.display())))?;
            if values.is_empty() {
                return Err(bad(format!("seed file {} has no values", path.display())));
            }
            Ok(SeedValues {
                values: distinct(values),
                origin: path.display().to_string(),
            })
        }
        other => Err(bad(format!(
            "expected a list of strings or {{ file = \"...\" }}, got {}",
            other.type_str()
        ))),
    }
}

/// The largest seed file read (256 MiB): a seed list is text a person curates, and the
/// cap keeps a mistaken path (`/dev/zero`, a dataset dump) from filling memory.
pub const MAX_SEED_FILE_BYTES: u64 = 256 << 20;

/// Reads a seed file as UTF-8, refusing files over [`MAX_SEED_FILE_BYTES`] without
/// reading past the cap (devices and pipes have no size to check first).
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(MAX_SEED_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_SEED_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than the {} MiB a seed file may hold; use a smaller list (or `sample = N` over several lists)",
            MAX_SEED_FILE_BYTES >> 20
        )));
    }
    String::from_utf8(buf).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// The values without repeats, in first-seen order: a repeated value would give the same
/// prompt (and the same record id) twice.
fn distinct(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

pub(super) fn scalar_to_string(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One value per non-empty line. A line starting with `{` or `"` is JSON: a string, or an
/// object whose `field` (required for objects) holds the value.
fn parse_lines(
    text: &str,
    field: Option<&str>,
) -> std::result::Result<Vec<String>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let lineno = i + 1;
        if line.starts_with('{') || line.starts_with('"') {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| (lineno, format!("invalid JSON: {e}")))?;
            let s = match (&v, field) {
                (serde_json::Value::String(s), _) => s.clone(),
                (serde_json::Value::Object(o), Some(f)) => match o.get(f) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err((lineno, format!("object has no field {f:?}"))),
                },
                (serde_json::Value::Object(_), None) => {
                    return Err((
                        lineno,
                        "JSON object lines need `field = \"name\"` in the seed entry".into(),
                    ))
                }
                _ => v.to_string(),
            };
            out.push(s);
        } else {
            out.push(line.to_string());
        }
    }
    Ok(out)
}
