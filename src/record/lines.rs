//! The one tolerant JSONL reader every stage shares.
//!
//! Input files come from anywhere, so one bad line (not UTF-8, not JSON, a lone surrogate,
//! nesting past serde_json's recursion limit, a value that is not an object) must not cost
//! the rest of the file: each line is read on its own and a bad one comes back as a
//! [`BadLine`] with its number, reason and raw text, for the stage to record. `strict`
//! turns the first bad line into an error naming `file:line` instead.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// A line that is not a JSON object, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// Machine-readable: `bad_input:not_utf8`, `bad_input:invalid_json (…)`,
    /// `bad_input:not_an_object`.
    pub reason: String,
    /// The line as read (invalid UTF-8 replaced by U+FFFD), so nothing is lost.
    pub raw: String,
}

impl BadLine {
    /// `path:line: reason`, the form every stage prints.
    pub fn describe(&self, path: &Path) -> String {
        format!("{}:{}: {}", path.display(), self.line, self.reason)
    }
}

/// Bad lines named on stderr at most; the rest are counted (every one is still recorded
/// where the stage records them).
const WARN_AT_MOST: usize = 20;

/// Names bad lines on stderr as `warning: FILE:LINE: reason (outcome)`, the first
/// [`WARN_AT_MOST`] of them, then how many more.
pub fn warn(path: &Path, bad: &[BadLine], outcome: &str) {
    for b in bad.iter().take(WARN_AT_MOST) {
        eprintln!("warning: {} ({outcome})", b.describe(path));
    }
    if bad.len() > WARN_AT_MOST {
        eprintln!(
            "warning: {}: {} more bad lines ({outcome})",
            path.display(),
            bad.len() - WARN_AT_MOST
        );
    }
}

/// One non-blank line of a JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Record { line: usize, value: Value },
    Bad(BadLine),
}

/// Parses one line's bytes; `Err` holds the reason, data rather than a failure: the
/// `bad_input:*` string is recorded with the line (see [`BadLine`]).
pub fn parse_line(raw: &[u8]) -> std::result::Result<Value, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "bad_input:not_utf8".to_string())?;
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("bad_input:not_an_object".into()),
        // serde_json rejects lone surrogates and stops at 128 levels of nesting (an
        // error, not a stack overflow), so both end up here.
        Err(e) => Err(format!("bad_input:invalid_json ({})", json_error(&e))),
    }
}

/// serde_json's message with its "at line 1 column N" turned into "at column N": the
/// line number that matters is the file's, given separately.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&suffix) {
        Some(m) if e.column() > 0 => format!("{m} at column {}", e.column()),
        Some(m) => m.to_string(),
        None => msg,
    }
}

/// Reads every non-blank line of `path`. A bad line is returned as [`Line::Bad`], or with
/// `strict` is an error naming `file:line`. Only an unreadable file is an error otherwise.
pub fn read(path: &Path, strict: bool) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    for_each(path, strict, |l| {
        out.push(l);
        Ok(())
    })?;
    Ok(out)
}

/// [`read`], streamed: `f` sees each non-blank line in turn and memory is one line, so a
/// stage can fold a file of millions of records without holding it.
pub fn for_each(path: &Path, strict: bool, mut f: impl FnMut(Line) -> Result<()>) -> Result<()> {
    for_each_raw(
        path,
        |_| {},
        |line, _, raw| match to_line(line, raw) {
            Line::Bad(bad) if strict => Err(Error::BadInput {
                path: path.to_path_buf(),
                line: bad.line,
                reason: bad.reason,
                advice: "; fix or remove that line",
            }),
            l => f(l),
        },
    )
}

/// An input a stage can read more than once. A streamed stage reads its input in passes
/// (what it needs from all records, then each record), so a pipe or other non-regular
/// file (`--input /dev/stdin`) is first copied to a temporary file; a regular file is
/// read where it is.
pub struct Rereadable {
    path: std::path::PathBuf,
    _copy: Option<tempfile::NamedTempFile>,
}

