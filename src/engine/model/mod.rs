//! The decoder (llama, gemma3, qwen2, qwen3, mistral and phi3 families) with a forward pass over *ragged segments*:
//! each segment is one sequence's new tokens (a whole prompt at prefill, one token at
//! decode) with its own positions and its own KV cache. All segments share the linear
//! layers (one matmul over every row of the step), attention runs per segment.
//!
//! Batch invariance is designed in: every weight matrix is Q8_0, whose CPU matmul
//! computes each output row with the same per-row dot products whatever the row count,
//! and attention, norms and rope are per row or per segment. So a sequence's logits do
//! not depend on which other sequences share its step (tested end to end).
//!
//! The files: [`config`] (what differs between families: `Arch` and its hooks, `Config`
//! from GGUF metadata), `weights` (reading and fusing the matrices), `rope`, `cache` (the
//! ragged KV cache), [`attention`] (one implementation per backend), and this file, the
//! decoder math every family shares.

pub mod attention;
mod cache;
pub mod config;
#[cfg(test)]
mod reference_tests;
mod rope;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tiny;
mod weights;

pub use super::precision::Precision;
pub use attention::AttentionImpl;
// What `engine/cuda_attention.rs` checks its kernel against, and how it lists a step's rows.
#[cfg(all(test, feature = "cuda"))]
pub(crate) use attention::reference_attention;
pub use cache::{Segment, SeqCache};

/// What this engine computes differently for `path` than flywheel did when records were
/// first fingerprinted: `Some` when outputs of this file changed since (so its old records
/// and scores are not resumed as if from this engine), `None` for every file whose outputs
/// never did. Llama 3.1+ files (`rope_freqs.weight`) ran with unscaled rope before.
pub fn changed_outputs(path: &std::path::Path) -> Option<&'static str> {
    let g = crate::models::gguf::GgufFile::open(path).ok()?;
    g.content
        .tensor_infos
        .contains_key("rope_freqs.weight")
        .then_some("rope_freqs")
}
pub use config::{Activation, Arch, Config};
#[cfg(feature = "cuda")]
pub(crate) use {attention::candle_attention, cache::step_rows};

use crate::error::{Error, Result};
use crate::models::Checkpoint;
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use rope::{RopeTables, StepRope};
use weights::{GgufTensors, Layer, SafeTensors, Weights};

/// A loaded decoder.
pub struct Decoder {
    pub cfg: Config,
    weights: Weights,
    rope: RopeTables,
    device: Device,
    pub precision: Precision,
    cache_dtype: DType,
    /// How the weights are held in memory (for provenance), e.g. "Q8_0 (from Q4_1)".
    pub weight_format: String,
    /// The file's tensor types, e.g. "BF16" or "F32+Q4_1".
    pub stored_formats: String,
    pub attention: AttentionImpl,
}

