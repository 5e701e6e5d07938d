//! Hugging Face model folders, as `save_pretrained` (TRL, Axolotl, the hub cache) writes
//! them: `config.json`, one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json` and
//! `generation_config.json`. Only reading and checking happens here; the engine maps the
//! tensors onto its decoder.

use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files of a model folder that make its behaviour, besides the weight shards: each
/// one present is hashed into provenance.
pub const META_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
];

/// A checked Hugging Face model folder.
#[derive(Debug, Clone)]
pub struct HfFolder {
    pub dir: PathBuf,
    /// `config.json`, parsed.
    pub config: Value,
    /// The weight files, in index order (deduplicated), each known to exist.
    pub shards: Vec<PathBuf>,
}

impl HfFolder {
    /// Whether `path` looks like a model folder (it has a `config.json`).
    pub fn is_folder(path: &Path) -> bool {
        path.is_dir() && path.join("config.json").is_file()
    }

    /// Reads `config.json` and finds the weight files, naming any that is missing.
    pub fn open(dir: &Path) -> Result<HfFolder> {
        if !dir.join("config.json").is_file() {
            let gguf = std::fs::read_dir(dir)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "gguf"));
            return Err(Error::Model(match gguf {
                Some(g) => format!(
                    "{} is a folder without config.json; to use the GGUF file in it, give its path ({})",
                    dir.display(),
                    g.display()
                ),
                None => format!(
                    "{} is a folder without config.json, so not a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)",
                    dir.display()
                ),
            }));
        }
        let config = read_json(&dir.join("config.json"))?;
        if !config.is_object() {
            return Err(Error::Model(format!(
                "{}: expected a JSON object",
                dir.join("config.json").display()
            )));
        }
        let index = dir.join("model.safetensors.index.json");
        let shards = if index.is_file() {
            let v = read_json(&index)?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    Error::Model(format!("{}: no \"weight_map\" object", index.display()))
                })?;
            let mut seen = BTreeSet::new();
            let mut shards = Vec::new();
            for file in map.values() {
                let Some(name) = file.as_str() else {
                    return Err(Error::Model(format!(
                        "{}: weight_map values must be file names, found {file}",
                        index.display()
                    )));
                };
                if name.contains('/') || name.contains("..") {
                    return Err(Error::Model(format!(
                        "{}: shard {name:?} is not a file name in the folder",
                        index.display()
                    )));
                }
                if seen.insert(name.to_string()) {
                    shards.push(dir.join(name));
                }
            }
            shards
        } else {
            let single = dir.join("model.safetensors");
            if single.is_file() {
                vec![single]
            } else {
                let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| Error::io("cannot list", dir, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                    .collect();
                found.sort();
                found
            }
        };
        if shards.is_empty() {
            return Err(Error::Model(format!(
                "{}: no weights (model.safetensors, or shards listed in model.safetensors.index.json); PyTorch .bin checkpoints are not read, re-save with safe_serialization=True",
                dir.display()
            )));
        }
        if let Some(missing) = shards.iter().find(|p| !p.is_file()) {
            return Err(Error::Model(format!(
                "{}: weight shard {} is missing (listed in model.safetensors.index.json); the download or copy is incomplete",
                dir.display(),
                missing
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )));
        }
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            config,
            shards,
        })
    }

    /// Every file that makes the model: its metadata files present, then the shards.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = META_FILES
            .iter()
            .map(|n| self.dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        out.extend(self.shards.iter().cloned());
        out
    }

    /// `config.json`'s `model_type` (e.g. "qwen2").
    pub fn model_type(&self) -> Result<&str> {
        self.config
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: config.json has no \"model_type\"",
                    self.dir.display()
                ))
            })
    }

    /// A `config.json` field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.config.get(key).filter(|v| !v.is_null())
    }

    /// A required integer `config.json` field, with an error naming it.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.get(key)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: config.json has no integer \"{key}\"",
                    self.dir.display()
                ))
            })
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// Token ids that end generation: `eos_token_id` (an integer or a list) from
    /// `generation_config.json` and `config.json`, in that order, without repeats.
    pub fn eos_token_ids(&self) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let gen = self.dir.join("generation_config.json");
        let gen = if gen.is_file() {
            Some(read_json(&gen)?)
        } else {
            None
        };
        for v in [gen.as_ref(), Some(&self.config)]
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("eos_token_id"))
        {
            let list = match v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for x in list.iter().filter_map(Value::as_u64) {
                if !ids.contains(&(x as u32)) {
                    ids.push(x as u32);
                }
            }
        }
        Ok(ids)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Model(format!(
            "{}:{}:{}: invalid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_missing_shard_is_named() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", r#"{"model_type": "qwen2"}"#);
        write(
            d.path(),
            "model.safetensors.index.json",
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
        );
        write(d.path(), "model-00001-of-00002.safetensors", "");
        let e = HfFolder::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("model-00002-of-00002.safetensors is missing"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_without_config_says_what_it_lacks() {
        let d = tempfile::tempdir().unwrap();
        let e = HfFolder::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("without config.json"), "{e}");
        write(d.path(), "m.gguf", "");
        let e = HfFolder::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("m.gguf"), "{e}");
    }

    #[test]
    fn bad_config_json_names_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "config.json",
            "{\n  \"model_type\": \"qwen2\",\n}",
        );
        let e = HfFolder::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.json:3:"), "{e}");
    }

    #[test]
    fn no_weights_says_so() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", r#"{"model_type": "qwen2"}"#);
        write(d.path(), "pytorch_model.bin", "");
        let e = HfFolder::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("no weights"), "{e}");
    }

    #[test]
    fn eos_ids_from_both_configs() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "config.json",
            r#"{"model_type": "llama", "eos_token_id": 2}"#,
        );
        write(
            d.path(),
            "generation_config.json",
            r#"{"eos_token_id": [7, 2]}"#,
        );
        write(d.path(), "model.safetensors", "");
        let f = HfFolder::open(d.path()).unwrap();
        assert_eq!(f.eos_token_ids().unwrap(), vec![7, 2]);
    }
}
