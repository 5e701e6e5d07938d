//! The run directory: JSONL record files that survive crashes, and `manifest.json`.
//!
//! A record file is append-only, one JSON object per line, each line written whole and
//! flushed. On open, a torn last line (a crash mid-write) is cut off and reported; a
//! corrupt line in the middle is an error, never silently dropped.

pub mod lock;
pub mod manifest;
pub mod run_dir;

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use lock::RunLock;
pub use manifest::Manifest;
pub use run_dir::RunDir;

/// Creates the run directory and takes its lock (held until the guard drops), with an
/// error that says what to do when it cannot.
pub fn create_run_dir(dir: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            "cannot create run directory (check permissions, or choose another with [run].out_dir / [run].name in the spec; generate also takes --out DIR)",
            dir,
            e,
        )
    })?;
    // Creating an existing directory succeeds even when it is read-only: probe it.
    let probe = dir.join(".flywheel-write-test");
    File::create(&probe).map_err(|e| {
        Error::io(
            "run directory is not writable (check permissions, or choose another with [run].out_dir / [run].name in the spec; generate also takes --out DIR)",
            dir,
            e,
        )
    })?;
    let _ = std::fs::remove_file(probe);
    RunLock::acquire(dir)
}

/// An append-only JSONL file of records.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

/// What was found in an existing record file.
#[derive(Debug, Default)]
pub struct Existing {
    pub ids: HashSet<String>,
    pub lines: usize,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: usize,
}

impl JsonlWriter {
    /// Opens (creating if needed) `path` for appending, after checking what it holds.
    pub fn open(path: &Path) -> Result<(JsonlWriter, Existing)> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("cannot open for appending", path, e))?;
        // Two processes appending to one record file would interleave their records.
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe {
            libc::flock(
                std::os::unix::io::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Locked(format!(
                "{} is being written by another flywheel process; wait for it to finish or stop it, then rerun",
                path.display()
            )));
        }
        // Only regular files hold records to resume from (a device or pipe is only written).
        let existing = if path.metadata().is_ok_and(|m| m.is_file()) {
            repair_and_scan(path)?
        } else {
            Existing::default()
        };
        Ok((
            JsonlWriter {
                path: path.to_path_buf(),
                file,
            },
            existing,
        ))
    }

    /// Appends one record as one line, written in a single call and flushed.
    pub fn append<T: serde::Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| Error::Internal(format!("cannot serialize record: {e}")))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io("cannot write (is the disk full?) to", &self.path, e))
    }

    /// Appends one line exactly as given (a record copied from another file, kept byte for
    /// byte), with its newline, in a single call.
    pub fn append_raw(&mut self, raw: &[u8]) -> Result<()> {
        let mut line = raw.to_vec();
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io("cannot write (is the disk full?) to", &self.path, e))
    }

    /// Forces written records to disk (called once per step).
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("cannot sync (is the disk full?)", &self.path, e))
    }
}

/// Reads every line; cuts a torn last line; fails on a corrupt line elsewhere.
fn repair_and_scan(path: &Path) -> Result<Existing> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut ex = Existing::default();
    let mut good_end = 0usize;
    let mut pos = 0usize;
    let mut lineno = 0;
    while pos < bytes.len() {
        lineno += 1;
        let (line, next, complete) = match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[pos..pos + i], pos + i + 1, true),
            None => (&bytes[pos..], bytes.len(), false),
        };
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            pos = next;
            good_end = next;
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if complete => {
                let id = v.get("id").and_then(|x| x.as_str()).ok_or_else(|| {
                    Error::Model(format!(
                        "{}:{lineno}: record has no string `id`; fix or remove that line",
                        path.display()
                    ))
                })?;
                ex.ids.insert(id.to_string());
                ex.lines += 1;
                good_end = next;
            }
            _ if !complete => {
                ex.torn_bytes = bytes.len() - pos;
                break;
            }
            Err(e) => {
                return Err(Error::Model(format!(
                    "{}:{lineno}: corrupt record line ({e}); fix or remove that line, then rerun",
                    path.display()
                )))
            }
            Ok(_) => unreachable!("complete handled above"),
        }
        pos = next;
    }
    if ex.torn_bytes > 0 {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("cannot open", path, e))?;
        f.set_len(good_end as u64)
            .map_err(|e| Error::io("cannot truncate torn last line of", path, e))?;
        tracing::warn!(
            "{}: cut a torn last line ({} bytes) left by an interrupted write",
            path.display(),
            ex.torn_bytes
        );
    }
    Ok(ex)
}

