//! The decoder's unit tests: bad GGUF metadata, and every attention path against the f64
//! reference on random ragged steps (the CPU kernel itself is tested in `crate::cpu`).

use super::attention::{candle_attention, causal_mask, cpu_attention};
use super::*;
use crate::models::gguf::GgufFile;
use candle_core::DType;

/// One segment per cache, each feeding its tokens.
fn segments<'a>(caches: &'a mut [SeqCache], toks: &'a [Vec<u32>]) -> Vec<Segment<'a>> {
    caches
        .iter_mut()
        .zip(toks)
        .map(|(cache, tokens)| Segment { cache, tokens })
        .collect()
}

/// A GGUF with zero heads used to panic dividing the width by the head count.
#[test]
fn zero_heads_in_gguf_is_an_error_not_a_panic() {
    use candle_core::quantized::gguf_file::{write, Value};
    for (heads, kv) in [(0u32, None), (4, Some(0u32)), (4, Some(3))] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        let arch = Value::String("llama".into());
        let (n, width, one) = (Value::U32(heads), Value::U32(64), Value::U32(1));
        let mut meta: Vec<(&str, &Value)> = vec![
            ("general.architecture", &arch),
            ("llama.attention.head_count", &n),
            ("llama.embedding_length", &width),
            ("llama.block_count", &one),
            ("llama.feed_forward_length", &width),
        ];
        let kv = kv.map(Value::U32);
        if let Some(kv) = &kv {
            meta.push(("llama.attention.head_count_kv", kv));
        }
        let mut f = std::fs::File::create(&path).unwrap();
        write(&mut f, &meta, &[]).unwrap();
        drop(f);
        let g = Checkpoint::Gguf(GgufFile::open(&path).unwrap());
        let err = match Decoder::load(&g, &Device::Cpu, Precision::F32) {
            Ok(_) => panic!("{heads} heads, {kv:?} KV heads loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("attention heads"), "{err}");
    }
}

/// The fast CPU attention against the textbook f64 reference on random, ragged
/// segments (prefill and decode rows, with and without a sliding window, GQA).
#[test]
fn cpu_attention_matches_f64_reference() {
    let (h, kv, hd) = (6, 2, 40); // hd not a multiple of 8: exercises the lane remainder
    for window in [None, Some(3)] {
        let lens = [(0usize, 7usize), (5, 1), (0, 1), (9, 4)]; // (cached before, new tokens)
        let mut caches: Vec<SeqCache> = lens
            .iter()
            .map(|&(before, n)| {
                let cap = before + n;
                let k = (0..2)
                    .map(|_| Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu).unwrap())
                    .collect();
                let v = (0..2)
                    .map(|_| Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu).unwrap())
                    .collect();
                SeqCache {
                    k,
                    v,
                    len: before,
                    capacity: cap,
                }
            })
            .collect();
        let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
        let t: usize = lens.iter().map(|l| l.1).sum();
        let q = Tensor::randn(0f32, 1.0, (t, h, hd), &Device::Cpu).unwrap();
        let segs = segments(&mut caches, &toks);
        let fast = cpu_attention(1, &q, &segs, (h, kv, hd), window, 0.3, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let slow = cpu_attention(1, &q, &segs, (h, kv, hd), window, 0.3, true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in fast.iter().zip(&slow) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y} (window {window:?})");
            }
        }
    }
}

/// The candle-ops attention that GPUs run, executed here on the CPU, against the same
/// f64 reference: f32 caches to float error, bf16/f16 caches (the GPU default) to
/// their rounding.
#[test]
fn candle_ops_attention_matches_f64_reference_in_every_cache_dtype() {
    let (h, kv, hd) = (6, 2, 40);
    for (dt, tol) in [
        (DType::F32, 2e-6f32),
        (DType::BF16, 4e-2),
        (DType::F16, 4e-3),
    ] {
        for window in [None, Some(3)] {
            let lens = [(0usize, 7usize), (5, 1), (0, 1), (9, 4), (2, 1)];
            let mut caches: Vec<SeqCache> = lens
                .iter()
                .map(|&(before, n)| {
                    let cap = before + n + 2; // spare capacity past `len`, as in the engine
                    let r = |_| {
                        Tensor::randn(0f32, 1.0, (cap, kv, hd), &Device::Cpu)
                            .and_then(|t| t.to_dtype(dt))
                            .unwrap()
                    };
                    SeqCache {
                        k: (0..2).map(r).collect(),
                        v: (0..2).map(r).collect(),
                        len: before,
                        capacity: cap,
                    }
                })
                .collect();
            // The reference reads the same values, widened to f32.
            let mut wide: Vec<SeqCache> = caches
                .iter()
                .map(|c| SeqCache {
                    k: c.k
                        .iter()
                        .map(|t| t.to_dtype(DType::F32).unwrap())
                        .collect(),
                    v: c.v
                        .iter()
                        .map(|t| t.to_dtype(DType::F32).unwrap())
                        .collect(),
                    len: c.len,
                    capacity: c.capacity,
                })
                .collect();
            let toks: Vec<Vec<u32>> = lens.iter().map(|&(_, n)| vec![0; n]).collect();
            let t: usize = lens.iter().map(|l| l.1).sum();
            let q = Tensor::randn(0f32, 1.0, (t, h, hd), &Device::Cpu).unwrap();
            let wide_segs = segments(&mut wide, &toks);
            let slow = cpu_attention(1, &q, &wide_segs, (h, kv, hd), window, 0.3, true)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let seg_list = segments(&mut caches, &toks);
            let ops = candle_attention(1, &q, &seg_list, (h, kv, hd), window, 0.3)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(ops.len(), slow.len());
            let worst = ops
                .iter()
                .flatten()
                .zip(slow.iter().flatten())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            eprintln!("{dt:?} window {window:?}: max |candle ops - f64| = {worst:e}");
            assert!(worst < tol, "{dt:?}, window {window:?}: {worst} ≥ {tol}");
        }
    }
}

