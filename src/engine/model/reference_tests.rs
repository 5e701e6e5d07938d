//! The decoder against Hugging Face transformers: tiny random-weight models of every
//! family, made by `scripts/make_tiny_models.py` with the reference implementation, and
//! its f32 logits and greedy continuation (tests/fixtures/models/<name>/). Each model is
//! loaded from its safetensors folder and from its GGUF files (F32 and Q8_0), in every
//! precision, and must agree with the reference at every prompt position (fed one token
//! at a time through the KV cache) and after a whole-prompt prefill.

use super::*;
use crate::models::Checkpoint;
use std::path::PathBuf;

#[derive(serde::Deserialize)]
struct Reference {
    prompt_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/{name}"))
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

/// Largest |ours − reference| over a row, relative to the row's largest |logit|.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "vocabulary size");
    let scale = want.iter().fold(0f64, |a, x| a.max(x.abs() as f64));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0f64, f64::max);
    worst / scale
}

fn logits_of(d: &Decoder, cache: &mut SeqCache, tokens: &[u32]) -> Vec<f32> {
    d.forward(&mut [Segment { cache, tokens }])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .remove(0)
}

/// The sources and precisions each family is checked in, with the largest relative
/// logit error each may show: f32 to float rounding, the others to their formats'.
fn cases(name: &str) -> Vec<(PathBuf, Precision, f64, bool)> {
    let f = fixture(name);
    vec![
        (f.join("hf"), Precision::F32, 1e-4, true),
        (f.join("model.gguf"), Precision::F32, 1e-4, true),
        (f.join("hf"), Precision::BF16, 4e-2, false),
        (f.join("hf"), Precision::F16, 5e-3, false),
        // Q8_0 matmuls also quantize their inputs, block by block.
        (f.join("hf"), Precision::Q8_0, 1.5e-1, false),
        (f.join("model-q8_0.gguf"), Precision::F32, 1e-1, false),
        (f.join("model-q8_0.gguf"), Precision::Q8_0, 1.5e-1, false),
    ]
}

fn check_family(name: &str, arch: Arch) {
    check_family_as(name, arch, arch)
}

/// `gguf_arch`: the family GGUF files of it declare (llama.cpp writes Mistral as llama).
fn check_family_as(name: &str, arch: Arch, gguf_arch: Arch) {
    let r = reference(name);
    for (path, precision, tol, exact) in cases(name) {
        let what = format!(
            "{name} {} {precision:?}",
            path.file_name().unwrap().to_string_lossy()
        );
        let ckpt = Checkpoint::open(&path).unwrap();
        let d = Decoder::load(&ckpt, &Device::Cpu, precision).unwrap();
        let want_arch = if path.is_dir() { arch } else { gguf_arch };
        assert_eq!(d.cfg.arch, want_arch, "{what}");
        // Token by token through the cache: every position's logits.
        let n = r.prompt_ids.len();
        let mut cache = d.new_cache(n + r.greedy.len()).unwrap();
        let mut worst = 0f64;
        for (i, want) in r.logits.iter().enumerate() {
            let got = logits_of(&d, &mut cache, &r.prompt_ids[i..i + 1]);
            worst = worst.max(rel_err(&got, want));
        }
        eprintln!("{what}: token by token, max relative logit error {worst:.2e} (limit {tol:.1e})");
        assert!(worst < tol, "{what}: token by token {worst:e} ≥ {tol:e}");
        // Whole-prompt prefill, then greedy decoding.
        let mut cache = d.new_cache(n + r.greedy.len()).unwrap();
        let mut got = logits_of(&d, &mut cache, &r.prompt_ids);
        let e = rel_err(&got, r.logits.last().unwrap());
        assert!(e < tol, "{what}: prefill {e:e} ≥ {tol:e}");
        if exact {
            let mut ids = Vec::new();
            for _ in 0..r.greedy.len() {
                let next = argmax(&got) as u32;
                ids.push(next);
                got = logits_of(&d, &mut cache, &[next]);
            }
            assert_eq!(ids, r.greedy, "{what}: greedy continuation");
        } else {
            assert_eq!(
                argmax(&got) as u32,
                r.greedy[0],
                "{what}: first greedy token"
            );
        }
    }
}

