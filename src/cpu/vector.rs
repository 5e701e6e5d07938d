//! Vector steps inlined into the multiversioned kernels (so they get AVX2 there).

/// Dot product with eight fixed lanes: a plain `.sum()` is one serial f32 chain the
/// compiler may not reorder, so it cannot use SIMD lanes. The lanes are combined in a fixed
/// tree and the tail added last, so the order never changes with the CPU or the caller: the
/// engine's outputs (fingerprinted, batch-invariant) depend on it.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `out += a · x`, element by element.
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], out: &mut [f32]) {
    for (o, y) in out.iter_mut().zip(x) {
        *o += a * y;
    }
}

/// Softmax's first half, in place: each score becomes `exp(score - max)`; returns 1 / Σ.
/// Callers multiply by the returned inverse as they use each weight, so the division is
/// done once per row rather than once per score.
#[inline(always)]
pub fn softmax_exp(scores: &mut [f32], max: f32) -> f32 {
    let mut sum = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    1.0 / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes and the tail (lengths not a multiple of 8) against an f64 sum.
    #[test]
    fn dot_matches_f64_on_every_tail_length() {
        for n in [0usize, 1, 7, 8, 9, 40, 63] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-5, "n = {n}");
        }
    }

    #[test]
    fn softmax_exp_and_axpy_make_a_weighted_mean() {
        let mut s = vec![1.0f32, 2.0, 3.0];
        let inv = softmax_exp(&mut s, 3.0);
        let p: Vec<f32> = s.iter().map(|e| e * inv).collect();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let mut out = vec![0f32; 2];
        for (w, v) in p.iter().zip([[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]]) {
            axpy(*w, &v, &mut out);
        }
        assert!((out[0] - (p[0] + p[2])).abs() < 1e-6);
    }
}