#[test]
fn mask_is_causal_and_respects_the_window() {
    // Queries at positions 2, 3, 4 over keys 0..5, window 2, one group.
    let m = causal_mask(3, 2, 0, 5, Some(2), 1, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let vis: Vec<Vec<bool>> = m
        .iter()
        .map(|r| r.iter().map(|x| x.is_finite()).collect())
        .collect();
    assert_eq!(vis[0], [false, true, true, false, false]);
    assert_eq!(vis[1], [false, false, true, true, false]);
    assert_eq!(vis[2], [false, false, false, true, true]);
    // No window: plain causal; two groups repeat the rows.
    let m = causal_mask(2, 0, 0, 2, None, 2, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(m.len(), 4);
    assert!(m[0][0].is_finite() && !m[0][1].is_finite() && m[1][1].is_finite());
    assert_eq!(m[0], m[2]);
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Qwen2 from GGUF (q/k/v biases, rotate-half rope, untied and tied LM head) against the
/// naive f64 forward of the same weights: the prompt's prefill, then greedy decode steps
/// through the KV cache, token for token; f32 to float error, Q8_0 to its quantization's.
#[test]
fn qwen2_tiny_model_matches_the_reference_forward() {
    matches_the_reference_forward("qwen2", Arch::Qwen2, false);
}

/// Qwen3 from GGUF: no q/k/v bias, a per-head RMSNorm of q and k before rope.
#[test]
fn qwen3_tiny_model_matches_the_reference_forward() {
    matches_the_reference_forward("qwen3", Arch::Qwen3, false);
}

/// Llama 3.1+'s scaled rope as llama.cpp stores it (`rope_freqs.weight`: one divisor per
/// frequency), on the same tiny decoder: the frequencies must be divided, or positions
/// past the first drift.
#[test]
fn rope_freq_divisors_match_the_reference_forward() {
    matches_the_reference_forward("qwen3", Arch::Qwen3, true);
}

fn matches_the_reference_forward(name: &'static str, arch: Arch, rope_freqs: bool) {
    let dir = tempfile::tempdir().unwrap();
    for tied in [false, true] {
        let mut m = tiny::TinyModel::new(name, tied, 7);
        if rope_freqs {
            m = m.with_rope_freqs();
        }
        let path = dir.path().join(format!("{name}-tied-{tied}.gguf"));
        m.write(&path);
        let g = Checkpoint::Gguf(GgufFile::open(&path).unwrap());
        for (p, tol) in [(Precision::F32, 1e-4f64), (Precision::Q8_0, 1e-1)] {
            let d = Decoder::load(&g, &Device::Cpu, p).unwrap();
            assert_eq!((d.cfg.arch, d.cfg.vocab), (arch, tiny::VOCAB));
            let mut context = vec![3u32, 17, 42, 8, 99, 0, 55];
            let mut cache = d.new_cache(context.len() + 4).unwrap();
            let mut feed = context.clone();
            for step in 0..4 {
                let got = d
                    .forward(&mut [Segment {
                        cache: &mut cache,
                        tokens: &feed,
                    }])
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap()
                    .remove(0);
                let want = m.reference_logits(&context).pop().unwrap();
                let scale = want.iter().fold(0f64, |a, x| a.max(x.abs()));
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0f64, f64::max);
                eprintln!("{name} tied={tied} {p:?} step {step}: max |ours - f64| = {worst:e} (logits up to {scale:.2})");
                assert!(
                    worst < tol * scale,
                    "tied={tied} {p:?} step {step}: {worst} ≥ {tol} × {scale}"
                );
                let want32: Vec<f32> = want.iter().map(|x| *x as f32).collect();
                let next = argmax(&want32) as u32;
                // The same top token, unless the reference's top two are closer than the
                // error allowed (Q8_0's rounding may then flip a near tie).
                let mut top: Vec<f64> = want.clone();
                top.sort_by(|a, b| b.total_cmp(a));
                if top[0] - top[1] > 2.0 * worst {
                    assert_eq!(argmax(&got) as u32, next, "tied={tied} {p:?} step {step}");
                }
                context.push(next);
                feed = vec![next];
            }
        }
    }
}

/// A Qwen2 file without a q/k/v bias is an error naming the tensor, not a panic or a
/// silently bias-free model.
#[test]
fn qwen2_without_its_bias_names_the_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen2.gguf");
    tiny::TinyModel::new("qwen2", false, 3)
        .without("blk.1.attn_k.bias")
        .write(&path);
    let g = Checkpoint::Gguf(GgufFile::open(&path).unwrap());
    let err = match Decoder::load(&g, &Device::Cpu, Precision::F32) {
        Ok(_) => panic!("loaded without blk.1.attn_k.bias"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("blk.1.attn_k.bias"), "{err}");
}

/// A Qwen3 file without its q/k norm is an error naming the tensor: read without it, the
/// model would run and write other text.
#[test]
fn qwen3_without_its_qk_norm_names_the_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen3.gguf");
    tiny::TinyModel::new("qwen3", false, 3)
        .without("blk.0.attn_q_norm.weight")
        .write(&path);
    let g = Checkpoint::Gguf(GgufFile::open(&path).unwrap());
    let err = match Decoder::load(&g, &Device::Cpu, Precision::F32) {
        Ok(_) => panic!("loaded without blk.0.attn_q_norm.weight"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("blk.0.attn_q_norm"), "{err}");
}

/// Records made from a Llama 3.1+ file before its scaled rope was read are not resumed as
/// if from this engine; every other file keeps its fingerprint (so its runs stay fresh).
#[test]
fn only_files_whose_outputs_changed_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, scaled) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    tiny::TinyModel::new("qwen3", false, 1).write(&plain);
    tiny::TinyModel::new("qwen3", false, 1)
        .with_rope_freqs()
        .write(&scaled);
    assert_eq!(super::changed_outputs(&plain), None);
    assert_eq!(super::changed_outputs(&scaled), Some("rope_freqs"));
}

