//! Cosine-similarity search over unit vectors: all pairs at or above a threshold.
//!
//! The N×N similarity matrix is never materialized: rows are cut into tiles, each rayon task
//! multiplies one tile pair with a single-threaded gemm (the kernels candle uses) and keeps
//! only the entries at or above the threshold while the tile is hot in cache. Memory is
//! `threads × TILE²` floats plus the pairs found. For large N, [`pairs_clustered`] first
//! groups the vectors with spherical k-means and compares only within groups (SemDeDup /
//! NeMo Curator style), so the work grows with N·(cluster size), not N².
//!
//! `kernels/similarity.cu` is the CUDA version of [`self_pairs`]; this file is its reference.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Rows per tile: a 256×256 f32 tile (256 KiB) stays in L2 next to its two 256×384 inputs.
pub const TILE: usize = 256;

/// A similar pair: row indices and their cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub i: u32,
    pub j: u32,
    pub sim: f32,
}

/// `dst[m×n] = a[m×dim] · b[n×dim]ᵀ`, single-threaded.
fn tile_dot(a: &[f32], b: &[f32], dim: usize, dst: &mut [f32]) {
    let (m, n) = (a.len() / dim, b.len() / dim);
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: the slices hold exactly m×dim, n×dim and m×n floats, and the strides below
    // describe row-major a, transposed row-major b and row-major dst within those bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            dim as isize,
            b.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// All pairs `i < j` of rows of `v` (`n × dim`, unit rows) with cosine ≥ `threshold`,
/// sorted by (i, j).
pub fn self_pairs(v: &[f32], dim: usize, threshold: f32) -> Vec<Pair> {
    let n = v.len() / dim;
    let tiles = n.div_ceil(TILE);
    let jobs: Vec<(usize, usize)> = (0..tiles)
        .flat_map(|ti| (ti..tiles).map(move |tj| (ti, tj)))
        .collect();
    let mut pairs: Vec<Pair> = jobs
        .par_iter()
        .map_init(
            || vec![0f32; TILE * TILE],
            |buf, &(ti, tj)| {
                let (i0, i1) = (ti * TILE, ((ti + 1) * TILE).min(n));
                let (j0, j1) = (tj * TILE, ((tj + 1) * TILE).min(n));
                let w = j1 - j0;
                let dst = &mut buf[..(i1 - i0) * w];
                tile_dot(&v[i0 * dim..i1 * dim], &v[j0 * dim..j1 * dim], dim, dst);
                let mut out = Vec::new();
                for (r, row) in dst.chunks_exact(w).enumerate() {
                    let i = i0 + r;
                    // On the diagonal tile only the upper triangle counts.
                    let c0 = if ti == tj { r + 1 } else { 0 };
                    for (c, &s) in row.iter().enumerate().skip(c0) {
                        if s >= threshold {
                            out.push(Pair {
                                i: i as u32,
                                j: (j0 + c) as u32,
                                sim: s,
                            });
                        }
                    }
                }
                out
            },
        )
        .flatten()
        .collect();
    pairs.sort_by_key(|p| (p.i, p.j));
    pairs
}

/// All pairs (i in `a`, j in `b`) with cosine ≥ `threshold`, sorted by (i, j).
pub fn cross_pairs(a: &[f32], b: &[f32], dim: usize, threshold: f32) -> Vec<Pair> {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    let jobs: Vec<(usize, usize)> = (0..na.div_ceil(TILE))
        .flat_map(|ti| (0..nb.div_ceil(TILE)).map(move |tj| (ti, tj)))
        .collect();
    let mut pairs: Vec<Pair> = jobs
        .par_iter()
        .map_init(
            || vec![0f32; TILE * TILE],
            |buf, &(ti, tj)| {
                let (i0, i1) = (ti * TILE, ((ti + 1) * TILE).min(na));
                let (j0, j1) = (tj * TILE, ((tj + 1) * TILE).min(nb));
                let w = j1 - j0;
                let dst = &mut buf[..(i1 - i0) * w];
                tile_dot(&a[i0 * dim..i1 * dim], &b[j0 * dim..j1 * dim], dim, dst);
                let mut out = Vec::new();
                for (r, row) in dst.chunks_exact(w).enumerate() {
                    for (c, &s) in row.iter().enumerate() {
                        if s >= threshold {
                            out.push(Pair {
                                i: (i0 + r) as u32,
                                j: (j0 + c) as u32,
                                sim: s,
                            });
                        }
                    }
                }
                out
            },
        )
        .flatten()
        .collect();
    pairs.sort_by_key(|p| (p.i, p.j));
    pairs
}

/// The textbook definition in f64, for tests: every pair, one dot product at a time.
pub fn self_pairs_reference(v: &[f32], dim: usize, threshold: f32) -> Vec<Pair> {
    let n = v.len() / dim;
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let s: f64 = (0..dim)
                .map(|k| v[i * dim + k] as f64 * v[j * dim + k] as f64)
                .sum();
            if s >= threshold as f64 {
                out.push(Pair {
                    i: i as u32,
                    j: j as u32,
                    sim: s as f32,
                });
            }
        }
    }
    out
}

