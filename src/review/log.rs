//! `review.jsonl`: one line per action, appended under an exclusive lock and fsynced, so
//! two reviewers (two `flywheel review` processes) never interleave a line and a crash
//! loses at most the action being written. Nothing is ever rewritten: an undo is an
//! action too, so the journal says everything that happened.

use crate::error::{Error, Result};
use crate::record::lines::BadLine;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What a reviewer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Reject,
    /// Accepted with the response corrected (`edited`).
    Edit,
    /// Takes back the reviewer's action `undoes`.
    Undo,
}

/// One line of `review.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// This action's unique id (an undo names the action it takes back).
    pub action: String,
    /// The record's id.
    pub id: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The corrected response (`edit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<String>,
    /// The action an `undo` takes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
    pub reviewer: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// [`super::content_sha256`] of the record the decision was made on.
    pub content_sha256: String,
}

impl Action {
    /// A new action by `reviewer` now, with a fresh unique id.
    pub fn new(reviewer: &str, id: &str, decision: Decision, content_sha256: &str) -> Action {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let at = chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        Action {
            action: format!(
                "{}-{:x}-{:016x}",
                now.as_millis(),
                std::process::id(),
                rand::random::<u64>()
            ),
            id: id.into(),
            decision,
            reason: None,
            edited: None,
            undoes: None,
            reviewer: reviewer.into(),
            at,
            content_sha256: content_sha256.into(),
        }
    }

    /// The label a person gave the record as it was: accepted as is, or not (rejected, or
    /// needed an edit). What a judge is measured against.
    pub fn good_as_is(&self) -> bool {
        self.decision == Decision::Accept
    }
}

/// A reviewer name: printable, short, so it can label a line of a report.
pub fn check_reviewer(name: &str) -> std::result::Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(format!(
            "reviewer {name:?}: give 1–64 printable characters (--reviewer NAME)"
        ));
    }
    Ok(())
}

/// `review.jsonl` folded: every action, with the ones an undo took back blanked.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Accept/reject/edit actions in file order; `None` where an undo took one back.
    slots: Vec<Option<Action>>,
    /// Action id → its slot.
    at: HashMap<String, usize>,
    /// Actions taken back by an undo.
    pub undone: usize,
    /// Lines that are not actions (a torn line after a crash, a hand edit): skipped.
    pub bad_lines: Vec<BadLine>,
    /// Bytes of the file read so far, and its lines (to read only what others append).
    read_to: u64,
    lines: usize,
    /// Bumped by every change, so a cached queue knows it is out of date.
    pub version: u64,
}

impl Log {
    /// Reads `path`; a missing file is an empty log.
    pub fn load(path: &Path) -> Result<Log> {
        let mut log = Log::default();
        log.refresh(path)?;
        Ok(log)
    }

    /// Reads what was appended to `path` since the last read (another reviewer's actions);
    /// re-reads it whole if it shrank (replaced by hand).
    pub fn refresh(&mut self, path: &Path) -> Result<()> {
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        if len < self.read_to {
            *self = Log::default();
        }
        if len == self.read_to {
            return Ok(());
        }
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(self.read_to))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io("cannot read", path, e))?;
        // Only whole lines: a line being written (or torn) is read once it ends.
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        for raw in bytes[..end].split(|&b| b == b'\n') {
            self.lines += 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = crate::record::lines::parse_line(raw).and_then(|v| {
                serde_json::from_value::<Action>(v)
                    .map_err(|e| format!("bad_input:not_a_review_action ({e})"))
            });
            match parsed {
                Ok(a) => self.push(a),
                Err(reason) => self.bad_lines.push(BadLine {
                    line: self.lines,
                    reason,
                    raw: String::from_utf8_lossy(raw).into_owned(),
                }),
            }
        }
        self.read_to += end as u64 + 1;
        self.version += 1;
        Ok(())
    }

    /// Applies one action: an undo takes back the named action when it is the same
    /// reviewer's and still in effect; anything else it names is ignored.
    pub fn push(&mut self, a: Action) {
        self.version += 1;
        if a.decision == Decision::Undo {
            let target = a.undoes.as_ref().and_then(|u| self.at.get(u)).copied();
            if let Some(i) = target {
                if self.slots[i]
                    .as_ref()
                    .is_some_and(|t| t.reviewer == a.reviewer)
                {
                    self.slots[i] = None;
                    self.undone += 1;
                }
            }
            return;
        }
        self.at.insert(a.action.clone(), self.slots.len());
        self.slots.push(Some(a));
    }

    /// A log of these actions, in order (tests, and other tools' journals).
    pub fn fold(actions: Vec<Action>) -> Log {
        let mut log = Log::default();
        for a in actions {
            log.push(a);
        }
        log
    }

    /// Accept/reject/edit actions in effect, in the order they were written.
    pub fn effective(&self) -> impl DoubleEndedIterator<Item = &Action> {
        self.slots.iter().flatten()
    }

    /// The latest action in effect on record `id` with content `sha`, any reviewer.
    pub fn latest(&self, id: &str, sha: &str) -> Option<&Action> {
        self.effective()
            .rev()
            .find(|a| a.id == id && a.content_sha256 == sha)
    }

    /// Each reviewer's current decision on record `id` with content `sha`.
    pub fn by_reviewer(&self, id: &str, sha: &str) -> Vec<&Action> {
        let mut seen = HashSet::new();
        let mut out: Vec<&Action> = self
            .effective()
            .rev()
            .filter(|a| a.id == id && a.content_sha256 == sha && seen.insert(&a.reviewer))
            .collect();
        out.reverse();
        out
    }

    /// `reviewer`'s latest action in effect: what `u` takes back.
    pub fn last_of(&self, reviewer: &str) -> Option<&Action> {
        self.effective().rev().find(|a| a.reviewer == reviewer)
    }

    /// Reviewers in order of first appearance.
    pub fn reviewers(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.effective()
            .map(|a| a.reviewer.as_str())
            .filter(|r| seen.insert(*r))
            .collect()
    }
}

/// Appends `action` to `path` as one line: under an exclusive `flock` (another reviewer's
/// process waits its turn), after cutting a torn last line a crash left, then fsynced.
pub fn append(path: &Path, action: &Action) -> Result<usize> {
    let mut line = serde_json::to_vec(action)
        .map_err(|e| Error::Internal(format!("cannot serialize a review action: {e}")))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("cannot open for appending", path, e))?;
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    let rc = unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    if rc != 0 {
        return Err(Error::io(
            "cannot lock",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    let io = |e| Error::io("cannot write (is the disk full?) to", path, e);
    let len = f.metadata().map_err(io)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        f.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            // A crash mid-line: keep every whole line, drop the torn one.
            let mut bytes = Vec::new();
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.read_to_end(&mut bytes).map_err(io)?;
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            f.set_len(keep as u64).map_err(io)?;
        }
    }
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(line.len())
}