/// Every GGUF tensor type candle reads (the legacy 32-blocks, the K-quants, F16, BF16,
/// F32) comes out of our reader as the values it stores, its type noted for provenance.
/// The decoder is type-agnostic past this point: every matrix is dequantized here and
/// stored as the run's precision asks.
#[test]
fn every_gguf_tensor_type_is_read() {
    use super::weights::{GgufTensors, TensorSource};
    use candle_core::quantized::gguf_file::write;
    use candle_core::quantized::{GgmlDType, QTensor};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let v: Vec<f32> = (0..8 * 256)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let t = Tensor::from_vec(v.clone(), (8, 256), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Largest |stored − original| each type may show on values in [-1, 1].
    let types = [
        (GgmlDType::F32, 0.0),
        (GgmlDType::F16, 1e-3),
        (GgmlDType::BF16, 4e-3),
        (GgmlDType::Q8_0, 1e-2),
        (GgmlDType::Q5_0, 8e-2),
        (GgmlDType::Q5_1, 8e-2),
        (GgmlDType::Q4_0, 0.15),
        (GgmlDType::Q4_1, 0.15),
        (GgmlDType::Q6K, 4e-2),
        (GgmlDType::Q5K, 8e-2),
        (GgmlDType::Q4K, 0.15),
        (GgmlDType::Q3K, 0.3),
        (GgmlDType::Q2K, 0.6),
    ];
    for (dt, tol) in types {
        let path = dir.path().join(format!("{dt:?}.gguf"));
        let q = QTensor::quantize(&t, dt).unwrap();
        let mut f = std::fs::File::create(&path).unwrap();
        write(&mut f, &[], &[("w", &q)]).unwrap();
        drop(f);
        let g = GgufFile::open(&path).unwrap();
        let (got, format) = GgufTensors::new(&g).unwrap().load("w").unwrap();
        assert_eq!(format, format!("{dt:?}"));
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let worst = got
            .iter()
            .zip(&v)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{dt:?}: max |read - original| = {worst:.2e} (limit {tol:.0e})");
        assert!(worst <= tol, "{dt:?}: {worst} > {tol}");
    }
}
