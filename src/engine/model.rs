//! The decoder (llama and gemma3 families) with a forward pass over *ragged segments*:
//! each segment is one sequence's new tokens (a whole prompt at prefill, one token at
//! decode) with its own positions and its own KV cache. All segments share the linear
//! layers (one matmul over every row of the step), attention runs per segment.
//!
//! Batch invariance is designed in: every weight matrix is Q8_0, whose CPU matmul
//! computes each output row with the same per-row dot products whatever the row count,
//! and attention, norms and rope are per row or per segment. So a sequence's logits do
//! not depend on which other sequences share its step (tested end to end).

use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

pub use super::precision::Precision;

/// The model families this decoder implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
}

/// Shapes and constants read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub eps: f64,
    pub vocab: usize,
    pub context: usize,
    /// Gemma 3: layers that attend only to the last `sliding_window` positions.
    pub sliding_window: Option<usize>,
}

/// A weight matrix `[out, in]`, as the precision says.
enum Linear {
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
enum Embedding {
    Quant(QMatMul),
    Dense(Tensor),
}

impl Embedding {
    fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Embedding::Quant(q) => Ok(q.embedding(ids)?),
            Embedding::Dense(t) => Ok(t.index_select(ids, 0)?.to_dtype(DType::F32)?),
        }
    }
}

/// Which attention implementation a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionImpl {
    /// The rayon kernel over raw f32 slices on the CPU, candle ops elsewhere.
    Auto,
    /// Textbook attention accumulated in f64 (CPU only; the reference the fast kernel is
    /// tested against).
    ReferenceF64,
    /// Candle ops, one segment at a time: what non-CPU devices fall back to. Selectable on
    /// the CPU so that this GPU code path is tested where there is no GPU.
    CandleOps,
    /// `kernels/attention.cu`: every row of a step in one launch per layer (GPU only;
    /// chosen at load when its self-check against candle's ops passes).
    Kernel,
}

struct Layer {
    attn_norm: Tensor,
    wqkv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate_up: Linear,
    w_down: Linear,
    /// Gemma 3 only.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    post_ffn_norm: Option<Tensor>,
    local: bool,
}

/// A loaded decoder.
pub struct Decoder {
    pub cfg: Config,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    embed: Embedding,
    rope_global: (Tensor, Tensor),
    rope_local: Option<(Tensor, Tensor)>,
    device: Device,
    pub precision: Precision,
    cache_dtype: DType,
    /// How the weights are held in memory (for provenance), e.g. "Q8_0 (from Q4_1)".
    pub weight_format: String,
    pub attention: AttentionImpl,
}

/// One sequence's KV cache: per layer, keys and values `[capacity, n_kv_heads, head_dim]`
/// (token-major, so appending a step's rows is one contiguous copy).
pub struct SeqCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    /// Positions filled so far.
    pub len: usize,
    pub capacity: usize,
}

impl SeqCache {
    /// Copies the first `n` positions of another cache (a shared prompt prefix computed
    /// once). Rows are computed independently, so this equals prefilling them here.
    pub fn copy_prefix_from(&mut self, other: &SeqCache, n: usize) -> Result<()> {
        if n > other.len || n > self.capacity || self.k.len() != other.k.len() {
            return Err(Error::Model(format!(
                "internal: cannot copy {n} cached positions ({} available)",
                other.len
            )));
        }
        for l in 0..self.k.len() {
            self.k[l].slice_set(&other.k[l].narrow(0, 0, n)?, 0, 0)?;
            self.v[l].slice_set(&other.v[l].narrow(0, 0, n)?, 0, 0)?;
        }
        self.len = n;
        Ok(())
    }
}

/// One sequence's share of a forward step.
pub struct Segment<'a> {
    pub cache: &'a mut SeqCache,
    pub tokens: &'a [u32],
}

