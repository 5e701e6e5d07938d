//! The GPU's attention: `kernels/attention.cu` launched once per layer over every row of a
//! step, each row reading its own sequence's cache through a table of device pointers.
//! The CPU's f64 attention ([`crate::cpu::attention_f64`]) is its reference; [`self_check`]
//! compares it with candle's ops on the device at load, so a kernel that misbehaves on some
//! card is never used.

use super::model::{Segment, SeqCache};
use crate::error::{Error, Result};
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
/// Warps per block (one warp per row and head), as `WARPS` in the kernel.
const WARPS: usize = 4;
/// The kernel keeps head_dim / 32 values per lane in registers, at most 8.
pub const MAX_HEAD_DIM: usize = 256;

fn cuda_err(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("CUDA attention kernel: {e}"))
}

/// Device address of a tensor's first element (its storage offset included).
fn address<T: CudaDType>(
    t: &Tensor,
    stream: &candle_core::cuda_backend::cudarc::driver::CudaStream,
) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(cuda_err("tensor is not on the GPU"));
    };
    let slice = cs.as_cuda_slice::<T>()?;
    let (ptr, _sync) = slice.device_ptr(stream);
    Ok(ptr + (layout.start_offset() * std::mem::size_of::<T>()) as u64)
}

/// Attention for every row of every segment at layer `li`, f32 `[rows, heads * head_dim]`;
/// the same contract as the CPU kernel (`q` f32 `[rows, heads, head_dim]`, each segment's
/// new keys and values already in its cache at `len..len + tokens`).
pub fn ragged_attention(
    li: usize,
    q: &Tensor,
    segs: &[Segment<'_>],
    (h, kv, hd): (usize, usize, usize),
    window: Option<usize>,
    scale: f32,
) -> Result<Tensor> {
    let Device::Cuda(dev) = q.device() else {
        return Err(cuda_err("q is not on the GPU"));
    };
    if hd > MAX_HEAD_DIM || h % kv != 0 {
        return Err(cuda_err(format!(
            "unsupported shape: {h} heads, {kv} kv heads, head_dim {hd}"
        )));
    }
    let stream = dev.cuda_stream();
    let dt = segs
        .first()
        .map(|s| s.cache.k[li].dtype())
        .ok_or_else(|| cuda_err("no segments"))?;
    let (name, addr): (&str, fn(&Tensor, &_) -> Result<u64>) = match dt {
        DType::F32 => ("ragged_attention_f32", address::<f32>),
        DType::F16 => ("ragged_attention_f16", address::<half::f16>),
        DType::BF16 => ("ragged_attention_bf16", address::<half::bf16>),
        other => return Err(cuda_err(format!("cache dtype {other:?}"))),
    };
    let (mut kp, mut vp) = (Vec::new(), Vec::new());
    for s in segs {
        kp.push(addr(&s.cache.k[li], &stream)?);
        vp.push(addr(&s.cache.v[li], &stream)?);
    }
    let step = super::model::step_rows(segs, window);
    let column = |f: fn(&(usize, usize, usize)) -> usize| -> Vec<u32> {
        step.iter().map(|r| f(r) as u32).collect()
    };
    let (seg, pos, first) = (column(|r| r.0), column(|r| r.1), column(|r| r.2));
    let rows = step.len();
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let Storage::Cuda(q_cs) = &*q_storage else {
        return Err(cuda_err("q is not on the GPU"));
    };
    let q_view = q_cs
        .as_cuda_slice::<f32>()?
        .slice(q_layout.start_offset()..);
    let up32 = |v: &[u32]| dev.clone_htod(v).map_err(cuda_err);
    let (d_seg, d_pos, d_first) = (up32(&seg)?, up32(&pos)?, up32(&first)?);
    let d_k = dev.clone_htod(&kp).map_err(cuda_err)?;
    let d_v = dev.clone_htod(&vp).map_err(cuda_err)?;
    let mut out = dev.alloc_zeros::<f32>(rows * h * hd).map_err(cuda_err)?;
    let func = dev
        .get_or_load_custom_func(name, "flywheel_attention", PTX)
        .map_err(cuda_err)?;
    let (rows_i, h_i, kv_i, hd_i) = (rows as i32, h as i32, kv as i32, hd as i32);
    let cfg = LaunchConfig {
        grid_dim: ((rows * h).div_ceil(WARPS) as u32, 1, 1),
        block_dim: ((32 * WARPS) as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = func.builder();
    b.arg(&q_view);
    b.arg(&mut out);
    b.arg(&d_seg);
    b.arg(&d_pos);
    b.arg(&d_first);
    b.arg(&d_k);
    b.arg(&d_v);
    b.arg(&rows_i);
    b.arg(&h_i);
    b.arg(&kv_i);
    b.arg(&hd_i);
    b.arg(&scale);
    // SAFETY: the arguments match the kernel's signature in kernels/attention.cu; every
    // pointer in the tables addresses a live cache of at least `pos + 1` positions of
    // `kv * hd` values (checked by `forward` before the step), and `out` holds rows × h × hd.
    unsafe { b.launch(cfg) }.map_err(cuda_err)?;
    drop(q_storage);
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    Ok(Tensor::from_storage(
        storage,
        (rows, h * hd),
        BackpropOp::none(),
        false,
    ))
}

/// Runs the kernel and candle's ops on the same random ragged step (prefill and decode rows,
/// with and without a window) in the cache dtype, and says whether they agree. The engine
/// uses the kernel only if they do.
pub fn self_check(
    device: &Device,
    cache_dtype: DType,
    (h, kv, hd): (usize, usize, usize),
) -> Result<()> {
    let lens = [(0usize, 5usize), (7, 1), (0, 1), (33, 3)];
    let mut caches = Vec::new();
    for &(before, n) in &lens {
        let cap = before + n + 1;
        let r = || -> Result<Tensor> {
            Ok(Tensor::randn(0f32, 1.0, (cap, kv, hd), device)?.to_dtype(cache_dtype)?)
        };
        caches.push(SeqCache {
            k: vec![r()?],
            v: vec![r()?],
            len: before,
            capacity: cap,
        });
    }
    let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
    let rows: usize = lens.iter().map(|l| l.1).sum();
    let q = Tensor::randn(0f32, 1.0, (rows, h, hd), device)?;
    let segs: Vec<Segment<'_>> = caches
        .iter_mut()
        .zip(&toks)
        .map(|(c, t)| Segment {
            cache: c,
            tokens: t,
        })
        .collect();
    let scale = 1.0 / (hd as f64).sqrt();
    // Candle's ops round q and the probabilities to the cache dtype, the kernel keeps them
    // in f32: at half precision they differ by a few 1e-2 (measured on the CPU path); an
    // indexing or masking error differs by O(1).
    let tol = if cache_dtype == DType::F32 {
        1e-3
    } else {
        1e-1
    };
    for window in [None, Some(4)] {
        let ours = ragged_attention(0, &q, &segs, (h, kv, hd), window, scale as f32)?;
        let ops = super::model::candle_attention(0, &q, &segs, (h, kv, hd), window, scale)?;
        let diff = (ours - ops)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        if diff.is_nan() || diff >= tol {
            return Err(cuda_err(format!(
                "differs from candle's attention by {diff} (window {window:?}, {cache_dtype:?})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments<'a>(cs: &'a mut [SeqCache], toks: &'a [Vec<u32>]) -> Vec<Segment<'a>> {
        cs.iter_mut()
            .zip(toks)
            .map(|(c, t)| Segment {
                cache: c,
                tokens: t,
            })
            .collect()
    }

    /// The kernel against the CPU's f64 reference on random ragged steps of awkward shapes
    /// (head_dim not a multiple of 32, GQA, windows, long and one-token segments), in every
    /// cache dtype. Runs wherever a GPU exists; elsewhere it says so and passes.
    #[test]
    fn kernel_matches_cpu_reference() {
        let gpu = match Device::new_cuda(0) {
            Ok(d) => d,
            Err(_) => {
                eprintln!("no CUDA device: attention kernel test skipped");
                return;
            }
        };
        let cpu = Device::Cpu;
        for (h, kv, hd) in [(6, 2, 40), (9, 3, 64), (4, 4, 80), (8, 1, 256)] {
            // The reference reads the same (rounded) cache values widened to f32 and
            // accumulates in f64; the kernel accumulates in f32 with fast-math exp, so every
            // dtype agrees to float error.
            for dt in [DType::F32, DType::F16, DType::BF16] {
                let tol = 1e-3f32;
                for window in [None, Some(5)] {
                    let lens = [(0usize, 17usize), (40, 1), (0, 1), (3, 2), (130, 1)];
                    let mut on_cpu = Vec::new();
                    let mut on_gpu = Vec::new();
                    for &(before, n) in &lens {
                        let cap = before + n + 3;
                        let r = || {
                            Tensor::randn(0f32, 1.0, (cap, kv, hd), &cpu)
                                .and_then(|t| t.to_dtype(dt))
                                .unwrap()
                        };
                        let (k, v) = (r(), r());
                        let wide = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
                        on_cpu.push(SeqCache {
                            k: vec![wide(&k)],
                            v: vec![wide(&v)],
                            len: before,
                            capacity: cap,
                        });
                        on_gpu.push(SeqCache {
                            k: vec![k.to_device(&gpu).unwrap()],
                            v: vec![v.to_device(&gpu).unwrap()],
                            len: before,
                            capacity: cap,
                        });
                    }
                    let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
                    let rows: usize = lens.iter().map(|l| l.1).sum();
                    let q = Tensor::randn(0f32, 1.0, (rows, h, hd), &cpu).unwrap();
                    let want = crate::engine::model::reference_attention(
                        0,
                        &q,
                        &segments(&mut on_cpu, &toks),
                        (h, kv, hd),
                        window,
                        0.3,
                    )
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                    let got = ragged_attention(
                        0,
                        &q.to_device(&gpu).unwrap(),
                        &segments(&mut on_gpu, &toks),
                        (h, kv, hd),
                        window,
                        0.3,
                    )
                    .unwrap()
                    .to_device(&cpu)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                    let worst = got
                        .iter()
                        .flatten()
                        .zip(want.iter().flatten())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < tol,
                        "({h}, {kv}, {hd}) {dt:?} window {window:?}: max difference {worst}"
                    );
                }
            }
        }
    }
}
