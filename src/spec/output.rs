//! `output = { … }` on a task: the structure its answers must have, held by
//! grammar-constrained decoding (`crate::constrain`). Schema and grammar files are read
//! and compiled here, so a bad one fails the spec at its `file:line`, before any model
//! loads, and their content (not their path) is what fingerprints the task.

use super::Locator;
use crate::constrain::Constraint;
use crate::error::{Error, Result};
use std::ops::Range;
use std::path::PathBuf;

/// A task's output constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub constraint: Constraint,
    /// The schema or grammar file as written (relative to the spec), for messages.
    pub file: Option<PathBuf>,
}

impl Output {
    /// Part of the record ids: editing the constraint makes new records.
    pub fn key(&self) -> String {
        self.constraint.key()
    }
}

/// Parses and checks `output` (an inline table with exactly one key).
pub(super) fn validate(
    v: &toml::Value,
    span: Range<usize>,
    field: &str,
    loc: &Locator<'_>,
) -> Result<Output> {
    let err = |m: String| -> Error { loc.err(span.clone(), field, m) };
    const HELP: &str = "give exactly one of `json_schema = \"schemas/x.json\"` (or an inline table), `regex = \"...\"`, `choice = [\"a\", \"b\"]`, `grammar = \"grammars/x.lark\"`";
    let t = v
        .as_table()
        .ok_or_else(|| err(format!("`output` is a table: {HELP}")))?;
    if t.len() != 1 {
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        return Err(err(format!("`output` has keys {keys:?}; {HELP}")));
    }
    let (key, value) = t.iter().next().expect("one key");
    let read = |file: &str, what: &str| -> Result<(PathBuf, String)> {
        let written = PathBuf::from(file);
        let path = loc.base_dir().join(&written);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read the {what} {}: {e}", path.display())))?;
        Ok((written, text))
    };
    let (constraint, file) = match (key.as_str(), value) {
        ("json_schema", toml::Value::String(f)) => {
            let (written, text) = read(f, "JSON Schema")?;
            let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                err(format!(
                    "{}:{}:{}: not JSON: {e}",
                    loc.base_dir().join(&written).display(),
                    e.line(),
                    e.column()
                ))
            })?;
            (Constraint::JsonSchema(schema), Some(written))
        }
        ("json_schema", toml::Value::Table(t)) => {
            let schema = serde_json::to_value(t)
                .map_err(|e| err(format!("the inline schema is not JSON: {e}")))?;
            (Constraint::JsonSchema(schema), None)
        }
        ("regex", toml::Value::String(r)) => (Constraint::Regex(r.clone()), None),
        ("choice", toml::Value::Array(a)) => {
            let mut c = Vec::new();
            for x in a {
                match x.as_str() {
                    Some(s) if !s.is_empty() && !c.iter().any(|y: &String| y == s) => {
                        c.push(s.to_string())
                    }
                    _ => {
                        return Err(err(format!(
                            "`choice` is a list of distinct non-empty strings; {x} is not one"
                        )))
                    }
                }
            }
            (Constraint::Choice(c), None)
        }
        ("grammar", toml::Value::String(f)) => {
            let (written, text) = read(f, "Lark grammar")?;
            (Constraint::Lark(text), Some(written))
        }
        (k @ ("json_schema" | "regex" | "choice" | "grammar"), other) => {
            return Err(err(format!(
                "`output.{k}` cannot be a {}; {HELP}",
                other.type_str()
            )))
        }
        (k, _) => return Err(err(format!("unknown `output.{k}`; {HELP}"))),
    };
    if let Err(why) = constraint.check() {
        let what = match &file {
            Some(f) => format!("{} ({})", constraint.kind(), f.display()),
            None => constraint.kind().to_string(),
        };
        return Err(err(format!("the {what} cannot be used: {why}")));
    }
    Ok(Output { constraint, file })
}
