//! MinHash signatures and LSH banding for near-duplicate detection.
//!
//! Each permutation is a multiply-shift hash `(a·x + b) >> 32` over the 64-bit shingle hash
//! (Dietzfelbinger's scheme): one multiply and add per shingle and permutation, which the
//! compiler vectorizes across permutations. The signature keeps 32 bits per permutation, as
//! datasketch does.

use super::text;
use crate::spec::Shingle;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::collections::HashMap;

/// Computes signatures for one configuration (permutations are fixed by the seed).
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    pub shingle: Shingle,
}

impl MinHasher {
    pub fn new(num_perm: usize, shingle: Shingle, seed: u64) -> MinHasher {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a = (0..num_perm).map(|_| rng.random::<u64>() | 1).collect();
        let b = (0..num_perm).map(|_| rng.random::<u64>()).collect();
        MinHasher { a, b, shingle }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of a text; `None` for a text with no words (nothing to compare).
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        let hs = text::shingle_hashes(text, self.shingle);
        if hs.is_empty() {
            return None;
        }
        let mut sig = vec![u32::MAX; self.a.len()];
        for &x in &hs {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *s = (*s).min(h);
            }
        }
        Some(sig)
    }

    /// Signatures of many texts in parallel.
    pub fn signatures(&self, texts: &[&str]) -> Vec<Option<Vec<u32>>> {
        texts.par_iter().map(|t| self.signature(t)).collect()
    }
}

/// Estimated Jaccard similarity: the share of equal signature slots.
pub fn estimate(a: &[u32], b: &[u32]) -> f32 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f32 / a.len().max(1) as f32
}

/// Exact Jaccard similarity of two sorted, deduplicated hash sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f32 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

/// LSH bands × rows for a threshold: the pair that minimizes the weighted areas of false
/// positives below the threshold and false negatives above it under the banding S-curve
/// `1 - (1 - s^r)^b`, as datasketch and text-dedup choose them (they weigh both 0.5).
///
/// Every candidate is then checked against the threshold, so a false positive costs one
/// comparison while a false negative is a duplicate kept: [`RECALL_WEIGHT`] leans the
/// curve toward recall.
pub fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    optimal_bands_weighted(threshold, num_perm, 0.5)
}

/// The false-negative weight used by dedup (false positives get 1 − this).
pub const RECALL_WEIGHT: f64 = 0.9;

/// [`optimal_bands`] with a false-negative weight `fn_weight` (false positives: 1 − it).
pub fn optimal_bands_weighted(threshold: f64, num_perm: usize, fn_weight: f64) -> (usize, usize) {
    fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        // Simpson's rule; the integrands are smooth.
        let n = 200;
        let h = (b - a) / n as f64;
        let mut s = f(a) + f(b);
        for i in 1..n {
            s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }
    let mut best = (f64::INFINITY, (1, 1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = integrate(p, 0.0, threshold);
            let fn_ = integrate(|s| 1.0 - p(s), threshold, 1.0);
            let err = (1.0 - fn_weight) * fp + fn_weight * fn_;
            if err < best.0 {
                best = (err, (b, r));
            }
        }
    }
    best.1
}

/// Candidate pairs from LSH banding, each checked by `on_pair` before it counts.
///
/// Per band, texts with the same band hash share a bucket; each new member is compared with
/// every earlier member of its bucket until `on_pair` says it is in that member's cluster
/// (joined now, or already). Members of one cluster therefore cost one check each, and only
/// distinct texts that collide in a whole band (probability s^rows at Jaccard s) add checks. An earlier version stopped after the first 16 members and could miss a
/// duplicate that sat further down a bucket of colliding texts.
pub fn candidate_pairs(
    sigs: &[Option<Vec<u32>>],
    bands: usize,
    rows: usize,
    on_pair: impl FnMut(usize, usize) -> bool,
) {
    candidate_pairs_by(sigs.len(), |i| sigs[i].as_deref(), bands, rows, on_pair)
}

/// [`candidate_pairs`] over `n` signatures given by `sig(i)`, wherever they live (in
/// memory, or memory-mapped from the index a shard wrote). Holds only the band hashes.
pub fn candidate_pairs_by<'a>(
    n: usize,
    sig: impl Fn(usize) -> Option<&'a [u32]> + Sync,
    bands: usize,
    rows: usize,
    mut on_pair: impl FnMut(usize, usize) -> bool,
) {
    // One flat array (bands per text), no per-text allocation: 10M texts × 9 bands is
    // 720 MB. A text without a signature has no band hashes and joins no bucket.
    const NONE: u64 = u64::MAX;
    let mut band_hashes = vec![NONE; n * bands];
    band_hashes
        .par_chunks_mut(bands.max(1))
        .enumerate()
        .for_each(|(i, out)| {
            if let Some(s) = sig(i) {
                for (b, o) in out.iter_mut().enumerate() {
                    let mut h: u64 = (b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    for &v in &s[b * rows..(b + 1) * rows] {
                        h = text::fmix(h ^ v as u64);
                    }
                    // NONE marks "no signature"; a real hash equal to it moves by one.
                    *o = if h == NONE { h - 1 } else { h };
                }
            }
        });
    for b in 0..bands {
        let mut buckets: HashMap<u64, Vec<u32>> = HashMap::new();
        for i in 0..n {
            let h = band_hashes[i * bands + b];
            if h == NONE {
                continue;
            }
            let members = buckets.entry(h).or_default();
            for &e in members.iter() {
                // on_pair returns true once i is joined to e's cluster: nothing more to learn here.
                if on_pair(e as usize, i) {
                    break;
                }
            }
            members.push(i as u32);
        }
    }
}
