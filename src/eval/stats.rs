//! The statistics of an eval: a mean with its bootstrap interval, and a paired comparison
//! of two models on the same items (paired bootstrap interval of the mean difference, and
//! the exact sign test). Seeded, so a report is reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A mean with a percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// Two models on the same items: `b − a`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    pub a: Estimate,
    pub b: Estimate,
    /// Mean of `b[i] − a[i]`, with its paired bootstrap interval.
    pub diff: Estimate,
    /// Two-sided paired bootstrap p-value: twice the share of resampled mean differences
    /// on the far side of zero (capped at 1).
    pub p_bootstrap: f64,
    /// Items where `b` is higher, lower, and tied.
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    /// Exact two-sided sign test over the untied items (McNemar's exact test when the
    /// scores are 0/1). The p-value the verdict uses: it assumes no distribution.
    pub p_sign: f64,
    /// `p_sign < alpha`.
    pub significant: bool,
    pub alpha: f64,
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// The `q` quantile (0..1) of sorted values, linearly interpolated.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] * (1.0 - f) + next * f,
        None => sorted[i],
    }
}

/// Means of `resamples` bootstrap resamples of `x` (indices drawn with replacement).
fn resampled_means(x: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = x.len();
    let mut out: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| x[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

/// The mean of `x` with a `1 − alpha` percentile bootstrap interval.
pub fn bootstrap(x: &[f64], alpha: f64, resamples: usize, seed: u64) -> Estimate {
    if x.is_empty() {
        return Estimate {
            mean: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            n: 0,
        };
    }
    let means = resampled_means(x, resamples.max(1), seed);
    Estimate {
        mean: mean(x),
        lo: quantile(&means, alpha / 2.0),
        hi: quantile(&means, 1.0 - alpha / 2.0),
        n: x.len(),
    }
}

/// log of n choose k.
fn ln_choose(n: u64, k: u64) -> f64 {
    let ln_fact = |m: u64| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    ln_fact(n) - ln_fact(k) - ln_fact(n - k)
}

/// Exact two-sided sign test: `wins` against `losses` under p = ½.
pub fn sign_test(wins: usize, losses: usize) -> f64 {
    let n = (wins + losses) as u64;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses) as u64;
    let tail: f64 = (0..=k)
        .map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// Compares `b` with `a`, item by item (same length, same order).
pub fn paired(a: &[f64], b: &[f64], alpha: f64, resamples: usize, seed: u64) -> Paired {
    assert_eq!(a.len(), b.len(), "paired scores must cover the same items");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let diff = bootstrap(&d, alpha, resamples, seed ^ 0x9e37_79b9);
    let p_bootstrap = if d.is_empty() {
        1.0
    } else {
        let means = resampled_means(&d, resamples.max(1), seed ^ 0x9e37_79b9);
        let below = means.iter().filter(|m| **m <= 0.0).count() as f64 / means.len() as f64;
        let above = means.iter().filter(|m| **m >= 0.0).count() as f64 / means.len() as f64;
        (2.0 * below.min(above)).min(1.0)
    };
    // Differences within float noise are ties.
    let eps = 1e-9;
    let wins = d.iter().filter(|x| **x > eps).count();
    let losses = d.iter().filter(|x| **x < -eps).count();
    let p_sign = sign_test(wins, losses);
    Paired {
        a: bootstrap(a, alpha, resamples, seed),
        b: bootstrap(b, alpha, resamples, seed ^ 1),
        diff,
        p_bootstrap,
        wins,
        losses,
        ties: d.len() - wins - losses,
        p_sign,
        significant: p_sign < alpha,
        alpha,
    }
}

/// Position bias of a pairwise judge. `ab[i]` is P(the first answer is better) with model
/// A shown first, `ba[i]` the same with model B shown first. Returns B's win probability
/// per item (both orders averaged, so a fixed preference for a position cancels) and the
/// share of items where the two orders pick different models.
pub fn swap_averaged(ab: &[f64], ba: &[f64]) -> (Vec<f64>, f64) {
    assert_eq!(ab.len(), ba.len());
    let wins: Vec<f64> = ab
        .iter()
        .zip(ba)
        .map(|(p_a_first, p_b_first)| ((1.0 - p_a_first) + p_b_first) / 2.0)
        .collect();
    // Order 1 picks B when P(first) < ½; order 2 picks B when P(first) > ½.
    let disagree = ab
        .iter()
        .zip(ba)
        .filter(|(x, y)| (**x < 0.5) != (**y > 0.5))
        .count();
    let rate = if ab.is_empty() {
        0.0
    } else {
        disagree as f64 / ab.len() as f64
    };
    (wins, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_covers_the_mean_and_shrinks_with_n() {
        // A fair coin: 0/1 alternating, mean exactly ½.
        let small: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
        let big: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
        let s = bootstrap(&small, 0.05, 4000, 1);
        let b = bootstrap(&big, 0.05, 4000, 1);
        assert_eq!(s.mean, 0.5);
        assert!(s.lo < 0.5 && s.hi > 0.5, "{s:?}");
        // Normal approximation: ±1.96·√(¼/n) = ±0.219 at n=20, ±0.0219 at n=2000.
        assert!((s.hi - s.lo - 0.438).abs() < 0.06, "{s:?}");
        assert!((b.hi - b.lo - 0.0438).abs() < 0.006, "{b:?}");
        // Seeded: the same interval every time.
        assert_eq!(s, bootstrap(&small, 0.05, 4000, 1));
        // A constant has a zero-width interval.
        let c = bootstrap(&[0.7; 10], 0.05, 500, 3);
        assert!(
            (c.lo - 0.7).abs() < 1e-12 && (c.hi - 0.7).abs() < 1e-12,
            "{c:?}"
        );
    }

    #[test]
    fn sign_test_matches_the_binomial() {
        // 9 wins, 1 loss: 2·(1 + 10)/1024 = 0.021484375.
        assert!((sign_test(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        // 10 of 10: 2/1024.
        assert!((sign_test(10, 0) - 2.0 / 1024.0).abs() < 1e-12);
        assert!((sign_test(0, 10) - 2.0 / 1024.0).abs() < 1e-12);
        // Balanced: 1 (capped).
        assert_eq!(sign_test(5, 5), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
        // 60 of 100: two-sided p = 0.0569 (scipy.stats.binomtest).
        assert!((sign_test(60, 40) - 0.056887).abs() < 1e-4);
    }

    #[test]
    fn paired_detects_a_real_difference_and_not_a_null_one() {
        // B beats A on 18 of 20 items by 1 point, ties on 2.
        let a: Vec<f64> = vec![0.0; 20];
        let b: Vec<f64> = (0..20).map(|i| if i < 18 { 1.0 } else { 0.0 }).collect();
        let p = paired(&a, &b, 0.05, 4000, 7);
        assert_eq!((p.wins, p.losses, p.ties), (18, 0, 2));
        assert!((p.diff.mean - 0.9).abs() < 1e-12);
        assert!(p.diff.lo > 0.0, "{:?}", p.diff);
        assert!(p.p_sign < 1e-4 && p.significant);
        assert!(p.p_bootstrap < 0.01);
        // The same scores both sides: no difference, p = 1.
        let q = paired(&b, &b, 0.05, 4000, 7);
        assert_eq!((q.wins, q.losses, q.ties), (0, 0, 20));
        assert_eq!(q.p_sign, 1.0);
        assert!(!q.significant);
        assert_eq!(q.diff.mean, 0.0);
        // Noise with no shift: 10 up, 10 down by the same amount.
        let c: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let z = paired(&[0.0; 20], &c, 0.05, 4000, 7);
        assert!(!z.significant && z.p_sign == 1.0);
        assert!(z.diff.lo < 0.0 && z.diff.hi > 0.0, "{:?}", z.diff);
        assert!(z.p_bootstrap > 0.5);
    }

    #[test]
    fn swapping_positions_cancels_a_position_bias() {
        // A judge that always says "the first is better" (0.9) whatever the answers: the
        // averaged win probability is ½ everywhere and every item disagrees across orders.
        let (w, rate) = swap_averaged(&[0.9; 8], &[0.9; 8]);
        assert!(w.iter().all(|x| (x - 0.5).abs() < 1e-12));
        assert_eq!(rate, 1.0);
        // A consistent judge preferring B: low P(first) with A first, high with B first.
        let (w, rate) = swap_averaged(&[0.2, 0.3], &[0.8, 0.9]);
        assert!((w[0] - 0.8).abs() < 1e-12 && (w[1] - 0.8).abs() < 1e-12);
        assert_eq!(rate, 0.0);
        // Half the items flip with the order.
        let (_, rate) = swap_averaged(&[0.2, 0.7], &[0.8, 0.6]);
        assert_eq!(rate, 0.5);
    }
}