impl Decoder {
    /// Loads a GGUF decoder onto a device. Every matmul weight is dequantized and stored
    /// as `precision` says: even a Q4 file runs as Q8_0 (Q4_1 and Q5_0 would fall to
    /// candle's scalar CPU path) or as a dense bf16/f16/f32 matrix.
    pub fn load(g: &GgufFile, device: &Device, precision: Precision) -> Result<Decoder> {
        let arch_name = g.arch()?;
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(Error::Model(format!(
                    "{}: architecture {other:?} is not supported yet (supported: llama, gemma3)",
                    g.path.display()
                )))
            }
        };
        let p = arch_name.as_str();
        let n_heads = g.usize(&format!("{p}.attention.head_count"))?;
        let hidden = g.usize(&format!("{p}.embedding_length"))?;
        let n_kv_heads = g
            .usize(&format!("{p}.attention.head_count_kv"))
            .unwrap_or(n_heads);
        // Zero heads would divide by zero below and in attention (heads per KV head).
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::Model(format!(
                "{}: GGUF metadata gives {n_heads} attention heads and {n_kv_heads} KV heads; both must be positive and the first a multiple of the second",
                g.path.display()
            )));
        }
        let head_dim = g
            .usize(&format!("{p}.attention.key_length"))
            .or_else(|_| g.usize(&format!("{p}.rope.dimension_count")))
            .unwrap_or(hidden / n_heads);
        if head_dim == 0 {
            return Err(Error::Model(format!(
                "{}: GGUF metadata gives a head size of 0",
                g.path.display()
            )));
        }
        let cfg = Config {
            arch,
            n_layers: g.usize(&format!("{p}.block_count"))?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: g.usize(&format!("{p}.feed_forward_length"))?,
            eps: g
                .f32(&format!("{p}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5) as f64,
            vocab: 0,
            context: g.usize(&format!("{p}.context_length")).unwrap_or(4096),
            sliding_window: match arch {
                Arch::Gemma3 => g.usize(&format!("{p}.attention.sliding_window")).ok(),
                Arch::Llama => None,
            },
        };
        let mut reader = g.reader()?;
        let ct = &g.content;
        let wrap = |name: &str, e: candle_core::Error| {
            Error::Model(format!(
                "{}: cannot read tensor {name}: {e}",
                g.path.display()
            ))
        };
        let mut read = |name: &str| -> Result<QTensor> {
            ct.tensor(&mut reader, name, &Device::Cpu)
                .map_err(|e| wrap(name, e))
        };
        let mut formats = std::collections::BTreeSet::new();
        let mut to_f32 = |q: &QTensor| -> Result<Tensor> {
            formats.insert(format!("{:?}", q.dtype()));
            Ok(q.dequantize(&Device::Cpu)?)
        };
        // Concatenates row blocks (fusing q/k/v and gate/up into one matmul each) and
        // re-quantizes to the matmul type on the target device.
        let fuse = |parts: &[Tensor]| -> Result<Linear> {
            Linear::new(&Tensor::cat(parts, 0)?, precision, device)
        };
        let vec = |t: Tensor| -> Result<Tensor> { Ok(t.to_device(device)?) };

        let embd = read("token_embd.weight")?;
        let embd_f = to_f32(&embd)?;
        let (vocab, _) = embd_f.dims2()?;
        let embed = match precision.dense_dtype() {
            Some(dt) => Embedding::Dense(embd_f.to_dtype(dt)?.to_device(device)?),
            None => Embedding::Quant(QMatMul::from_qtensor(QTensor::quantize_onto(
                &embd_f,
                GgmlDType::Q8_0,
                device,
            )?)?),
        };
        let lm_head = match (&embed, ct.tensor_infos.contains_key("output.weight")) {
            (_, true) => {
                let o = read("output.weight")?;
                fuse(&[to_f32(&o)?])?
            }
            // Tied dense weights: the LM head shares the table's memory.
            (Embedding::Dense(t), false) => Linear::Dense(t.clone()),
            // Tied Q8_0: a padded copy (the lookup table is never padded).
            (Embedding::Quant(_), false) => fuse(&[embd_f])?,
        };
        let norm = vec(read("output_norm.weight")?.dequantize(&Device::Cpu)?)?;

        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let q = to_f32(&read(&n("attn_q"))?)?;
            let k = to_f32(&read(&n("attn_k"))?)?;
            let v = to_f32(&read(&n("attn_v"))?)?;
            let wo = to_f32(&read(&n("attn_output"))?)?;
            let gate = to_f32(&read(&n("ffn_gate"))?)?;
            let up = to_f32(&read(&n("ffn_up"))?)?;
            let down = to_f32(&read(&n("ffn_down"))?)?;
            let mut opt = |s: &str| -> Result<Option<Tensor>> {
                if ct.tensor_infos.contains_key(&n(s)) {
                    Ok(Some(vec(read(&n(s))?.dequantize(&Device::Cpu)?)?))
                } else {
                    Ok(None)
                }
            };
            let (q_norm, k_norm, post_attn_norm, post_ffn_norm) = match arch {
                Arch::Gemma3 => (
                    opt("attn_q_norm")?,
                    opt("attn_k_norm")?,
                    opt("post_attention_norm")?,
                    opt("post_ffw_norm")?,
                ),
                Arch::Llama => (None, None, None, None),
            };
            layers.push(Layer {
                attn_norm: vec(read(&n("attn_norm"))?.dequantize(&Device::Cpu)?)?,
                wqkv: fuse(&[q, k, v])?,
                wo: fuse(&[wo])?,
                ffn_norm: vec(read(&n("ffn_norm"))?.dequantize(&Device::Cpu)?)?,
                w_gate_up: fuse(&[gate, up])?,
                w_down: fuse(&[down])?,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                // Gemma 3: every sixth layer is global, the others slide.
                local: arch == Arch::Gemma3 && (i + 1) % 6 != 0,
            });
        }
        let max_pos = cfg.context.min(32768);
        let theta = g.f32(&format!("{p}.rope.freq_base")).unwrap_or(10_000.0);
        let rope_global = rope_table(head_dim, theta, max_pos, device)?;
        let rope_local = match arch {
            Arch::Gemma3 => Some(rope_table(
                head_dim,
                g.f32(&format!("{p}.rope.local_freq_base"))
                    .unwrap_or(10_000.0),
                max_pos,
                device,
            )?),
            Arch::Llama => None,
        };
        let from: Vec<String> = formats.into_iter().collect();
        let attention = pick_attention(
            device,
            precision.cache_dtype(device),
            (n_heads, cfg.n_kv_heads, head_dim),
        );
        Ok(Decoder {
            cfg: Config {
                vocab,
                context: max_pos,
                ..cfg
            },
            layers,
            norm,
            lm_head,
            embed,
            rope_global,
            rope_local,
            device: device.clone(),
            precision,
            cache_dtype: precision.cache_dtype(device),
            attention,
            weight_format: format!("{} (from {})", precision_label(precision), from.join("+")),
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
        let (h, kv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let mut ids = Vec::new();
        let mut pos = Vec::new();
        for s in segs.iter() {
            if s.tokens.is_empty() {
                return Err(Error::Model("internal: empty segment".into()));
            }
            if s.cache.len + s.tokens.len() > s.cache.capacity {
                return Err(Error::Model(format!(
                    "internal: cache of {} positions cannot take {} more after {}",
                    s.cache.capacity,
                    s.tokens.len(),
                    s.cache.len
                )));
            }
            ids.extend_from_slice(s.tokens);
            pos.extend((0..s.tokens.len()).map(|i| (s.cache.len + i) as u32));
        }
        let t = ids.len();
        let ids_t = Tensor::new(ids.as_slice(), &self.device)?;
        let pos_t = Tensor::new(pos.as_slice(), &self.device)?;
        let mut x = self.embed.lookup(&ids_t)?;
        if c.arch == Arch::Gemma3 {
            x = (x * (c.hidden as f64).sqrt())?;
        }
        let gather = |tab: &(Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
            Ok((
                tab.0.index_select(&pos_t, 0)?.reshape((t, 1, hd / 2))?,
                tab.1.index_select(&pos_t, 0)?.reshape((t, 1, hd / 2))?,
            ))
        };
        let rope_g = gather(&self.rope_global)?;
        let rope_l = match &self.rope_local {
            Some(tab) => Some(gather(tab)?),
            None => None,
        };
        let scale = 1.0 / (hd as f64).sqrt();

        for (li, layer) in self.layers.iter().enumerate() {
            let hn = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.eps as f32)?;
            let qkv = layer.wqkv.forward(&hn)?;
            let mut q = qkv
                .narrow(1, 0, h * hd)?
                .contiguous()?
                .reshape((t, h, 1, hd))?;
            let mut k = qkv
                .narrow(1, h * hd, kv * hd)?
                .contiguous()?
                .reshape((t, kv, 1, hd))?;
            let v = qkv
                .narrow(1, (h + kv) * hd, kv * hd)?
                .contiguous()?
                .reshape((t, kv, hd))?;
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                q = candle_nn::ops::rms_norm(&q, qn, c.eps as f32)?;
                k = candle_nn::ops::rms_norm(&k, kn, c.eps as f32)?;
            }
            let (cos, sin) = match (&rope_l, layer.local) {
                (Some(l), true) => l,
                _ => &rope_g,
            };
            let (q, k) = match c.arch {
                // GGUF llama weights are permuted for interleaved rope.
                Arch::Llama => (
                    candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                    candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
                ),
                Arch::Gemma3 => (
                    candle_nn::rotary_emb::rope(&q, cos, sin)?,
                    candle_nn::rotary_emb::rope(&k, cos, sin)?,
                ),
            };
            let q = q.reshape((t, h, hd))?;
            let k = k.reshape((t, kv, hd))?;
            let window = if layer.local { c.sliding_window } else { None };

            let mut off = 0;
            for s in segs.iter() {
                let n = s.tokens.len();
                let kn = k.narrow(0, off, n)?.to_dtype(self.cache_dtype)?;
                let vn = v.narrow(0, off, n)?.to_dtype(self.cache_dtype)?;
                s.cache.k[li].slice_set(&kn, 0, s.cache.len)?;
                s.cache.v[li].slice_set(&vn, 0, s.cache.len)?;
                off += n;
            }
            let shape = (h, kv, hd);
            let attn = match (self.device.is_cpu(), self.attention) {
                #[cfg(feature = "cuda")]
                (false, AttentionImpl::Kernel) => super::cuda_attention::ragged_attention(
                    li,
                    &q,
                    segs,
                    shape,
                    window,
                    scale as f32,
                )?,
                (false, _) | (true, AttentionImpl::CandleOps | AttentionImpl::Kernel) => {
                    candle_attention(li, &q, segs, shape, window, scale)?
                }
                (true, a) => cpu_attention(
                    li,
                    &q,
                    segs,
                    shape,
                    window,
                    scale as f32,
                    a == AttentionImpl::ReferenceF64,
                )?,
            };
            let mut o = layer.wo.forward(&attn)?;
            if let Some(pn) = &layer.post_attn_norm {
                o = candle_nn::ops::rms_norm(&o, pn, c.eps as f32)?;
            }
            x = (x + o)?;
            let hn = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.eps as f32)?;
            let gu = layer.w_gate_up.forward(&hn)?;
            let gate = gu.narrow(1, 0, c.ffn)?;
            let up = gu.narrow(1, c.ffn, c.ffn)?;
            let act = match c.arch {
                Arch::Llama => (candle_nn::ops::silu(&gate)? * up)?,
                Arch::Gemma3 => (gate.gelu()? * up)?,
            };
            let mut d = layer.w_down.forward(&act)?;
            if let Some(pn) = &layer.post_ffn_norm {
                d = candle_nn::ops::rms_norm(&d, pn, c.eps as f32)?;
            }
            x = (x + d)?;
        }
        let mut last = Vec::with_capacity(segs.len());
        let mut off = 0;
        for s in segs.iter_mut() {
            off += s.tokens.len();
            last.push((off - 1) as u32);
            s.cache.len += s.tokens.len();
        }
        let last_t = Tensor::new(last.as_slice(), &self.device)?;
        let xl = x.index_select(&last_t, 0)?;
        let xl = candle_nn::ops::rms_norm(&xl, &self.norm, c.eps as f32)?;
        Ok(self.lm_head.forward(&xl)?.to_dtype(DType::F32)?)
    }
}

