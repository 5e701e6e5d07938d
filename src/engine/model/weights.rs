//! The decoder's weights: read from GGUF or safetensors, dequantized, and stored as the
//! precision says (Q8_0 or dense bf16/f16/f32). q/k/v and gate/up are fused into one
//! matmul each, whether the file stores them fused or apart.

use super::config::{Arch, Config};
use super::Precision;
use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use crate::models::hf::HfFolder;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::collections::BTreeSet;

/// A weight matrix `[out, in]`, as the precision says.
pub(super) enum Linear {
    /// Q8_0, with the input width zero-padded to a multiple of 256 on the CPU: candle's
    /// AVX-512 VNNI Q8_0 kernel only takes `k % 256 == 0`, and is ~10× faster than the
    /// generic path at SmolLM2's k = 576 even with the padding's extra third of work.
    /// Zero columns add exact zeros, and the kernel choice does not depend on the row
    /// count, so results stay batch-invariant.
    Quant {
        w: QMatMul,
        k: usize,
        k_padded: usize,
    },
    /// bf16/f16/f32 on the device; inputs are cast to its dtype, outputs back to f32.
    Dense(Tensor),
}

impl Linear {
    fn new(w: &Tensor, precision: Precision, device: &Device) -> Result<Linear> {
        if let Some(dt) = precision.dense_dtype() {
            return Ok(Linear::Dense(w.to_dtype(dt)?.to_device(device)?));
        }
        let (_, k) = w.dims2()?;
        let k_padded = if device.is_cpu() {
            k.div_ceil(256) * 256
        } else {
            k
        };
        let w = if k_padded > k {
            w.pad_with_zeros(1, 0, k_padded - k)?
        } else {
            w.clone()
        };
        Ok(Linear::Quant {
            w: QMatMul::from_qtensor(QTensor::quantize_onto(&w, GgmlDType::Q8_0, device)?)?,
            k,
            k_padded,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Quant { w, k, k_padded } if k_padded > k => {
                Ok(w.forward(&x.pad_with_zeros(1, 0, k_padded - k)?)?)
            }
            Linear::Quant { w, .. } => Ok(w.forward(x)?),
            Linear::Dense(w) => Ok(x
                .to_dtype(w.dtype())?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32)?),
        }
    }
}

/// The token embedding table, looked up row by row (never padded).
pub(super) enum Embedding {
    Quant(QMatMul),
    Dense(Tensor),
}

impl Embedding {
    pub(super) fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Embedding::Quant(q) => Ok(q.embedding(ids)?),
            Embedding::Dense(t) => Ok(t.index_select(ids, 0)?.to_dtype(DType::F32)?),
        }
    }
}

/// One decoder block's weights.
pub(super) struct Layer {
    pub attn_norm: Tensor,
    pub wqkv: Linear,
    /// The q, k and v biases side by side (Qwen2), f32 on the device.
    pub bqkv: Option<Tensor>,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    pub w_gate_up: Linear,
    pub w_down: Linear,
    /// Gemma 3 only.
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub post_attn_norm: Option<Tensor>,
    pub post_ffn_norm: Option<Tensor>,
    /// Attends within the sliding window (see [`super::Arch::is_local_layer`]).
    pub local: bool,
}

/// Every weight of a decoder.
pub(super) struct Weights {
    pub embed: Embedding,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub lm_head: Linear,
    /// Rows of the embedding table.
    pub vocab: usize,
    /// The file's tensor types, e.g. {"F32", "Q4_1"} (for provenance).
    pub formats: BTreeSet<String>,
    /// Per-frequency rope divisors (`rope_freqs.weight`, `head_dim / 2` of them): how
    /// llama.cpp stores Llama 3.1+'s `rope_scaling = llama3` in a GGUF.
    pub rope_freqs: Option<Vec<f32>>,
}

