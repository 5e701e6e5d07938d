//! sha256 of files and bytes: every model file is checked against its manifest, and the
//! hashes go into each record's provenance.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Hex sha256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hashes this process already computed, by (path, length, modification time): one run
/// resolves its teacher and judge in several stages, and hashing a 15 GB checkpoint takes
/// a minute each time. Any write to the file changes its length or mtime, so a changed
/// file is hashed again.
type HashKey = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
static HASHED: std::sync::Mutex<Option<std::collections::HashMap<HashKey, String>>> =
    std::sync::Mutex::new(None);

/// Hex sha256 of a file, streamed (computed once per process per unchanged file).
pub fn sha256_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot open", path, e))?;
    let key: HashKey = (
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        meta.len(),
        meta.modified().ok(),
    );
    let cached = HASHED
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned()));
    if let Some(h) = cached {
        return Ok(h);
    }
    let h = sha256_stream(path)?;
    if let Ok(mut m) = HASHED.lock() {
        m.get_or_insert_with(Default::default)
            .insert(key, h.clone());
    }
    Ok(h)
}

/// sha256 of a file, read in 1 MiB pieces and never cached: for run files, which change in
/// place (a cache keyed by size and mtime could miss a same-size edit).
pub fn sha256_stream(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rewritten file is hashed again even within one process.
    #[test]
    fn a_changed_file_is_hashed_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let a = sha256_file(&p).unwrap();
        assert_eq!(a, sha256_bytes(b"one"));
        assert_eq!(sha256_file(&p).unwrap(), a);
        std::fs::write(&p, "two!").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_bytes(b"two!"));
    }
}
