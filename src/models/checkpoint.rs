//! A model checkpoint in either format flywheel reads: one GGUF file (quantized or not,
//! tokenizer and chat template in its metadata) or a Hugging Face folder (safetensors
//! weights, `config.json`, `tokenizer.json`).

use super::gguf::GgufFile;
use super::hf::HfFolder;
use crate::error::Result;
use std::path::Path;

pub enum Checkpoint {
    Gguf(GgufFile),
    Hf(HfFolder),
}

impl Checkpoint {
    /// Opens a folder with a `config.json` as a Hugging Face checkpoint, anything else as
    /// a GGUF file; both check what they can before any tensor is read.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        if HfFolder::is_folder(path) {
            Ok(Checkpoint::Hf(HfFolder::open(path)?))
        } else {
            Ok(Checkpoint::Gguf(GgufFile::open(path)?))
        }
    }

    /// The architecture's name as the file spells it (GGUF `general.architecture`,
    /// `config.json` `model_type`).
    pub fn arch_name(&self) -> Result<String> {
        match self {
            Checkpoint::Gguf(g) => g.arch(),
            Checkpoint::Hf(f) => f.model_type().map(str::to_string),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::Gguf(g) => &g.path,
            Checkpoint::Hf(f) => &f.dir,
        }
    }
}