/// Where tensors come from, asked for by their GGUF names (`blk.0.attn_q.weight`): a
/// GGUF file, or a safetensors checkpoint whose Hugging Face names are mapped onto them.
pub(super) trait TensorSource {
    fn has(&self, name: &str) -> bool;
    /// The tensor as f32 on the CPU, and its stored type (for provenance).
    fn load(&mut self, name: &str) -> Result<(Tensor, String)>;
}

/// A GGUF file's tensors, dequantized.
pub(super) struct GgufTensors<'a> {
    g: &'a GgufFile,
    file: std::io::BufReader<std::fs::File>,
}

impl<'a> GgufTensors<'a> {
    pub(super) fn new(g: &'a GgufFile) -> Result<Self> {
        Ok(GgufTensors {
            g,
            file: g.reader()?,
        })
    }
}

impl TensorSource for GgufTensors<'_> {
    fn has(&self, name: &str) -> bool {
        self.g.content.tensor_infos.contains_key(name)
    }

    fn load(&mut self, name: &str) -> Result<(Tensor, String)> {
        let q = self
            .g
            .content
            .tensor(&mut self.file, name, &Device::Cpu)
            .map_err(|e| {
                Error::Model(format!(
                    "{}: cannot read tensor {name}: {e}",
                    self.g.path.display()
                ))
            })?;
        Ok((q.dequantize(&Device::Cpu)?, format!("{:?}", q.dtype())))
    }
}

/// A Hugging Face checkpoint's safetensors shards, memory-mapped.
pub(super) struct SafeTensors {
    st: candle_core::safetensors::MmapedSafetensors,
    dir: std::path::PathBuf,
    /// `tie_word_embeddings`: the LM head is the embedding table even when a file also
    /// stores `lm_head.weight` (as transformers does).
    tied: bool,
}

impl SafeTensors {
    pub(super) fn open(f: &HfFolder) -> Result<Self> {
        // SAFETY: the shards are mapped read-only and read once at load, while the model
        // is built; flywheel never writes them. Another process truncating a shard during
        // those seconds is the one risk of any mmap reader (transformers' included).
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&f.shards) }.map_err(
            |e| {
                Error::Model(format!(
                    "{}: cannot read the safetensors shards: {e}",
                    f.dir.display()
                ))
            },
        )?;
        let tied = f
            .get("tie_word_embeddings")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Ok(SafeTensors {
            st,
            dir: f.dir.clone(),
            tied,
        })
    }

    /// The Hugging Face names a GGUF tensor name may be stored under, in order.
    fn hf_names(&self, gguf: &str) -> Vec<String> {
        let top = match gguf {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" if self.tied => return vec![],
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(t) = top {
            return vec![t.to_string()];
        }
        let Some((i, rest)) = gguf.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
            return vec![];
        };
        let (stem, kind) = rest.rsplit_once('.').unwrap_or((rest, "weight"));
        let hf: &[&str] = match stem {
            "attn_norm" => &["input_layernorm"],
            "attn_q" => &["self_attn.q_proj"],
            "attn_k" => &["self_attn.k_proj"],
            "attn_v" => &["self_attn.v_proj"],
            "attn_qkv" => &["self_attn.qkv_proj"],
            "attn_output" => &["self_attn.o_proj"],
            "attn_q_norm" => &["self_attn.q_norm"],
            "attn_k_norm" => &["self_attn.k_norm"],
            "ffn_norm" => &["post_attention_layernorm"],
            "ffn_gate" => &["mlp.gate_proj"],
            // Phi-3 stores gate and up fused, as GGUF's `ffn_up` with both halves.
            "ffn_up" => &["mlp.up_proj", "mlp.gate_up_proj"],
            "ffn_down" => &["mlp.down_proj"],
            _ => &[],
        };
        hf.iter()
            .map(|h| format!("model.layers.{i}.{h}.{kind}"))
            .collect()
    }

    fn find(&self, gguf: &str) -> Option<String> {
        self.hf_names(gguf)
            .into_iter()
            .find(|n| self.st.get(n).is_ok())
    }
}

