use super::*;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// Writes a tiny random BERT (2 layers, hidden 16, 4 heads) as safetensors + config.
fn tiny_bert(dir: &std::path::Path) -> BertEncoder {
    let (h, i, v, p) = (16usize, 32usize, 50usize, 64usize);
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    // Seeded, so the test sees the same model every run.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut rnd = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
        t.insert(name.to_string(), Tensor::from_vec(v, shape, &dev).unwrap());
    };
    rnd("embeddings.word_embeddings.weight", &[v, h]);
    rnd("embeddings.position_embeddings.weight", &[p, h]);
    rnd("embeddings.token_type_embeddings.weight", &[2, h]);
    rnd("embeddings.LayerNorm.weight", &[h]);
    rnd("embeddings.LayerNorm.bias", &[h]);
    for l in 0..2 {
        for (n, s) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            rnd(&format!("encoder.layer.{l}.{n}"), &s);
        }
    }
    let w = dir.join("model.safetensors");
    candle_core::safetensors::save(&t, &w).unwrap();
    let cfg = BertConfig {
        hidden_size: h,
        num_attention_heads: 4,
        num_hidden_layers: 2,
        intermediate_size: i,
        max_position_embeddings: p,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
    };
    let _ = DType::F32;
    BertEncoder::load(&w, cfg, &dev).unwrap()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The three forwards agree on ragged batches: the slice-based CPU fast path, candle ops
/// with packed attention, and candle ops with padded block attention (the GPU path).
#[test]
fn fast_packed_and_padded_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = tiny_bert(dir.path());
    let seqs: Vec<Vec<u32>> = vec![
        vec![1, 5, 7, 9, 2],
        vec![1, 2],
        (0..40).map(|i| (i * 7 % 50) as u32).collect(),
        vec![1, 3, 3, 3, 3, 3, 2],
    ];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let fast = enc.embed_packed(&refs).unwrap();
    enc.candle_on_cpu = true;
    let packed = enc.embed_packed(&refs).unwrap();
    enc.padded_attention = true;
    let padded = enc.embed_packed(&refs).unwrap();
    for ((f, a), b) in fast.iter().zip(&packed).zip(&padded) {
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "not unit length: {n}");
        assert!(cos(a, b) > 0.99999, "packed vs padded cosine {}", cos(a, b));
        assert!(cos(f, a) > 0.99999, "fast vs candle cosine {}", cos(f, a));
    }
    assert!(
        enc.embed_packed(&[&[1, 99]]).is_err(),
        "out-of-vocabulary id must be an error"
    );
    // A sequence's embedding does not depend on what else is in the batch.
    let alone = enc.embed_packed(&refs[2..3]).unwrap();
    assert!(cos(&alone[0], &padded[2]) > 0.99999);
    // Different inputs give different vectors (the test can fail).
    assert!(cos(&packed[0], &packed[2]) < 0.999);
}

/// The rational erf used by the fast GELU against libm's.
#[test]
fn fast_erf_matches_libm() {
    let mut worst = 0f32;
    for i in -6000..=6000 {
        let x = i as f32 / 1000.0;
        worst = worst.max((super::bert_cpu::erf(x) - libm_erf(x)).abs());
    }
    assert!(worst < 1e-6, "max |erf error| {worst}");
}

fn libm_erf(x: f32) -> f32 {
    // erf via candle's own (libm) implementation on a one-element tensor.
    let t = Tensor::new(&[x * std::f32::consts::SQRT_2], &Device::Cpu).unwrap();
    let g = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap()[0];
    // gelu_erf(y) = y/2 (1 + erf(y/√2)) ⇒ erf(x) = 2 g / y - 1
    if x == 0.0 {
        0.0
    } else {
        2.0 * g / (x * std::f32::consts::SQRT_2) - 1.0
    }
}

#[test]
fn normalize_rejects_nan_and_keeps_zero() {
    let mut v = vec![3.0, 4.0];
    assert!(normalize(&mut v));
    assert!((v[0] - 0.6).abs() < 1e-6);
    let mut z = vec![0.0, 0.0];
    assert!(normalize(&mut z));
    assert_eq!(z, vec![0.0, 0.0]);
    assert!(!normalize(&mut [1.0, f32::NAN]));
}
