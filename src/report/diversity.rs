//! Diversity and collapse signals: distinct-n, self-BLEU, embedding dispersion. Each is
//! computed the same way for the synthetic set and the real anchor, because on its own a
//! number says little; a synthetic set markedly narrower than real data is the warning.

use crate::cpu::dot;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// distinct-n: unique n-grams / all n-grams over the whole set (Li et al. 2016).
pub fn distinct_n(texts: &[&str], n: usize) -> f64 {
    let mut all = 0usize;
    let mut uniq = std::collections::HashSet::new();
    for t in texts {
        let w = tokens(t);
        for g in w.windows(n) {
            all += 1;
            uniq.insert(g.join(" "));
        }
    }
    if all == 0 {
        0.0
    } else {
        uniq.len() as f64 / all as f64
    }
}

fn ngram_counts(w: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    for g in w.windows(n) {
        *m.entry(g).or_insert(0) += 1;
    }
    m
}

/// Self-BLEU (Zhu et al. 2018): BLEU-4 of each text against all the others as references,
/// averaged. 1.0 = every text repeats the others; lower is more diverse. Smoothed with +1
/// on 2–4-gram counts (Lin & Och's method) so short texts do not collapse to zero.
pub fn self_bleu(texts: &[&str]) -> f64 {
    let toks: Vec<Vec<String>> = texts.iter().map(|t| tokens(t)).collect();
    if toks.len() < 2 {
        return 0.0;
    }
    let counts: Vec<Vec<HashMap<&[String], usize>>> = toks
        .iter()
        .map(|w| (1..=4).map(|n| ngram_counts(w, n)).collect())
        .collect();
    let scores: Vec<f64> = (0..toks.len())
        .into_par_iter()
        .filter(|&i| !toks[i].is_empty())
        .map(|i| {
            let mut log_p = 0.0;
            for n in 1..=4 {
                let hyp = &counts[i][n - 1];
                let total: usize = hyp.values().sum();
                let mut clipped = 0usize;
                for (g, &c) in hyp {
                    let max_ref = (0..toks.len())
                        .filter(|&j| j != i)
                        .map(|j| counts[j][n - 1].get(g).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0);
                    clipped += c.min(max_ref);
                }
                let (num, den) = if n == 1 {
                    (clipped as f64, total as f64)
                } else {
                    (clipped as f64 + 1.0, total as f64 + 1.0)
                };
                log_p += if num == 0.0 || den == 0.0 {
                    -1e9
                } else {
                    (num / den).ln()
                };
            }
            let len = toks[i].len() as f64;
            // Brevity penalty against the closest reference length.
            let r = (0..toks.len())
                .filter(|&j| j != i)
                .map(|j| toks[j].len() as f64)
                .min_by(|a, b| (a - len).abs().total_cmp(&(b - len).abs()))
                .unwrap_or(len);
            let bp = if len >= r { 1.0 } else { (1.0 - r / len).exp() };
            bp * (log_p / 4.0).exp()
        })
        .collect();
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

/// Embedding spread of a set of unit vectors.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Dispersion {
    pub n: usize,
    /// Mean cosine distance (1 − cosine) over all pairs.
    pub mean_pairwise_distance: f64,
    /// Share of records whose nearest neighbour in the same set is at cosine ≥ 0.9.
    pub near_neighbour_share: f64,
    /// Each record's nearest-neighbour cosine within the set (for the histogram).
    #[serde(skip)]
    pub nn_cosines: Vec<f32>,
}

/// Dispersion of `n` unit vectors of `dim` (flat).
pub fn dispersion(v: &[f32], dim: usize) -> Dispersion {
    let n = v.len() / dim.max(1);
    if n < 2 {
        return Dispersion {
            n,
            ..Default::default()
        };
    }
    // Σ_{i≠j} cos = |Σv|² − Σ|v|²: the mean pairwise cosine in O(N·d).
    let mut sum = vec![0f64; dim];
    let mut self_dots = 0f64;
    for row in v.chunks(dim) {
        for (s, x) in sum.iter_mut().zip(row) {
            *s += *x as f64;
        }
        self_dots += row.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>();
    }
    let total: f64 = sum.iter().map(|x| x * x).sum();
    let mean_cos = (total - self_dots) / (n as f64 * (n as f64 - 1.0));
    let nn: Vec<f32> = v
        .par_chunks(dim)
        .enumerate()
        .map(|(i, x)| {
            v.chunks(dim)
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, y)| dot(x, y))
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    Dispersion {
        n,
        mean_pairwise_distance: 1.0 - mean_cos,
        near_neighbour_share: nn.iter().filter(|&&c| c >= 0.9).count() as f64 / n as f64,
        nn_cosines: nn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_and_self_bleu_separate_repetitive_from_varied() {
        let same = [
            "the cat sat on the mat today",
            "the cat sat on the mat today",
            "the cat sat on the mat today",
        ];
        let varied = [
            "volcanoes erupt molten rock from deep below",
            "tides follow the moon around our planet",
            "bees carry pollen between flowering plants",
        ];
        assert!((self_bleu(&same) - 1.0).abs() < 1e-9);
        assert!(self_bleu(&varied) < 0.2, "{}", self_bleu(&varied));
        assert!(distinct_n(&same, 2) < 0.35);
        assert_eq!(distinct_n(&varied, 2), 1.0);
    }

    #[test]
    fn dispersion_of_identical_and_orthogonal_sets() {
        let same = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0];
        let d = dispersion(&same, 2);
        assert!(d.mean_pairwise_distance.abs() < 1e-9);
        assert_eq!(d.near_neighbour_share, 1.0);
        let orth = [1.0f32, 0.0, 0.0, 1.0];
        let d = dispersion(&orth, 2);
        assert!((d.mean_pairwise_distance - 1.0).abs() < 1e-9);
        assert_eq!(d.near_neighbour_share, 0.0);
    }
}