impl TensorSource for SafeTensors {
    fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn load(&mut self, name: &str) -> Result<(Tensor, String)> {
        let Some(hf) = self.find(name) else {
            let tried = self.hf_names(name);
            return Err(Error::Model(format!(
                "{}: no tensor {} in the safetensors shards",
                self.dir.display(),
                if tried.is_empty() {
                    name.to_string()
                } else {
                    tried.join(" or ")
                }
            )));
        };
        let t = self.st.load(&hf, &Device::Cpu).map_err(|e| {
            Error::Model(format!(
                "{}: cannot read tensor {hf}: {e}",
                self.dir.display()
            ))
        })?;
        let format = format!("{:?}", t.dtype()).to_uppercase();
        Ok((t.to_dtype(DType::F32)?, format))
    }
}

/// Reads tensors from a source and places them on the device as the precision says.
struct Reader<'a> {
    src: &'a mut dyn TensorSource,
    device: &'a Device,
    precision: Precision,
    formats: BTreeSet<String>,
}

impl Reader<'_> {
    fn has(&self, name: &str) -> bool {
        self.src.has(name)
    }

    /// A matmul weight in f32 on the CPU, its stored type noted for provenance.
    fn matrix(&mut self, name: &str) -> Result<Tensor> {
        let (t, format) = self.src.load(name)?;
        self.formats.insert(format);
        Ok(t)
    }

    /// A norm vector on the device, in f32.
    fn vector(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.src.load(name)?.0.to_device(self.device)?)
    }

    fn optional_vector(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.has(name) {
            Ok(Some(self.vector(name)?))
        } else {
            Ok(None)
        }
    }

    /// Concatenates row blocks (fusing q/k/v and gate/up into one matmul each) and
    /// re-quantizes to the matmul type on the target device.
    fn fuse(&self, parts: &[Tensor]) -> Result<Linear> {
        Linear::new(&Tensor::cat(parts, 0)?, self.precision, self.device)
    }

    /// q, k and v stacked by rows: stored fused (`attn_qkv`, Phi-3) or apart.
    fn qkv(&mut self, cfg: &Config, i: usize) -> Result<Tensor> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let w = if self.has(&n("attn_qkv")) {
            self.matrix(&n("attn_qkv"))?
        } else {
            let q = self.matrix(&n("attn_q"))?;
            let k = self.matrix(&n("attn_k"))?;
            let v = self.matrix(&n("attn_v"))?;
            Tensor::cat(&[q, k, v], 0)?
        };
        let rows = (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim;
        expect_shape(&w, (rows, cfg.hidden), &format!("blk.{i} q/k/v"))?;
        Ok(w)
    }

    /// Gate and up stacked by rows: stored apart, or fused as `ffn_up` (Phi-3).
    fn gate_up(&mut self, cfg: &Config, i: usize) -> Result<Tensor> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let w = if self.has(&n("ffn_gate")) {
            let gate = self.matrix(&n("ffn_gate"))?;
            let up = self.matrix(&n("ffn_up"))?;
            Tensor::cat(&[gate, up], 0)?
        } else {
            self.matrix(&n("ffn_up"))?
        };
        expect_shape(&w, (2 * cfg.ffn, cfg.hidden), &format!("blk.{i} gate/up"))?;
        Ok(w)
    }

    fn layer(&mut self, cfg: &Config, i: usize) -> Result<Layer> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let qkv = self.qkv(cfg, i)?;
        let wo = self.matrix(&n("attn_output"))?;
        let gate_up = self.gate_up(cfg, i)?;
        let down = self.matrix(&n("ffn_down"))?;
        // Qwen2's biases are required; others' are read when the file has them.
        let b = |s: &str| format!("blk.{i}.attn_{s}.bias");
        let bqkv = if cfg.arch.has_qkv_bias() || self.has(&b("q")) {
            let parts = [
                self.vector(&b("q"))?,
                self.vector(&b("k"))?,
                self.vector(&b("v"))?,
            ];
            Some(Tensor::cat(&parts, 0)?)
        } else {
            None
        };
        let (q_norm, k_norm) = match cfg.arch {
            // Required: a Qwen3 without them would still run, and write other text.
            Arch::Qwen3 => (
                Some(self.vector(&n("attn_q_norm"))?),
                Some(self.vector(&n("attn_k_norm"))?),
            ),
            a if a.has_qk_norm() => (
                self.optional_vector(&n("attn_q_norm"))?,
                self.optional_vector(&n("attn_k_norm"))?,
            ),
            _ => (None, None),
        };
        let extra = cfg.arch.has_extra_norms();
        let mut norm = |s: &str| -> Result<Option<Tensor>> {
            if extra {
                self.optional_vector(&n(s))
            } else {
                Ok(None)
            }
        };
        let post_attn_norm = norm("post_attention_norm")?;
        let post_ffn_norm = norm("post_ffw_norm")?;
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"))?,
            wqkv: self.fuse(&[qkv])?,
            bqkv,
            wo: self.fuse(&[wo])?,
            ffn_norm: self.vector(&n("ffn_norm"))?,
            w_gate_up: self.fuse(&[gate_up])?,
            w_down: self.fuse(&[down])?,
            q_norm,
            k_norm,
            post_attn_norm,
            post_ffn_norm,
            local: cfg.arch.is_local_layer(i),
        })
    }
}