/// Rows of unit vectors wherever they live: a flat buffer, or a memory-mapped index with a
/// stride and a subset of its rows. The large-N path reads rows through this, so a merge
/// never copies ten million vectors into memory.
pub trait Rows: Sync {
    /// How many rows.
    fn len(&self) -> usize;
    /// Row `i` (`dim` floats).
    fn row(&self, i: usize) -> &[f32];
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows `idx` copied into one flat buffer.
    fn gather(&self, idx: impl Iterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for i in idx {
            out.extend_from_slice(self.row(i));
        }
        out
    }
}

/// A flat `n × dim` buffer as [`Rows`].
pub struct Flat<'a> {
    pub v: &'a [f32],
    pub dim: usize,
}

impl Rows for Flat<'_> {
    fn len(&self) -> usize {
        self.v.len() / self.dim.max(1)
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.v[i * self.dim..(i + 1) * self.dim]
    }
}

/// Spherical k-means (cosine), seeded: returns each row's nearest and second-nearest
/// cluster. Centroids start at `k` distinct random rows; each round assigns by the largest
/// dot product (tiled gemm) and re-normalizes the means.
pub fn kmeans(v: &[f32], dim: usize, k: usize, rounds: usize, seed: u64) -> Vec<(u32, u32)> {
    kmeans_rows(&Flat { v, dim }, dim, k, rounds, seed)
}