#[test]
fn qwen2_matches_transformers() {
    check_family("qwen2", Arch::Qwen2);
}

#[test]
fn qwen3_matches_transformers() {
    check_family("qwen3", Arch::Qwen3);
}

/// Llama with `rope_scaling.rope_type = llama3`: from config.json the divisors are
/// computed here, from GGUF they are `rope_freqs.weight`; q/k are permuted in the GGUF.
#[test]
fn llama3_rope_matches_transformers() {
    check_family("llama3", Arch::Llama);
}

/// Mistral with a sliding window of 4 over a 44-token prompt: ignoring the window
/// changes every logit past position 4. Its GGUF says `llama` (as llama.cpp writes
/// Mistral) and carries the window as `llama.attention.sliding_window`.
#[test]
fn mistral_sliding_window_matches_transformers() {
    let r = reference("mistral");
    assert!(r.prompt_ids.len() > 8);
    check_family_as("mistral", Arch::Mistral, Arch::Llama);
}

/// Phi-3: fused q/k/v and gate/up in both formats, and a sliding window of 6.
#[test]
fn phi3_matches_transformers() {
    check_family("phi3", Arch::Phi3);
}

/// Ragged batches: three prompts of different lengths prefilled in one step, then decoded
/// together, give each sequence the logits it gets alone (bit for bit in Q8_0, the
/// engine's batch-invariant default; to float rounding in f32) — sliding windows and
/// fused weights included.
#[test]
fn ragged_batches_match_single_sequences() {
    for name in ["mistral", "phi3", "qwen3", "llama3"] {
        let r = reference(name);
        let p = &r.prompt_ids;
        let prompts = [&p[..], &p[5..30], &p[10..13]];
        for (precision, tol) in [(Precision::Q8_0, 0.0), (Precision::F32, 1e-5)] {
            let ckpt = Checkpoint::open(&fixture(name).join("hf")).unwrap();
            let d = Decoder::load(&ckpt, &Device::Cpu, precision).unwrap();
            let alone: Vec<(Vec<f32>, Vec<f32>)> = prompts
                .iter()
                .map(|pr| {
                    let mut c = d.new_cache(pr.len() + 1).unwrap();
                    let first = logits_of(&d, &mut c, pr);
                    let next = logits_of(&d, &mut c, &[argmax(&first) as u32]);
                    (first, next)
                })
                .collect();
            let mut caches: Vec<SeqCache> = prompts
                .iter()
                .map(|pr| d.new_cache(pr.len() + 1).unwrap())
                .collect();
            let step = |caches: &mut [SeqCache], toks: &[Vec<u32>]| -> Vec<Vec<f32>> {
                let mut segs: Vec<Segment<'_>> = caches
                    .iter_mut()
                    .zip(toks)
                    .map(|(cache, t)| Segment { cache, tokens: t })
                    .collect();
                d.forward(&mut segs).unwrap().to_vec2::<f32>().unwrap()
            };
            let firsts = step(&mut caches, &prompts.map(|x| x.to_vec()));
            let nexts: Vec<Vec<u32>> = firsts.iter().map(|l| vec![argmax(l) as u32]).collect();
            let seconds = step(&mut caches, &nexts);
            for i in 0..prompts.len() {
                for (got, want) in [(&firsts[i], &alone[i].0), (&seconds[i], &alone[i].1)] {
                    let e = rel_err(got, want);
                    assert!(
                        e <= tol,
                        "{name} {precision:?} sequence {i}: {e:e} > {tol:e}"
                    );
                }
            }
        }
    }
}