/// What [`move_aside`] moved.
#[derive(Debug, Default)]
pub struct MovedAside {
    /// Records moved, by reason.
    pub by_reason: std::collections::BTreeMap<String, usize>,
    /// Where they went (`None` when nothing moved).
    pub to: Option<PathBuf>,
}

impl MovedAside {
    pub fn count(&self) -> usize {
        self.by_reason.values().sum()
    }
    /// `3 (not in the plan), 1 (stale)`.
    pub fn describe(&self) -> String {
        self.by_reason
            .iter()
            .map(|(r, n)| format!("{n} ({r})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Moves the records of a JSONL file that no longer belong in it (`why` gives the reason,
/// `None` keeps the record) into a sibling `<stem>.<time>.<label>.jsonl`, and rewrites the
/// file with the rest, atomically. Lines that are not JSON records (a torn last line, a
/// corrupt line) are left in place for the reader to judge. Nothing is deleted: the
/// moved records stay on disk, out of the pipeline's way.
pub fn move_aside(
    path: &Path,
    label: &str,
    mut why: impl FnMut(&serde_json::Value) -> Option<String>,
) -> Result<MovedAside> {
    let mut out = MovedAside::default();
    if !path.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(out);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut keep = Vec::with_capacity(bytes.len());
    let mut moved = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let reason = if line.ends_with(b"\n") {
            serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .filter(|v| v.is_object())
                .and_then(|v| why(&v))
        } else {
            None
        };
        match reason {
            Some(r) => {
                *out.by_reason.entry(r).or_default() += 1;
                moved.extend_from_slice(line);
            }
            None => keep.extend_from_slice(line),
        }
    }
    if moved.is_empty() {
        return Ok(out);
    }
    let aside = RunDir::aside(path, label);
    // The moved records first: a crash between the two writes leaves them in both files,
    // never in neither.
    write_atomic(&aside, &moved)?;
    write_atomic(path, &keep)?;
    out.to = Some(aside);
    Ok(out)
}

/// Reads all records of a JSONL file (ignoring a torn last line).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut out = Vec::new();
    let n = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == n && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(Error::Model(format!(
                    "{}:{}: bad record: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// Writes records as a JSONL file, atomically (all or nothing).
pub fn write_jsonl<T: serde::Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut body = Vec::new();
    for r in records {
        serde_json::to_writer(&mut body, r)
            .map_err(|e| Error::Internal(format!("cannot serialize record: {e}")))?;
        body.push(b'\n');
    }
    write_atomic(path, &body)
}

/// `write_atomic`'s temporary sibling: the whole file name (report.json and report.html must
/// not share one) plus the pid (nor two processes writing the same file).
fn atomic_temp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes a file atomically: a temporary sibling, synced, renamed over the target, and the
/// directory synced so the rename survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut w = AtomicWriter::create(path)?;
    w.write_all(bytes)
        .map_err(|e| Error::io("cannot write", &w.tmp, e))?;
    w.commit()
}

/// A file written in pieces and put in place all at once: [`write_atomic`] for output
/// streamed record by record. Dropped without [`AtomicWriter::commit`] (an error, a
/// crash), it leaves the target as it was and removes its temporary sibling.
pub struct AtomicWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<File>>,
}

impl AtomicWriter {
    pub fn create(path: &Path) -> Result<AtomicWriter> {
        let tmp = atomic_temp(path);
        let f = File::create(&tmp).map_err(|e| Error::io("cannot write", &tmp, e))?;
        Ok(AtomicWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
        })
    }

    /// Syncs the data, renames it over the target and syncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.clone();
        let Some(out) = self.out.take() else {
            return Err(Error::Internal("atomic writer committed twice".into()));
        };
        // On disk before the rename, or a crash could leave the new name on empty content.
        let put = || -> std::result::Result<(), (&'static str, std::io::Error)> {
            let file = out
                .into_inner()
                .map_err(|e| ("cannot write", e.into_error()))?;
            file.sync_all().map_err(|e| ("cannot write", e))?;
            std::fs::rename(&tmp, &self.path).map_err(|e| ("cannot replace", e))
        };
        if let Err((what, e)) = put() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(what, &self.path, e));
        }
        sync_dir(&self.path)
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.out {
            Some(w) => w.write(buf),
            None => Err(std::io::Error::other("atomic writer already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Syncs `path`'s directory, so a rename into it survives a power cut.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some filesystems cannot sync a directory at all; the data itself is synced.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        r => r.map_err(|e| Error::io("cannot sync directory", dir, e)),
    }
}

#[cfg(test)]
mod tests;
