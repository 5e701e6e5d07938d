use super::*;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// Writes a tiny random BERT (2 layers, hidden 16, 4 heads) as safetensors + config.
fn tiny_bert(dir: &std::path::Path) -> BertEncoder {
    let (h, i, v, p) = (16usize, 32usize, 50usize, 64usize);
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut rnd = |name: &str, shape: &[usize]| {
        let x = Tensor::randn(0f32, 0.5, shape, &dev).unwrap();
        t.insert(name.to_string(), x);
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

/// The packed CPU attention (no padding) and the padded block attention (the GPU path)
/// must give the same embeddings for ragged batches.
#[test]
fn packed_and_padded_attention_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = tiny_bert(dir.path());
    let seqs: Vec<Vec<u32>> = vec![
        vec![1, 5, 7, 9, 2],
        vec![1, 2],
        (0..40).map(|i| (i * 7 % 50) as u32).collect(),
        vec![1, 3, 3, 3, 3, 3, 2],
    ];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let packed = enc.embed_packed(&refs).unwrap();
    enc.padded_attention = true;
    let padded = enc.embed_packed(&refs).unwrap();
    for (a, b) in packed.iter().zip(&padded) {
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "not unit length: {n}");
        assert!(cos(a, b) > 0.99999, "packed vs padded cosine {}", cos(a, b));
    }
    // A sequence's embedding does not depend on what else is in the batch.
    let alone = enc.embed_packed(&refs[2..3]).unwrap();
    assert!(cos(&alone[0], &padded[2]) > 0.99999);
    // Different inputs give different vectors (the test can fail).
    assert!(cos(&packed[0], &packed[2]) < 0.999);
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
