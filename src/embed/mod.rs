//! Sentence embeddings with a BERT-family encoder (all-MiniLM-L6-v2 by default): mean
//! pooling over the last hidden states, then L2 normalization, as sentence-transformers does.
//!
//! Why our own encoder instead of candle-transformers' `BertModel`: that one runs a padded
//! `[batch, max_len]` block, so a batch of mixed lengths spends most of its time on padding.
//! Here texts are sorted by length, grouped by a token budget (as text-embeddings-inference
//! does) and *packed*: all tokens of a batch form one `[tokens, hidden]` matrix for every
//! linear layer, and attention runs per sequence over its own tokens, so no padding is
//! computed at all. On non-CPU devices attention runs on a padded block instead.

mod bert;
pub(crate) mod bert_cpu;

use crate::error::{Error, Result};
use crate::models::source::{self, FetchPolicy};
use candle_core::Device;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub use bert::{BertConfig, BertEncoder};

/// The window sentence-transformers uses for all-MiniLM-L6-v2 (`max_seq_length`).
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// Tokens per packed forward: bounds memory (activations are `tokens × 1536` floats); on the
/// 2-core bench machine 2048 was fastest (8192: −7%, from page faults on fresh buffers).
pub const DEFAULT_TOKEN_BUDGET: usize = 2048;

/// One text's embedding and what happened on the way.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Unit-length vector (or all zeros where the text had no tokens to pool).
    pub vector: Vec<f32>,
    /// Tokens used, special tokens included.
    pub tokens: usize,
    /// Tokens dropped past the window (0 when the text fitted).
    pub truncated_tokens: usize,
}

/// A loaded sentence embedder: tokenizer + encoder on a device.
pub struct Embedder {
    tokenizer: tokenizers::Tokenizer,
    encoder: BertEncoder,
    max_tokens: usize,
    token_budget: usize,
    /// Model id and sha256 of the weights, for provenance.
    pub id: String,
    pub weights_sha256: String,
}

