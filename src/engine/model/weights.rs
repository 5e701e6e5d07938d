//! The decoder's weights: read from GGUF, dequantized, and stored as the precision says
//! (Q8_0 or dense bf16/f16/f32). q/k/v and gate/up are fused into one matmul each.

use super::config::{Arch, Config};
use super::Precision;
use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
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

/// Reads GGUF tensors, dequantizes them on the CPU and places them on the device.
struct Reader<'a> {
    g: &'a GgufFile,
    file: std::io::BufReader<std::fs::File>,
    device: &'a Device,
    precision: Precision,
    formats: BTreeSet<String>,
}

impl Reader<'_> {
    fn has(&self, name: &str) -> bool {
        self.g.content.tensor_infos.contains_key(name)
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        self.g
            .content
            .tensor(&mut self.file, name, &Device::Cpu)
            .map_err(|e| {
                Error::Model(format!(
                    "{}: cannot read tensor {name}: {e}",
                    self.g.path.display()
                ))
            })
    }

    /// A matmul weight in f32 on the CPU, its stored type noted for provenance.
    fn matrix(&mut self, name: &str) -> Result<Tensor> {
        let q = self.read(name)?;
        self.formats.insert(format!("{:?}", q.dtype()));
        Ok(q.dequantize(&Device::Cpu)?)
    }

    /// A norm vector on the device, in f32.
    fn vector(&mut self, name: &str) -> Result<Tensor> {
        Ok(self
            .read(name)?
            .dequantize(&Device::Cpu)?
            .to_device(self.device)?)
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

    fn layer(&mut self, cfg: &Config, i: usize) -> Result<Layer> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let q = self.matrix(&n("attn_q"))?;
        let k = self.matrix(&n("attn_k"))?;
        let v = self.matrix(&n("attn_v"))?;
        let wo = self.matrix(&n("attn_output"))?;
        let gate = self.matrix(&n("ffn_gate"))?;
        let up = self.matrix(&n("ffn_up"))?;
        let down = self.matrix(&n("ffn_down"))?;
        let bqkv = if cfg.arch.has_qkv_bias() {
            let b = |s: &str| format!("blk.{i}.attn_{s}.bias");
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
            wqkv: self.fuse(&[q, k, v])?,
            bqkv,
            wo: self.fuse(&[wo])?,
            ffn_norm: self.vector(&n("ffn_norm"))?,
            w_gate_up: self.fuse(&[gate, up])?,
            w_down: self.fuse(&[down])?,
            q_norm,
            k_norm,
            post_attn_norm,
            post_ffn_norm,
            local: cfg.arch.is_local_layer(i),
        })
    }
}

impl Weights {
    /// Loads every tensor the decoder needs. Every matmul weight is dequantized and stored
    /// as `precision` says: even a Q4 file runs as Q8_0 (Q4_1 and Q5_0 would fall to
    /// candle's scalar CPU path) or as a dense bf16/f16/f32 matrix.
    pub(super) fn load(
        g: &GgufFile,
        cfg: &Config,
        device: &Device,
        precision: Precision,
    ) -> Result<Weights> {
        let mut r = Reader {
            g,
            file: g.reader()?,
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
                        "{}: rope_freqs.weight has {} entries (expected head_dim / 2 = {}, each positive)",
                        g.path.display(),
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