/// The attention a GPU uses: our kernel if it agrees with candle's ops on this device (a
/// one-off check at load, milliseconds), else candle's ops with a warning.
fn pick_attention(
    device: &Device,
    cache_dtype: DType,
    shape: (usize, usize, usize),
) -> AttentionImpl {
    #[cfg(feature = "cuda")]
    if !device.is_cpu() {
        return match super::cuda_attention::self_check(device, cache_dtype, shape) {
            Ok(()) => AttentionImpl::Kernel,
            Err(e) => {
                tracing::warn!("{e}; using candle's attention ops instead (slower, same results)");
                AttentionImpl::Auto
            }
        };
    }
    let _ = (device, cache_dtype, shape);
    AttentionImpl::Auto
}

/// Attention with candle ops, one segment at a time (what non-CPU devices run). `q` is
/// f32 `[rows, heads, head_dim]`; scores and softmax are computed in f32 whatever the
/// cache dtype, the two matmuls in the cache's dtype.
pub(crate) fn candle_attention(
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    (h, kv, hd): (usize, usize, usize),
    window: Option<usize>,
    scale: f64,
) -> Result<Tensor> {
    let groups = h / kv;
    let mut outs = Vec::with_capacity(segs.len());
    let mut off = 0;
    for s in segs.iter() {
        let n = s.tokens.len();
        let start = s.cache.len;
        let total = start + n;
        // With a sliding window, a single-token step only needs the window.
        let first = match window {
            Some(w) if n == 1 => total.saturating_sub(w),
            _ => 0,
        };
        let cache_k = &s.cache.k[li];
        let dt = cache_k.dtype();
        let kk = cache_k
            .narrow(0, first, total - first)?
            .transpose(0, 1)?
            .contiguous()?;
        let vv = s.cache.v[li]
            .narrow(0, first, total - first)?
            .transpose(0, 1)?
            .contiguous()?;
        let qs = q
            .narrow(0, off, n)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((kv, groups * n, hd))?
            .to_dtype(dt)?;
        let mut att = (qs.matmul(&kk.t()?)?.to_dtype(DType::F32)? * scale)?;
        if n > 1 {
            let mask = causal_mask(n, start, first, total, window, groups, q.device())?;
            att = att.broadcast_add(&mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?.to_dtype(dt)?;
        let o = att
            .matmul(&vv)?
            .to_dtype(DType::F32)?
            .reshape((h, n, hd))?
            .transpose(0, 1)?
            .reshape((n, h * hd))?;
        outs.push(o);
        off += n;
    }
    Ok(if outs.len() == 1 {
        outs.pop().expect("one segment")
    } else {
        Tensor::cat(&outs, 0)?
    })
}

/// CPU attention for every row of every segment in one parallel pass over the raw cache
/// slices. Each (row, head) is computed on its own with a fixed summation order, so the
/// result is deterministic and independent of batch-mates; it replaces ~15 small candle
/// ops per segment and layer, which dominated wide decode steps.
fn cpu_attention(
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    (h, kv, hd): (usize, usize, usize),
    window: Option<usize>,
    scale: f32,
    naive_f64: bool,
) -> Result<Tensor> {
    use rayon::prelude::*;
    let groups = h / kv;
    let q = q.contiguous()?;
    let (q_store, q_lay) = q.storage_and_layout();
    let qd = cpu_f32(&q_store)?;
    let qd = &qd[q_lay.start_offset()..];
    let guards: Vec<_> = segs
        .iter()
        .map(|s| {
            (
                s.cache.k[li].storage_and_layout(),
                s.cache.v[li].storage_and_layout(),
            )
        })
        .collect();
    let mut caches: Vec<(&[f32], &[f32])> = Vec::with_capacity(segs.len());
    for ((ks, kl), (vs, vl)) in &guards {
        caches.push((
            &cpu_f32(ks)?[kl.start_offset()..],
            &cpu_f32(vs)?[vl.start_offset()..],
        ));
    }
    let rows = step_rows(segs, window);
    let mut out = vec![0f32; rows.len() * h * hd];
    out.par_chunks_mut(h * hd)
        .enumerate()
        .for_each(|(t, orow)| {
            let (si, qp, first) = rows[t];
            let (kd, vd) = caches[si];
            if naive_f64 {
                naive_row(qd, kd, vd, t, (h, kv, hd), qp, first, scale as f64, orow);
                return;
            }
            let mut scores = vec![0f32; qp + 1 - first];
            for head in 0..h {
                let kvh = head / groups;
                let qv = &qd[(t * h + head) * hd..][..hd];
                let mut max = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate() {
                    *sc = dot(qv, &kd[((first + j) * kv + kvh) * hd..][..hd]) * scale;
                    max = max.max(*sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let inv = 1.0 / sum;
                let o = &mut orow[head * hd..][..hd];
                for (j, sc) in scores.iter().enumerate() {
                    let p = sc * inv;
                    for (x, y) in o.iter_mut().zip(&vd[((first + j) * kv + kvh) * hd..][..hd]) {
                        *x += p * y;
                    }
                }
            }
        });
    drop(guards);
    Ok(Tensor::from_vec(out, (rows.len(), h * hd), &Device::Cpu)?)
}

/// Textbook attention accumulated in f64 over f32 CPU caches: the reference every
/// attention kernel is tested against.
#[cfg(all(test, feature = "cuda"))]
pub(crate) fn reference_attention(
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    shape: (usize, usize, usize),
    window: Option<usize>,
    scale: f32,
) -> Result<Tensor> {
    cpu_attention(li, q, segs, shape, window, scale, true)
}

/// Every query row of a step as (segment, query position, first visible key): the new
/// tokens sit at `len..len + tokens` of their cache, and see keys `first..=position`
/// (all earlier ones, or the last `window`).
pub(crate) fn step_rows(segs: &[Segment<'_>], window: Option<usize>) -> Vec<(usize, usize, usize)> {
    let mut rows = Vec::new();
    for (si, s) in segs.iter().enumerate() {
        for i in 0..s.tokens.len() {
            let qp = s.cache.len + i;
            rows.push((si, qp, window.map_or(0, |w| (qp + 1).saturating_sub(w))));
        }
    }
    rows
}

/// Textbook attention for one row, accumulated in f64: the reference for `cpu_attention`.
#[allow(clippy::too_many_arguments)]
fn naive_row(
    qd: &[f32],
    kd: &[f32],
    vd: &[f32],
    t: usize,
    (h, kv, hd): (usize, usize, usize),
    qp: usize,
    first: usize,
    scale: f64,
    orow: &mut [f32],
) {
    let groups = h / kv;
    for head in 0..h {
        let kvh = head / groups;
        let q = &qd[(t * h + head) * hd..][..hd];
        let s: Vec<f64> = (first..=qp)
            .map(|kp| {
                (0..hd)
                    .map(|d| q[d] as f64 * kd[(kp * kv + kvh) * hd + d] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for d in 0..hd {
            let v: f64 = (first..=qp)
                .zip(&e)
                .map(|(kp, w)| w / z * vd[(kp * kv + kvh) * hd + d] as f64)
                .sum();
            orow[head * hd + d] = v as f32;
        }
    }
}

fn cpu_f32(s: &candle_core::Storage) -> Result<&[f32]> {
    match s {
        candle_core::Storage::Cpu(c) => Ok(c.as_slice::<f32>()?),
        _ => Err(Error::Model(
            "internal: CPU attention on a non-CPU tensor".into(),
        )),
    }
}

/// Dot product with eight fixed lanes (vectorizes, and the order never changes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Additive mask `[groups * n, total - first]` for `n` queries at positions
/// `start..start + n` over keys `first..total`: causal, and within the window if any.
fn causal_mask(
    n: usize,
    start: usize,
    first: usize,
    total: usize,
    window: Option<usize>,
    groups: usize,
    device: &Device,
) -> Result<Tensor> {
    let cols = total - first;
    let mut m = vec![0f32; groups * n * cols];
    for g in 0..groups {
        for i in 0..n {
            let qp = start + i;
            let row = &mut m[(g * n + i) * cols..(g * n + i + 1) * cols];
            for (j, cell) in row.iter_mut().enumerate() {
                let kp = first + j;
                let visible = kp <= qp && window.is_none_or(|w| qp - kp < w);
                if !visible {
                    *cell = f32::NEG_INFINITY;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (groups * n, cols), device)?)
}

/// The provenance label of a precision: GGML's spelling for the quantized format.
fn precision_label(p: Precision) -> String {
    match p {
        Precision::Q8_0 => format!("{:?}", GgmlDType::Q8_0),
        other => other.name().to_uppercase(),
    }
}

fn rope_table(
    head_dim: usize,
    theta: f32,
    max_pos: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, head_dim / 2), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, max_pos as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((max_pos, 1))?;
    let freqs = pos.matmul(&inv)?;
    Ok((
        freqs.cos()?.to_device(device)?,
        freqs.sin()?.to_device(device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF with zero heads used to panic dividing the width by the head count.
    #[test]
    fn zero_heads_in_gguf_is_an_error_not_a_panic() {
        use candle_core::quantized::gguf_file::{write, Value};
        for (heads, kv) in [(0u32, None), (4, Some(0u32)), (4, Some(3))] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bad.gguf");
            let arch = Value::String("llama".into());
            let (n, width, one) = (Value::U32(heads), Value::U32(64), Value::U32(1));
            let mut meta: Vec<(&str, &Value)> = vec![
                ("general.architecture", &arch),
                ("llama.attention.head_count", &n),
                ("llama.embedding_length", &width),
                ("llama.block_count", &one),
                ("llama.feed_forward_length", &width),
            ];
            let kv = kv.map(Value::U32);
            if let Some(kv) = &kv {
                meta.push(("llama.attention.head_count_kv", kv));
            }
            let mut f = std::fs::File::create(&path).unwrap();
            write(&mut f, &meta, &[]).unwrap();
            drop(f);
            let g = GgufFile::open(&path).unwrap();
            let err = match Decoder::load(&g, &Device::Cpu, Precision::F32) {
                Ok(_) => panic!("{heads} heads, {kv:?} KV heads loaded"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("attention heads"), "{err}");
        }
    }

    /// The fast CPU attention against the textbook f64 reference on random, ragged
    /// segments (prefill and decode rows, with and without a sliding window, GQA).
    #[test]
    fn cpu_attention_matches_f64_reference() {
        let (h, kv, hd) = (6, 2, 40); // hd not a multiple of 8: exercises the lane remainder
        for window in [None, Some(3)] {
            let lens = [(0usize, 7usize), (5, 1), (0, 1), (9, 4)]; // (cached before, new tokens)
            let mut caches: Vec<SeqCache> = lens
                .iter()
                .map(|&(before, n)| {
                    let cap = before + n;
                    let k = (0..2)
                        .map(|_| Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu).unwrap())
                        .collect();
                    let v = (0..2)
                        .map(|_| Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu).unwrap())
                        .collect();
                    SeqCache {
                        k,
                        v,
                        len: before,
                        capacity: cap,
                    }
                })
                .collect();
            let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
            let t: usize = lens.iter().map(|l| l.1).sum();
            let q = Tensor::randn(0f32, 1.0, (t, h, hd), &Device::Cpu).unwrap();
            let segs: Vec<Segment<'_>> = caches
                .iter_mut()
                .zip(&toks)
                .map(|(c, tk)| Segment {
                    cache: c,
                    tokens: tk,
                })
                .collect();
            let fast = cpu_attention(1, &q, &segs, (h, kv, hd), window, 0.3, false)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let slow = cpu_attention(1, &q, &segs, (h, kv, hd), window, 0.3, true)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (a, b) in fast.iter().zip(&slow) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() < 1e-5, "{x} vs {y} (window {window:?})");
                }
            }
        }
    }

    /// The candle-ops attention that GPUs run, executed here on the CPU, against the same
    /// f64 reference: f32 caches to float error, bf16/f16 caches (the GPU default) to
    /// their rounding.
    #[test]
    fn candle_ops_attention_matches_f64_reference_in_every_cache_dtype() {
        let (h, kv, hd) = (6, 2, 40);
        for (dt, tol) in [
            (DType::F32, 2e-6f32),
            (DType::BF16, 4e-2),
            (DType::F16, 4e-3),
        ] {
            for window in [None, Some(3)] {
                let lens = [(0usize, 7usize), (5, 1), (0, 1), (9, 4), (2, 1)];
                let mut caches: Vec<SeqCache> = lens
                    .iter()
                    .map(|&(before, n)| {
                        let cap = before + n + 2; // spare capacity past `len`, as in the engine
                        let r = |_| {
                            Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu)
                                .and_then(|t| t.to_dtype(dt))
                                .unwrap()
                        };
                        SeqCache {
                            k: (0..2).map(r).collect(),
                            v: (0..2).map(r).collect(),
                            len: before,
                            capacity: cap,
                        }
                    })
                    .collect();
                // The reference reads the same values, widened to f32.
                let mut wide: Vec<SeqCache> = caches
                    .iter()
                    .map(|c| SeqCache {
                        k: c.k
                            .iter()
                            .map(|t| t.to_dtype(DType::F32).unwrap())
                            .collect(),
                        v: c.v
                            .iter()
                            .map(|t| t.to_dtype(DType::F32).unwrap())
                            .collect(),
                        len: c.len,
                        capacity: c.capacity,
                    })
                    .collect();
                let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
                let t: usize = lens.iter().map(|l| l.1).sum();
                let q = Tensor::randn(0f32, 1.0, (t, h, hd), &Device::Cpu).unwrap();
                let wide_segs: Vec<Segment<'_>> = wide
                    .iter_mut()
                    .zip(&toks)
                    .map(|(c, tk)| Segment {
                        cache: c,
                        tokens: tk,
                    })
                    .collect();
                let slow = cpu_attention(1, &q, &wide_segs, (h, kv, hd), window, 0.3, true)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let seg_list: Vec<Segment<'_>> = caches
                    .iter_mut()
                    .zip(&toks)
                    .map(|(c, tk)| Segment {
                        cache: c,
                        tokens: tk,
                    })
                    .collect();
                let ops = candle_attention(1, &q, &seg_list, (h, kv, hd), window, 0.3)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                assert_eq!(ops.len(), slow.len());
                let worst = ops
                    .iter()
                    .flatten()
                    .zip(slow.iter().flatten())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                eprintln!("{dt:?} window {window:?}: max |candle ops - f64| = {worst:e}");
                assert!(worst < tol, "{dt:?}, window {window:?}: {worst} ≥ {tol}");
            }
        }
    }

    #[test]
    fn mask_is_causal_and_respects_the_window() {
        // Queries at positions 2, 3, 4 over keys 0..5, window 2, one group.
        let m = causal_mask(3, 2, 0, 5, Some(2), 1, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let vis: Vec<Vec<bool>> = m
            .iter()
            .map(|r| r.iter().map(|x| x.is_finite()).collect())
            .collect();
        assert_eq!(vis[0], [false, true, true, false, false]);
        assert_eq!(vis[1], [false, false, true, true, false]);
        assert_eq!(vis[2], [false, false, false, true, true]);
        // No window: plain causal; two groups repeat the rows.
        let m = causal_mask(2, 0, 0, 2, None, 2, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m.len(), 4);
        assert!(m[0][0].is_finite() && !m[0][1].is_finite() && m[1][1].is_finite());
        assert_eq!(m[0], m[2]);
    }
}