/// A clear error for a tensor whose shape the config contradicts (a wrong config.json,
/// or a fused tensor of another layout), before candle fails somewhere deeper.
fn expect_shape(t: &Tensor, want: (usize, usize), what: &str) -> Result<()> {
    let got = t.dims2()?;
    if got != want {
        return Err(Error::Model(format!(
            "{what}: the weights are {got:?} but the config implies {want:?}"
        )));
    }
    Ok(())
}

impl Weights {
    /// Loads every tensor the decoder needs. Every matmul weight is dequantized and stored
    /// as `precision` says: even a Q4 file runs as Q8_0 (Q4_1 and Q5_0 would fall to
    /// candle's scalar CPU path) or as a dense bf16/f16/f32 matrix.
    pub(super) fn load(
        src: &mut dyn TensorSource,
        cfg: &Config,
        device: &Device,
        precision: Precision,
    ) -> Result<Weights> {
        let mut r = Reader {
            src,
            device,
            precision,
            formats: BTreeSet::new(),
        };
        let embd = r.matrix("token_embd.weight")?;
        let (vocab, _) = embd.dims2()?;
        let embed = match precision.dense_dtype() {
            Some(dt) => Embedding::Dense(embd.to_dtype(dt)?.to_device(device)?),
            None => Embedding::Quant(QMatMul::from_qtensor(QTensor::quantize_onto(
                &embd,
                GgmlDType::Q8_0,
                device,
            )?)?),
        };
        let lm_head = match (&embed, r.has("output.weight")) {
            (_, true) => {
                let o = r.matrix("output.weight")?;
                r.fuse(&[o])?
            }
            // Tied dense weights: the LM head shares the table's memory.
            (Embedding::Dense(t), false) => Linear::Dense(t.clone()),
            // Tied Q8_0: a padded copy (the lookup table is never padded).
            (Embedding::Quant(_), false) => r.fuse(&[embd])?,
        };
        let norm = r.vector("output_norm.weight")?;
        let rope_freqs = match r.optional_vector("rope_freqs.weight")? {
            Some(t) => {
                let f: Vec<f32> = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec1()?;
                if f.len() != cfg.head_dim / 2 || f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                    return Err(Error::Model(format!(
                        "rope_freqs.weight has {} entries (expected head_dim / 2 = {}, each positive)",
                        f.len(),
                        cfg.head_dim / 2
                    )));
                }
                Some(f)
            }
            None => None,
        };
        let layers = (0..cfg.n_layers)
            .map(|i| r.layer(cfg, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights {
            embed,
            layers,
            norm,
            lm_head,
            vocab,
            formats: r.formats,
            rope_freqs,
        })
    }
}
