//! Distance to closest record (DCR) in embedding space, the SDMetrics idea for text: how
//! close each synthetic record comes to the real data, against how close real records come
//! to each other. A synthetic set that sits closer to the real records than a held-back
//! slice of the real data does is copying, not generalizing.

use crate::cpu::dot;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

/// For each row of `a`, the largest cosine to any row of `b` (non-empty) and that row
/// (unit vectors). A NaN cosine (an embedding with NaNs) counts as −∞, so it is never the
/// nearest and a row with no comparable partner gets −∞ and row 0, always a valid index.
pub fn nearest(a: &[f32], b: &[f32], dim: usize) -> Vec<(f32, usize)> {
    debug_assert!(!b.is_empty());
    a.par_chunks(dim)
        .map(|x| {
            b.chunks(dim)
                .enumerate()
                .map(|(j, y)| {
                    let c = dot(x, y);
                    (if c.is_nan() { f32::NEG_INFINITY } else { c }, j)
                })
                .fold((f32::NEG_INFINITY, 0), |m, c| if c.0 > m.0 { c } else { m })
        })
        .collect()
}

/// The DCR comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DcrStats {
    pub real_rest: usize,
    pub real_holdout: usize,
    /// Median nearest-real cosine of held-back real records (to the rest of the real data).
    pub holdout_median: f32,
    /// 95th percentile of the same.
    pub holdout_p95: f32,
    /// Median nearest-real cosine of synthetic records (to the same rest).
    pub synthetic_median: f32,
    /// Share of synthetic records closer to the real data than the median real record is.
    pub share_closer_than_real_median: f64,
    /// Share closer than 95 % of real records are: ≈ 0.05 is healthy, much more is copying.
    pub share_closer_than_real_p95: f64,
}

/// Splits real rows into (rest, holdout) with the seed; holdout at least 1 row, rest at
/// least 1 row (None when there are fewer than 2 real rows).
pub fn split(n_real: usize, holdout: f64, seed: u64) -> Option<(Vec<usize>, Vec<usize>)> {
    if n_real < 2 {
        return None;
    }
    let mut idx: Vec<usize> = (0..n_real).collect();
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let h = ((n_real as f64 * holdout).round() as usize).clamp(1, n_real - 1);
    let hold = idx[..h].to_vec();
    let rest = idx[h..].to_vec();
    Some((rest, hold))
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Compares synthetic nearest-real cosines with held-back real ones.
/// `syn_to_rest` and `hold_to_rest` are nearest cosines to the same `rest` set.
pub fn compare(syn_to_rest: &[f32], hold_to_rest: &[f32], rest: usize) -> DcrStats {
    let mut h = hold_to_rest.to_vec();
    h.sort_by(f32::total_cmp);
    let mut s = syn_to_rest.to_vec();
    s.sort_by(f32::total_cmp);
    let (med, p95) = (quantile(&h, 0.5), quantile(&h, 0.95));
    let share = |t: f32| {
        if s.is_empty() {
            0.0
        } else {
            s.iter().filter(|&&x| x > t).count() as f64 / s.len() as f64
        }
    };
    DcrStats {
        real_rest: rest,
        real_holdout: h.len(),
        holdout_median: med,
        holdout_p95: p95,
        synthetic_median: quantile(&s, 0.5),
        share_closer_than_real_median: share(med),
        share_closer_than_real_p95: share(p95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn nearest_and_shares() {
        let b: Vec<f32> = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0])].concat();
        let a: Vec<f32> = [unit(&[1.0, 0.1]), unit(&[0.2, 1.0])].concat();
        let n = nearest(&a, &b, 2);
        assert_eq!((n[0].1, n[1].1), (0, 1));
        assert!(n[0].0 > 0.99);
        let st = compare(&[0.99, 0.5, 0.4, 0.3], &[0.6, 0.7, 0.8], 10);
        assert_eq!(st.holdout_median, 0.7);
        assert_eq!(st.share_closer_than_real_median, 0.25);
        let (rest, hold) = split(10, 0.2, 1).unwrap();
        assert_eq!((rest.len(), hold.len()), (8, 2));
        assert!(split(1, 0.2, 1).is_none());
    }

    /// A NaN embedding used to leave the index at usize::MAX, and the audit indexed the
    /// real ids with it.
    #[test]
    fn nan_similarity_is_never_nearest_and_the_index_stays_valid() {
        let b: Vec<f32> = [vec![f32::NAN, f32::NAN], unit(&[0.0, 1.0])].concat();
        let a: Vec<f32> = [vec![f32::NAN, 0.0], unit(&[0.2, 1.0])].concat();
        let n = nearest(&a, &b, 2);
        assert_eq!(n[0], (f32::NEG_INFINITY, 0));
        assert_eq!(n[1].1, 1);
        assert!(n[1].0 > 0.9);
    }
}