impl Decoder {
    /// Loads a decoder from a GGUF file or a Hugging Face folder onto a device, its matmul
    /// weights stored as `precision` says.
    pub fn load(ckpt: &Checkpoint, device: &Device, precision: Precision) -> Result<Decoder> {
        let (mut cfg, weights) = match ckpt {
            Checkpoint::Gguf(g) => {
                let cfg = Config::from_gguf(g)?;
                let w = Weights::load(&mut GgufTensors::new(g)?, &cfg, device, precision);
                (cfg, w)
            }
            Checkpoint::Hf(f) => {
                let cfg = Config::from_hf(f)?;
                let w = Weights::load(&mut SafeTensors::open(f)?, &cfg, device, precision);
                (cfg, w)
            }
        };
        let weights = weights.map_err(|e| match e {
            Error::Model(m) if !m.contains(&ckpt.path().display().to_string()) => {
                Error::Model(format!("{}: {m}", ckpt.path().display()))
            }
            e => e,
        })?;
        cfg.vocab = weights.vocab;
        let divisors = weights
            .rope_freqs
            .as_deref()
            .or(cfg.rope_divisors.as_deref());
        let rope = RopeTables::new(&cfg, divisors, device)?;
        let cache_dtype = precision.cache_dtype(device);
        let attention = attention::pick(
            device,
            cache_dtype,
            (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim),
        );
        let from: Vec<&str> = weights.formats.iter().map(String::as_str).collect();
        let stored_formats = from.join("+");
        let weight_format = format!("{} (from {stored_formats})", precision_label(precision));
        Ok(Decoder {
            cfg,
            weights,
            rope,
            device: device.clone(),
            precision,
            cache_dtype,
            weight_format,
            stored_formats,
            attention,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype KV caches are held in.
    pub fn cache_dtype(&self) -> DType {
        self.cache_dtype
    }

    /// A fresh cache able to hold `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<SeqCache> {
        let shape = (capacity, self.cfg.n_kv_heads, self.cfg.head_dim);
        let mut k = Vec::with_capacity(self.cfg.n_layers);
        let mut v = Vec::with_capacity(self.cfg.n_layers);
        for _ in 0..self.cfg.n_layers {
            k.push(Tensor::zeros(shape, self.cache_dtype, &self.device)?);
            v.push(Tensor::zeros(shape, self.cache_dtype, &self.device)?);
        }
        Ok(SeqCache {
            k,
            v,
            len: 0,
            capacity,
        })
    }

    /// Runs the new tokens of every segment through the model in one step, appends them
    /// to each segment's cache, and returns the logits at each segment's last token,
    /// `[segments, vocab]`.
    pub fn forward(&self, segs: &mut [Segment<'_>]) -> Result<Tensor> {
        let c = &self.cfg;
        let (ids, pos) = step_inputs(segs)?;
        let ids = Tensor::new(ids.as_slice(), &self.device)?;
        let pos = Tensor::new(pos.as_slice(), &self.device)?;
        let mut x = self.weights.embed.lookup(&ids)?;
        if c.arch.scales_embedding() {
            x = (x * (c.hidden as f64).sqrt())?;
        }
        let rope = self.rope.at(c, &pos)?;
        for (li, layer) in self.weights.layers.iter().enumerate() {
            x = (&x + self.self_attention(li, layer, &x, segs, &rope)?)?;
            x = (&x + self.feed_forward(layer, &x)?)?;
        }
        let mut last = Vec::with_capacity(segs.len());
        let mut off = 0;
        for s in segs.iter_mut() {
            off += s.tokens.len();
            last.push((off - 1) as u32);
            s.cache.len += s.tokens.len();
        }
        let last = Tensor::new(last.as_slice(), &self.device)?;
        let xl = self.rms_norm(&x.index_select(&last, 0)?, &self.weights.norm)?;
        Ok(self.weights.lm_head.forward(&xl)?.to_dtype(DType::F32)?)
    }

    /// The attention half of block `li`: norm, fused q/k/v, rope, the new keys and values
    /// into each segment's cache, attention, output projection (and Gemma's post-norm).
    fn self_attention(
        &self,
        li: usize,
        layer: &Layer,
        x: &Tensor,
        segs: &[Segment<'_>],
        rope: &StepRope,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (h, kv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let t = x.dim(0)?;
        let mut qkv = layer.wqkv.forward(&self.rms_norm(x, &layer.attn_norm)?)?;
        if let Some(b) = &layer.bqkv {
            qkv = qkv.broadcast_add(b)?;
        }
        let part = |from: usize, heads: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(1, from * hd, heads * hd)?
                .contiguous()?
                .reshape((t, heads, 1, hd))?)
        };
        let (mut q, mut k) = (part(0, h)?, part(h, kv)?);
        let v = part(h + kv, kv)?.reshape((t, kv, hd))?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = self.rms_norm(&q, qn)?;
            k = self.rms_norm(&k, kn)?;
        }
        let q = rope.apply(&q, layer.local)?.reshape((t, h, hd))?;
        let k = rope.apply(&k, layer.local)?.reshape((t, kv, hd))?;
        cache::store_step(segs, li, &k, &v, self.cache_dtype)?;
        let window = if layer.local { c.sliding_window } else { None };
        let scale = 1.0 / (hd as f64).sqrt();
        let attn = attention::attend(self.attention, li, &q, segs, (h, kv, hd), window, scale)?;
        let o = layer.wo.forward(&attn)?;
        match &layer.post_attn_norm {
            Some(pn) => self.rms_norm(&o, pn),
            None => Ok(o),
        }
    }

    /// The feed-forward half of a block: norm, fused gate/up, activation, down projection
    /// (and Gemma's post-norm).
    fn feed_forward(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let ffn = self.cfg.ffn;
        let gu = layer
            .w_gate_up
            .forward(&self.rms_norm(x, &layer.ffn_norm)?)?;
        let gate = gu.narrow(1, 0, ffn)?;
        let up = gu.narrow(1, ffn, ffn)?;
        let act = match self.cfg.arch.activation() {
            Activation::Silu => (candle_nn::ops::silu(&gate)? * up)?,
            Activation::Gelu => (gate.gelu()? * up)?,
        };
        let d = layer.w_down.forward(&act)?;
        match &layer.post_ffn_norm {
            Some(pn) => self.rms_norm(&d, pn),
            None => Ok(d),
        }
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, w, self.cfg.eps as f32)?)
    }
}

/// The step's token ids and positions, segment after segment; refuses empty segments and
/// caches too small for their new tokens.
fn step_inputs(segs: &[Segment<'_>]) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut ids = Vec::new();
    let mut pos = Vec::new();
    for s in segs {
        if s.tokens.is_empty() {
            return Err(Error::Internal("empty segment".into()));
        }
        if s.cache.len + s.tokens.len() > s.cache.capacity {
            return Err(Error::Internal(format!(
                "cache of {} positions cannot take {} more after {}",
                s.cache.capacity,
                s.tokens.len(),
                s.cache.len
            )));
        }
        ids.extend_from_slice(s.tokens);
        pos.extend((0..s.tokens.len()).map(|i| (s.cache.len + i) as u32));
    }
    Ok((ids, pos))
}

/// The provenance label of a precision: GGML's spelling for the quantized format.
fn precision_label(p: Precision) -> String {
    match p {
        Precision::Q8_0 => format!("{:?}", GgmlDType::Q8_0),
        other => other.name().to_uppercase(),
    }
}
