//! The GPU path of semantic dedup: `kernels/similarity.cu` launched through candle's CUDA
//! device (cudarc). [`super::semantic`]'s CPU functions are the reference it is tested against.

use super::semantic::Pair;
use crate::error::{Error, Result};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::CudaDevice;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/similarity.ptx"));
const TILE: usize = 64;

fn cuda_err(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("CUDA similarity kernel: {e}"))
}

/// Pairs (i, j) with dot ≥ threshold between rows of `a` and rows of `b` (or, with `b` =
/// `None`, between rows of `a` with i < j), sorted by (i, j).
pub fn pairs(
    dev: &CudaDevice,
    a: &[f32],
    b: Option<&[f32]>,
    dim: usize,
    threshold: f32,
) -> Result<Vec<Pair>> {
    let na = a.len() / dim;
    let nb = b.map_or(na, |b| b.len() / dim);
    if na == 0 || nb == 0 {
        return Ok(Vec::new());
    }
    let func = dev
        .get_or_load_custom_func("sim_pairs_f32", "flywheel_similarity", PTX)
        .map_err(cuda_err)?;
    let da = dev.clone_htod(a).map_err(cuda_err)?;
    let db = match b {
        Some(b) => Some(dev.clone_htod(b).map_err(cuda_err)?),
        None => None,
    };
    // Start with room for ~4 pairs per row; rerun once with the exact count if that overflows.
    let mut capacity = (4 * na.max(nb)).max(1024);
    loop {
        let mut out_i = dev.alloc_zeros::<u32>(capacity).map_err(cuda_err)?;
        let mut out_j = dev.alloc_zeros::<u32>(capacity).map_err(cuda_err)?;
        let mut out_s = dev.alloc_zeros::<f32>(capacity).map_err(cuda_err)?;
        let mut count = dev.alloc_zeros::<u32>(1).map_err(cuda_err)?;
        let cfg = LaunchConfig {
            grid_dim: (nb.div_ceil(TILE) as u32, na.div_ceil(TILE) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (na_i, nb_i, dim_i) = (na as i32, nb as i32, dim as i32);
        let self_mode = b.is_none() as i32;
        let cap_u = capacity as u32;
        let mut builder = func.builder();
        builder.arg(&da);
        builder.arg(&na_i);
        builder.arg(db.as_ref().unwrap_or(&da));
        builder.arg(&nb_i);
        builder.arg(&dim_i);
        builder.arg(&threshold);
        builder.arg(&self_mode);
        builder.arg(&mut out_i);
        builder.arg(&mut out_j);
        builder.arg(&mut out_s);
        builder.arg(&mut count);
        builder.arg(&cap_u);
        // SAFETY: the arguments match the kernel's signature in kernels/similarity.cu, the
        // buffers hold `capacity` entries and the kernel writes only below `capacity`.
        unsafe { builder.launch(cfg) }.map_err(cuda_err)?;
        let n = dev.clone_dtoh(&count).map_err(cuda_err)?[0] as usize;
        if n > capacity {
            capacity = n;
            continue;
        }
        let (i, j, s) = (
            dev.clone_dtoh(&out_i).map_err(cuda_err)?,
            dev.clone_dtoh(&out_j).map_err(cuda_err)?,
            dev.clone_dtoh(&out_s).map_err(cuda_err)?,
        );
        let mut p: Vec<Pair> = (0..n)
            .map(|k| Pair {
                i: i[k],
                j: j[k],
                sim: s[k],
            })
            .collect();
        p.sort_by_key(|p| (p.i, p.j));
        return Ok(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// GPU kernel vs the CPU reference on random inputs with planted pairs; runs wherever a
    /// GPU exists (on a CPU-only machine it says so and passes).
    #[test]
    fn kernel_matches_cpu_reference() {
        let dev = match candle_core::Device::new_cuda(0) {
            Ok(candle_core::Device::Cuda(d)) => d,
            _ => {
                eprintln!("no CUDA device: kernel test skipped");
                return;
            }
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (n, dim) in [(1000usize, 384usize), (257, 40), (64, 7)] {
            let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
            for r in v.chunks_exact_mut(dim) {
                crate::embed::normalize(r);
            }
            for k in 0..n / 10 {
                let (src, dst) = (k, n - 1 - k);
                if src < dst {
                    let row: Vec<f32> = v[src * dim..(src + 1) * dim]
                        .iter()
                        .map(|x| x + 0.003)
                        .collect();
                    v[dst * dim..(dst + 1) * dim].copy_from_slice(&row);
                    crate::embed::normalize(&mut v[dst * dim..(dst + 1) * dim]);
                }
            }
            for t in [0.3f32, 0.9] {
                let gpu = pairs(&dev, &v, None, dim, t).unwrap();
                let cpu = super::super::semantic::self_pairs(&v, dim, t);
                // Pairs within 1e-4 of the threshold may fall either side (summation order).
                let strict = |p: &[Pair]| -> Vec<(u32, u32)> {
                    p.iter()
                        .filter(|p| (p.sim - t).abs() > 1e-4)
                        .map(|p| (p.i, p.j))
                        .collect()
                };
                assert_eq!(strict(&gpu), strict(&cpu), "n {n} dim {dim} t {t}");
                let half = n / 2 * dim;
                let g = pairs(&dev, &v[..half], Some(&v[half..]), dim, t).unwrap();
                let c = super::super::semantic::cross_pairs(&v[..half], &v[half..], dim, t);
                assert_eq!(strict(&g), strict(&c), "cross n {n} dim {dim} t {t}");
            }
        }
    }
}