impl Embedder {
    /// Loads a registry id (fetched like any model) or a local directory holding
    /// `model.safetensors`, `tokenizer.json` and `config.json`.
    pub fn load(id_or_dir: &str, policy: FetchPolicy, device: &Device) -> Result<Embedder> {
        let dir = Path::new(id_or_dir);
        let (id, weights, tokenizer, config, sha) = if dir.is_dir() {
            let w = dir.join("model.safetensors");
            let sha = crate::models::checksum::sha256_file(&w)?;
            (
                dir.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| id_or_dir.to_string()),
                w,
                dir.join("tokenizer.json"),
                dir.join("config.json"),
                sha,
            )
        } else {
            let m = source::resolve(id_or_dir, policy)?;
            let find = |name: &str| -> Result<PathBuf> {
                m.files
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| f.path.clone())
                    .ok_or_else(|| {
                        Error::Model(format!(
                            "model {:?} has no {name}; an embedder needs model.safetensors, tokenizer.json and config.json",
                            m.id
                        ))
                    })
            };
            let w = find("model.safetensors")?;
            let sha = m
                .files
                .iter()
                .find(|f| f.name == "model.safetensors")
                .map(|f| f.sha256.clone())
                .unwrap_or_default();
            (
                m.id.clone(),
                w,
                find("tokenizer.json")?,
                find("config.json")?,
                sha,
            )
        };
        for p in [&weights, &tokenizer, &config] {
            if !p.is_file() {
                return Err(Error::Model(format!(
                    "embedder file {} is missing",
                    p.display()
                )));
            }
        }
        let cfg = BertConfig::load(&config)?;
        let max_tokens = DEFAULT_MAX_TOKENS.min(cfg.max_position_embeddings);
        let mut tok = tokenizers::Tokenizer::from_file(&tokenizer).map_err(|e| {
            Error::Model(format!(
                "cannot read tokenizer {}: {e}",
                tokenizer.display()
            ))
        })?;
        // The shipped tokenizer.json pads every text to 128 and truncates at 128: pack
        // without padding, and truncate at the model's window ourselves (so we can say so).
        tok.with_padding(None);
        tok.with_truncation(None)
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        let encoder = BertEncoder::load(&weights, cfg, device)?;
        Ok(Embedder {
            tokenizer: tok,
            encoder,
            max_tokens,
            token_budget: DEFAULT_TOKEN_BUDGET,
            id,
            weights_sha256: sha,
        })
    }

    /// Vector width (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// The token window; longer texts are truncated to it.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Overrides the tokens per forward (bench and memory tuning).
    pub fn set_token_budget(&mut self, budget: usize) {
        self.token_budget = budget.max(self.max_tokens);
    }

    /// Token ids with `[CLS]`/`[SEP]`, truncated to the window (keeping `[SEP]` last).
    /// Returns the ids and how many tokens were dropped.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Model(format!("tokenizer failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        let n = ids.len();
        if n > self.max_tokens {
            let sep = ids[n - 1];
            ids.truncate(self.max_tokens - 1);
            ids.push(sep);
        }
        Ok((ids, n.saturating_sub(self.max_tokens)))
    }

    /// Embeds texts; the result is in input order. `progress` is called with the number of
    /// texts finished after each packed forward.
    pub fn embed(&self, texts: &[&str], mut progress: impl FnMut(usize)) -> Result<Vec<Embedded>> {
        let toks: Vec<(Vec<u32>, usize)> = texts
            .par_iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_>>()?;
        // Longest first, so each packed batch holds similar lengths (matters for the padded
        // GPU attention) and the budget is filled evenly.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(toks[i].0.len()));
        let mut out: Vec<Option<Embedded>> = vec![None; texts.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut used = 0;
            while end < order.len()
                && (end == start || used + toks[order[end]].0.len() <= self.token_budget)
            {
                used += toks[order[end]].0.len();
                end += 1;
            }
            let batch: Vec<&[u32]> = order[start..end]
                .iter()
                .map(|&i| toks[i].0.as_slice())
                .collect();
            let vecs = self.encoder.embed_packed(&batch)?;
            for (k, v) in vecs.into_iter().enumerate() {
                let i = order[start + k];
                out[i] = Some(Embedded {
                    vector: v,
                    tokens: toks[i].0.len(),
                    truncated_tokens: toks[i].1,
                });
            }
            progress(end - start);
            start = end;
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl Embedder {
    /// Embeds texts into one flat `[texts × dim]` buffer of unit vectors, with a progress
    /// bar labelled `stage` when `progress` is on.
    pub fn embed_flat(&self, texts: &[String], progress: bool, stage: &str) -> Result<Vec<f32>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let pb = crate::progress::bar(refs.len(), progress, stage);
        let out = self.embed(&refs, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        Ok(out.into_iter().flat_map(|e| e.vector).collect())
    }
}

/// L2-normalizes in place; a zero vector stays zero. Returns false when a value is not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    if v.iter().any(|x| !x.is_finite()) {
        return false;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    true
}

/// What `flywheel embed` wrote.
#[derive(Debug, Clone, Default)]
pub struct EmbedFileSummary {
    pub rows: usize,
    pub dim: usize,
    pub truncated: usize,
    pub max_tokens: usize,
    pub seconds: f64,
    pub ids_path: PathBuf,
    /// (line, why) for lines that gave no row.
    pub skipped: Vec<(usize, String)>,
}

/// Embeds the texts of a JSONL file into `.npy` or `.safetensors`, ids alongside.
pub fn embed_file(
    input: &Path,
    output: &Path,
    field: &str,
    model: &str,
    device: &Device,
    fetch: FetchPolicy,
    progress: bool,
) -> Result<EmbedFileSummary> {
    let ext = output.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "npy" | "safetensors") {
        return Err(Error::Spec(format!(
            "{}: the output must end in .npy or .safetensors",
            output.display()
        )));
    }
    let mut texts = Vec::new();
    let mut ids = Vec::new();
    let mut s = EmbedFileSummary::default();
    for l in crate::record::lines::read(input, false)? {
        let (line, v) = match l {
            crate::record::lines::Line::Record { line, value } => (line, value),
            crate::record::lines::Line::Bad(b) => {
                s.skipped.push((b.line, b.reason));
                continue;
            }
        };
        match crate::record::View::new(&v).text(field) {
            Some(t) => {
                ids.push(match v.get("id") {
                    Some(serde_json::Value::String(x)) => x.clone(),
                    Some(serde_json::Value::Number(x)) => x.to_string(),
                    _ => format!("line:{line}"),
                });
                texts.push(t);
            }
            None => s.skipped.push((line, format!("no {field:?} text"))),
        }
    }
    let emb = Embedder::load(model, fetch, device)?;
    let t0 = std::time::Instant::now();
    let pb = crate::progress::bar(texts.len(), progress, "embed");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = emb.embed(&refs, |k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    s.seconds = t0.elapsed().as_secs_f64();
    s.rows = out.len();
    s.dim = emb.dim();
    s.max_tokens = emb.max_tokens();
    s.truncated = out.iter().filter(|e| e.truncated_tokens > 0).count();
    let flat: Vec<f32> = out.iter().flat_map(|e| e.vector.iter().copied()).collect();
    if let Some(d) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| Error::io("cannot create", d, e))?;
    }
    let bytes = if ext == "npy" {
        npy_bytes(&flat, s.rows, s.dim)
    } else {
        let t = candle_core::Tensor::from_vec(flat, (s.rows, s.dim), &Device::Cpu)?;
        let mut m = std::collections::HashMap::new();
        m.insert("embeddings".to_string(), t);
        let tmp = output.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&m, &tmp)?;
        std::fs::read(&tmp).map_err(|e| Error::io("cannot read", &tmp, e))?
    };
    crate::store::write_atomic(output, &bytes)?;
    let _ = std::fs::remove_file(output.with_extension("safetensors.tmp"));
    let mut ids_path = output.as_os_str().to_owned();
    ids_path.push(".ids");
    s.ids_path = PathBuf::from(ids_path);
    crate::store::write_atomic(&s.ids_path, (ids.join("\n") + "\n").as_bytes())?;
    Ok(s)
}

/// A NumPy `.npy` (format 1.0) holding a little-endian float32 `rows × dim` array.
pub fn npy_bytes(data: &[f32], rows: usize, dim: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests;
