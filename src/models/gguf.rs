//! Opening GGUF files with checks that turn a bad file into a clear message (wrong magic,
//! truncated tensor data) before any tensor is read.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::{Path, PathBuf};

/// A GGUF file's header, metadata and tensor index, checked against the file size.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let mut f =
            std::fs::File::open(path).map_err(|e| Error::io("cannot open model file", path, e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io("cannot stat", path, e))?
            .len();
        let mut magic = [0u8; 4];
        use std::io::Read;
        if len < 4 || f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(Error::Model(format!(
                "{} is not a GGUF file (its first bytes are {:?}, expected \"GGUF\"); give a .gguf model file",
                path.display(),
                String::from_utf8_lossy(&magic[..(len.min(4) as usize)])
            )));
        }
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io("cannot read", path, e))?;
        let content = Content::read(&mut f).map_err(|e| {
            Error::Model(format!(
                "{} has a corrupt GGUF header: {e}; re-fetch the file",
                path.display()
            ))
        })?;
        // Every tensor must lie inside the file: a truncated download otherwise fails late
        // with an opaque read error.
        let mut worst: Option<(&str, u64)> = None;
        for (name, info) in &content.tensor_infos {
            let bytes = (info.shape.elem_count() / info.ggml_dtype.block_size()
                * info.ggml_dtype.type_size()) as u64;
            let end = content.tensor_data_offset + info.offset + bytes;
            if end > len && worst.is_none_or(|(_, e)| end > e) {
                worst = Some((name, end));
            }
        }
        if let Some((name, end)) = worst {
            return Err(Error::Model(format!(
                "{} is truncated: tensor {name} ends at byte {end} but the file has {len} bytes; the download is incomplete, fetch it again",
                path.display()
            )));
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|v| v.to_string().ok())
            .map(|s| s.as_str())
    }

    /// A required integer field, with an error naming it.
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| {
            Error::Model(format!(
                "{}: GGUF metadata has no `{key}`",
                self.path.display()
            ))
        })?;
        value_u64(v).map(|x| x as usize).ok_or_else(|| {
            Error::Model(format!(
                "{}: GGUF `{key}` is not an integer",
                self.path.display()
            ))
        })
    }

    pub fn f32(&self, key: &str) -> Option<f32> {
        match self.get(key)? {
            Value::F32(x) => Some(*x),
            Value::F64(x) => Some(*x as f32),
            v => value_u64(v).map(|x| x as f32),
        }
    }

    pub fn arch(&self) -> Result<String> {
        self.str("general.architecture")
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: GGUF metadata has no general.architecture",
                    self.path.display()
                ))
            })
    }

    /// The reader positioned at nothing in particular, for tensor reads.
    pub fn reader(&self) -> Result<std::io::BufReader<std::fs::File>> {
        let f = std::fs::File::open(&self.path)
            .map_err(|e| Error::io("cannot open model file", &self.path, e))?;
        Ok(std::io::BufReader::new(f))
    }
}

pub(crate) fn value_u64(v: &Value) -> Option<u64> {
    Some(match v {
        Value::U8(x) => *x as u64,
        Value::I8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::I16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::I32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I64(x) => *x as u64,
        Value::Bool(b) => *b as u64,
        _ => return None,
    })
}
