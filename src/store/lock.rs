//! One writer per run directory: an advisory `flock` on `<run>/.flywheel.lock`.
//!
//! Two `flywheel run`s on the same directory would interleave their appends (duplicate ids,
//! a manifest that describes neither). The second process gets [`Error::Locked`] at once,
//! naming the holder's pid. The lock is re-entrant within one process (a `run` holds it
//! while each stage takes it again), and the kernel drops it when the process dies, so a
//! `kill -9` never leaves a stale lock behind.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".flywheel.lock";

/// Locks held by this process: canonical run directory → (open lock file, holders).
static HELD: Mutex<Option<HashMap<PathBuf, (File, usize)>>> = Mutex::new(None);

/// Holds the run directory's lock until dropped.
#[derive(Debug)]
#[must_use = "the lock is released when this guard drops"]
pub struct RunLock {
    key: PathBuf,
}

impl RunLock {
    /// Takes the exclusive lock on `dir` (which must exist), or fails at once naming the
    /// process that holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let key = dir
            .canonicalize()
            .map_err(|e| Error::io("cannot open run directory", dir, e))?;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let map = held.get_or_insert_with(HashMap::new);
        if let Some((_, n)) = map.get_mut(&key) {
            *n += 1;
            return Ok(RunLock { key });
        }
        let path = key.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("cannot open lock file", &path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked(format!(
                    "{} is in use by another flywheel process ({}); wait for it to finish or stop it, then rerun",
                    dir.display(),
                    if holder.is_empty() { "pid unknown".to_string() } else { holder.to_string() }
                )));
            }
            return Err(Error::io("cannot lock", &path, err));
        }
        // Ours now: say who holds it, for the message the next process prints.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "pid {}", std::process::id());
        let _ = file.flush();
        map.insert(key.clone(), (file, 1));
        Ok(RunLock { key })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = held.as_mut() {
            if let Some((_, n)) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    // Closing the file releases the flock.
                    map.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_in_process_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let a = RunLock::acquire(d.path()).unwrap();
        let b = RunLock::acquire(d.path()).unwrap();
        drop(a);
        drop(b);
        // Released: a fresh descriptor can take it (as another process would).
        let f = File::open(d.path().join(LOCK_FILE)).unwrap();
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "lock still held after every guard dropped");
    }

    #[test]
    fn another_holder_is_refused_with_its_pid() {
        let d = tempfile::tempdir().unwrap();
        // Another open file description stands in for another process.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(d.path().join(LOCK_FILE))
            .unwrap();
        std::fs::write(d.path().join(LOCK_FILE), "pid 4242\n").unwrap();
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
        let e = RunLock::acquire(d.path()).unwrap_err();
        assert!(matches!(e, Error::Locked(_)));
        assert!(e.to_string().contains("pid 4242"), "{e}");
    }
}
