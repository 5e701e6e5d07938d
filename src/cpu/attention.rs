//! One CPU attention for every caller: the engine's causal, ragged steps over per-sequence
//! KV caches (grouped-query heads, sliding windows) and the embedder's bidirectional
//! attention over packed sequences. Both describe each query row by where its keys are
//! ([`KvView`]) and which positions it sees ([`QueryRow`]); each (row, head) is computed
//! on its own with a fixed summation order, so a row's output never depends on the other
//! rows of the call (batch invariance) and is the same on every run.

use super::{axpy, dot, softmax_exp};
use rayon::prelude::*;

/// Keys and values laid out position-major: position `p`, KV head `g` starts at
/// `p * stride + g * head_dim` in both `k` and `v`. An engine cache is
/// `[positions, kv_heads, head_dim]` (stride `kv_heads * head_dim`); the embedder's packed
/// `[tokens, q | k | v]` rows are a view starting at the k (or v) block, stride `3 * hidden`.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub stride: usize,
}

/// One query row: it attends to positions `first..end` of `kvs[kv]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRow {
    pub kv: usize,
    pub first: usize,
    pub end: usize,
}

/// The signature [`attention`] and [`attention_f64`] share, so a caller can pick one.
pub type Kernel =
    fn(&[f32], usize, &[QueryRow], &[KvView<'_>], (usize, usize, usize), f32, &mut [f32]);

/// `softmax(q · kᵀ · scale) · v` for every row, on rayon threads. Row `t`'s queries are
/// `q[t * q_stride..]` (heads side by side), its output `out[t * h * hd..][..h * hd]`
/// (overwritten). `shape` is (query heads, KV heads, head dim); query head `i` reads KV
/// head `i / (h / kv)`.
pub fn attention(
    q: &[f32],
    q_stride: usize,
    rows: &[QueryRow],
    kvs: &[KvView<'_>],
    shape: (usize, usize, usize),
    scale: f32,
    out: &mut [f32],
) {
    each_row(q, q_stride, rows, kvs, shape, out, |q, kv, row, o| {
        attend_row(q, kv, row, shape, scale, o)
    });
}

/// [`attention`] computed the textbook way, accumulated in f64: the reference every
/// attention kernel (this module's, candle's ops, the CUDA kernel) is tested against.
pub fn attention_f64(
    q: &[f32],
    q_stride: usize,
    rows: &[QueryRow],
    kvs: &[KvView<'_>],
    shape: (usize, usize, usize),
    scale: f32,
    out: &mut [f32],
) {
    each_row(q, q_stride, rows, kvs, shape, out, |q, kv, row, o| {
        attend_row_f64(q, kv, row, shape, scale as f64, o)
    });
}

/// Runs `f(row's queries, its keys and values, the row, its output)` for every row on
/// rayon threads.
fn each_row(
    q: &[f32],
    q_stride: usize,
    rows: &[QueryRow],
    kvs: &[KvView<'_>],
    (h, _, hd): (usize, usize, usize),
    out: &mut [f32],
    f: impl Fn(&[f32], &KvView<'_>, QueryRow, &mut [f32]) + Sync,
) {
    out.par_chunks_mut(h * hd)
        .zip(rows)
        .enumerate()
        .for_each(|(t, (orow, r))| f(&q[t * q_stride..], &kvs[r.kv], *r, orow));
}

crate::multiversion! {
    /// Every head of one query row (`q` starts at the row).
    fn attend_row(
        q: &[f32],
        kv: &KvView<'_>,
        row: QueryRow,
        shape: (usize, usize, usize),
        scale: f32,
        out: &mut [f32],
    ) {
        let (h, n_kv, hd) = shape;
        let groups = h / n_kv;
        let mut scores = vec![0f32; row.end - row.first];
        for head in 0..h {
            let at = |p: usize| (row.first + p) * kv.stride + (head / groups) * hd;
            let qv = &q[head * hd..][..hd];
            let mut max = f32::NEG_INFINITY;
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(qv, &kv.k[at(j)..][..hd]) * scale;
                max = max.max(*sc);
            }
            let inv = softmax_exp(&mut scores, max);
            let o = &mut out[head * hd..][..hd];
            o.fill(0.0);
            for (j, sc) in scores.iter().enumerate() {
                axpy(sc * inv, &kv.v[at(j)..][..hd], o);
            }
        }
    }
}

/// Every head of one query row, in f64.
fn attend_row_f64(
    q: &[f32],
    kv: &KvView<'_>,
    row: QueryRow,
    (h, n_kv, hd): (usize, usize, usize),
    scale: f64,
    out: &mut [f32],
) {
    let groups = h / n_kv;
    for head in 0..h {
        let at = |p: usize| p * kv.stride + (head / groups) * hd;
        let qv = &q[head * hd..][..hd];
        let s: Vec<f64> = (row.first..row.end)
            .map(|p| {
                (0..hd)
                    .map(|d| qv[d] as f64 * kv.k[at(p) + d] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for d in 0..hd {
            let v: f64 = (row.first..row.end)
                .zip(&e)
                .map(|(p, w)| w / z * kv.v[at(p) + d] as f64)
                .sum();
            out[head * hd + d] = v as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random values from a fixed seed (no tensor library needed).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The fast kernel against the f64 reference on both layouts: an engine cache (GQA,
    /// causal rows, a window) and the embedder's packed q|k|v rows (bidirectional).
    #[test]
    fn fast_matches_f64_on_cache_and_packed_layouts() {
        let (h, kv, hd) = (6, 2, 40); // hd not a multiple of 8: exercises the lane tail
        let (k, v) = (values(12 * kv * hd, 1), values(12 * kv * hd, 2));
        let kvs = [KvView {
            k: &k,
            v: &v,
            stride: kv * hd,
        }];
        let rows: Vec<QueryRow> = (0..12usize)
            .map(|p| QueryRow {
                kv: 0,
                first: p.saturating_sub(3),
                end: p + 1,
            })
            .collect();
        let q = values(rows.len() * h * hd, 3);
        let run = |f: Kernel| {
            let mut out = vec![0f32; rows.len() * h * hd];
            f(&q, h * hd, &rows, &kvs, (h, kv, hd), 0.3, &mut out);
            out
        };
        close(&run(attention), &run(attention_f64));

        let (hidden, heads, lens) = (32, 4, [5usize, 1, 9]);
        let t: usize = lens.iter().sum();
        let qkv = values(t * 3 * hidden, 4);
        let packed = [KvView {
            k: &qkv[hidden..],
            v: &qkv[2 * hidden..],
            stride: 3 * hidden,
        }];
        let mut rows = Vec::new();
        let mut off = 0;
        for len in lens {
            rows.extend((0..len).map(|_| QueryRow {
                kv: 0,
                first: off,
                end: off + len,
            }));
            off += len;
        }
        let shape = (heads, heads, hidden / heads);
        let (mut fast, mut slow) = (vec![1f32; t * hidden], vec![0f32; t * hidden]);
        attention(&qkv, 3 * hidden, &rows, &packed, shape, 0.25, &mut fast);
        attention_f64(&qkv, 3 * hidden, &rows, &packed, shape, 0.25, &mut slow);
        close(&fast, &slow);
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