/// [`kmeans`] over any [`Rows`].
pub fn kmeans_rows(
    v: &impl Rows,
    dim: usize,
    k: usize,
    rounds: usize,
    seed: u64,
) -> Vec<(u32, u32)> {
    let n = v.len();
    let k = k.clamp(1, n.max(1));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut picks: Vec<usize> = Vec::with_capacity(k);
    while picks.len() < k {
        let r = rng.random_range(0..n);
        if !picks.contains(&r) {
            picks.push(r);
        }
    }
    let mut c: Vec<f32> = v.gather(picks.iter().copied());
    let mut assign = vec![(0u32, 0u32); n];
    let chunks = n.div_ceil(TILE);
    for round in 0..rounds.max(1) {
        assign = (0..chunks)
            .into_par_iter()
            .flat_map_iter(|t| {
                let rows = v.gather(t * TILE..((t + 1) * TILE).min(n));
                let m = rows.len() / dim;
                let mut dst = vec![0f32; m * k];
                tile_dot(&rows, &c, dim, &mut dst);
                dst.chunks_exact(k)
                    .map(|row| {
                        let (mut best, mut second) =
                            ((f32::NEG_INFINITY, 0u32), (f32::NEG_INFINITY, 0u32));
                        for (j, &s) in row.iter().enumerate() {
                            if s > best.0 {
                                second = best;
                                best = (s, j as u32);
                            } else if s > second.0 {
                                second = (s, j as u32);
                            }
                        }
                        (best.1, if k > 1 { second.1 } else { best.1 })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if round + 1 == rounds.max(1) {
            break;
        }
        let mut sums = vec![0f32; k * dim];
        for (i, &(a, _)) in assign.iter().enumerate() {
            let s = &mut sums[a as usize * dim..(a as usize + 1) * dim];
            s.iter_mut().zip(v.row(i)).for_each(|(x, y)| *x += y);
        }
        for (j, s) in sums.chunks_exact_mut(dim).enumerate() {
            // An empty cluster keeps its old centroid.
            if crate::embed::normalize(s) && s.iter().any(|&x| x != 0.0) {
                c[j * dim..(j + 1) * dim].copy_from_slice(s);
            }
        }
    }
    assign
}

/// Pairs ≥ threshold found within k-means clusters of about `cluster_size` rows.
///
/// Each row lives in its nearest cluster and also visits its second-nearest: a cluster
/// compares its residents with each other and with its visitors. Near-duplicates sit close
/// together, so when a boundary splits a pair, one of them almost always has the other's
/// cluster second. Cost: about 3× one-cluster-per-row, still N·(cluster size), not N².
/// Pairs whose rows share neither cluster are missed (the bench measures the recall).
pub fn pairs_clustered(
    v: &[f32],
    dim: usize,
    threshold: f32,
    cluster_size: usize,
    seed: u64,
) -> Vec<Pair> {
    pairs_clustered_rows(&Flat { v, dim }, dim, threshold, cluster_size, seed)
}

/// [`pairs_clustered`] over any [`Rows`]: memory is the assignments, one cluster's rows
/// per thread, and the pairs found.
pub fn pairs_clustered_rows(
    v: &impl Rows,
    dim: usize,
    threshold: f32,
    cluster_size: usize,
    seed: u64,
) -> Vec<Pair> {
    let n = v.len();
    let k = n.div_ceil(cluster_size.max(1));
    let assign = kmeans_rows(v, dim, k, 8, seed);
    let mut home: Vec<Vec<u32>> = vec![Vec::new(); k];
    let mut guest: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (i, &(a, b)) in assign.iter().enumerate() {
        home[a as usize].push(i as u32);
        if b != a {
            guest[b as usize].push(i as u32);
        }
    }
    let rows = |m: &[u32]| -> Vec<f32> { v.gather(m.iter().map(|&i| i as usize)) };
    let pair = |a: u32, b: u32, sim: f32| Pair {
        i: a.min(b),
        j: a.max(b),
        sim,
    };
    let mut pairs: Vec<Pair> = (0..k)
        .into_par_iter()
        .flat_map_iter(|c| {
            let (h, g) = (&home[c], &guest[c]);
            let hv = rows(h);
            let mut out: Vec<Pair> = self_pairs_serial(&hv, dim, threshold)
                .into_iter()
                .map(|p| pair(h[p.i as usize], h[p.j as usize], p.sim))
                .collect();
            if !g.is_empty() && !h.is_empty() {
                out.extend(
                    cross_pairs_serial(&hv, &rows(g), dim, threshold)
                        .into_iter()
                        .map(|p| pair(h[p.i as usize], g[p.j as usize], p.sim)),
                );
            }
            out
        })
        .collect();
    pairs.sort_by_key(|p| (p.i, p.j));
    pairs.dedup_by_key(|p| (p.i, p.j));
    pairs
}

/// [`cross_pairs`] without inner parallelism.
fn cross_pairs_serial(a: &[f32], b: &[f32], dim: usize, threshold: f32) -> Vec<Pair> {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    let mut buf = vec![0f32; TILE * TILE];
    let mut out = Vec::new();
    for i0 in (0..na).step_by(TILE) {
        let i1 = (i0 + TILE).min(na);
        for j0 in (0..nb).step_by(TILE) {
            let j1 = (j0 + TILE).min(nb);
            let w = j1 - j0;
            let dst = &mut buf[..(i1 - i0) * w];
            tile_dot(&a[i0 * dim..i1 * dim], &b[j0 * dim..j1 * dim], dim, dst);
            for (r, row) in dst.chunks_exact(w).enumerate() {
                for (c, &s) in row.iter().enumerate() {
                    if s >= threshold {
                        out.push(Pair {
                            i: (i0 + r) as u32,
                            j: (j0 + c) as u32,
                            sim: s,
                        });
                    }
                }
            }
        }
    }
    out
}

/// [`self_pairs`] without inner parallelism (clusters already run in parallel).
fn self_pairs_serial(v: &[f32], dim: usize, threshold: f32) -> Vec<Pair> {
    let n = v.len() / dim;
    let mut buf = vec![0f32; TILE * TILE];
    let mut out = Vec::new();
    for i0 in (0..n).step_by(TILE) {
        let i1 = (i0 + TILE).min(n);
        for j0 in (i0..n).step_by(TILE) {
            let j1 = (j0 + TILE).min(n);
            let w = j1 - j0;
            let dst = &mut buf[..(i1 - i0) * w];
            tile_dot(&v[i0 * dim..i1 * dim], &v[j0 * dim..j1 * dim], dim, dst);
            for (r, row) in dst.chunks_exact(w).enumerate() {
                let c0 = if i0 == j0 { r + 1 } else { 0 };
                for (c, &s) in row.iter().enumerate().skip(c0) {
                    if s >= threshold {
                        out.push(Pair {
                            i: (i0 + r) as u32,
                            j: (j0 + c) as u32,
                            sim: s,
                        });
                    }
                }
            }
        }
    }
    out
}