impl Rereadable {
    pub fn new(path: &Path) -> Result<Rereadable> {
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return Ok(Rereadable {
                path: path.to_path_buf(),
                _copy: None,
            });
        }
        let mut src =
            std::fs::File::open(path).map_err(|e| Error::io("cannot read input", path, e))?;
        let mut copy = tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("cannot create a temporary copy of", path, e))?;
        std::io::copy(&mut src, &mut copy)
            .map_err(|e| Error::io("cannot copy (is the disk full?)", path, e))?;
        Ok(Rereadable {
            path: copy.path().to_path_buf(),
            _copy: Some(copy),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Calls `f(line, offset, raw)` for every non-blank line of `path`, streaming: memory is
/// one line. `raw` is the line without its `\n`; `offset` is its first byte in the file.
/// `on_bytes` sees every byte read, blank lines included (to hash the file on the way).
pub fn for_each_raw(
    path: &Path,
    mut on_bytes: impl FnMut(&[u8]),
    mut f: impl FnMut(usize, u64, &[u8]) -> Result<()>,
) -> Result<()> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read input", path, e))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let (mut line, mut offset) = (0usize, 0u64);
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("cannot read input", path, e))?;
        if n == 0 {
            return Ok(());
        }
        on_bytes(&buf);
        line += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if !raw.iter().all(u8::is_ascii_whitespace) {
            f(line, offset, raw)?;
        }
        offset += n as u64;
    }
}

/// One line's bytes as a [`Line`] (bad lines keep their raw text).
pub fn to_line(line: usize, raw: &[u8]) -> Line {
    match parse_line(raw) {
        Ok(value) => Line::Record { line, value },
        Err(reason) => Line::Bad(BadLine {
            line,
            reason,
            raw: String::from_utf8_lossy(raw).into_owned(),
        }),
    }
}

/// Records with their line numbers.
pub type Numbered = Vec<(usize, Value)>;

/// The records and the bad lines of `path`, apart (for stages that only report bad lines).
pub fn read_split(path: &Path, strict: bool) -> Result<(Numbered, Vec<BadLine>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for l in read(path, strict)? {
        match l {
            Line::Record { line, value } => good.push((line, value)),
            Line::Bad(b) => bad.push(b),
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with one of each kind of bad line, between good ones.
    fn hostile() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(b"{\"id\":\"a\"}\n");
        f.extend_from_slice(b"not json\n");
        f.extend_from_slice(b"{\"id\":\"\xff\xfe\"}\n");
        f.extend_from_slice(b"{\"id\":\"\\ud800\"}\n");
        f.extend_from_slice(&b"[".repeat(10_000));
        f.extend_from_slice(&b"]".repeat(10_000));
        f.extend_from_slice(b"\n\n[1,2]\n{\"id\":\"b\"}\n");
        f
    }

    #[test]
    fn every_bad_line_is_named_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, hostile()).unwrap();
        let (good, bad) = read_split(&p, false).unwrap();
        assert_eq!(
            good.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![1, 8],
            "line numbers count blank lines"
        );
        let got: Vec<(usize, &str)> = bad
            .iter()
            .map(|b| (b.line, b.reason.split(' ').next().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "bad_input:invalid_json"),
                (3, "bad_input:not_utf8"),
                (4, "bad_input:invalid_json"),
                (5, "bad_input:invalid_json"),
                (7, "bad_input:not_an_object"),
            ]
        );
        // serde_json rejects the lone surrogate (the message names the escape).
        assert!(bad[2].reason.contains("escape"), "{}", bad[2].reason);
        assert!(bad[3].reason.contains("recursion"), "{}", bad[3].reason);
        assert!(!bad[0].reason.contains("line 1"), "{}", bad[0].reason);
        assert_eq!(bad[0].raw, "not json");

        let e = read(&p, true).unwrap_err().to_string();
        assert!(e.contains("in.jsonl:2: bad_input:invalid_json"), "{e}");
    }
}
