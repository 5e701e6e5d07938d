//! Where in the spec text an error is: `file:line:col: field: message`.

use crate::error::Error;
use std::path::Path;

/// Formats a spec error as `file:line:col: field: message`.
pub(crate) struct Locator<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Locator<'_> {
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, col)
    }

    /// The spec's folder: files named in the spec are relative to it.
    pub(super) fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// An error at a span (a zero span means "not in the file": the default was used).
    pub fn err(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        msg: impl std::fmt::Display,
    ) -> Error {
        if span.start == 0 && span.end == 0 {
            Error::Spec(format!("{}: {field}: {msg}", self.path.display()))
        } else {
            let (line, col) = self.line_col(span.start);
            Error::Spec(format!(
                "{}:{line}:{col}: {field}: {msg}",
                self.path.display()
            ))
        }
    }

    /// Where a field's value sits in the spec text (`["teacher", "sampling", "top_p"]`),
    /// for errors about fields that are deserialized without spans.
    pub(super) fn value_span(&self, path: &[&str]) -> Option<std::ops::Range<usize>> {
        let doc = toml::de::DeTable::parse(self.text).ok()?;
        let mut table = doc.get_ref();
        let (last, parents) = path.split_last()?;
        for k in parents {
            match table.get(*k)?.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
        Some(table.get(*last)?.span())
    }
}
