//! Seeded token sampling: repetition penalty, temperature, top-k, top-p.
//!
//! Each record owns its sampler, seeded from (run seed, record id), so its text does not
//! depend on batch size, batch-mates or scheduling order.

use crate::spec::Sampling;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Sampler {
    params: Sampling,
    rng: ChaCha8Rng,
    /// Scratch: (index, value) candidates, reused across steps.
    cand: Vec<(u32, f32)>,
}

/// The sampling seed for one record: sha256(run seed, record id), first 8 bytes.
pub fn record_seed(run_seed: u64, record_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(run_seed.to_le_bytes());
    h.update(record_id.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

impl Sampler {
    pub fn new(params: &Sampling, seed: u64) -> Sampler {
        Sampler {
            params: params.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            cand: Vec::new(),
        }
    }

    /// Picks the next token from `logits` (modified in place). `context` is every token
    /// so far (prompt and output), for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen = std::collections::HashSet::with_capacity(context.len());
            for &t in context {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repetition_penalty
                        } else {
                            *l * p.repetition_penalty
                        };
                    }
                }
            }
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l * inv_t)),
        );
        // Highest first; ties by lower id, so the order is total and reproducible.
        let by_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, by_desc);
            self.cand.truncate(p.top_k);
        }
        self.cand.sort_unstable_by(by_desc);
        let max = self.cand[0].1;
        // A tiny temperature overflows `logit / T` to ±∞ (and 0 · ∞ to NaN), which made
        // every probability NaN and picked the last candidate; its limit is greedy.
        if !max.is_finite() {
            return argmax(logits);
        }
        let mut sum = 0f64;
        for c in self.cand.iter_mut() {
            c.1 = (c.1 - max).exp();
            sum += c.1 as f64;
        }
        let mut keep = self.cand.len();
        if p.top_p < 1.0 {
            let mut acc = 0f64;
            for (i, c) in self.cand.iter().enumerate() {
                acc += c.1 as f64 / sum;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let total: f64 = self.cand[..keep].iter().map(|c| c.1 as f64).sum();
        let r = self.rng.random::<f64>() * total;
        let mut acc = 0f64;
        for c in &self.cand[..keep] {
            acc += c.1 as f64;
            if r < acc {
                return c.0;
            }
        }
        self.cand[keep - 1].0
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, k: usize, p: f32) -> Sampling {
        Sampling {
            temperature: t,
            top_k: k,
            top_p: p,
            repetition_penalty: 1.0,
            stop: vec![],
        }
    }

    #[test]
    fn greedy_takes_first_max() {
        let mut s = Sampler::new(&params(0.0, 0, 1.0), 1);
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_draws_and_topk_respected() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(&params(1.0, 5, 1.0), seed);
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut top5: Vec<u32> = (0..100).collect();
        top5.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        for t in draw(7) {
            assert!(top5[..5].contains(&t), "token {t} outside top-5");
        }
    }

    #[test]
    fn top_p_keeps_only_the_head() {
        // One token holds ~all the mass: top_p = 0.5 must always pick it.
        let mut logits = vec![0.0f32; 10];
        logits[3] = 20.0;
        let mut s = Sampler::new(&params(1.0, 0, 0.5), 3);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 3);
        }
    }

    #[test]
    fn tiny_temperature_is_greedy_not_nan() {
        for t in [1e-45f32, 1e-38, f32::MIN_POSITIVE] {
            for k in [0, 2] {
                let mut s = Sampler::new(&params(t, k, 0.9), 5);
                for _ in 0..10 {
                    assert_eq!(s.sample(&mut [-3.0, 0.0, 50.0, -1.0], &[]), 2, "T={t}");
                    assert_eq!(s.sample(&mut [-3.0, -2.0, -0.5, -1.0], &[]), 2, "T={t}");
                }
            }
        }
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens() {
        let mut s = Sampler::new(
            &Sampling {
                repetition_penalty: 10.0,
                ..params(0.0, 0, 1.0)
            },
            0,
        );
        assert_eq!(s.sample(&mut [1.0, 2.0, 0.5], &[1]), 0);
    }
}
