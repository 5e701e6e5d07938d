//! The CPU fast path of the BERT encoder: the same math as [`super::bert`] on plain slices.
//!
//! Why not candle ops on CPU: profiling the candle version showed ~55% of the time outside
//! the matmuls — scalar `erf` from libm in GELU (~12%), page faults from a fresh 10–50 MB
//! tensor per op, and separate passes for each bias add and residual. Here the bias and the
//! residual are written into the output first and the gemm accumulates onto them
//! (`read_dst`), GELU uses a vectorizable rational erf (Eigen's, a few ulp in f32), layer
//! norm is one pass per row, and the buffers live for the whole forward. The candle path
//! stays the reference (and the GPU path); a test compares the two.

use super::bert::{attention_cpu, BertEncoder};
use crate::error::Result;
use crate::multiversion;
use rayon::prelude::*;

struct Layer {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    o_w: Vec<f32>,
    o_b: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    i_w: Vec<f32>,
    i_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
}

/// BERT weights as plain `[in, out]` row-major slices.
pub struct CpuBert {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    gelu_erf: bool,
    word: Vec<f32>,
    pos: Vec<f32>,
    type0: Vec<f32>,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
}

/// Rows per rayon task in the element-wise passes.
const ROWS: usize = 32;

impl CpuBert {
    /// Copies the weights out of a CPU [`BertEncoder`].
    pub fn from_encoder(e: &BertEncoder) -> Result<CpuBert> {
        let v = |t: &candle_core::Tensor| -> Result<Vec<f32>> {
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let w = e.weights();
        let mut layers = Vec::new();
        for l in w.layers {
            layers.push(Layer {
                qkv_w: v(l[0])?,
                qkv_b: v(l[1])?,
                o_w: v(l[2])?,
                o_b: v(l[3])?,
                ln1: (v(l[4])?, v(l[5])?),
                i_w: v(l[6])?,
                i_b: v(l[7])?,
                out_w: v(l[8])?,
                out_b: v(l[9])?,
                ln2: (v(l[10])?, v(l[11])?),
            });
        }
        let cfg = e.config();
        Ok(CpuBert {
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            inter: cfg.intermediate_size,
            eps: cfg.layer_norm_eps as f32,
            gelu_erf: cfg.hidden_act == "gelu",
            word: v(w.word)?,
            pos: v(w.pos)?,
            type0: v(w.type0)?,
            emb_ln: (v(w.emb_ln.0)?, v(w.emb_ln.1)?),
            layers,
        })
    }

    /// Last hidden states `[tokens, hidden]` of packed sequences (ids already validated).
    pub fn forward(&self, ids: &[u32], lens: &[usize]) -> Vec<f32> {
        let (h, t) = (self.hidden, ids.len());
        let positions: Vec<usize> = lens.iter().flat_map(|&l| 0..l).collect();
        let mut x = vec![0f32; t * h];
        x.par_chunks_mut(h).enumerate().for_each(|(r, row)| {
            let w = &self.word[ids[r] as usize * h..][..h];
            let p = &self.pos[positions[r] * h..][..h];
            for k in 0..h {
                row[k] = w[k] + p[k] + self.type0[k];
            }
        });
        layer_norm(&mut x, h, &self.emb_ln, self.eps);
        let mut qkv = vec![0f32; t * 3 * h];
        let mut attn = vec![0f32; t * h];
        let mut mid = vec![0f32; t * self.inter];
        for l in &self.layers {
            fill_rows(&mut qkv, &l.qkv_b, None);
            matmul_acc(&x, &l.qkv_w, &mut qkv, h, 3 * h);
            attention_cpu(&qkv, &mut attn, lens, h, self.heads);
            // x ← LN(x + attn·Wo + bo): the residual and bias go in first, gemm adds onto them.
            let mut y = vec![0f32; t * h];
            fill_rows(&mut y, &l.o_b, Some(&x));
            matmul_acc(&attn, &l.o_w, &mut y, h, h);
            layer_norm(&mut y, h, &l.ln1, self.eps);
            x = y;
            fill_rows(&mut mid, &l.i_b, None);
            matmul_acc(&x, &l.i_w, &mut mid, h, self.inter);
            gelu(&mut mid, self.gelu_erf);
            let mut y = vec![0f32; t * h];
            fill_rows(&mut y, &l.out_b, Some(&x));
            matmul_acc(&mid, &l.out_w, &mut y, self.inter, h);
            layer_norm(&mut y, h, &l.ln2, self.eps);
            x = y;
        }
        x
    }
}

/// Every row of `dst` ← `bias` (+ the same row of `residual`).
fn fill_rows(dst: &mut [f32], bias: &[f32], residual: Option<&[f32]>) {
    let w = bias.len();
    dst.par_chunks_mut(w * ROWS)
        .enumerate()
        .for_each(|(c, rows)| match residual {
            Some(res) => add_rows(rows, bias, &res[c * ROWS * w..][..rows.len()]),
            None => rows
                .chunks_exact_mut(w)
                .for_each(|r| r.copy_from_slice(bias)),
        });
}

multiversion! {
    /// `rows[r] ← bias + res[r]`, row by row.
    fn add_rows(rows: &mut [f32], bias: &[f32], res: &[f32]) {
        for (row, src) in rows.chunks_exact_mut(bias.len()).zip(res.chunks_exact(bias.len())) {
            for ((o, b), x) in row.iter_mut().zip(bias).zip(src) {
                *o = b + x;
            }
        }
    }
}

/// `dst[m×n] += a[m×k] · w[k×n]`, all row-major, on rayon threads.
fn matmul_acc(a: &[f32], w: &[f32], dst: &mut [f32], k: usize, n: usize) {
    let m = a.len() / k;
    // SAFETY: a is m×k, w is k×n and dst is m×n, row-major, exactly as the strides say.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

/// Layer norm of each row in place (statistics in f32, as candle and PyTorch compute them).
fn layer_norm(x: &mut [f32], h: usize, (g, b): &(Vec<f32>, Vec<f32>), eps: f32) {
    x.par_chunks_mut(h * ROWS)
        .for_each(|rows| layer_norm_rows(rows, g, b, eps));
}

multiversion! {
    fn layer_norm_rows(rows: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
        let h = g.len();
        for row in rows.chunks_exact_mut(h) {
            let mean = lane_sum(row.iter().copied()) / h as f32;
            let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(g).zip(b) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// Sum with eight lane accumulators so it vectorizes (see [`crate::cpu::dot`]).
#[inline(always)]
fn lane_sum(it: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in it.enumerate() {
        acc[i & 7] += v;
    }
    acc.iter().sum()
}

/// GELU in place: exact (erf) or the tanh form, per the model's config.
fn gelu(x: &mut [f32], exact: bool) {
    x.par_chunks_mut(4096).for_each(|c| gelu_chunk(c, exact));
}

multiversion! {
    fn gelu_chunk(c: &mut [f32], exact: bool) {
        if exact {
            for v in c.iter_mut() {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        } else {
            for v in c.iter_mut() {
                let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
                *v = 0.5 * *v * (1.0 + u.tanh());
            }
        }
    }
}

/// erf(x) in f32 as a rational function of x² on [-4, 4] (Eigen's `generic_fast_erf_float`,
/// also TensorFlow's): branch-free, so the loop above vectorizes. |error| ≲ 1e-7.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    p / q
}
