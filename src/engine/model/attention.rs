//! Attention over a step's ragged segments, one implementation per backend: the CPU kernel
//! in [`crate::cpu::attention`] (on raw cache slices), the CUDA kernel in
//! `engine/cuda_attention.rs` (`kernels/attention.cu`), and candle's ops, which any device runs
//! and which the other two are checked against. Every implementation takes `q` as f32
//! `[rows, heads, head_dim]`, with each segment's new keys and values already in its cache
//! at `len..len + tokens`, and returns f32 `[rows, heads * head_dim]`.

use super::cache::{step_rows, Segment};
use crate::cpu;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

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

/// The attention a GPU uses: our kernel if it agrees with candle's ops on this device (a
/// one-off check at load, milliseconds), else candle's ops with a warning.
pub(super) fn pick(
    device: &Device,
    cache_dtype: DType,
    shape: (usize, usize, usize),
) -> AttentionImpl {
    #[cfg(feature = "cuda")]
    if !device.is_cpu() {
        return match crate::engine::cuda_attention::self_check(device, cache_dtype, shape) {
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

/// Attention at layer `li` with the implementation `which` on `q`'s device.
pub(super) fn attend(
    which: AttentionImpl,
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    shape: (usize, usize, usize),
    window: Option<usize>,
    scale: f64,
) -> Result<Tensor> {
    match (q.device().is_cpu(), which) {
        #[cfg(feature = "cuda")]
        (false, AttentionImpl::Kernel) => crate::engine::cuda_attention::ragged_attention(
            li,
            q,
            segs,
            shape,
            window,
            scale as f32,
        ),
        (false, _) | (true, AttentionImpl::CandleOps | AttentionImpl::Kernel) => {
            candle_attention(li, q, segs, shape, window, scale)
        }
        (true, a) => cpu_attention(
            li,
            q,
            segs,
            shape,
            window,
            scale as f32,
            a == AttentionImpl::ReferenceF64,
        ),
    }
}

/// Attention with candle ops, one segment at a time (what non-CPU devices run). Scores and
/// softmax are computed in f32 whatever the cache dtype, the two matmuls in the cache's
/// dtype.
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

/// The CPU kernel ([`cpu::attention`]) over every row of every segment in one parallel
/// pass on the raw cache slices; it replaces ~15 small candle ops per segment and layer,
/// which dominated wide decode steps. `f64` runs the textbook reference instead.
pub(super) fn cpu_attention(
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    (h, kv, hd): (usize, usize, usize),
    window: Option<usize>,
    scale: f32,
    f64: bool,
) -> Result<Tensor> {
    let q = q.contiguous()?;
    let (q_store, q_lay) = q.storage_and_layout();
    let qd = &cpu_f32(&q_store)?[q_lay.start_offset()..];
    let guards: Vec<_> = segs
        .iter()
        .map(|s| {
            (
                s.cache.k[li].storage_and_layout(),
                s.cache.v[li].storage_and_layout(),
            )
        })
        .collect();
    let mut caches = Vec::with_capacity(segs.len());
    for ((ks, kl), (vs, vl)) in &guards {
        caches.push(cpu::KvView {
            k: &cpu_f32(ks)?[kl.start_offset()..],
            v: &cpu_f32(vs)?[vl.start_offset()..],
            stride: kv * hd,
        });
    }
    let rows: Vec<cpu::QueryRow> = step_rows(segs, window)
        .into_iter()
        .map(|(si, qp, first)| cpu::QueryRow {
            kv: si,
            first,
            end: qp + 1,
        })
        .collect();
    let mut out = vec![0f32; rows.len() * h * hd];
    let kernel: cpu::attention::Kernel = if f64 {
        cpu::attention_f64
    } else {
        cpu::attention
    };
    kernel(qd, h * hd, &rows, &caches, (h, kv, hd), scale, &mut out);
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

fn cpu_f32(s: &candle_core::Storage) -> Result<&[f32]> {
    match s {
        candle_core::Storage::Cpu(c) => Ok(c.as_slice::<f32>()?),
        _ => Err(Error::Internal("CPU attention on a non-CPU tensor".into())),
    }
}

/// Additive mask `[groups * n, total - first]` for `n` queries at positions
/// `start..start + n` over keys `first..total`: causal, and within the window if any.
pub(super) fn causal_mask(
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
