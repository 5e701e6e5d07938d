//! The engine's precisions and attention paths on the real models, on the CPU.
//!
//! A GPU runs bf16 weights and candle-op attention by default; neither is the CPU's
//! default (Q8_0, the rayon attention kernel). Both run here too, so the code a GPU
//! executes is checked against f32 on every machine, GPU or not.

mod common;

use common::model_file;
use flywheel::engine::model::{AttentionImpl, Segment};
use flywheel::engine::{Llm, Precision};
use flywheel::models::{resolve, FetchPolicy};

/// The logits after a short chat prompt, one forward over the whole prompt, then the
/// logits after one more (decode) step: both the prefill and the decode path.
fn logits(llm: &Llm) -> (Vec<f32>, Vec<f32>) {
    let ids = llm
        .prompt_ids(&[flywheel::models::chat::Message::new(
            "user",
            "Explain in two sentences why the sky is blue.",
        )])
        .expect("prompt");
    let d = &llm.decoder;
    let mut cache = d.new_cache(ids.len() + 1).expect("cache");
    let first = d
        .forward(&mut [Segment {
            cache: &mut cache,
            tokens: &ids,
        }])
        .expect("prefill")
        .to_vec2::<f32>()
        .expect("logits");
    let next = argmax(&first[0]) as u32;
    let second = d
        .forward(&mut [Segment {
            cache: &mut cache,
            tokens: &[next],
        }])
        .expect("decode")
        .to_vec2::<f32>()
        .expect("logits");
    (first[0].clone(), second[0].clone())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn load(path: &std::path::Path, p: Precision) -> Llm {
    load_on(path, p, &candle_core::Device::Cpu)
}

fn load_on(path: &std::path::Path, p: Precision, device: &candle_core::Device) -> Llm {
    let m = resolve(&path.display().to_string(), FetchPolicy::Offline).expect("resolve");
    Llm::load(&m, device, p, None).expect("load")
}

/// On a GPU (a cuda build where `cuda:0` answers): every precision there against f32 on
/// the CPU, prefill and decode. Skipped, saying so, everywhere else.
#[test]
fn gpu_logits_track_cpu_f32() {
    let gpu = match flywheel::engine::device::parse("cuda:0") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no GPU here ({e})");
            return;
        }
    };
    eprintln!("on {}", flywheel::engine::device::describe(&gpu));
    for id in ["smollm2-135m-instruct", "gemma3-270m"] {
        let path = model_file(id);
        let (ref_pre, ref_dec) = logits(&load(&path, Precision::F32));
        for (p, min_cos) in [
            (Precision::F32, 0.99999),
            (Precision::BF16, 0.999),
            (Precision::F16, 0.9999),
            (Precision::Q8_0, 0.985),
        ] {
            let llm = load_on(&path, p, &gpu);
            // The fallback is a warning at load; here it is a failure: a GPU that does not
            // run our attention kernel is slower and must be noticed.
            assert_eq!(
                llm.decoder.attention,
                AttentionImpl::Kernel,
                "{id} cuda {}: the attention kernel's self-check failed and the engine fell back to candle's ops (see the warning above)",
                p.name()
            );
            let (pre, dec) = logits(&llm);
            for (what, got, want) in [("prefill", &pre, &ref_pre), ("decode", &dec, &ref_dec)] {
                let c = cosine(got, want);
                eprintln!("{id} cuda {} {what}: cosine to CPU f32 {c:.6}", p.name());
                assert!(c > min_cos, "{id} cuda {} {what}: cosine {c}", p.name());
                assert_eq!(argmax(got), argmax(want), "{id} cuda {} {what}", p.name());
            }
        }
    }
}

#[test]
fn every_precision_tracks_f32_and_gpu_attention_matches_the_cpu_kernel() {
    for (id, weights_from) in [
        ("smollm2-135m-instruct", "Q8_0 (from"),
        ("gemma3-270m", "Q8_0 (from"),
    ] {
        let path = model_file(id);
        let mut reference = load(&path, Precision::F32);
        assert!(
            reference.info.weights.starts_with("F32 (from"),
            "{}",
            reference.info.weights
        );
        let (ref_pre, ref_dec) = logits(&reference);

        // The GPU's attention (candle ops) on the CPU, f32 weights: the same numbers up to
        // float rounding (f32 weights, no activation quantization to amplify it).
        reference.decoder.attention = AttentionImpl::CandleOps;
        let (ops_pre, ops_dec) = logits(&reference);
        let scale = ref_pre.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (a, b) in ref_pre
            .iter()
            .zip(&ops_pre)
            .chain(ref_dec.iter().zip(&ops_dec))
        {
            assert!(
                (a - b).abs() < 1e-3 * scale,
                "{id}: candle-ops attention {b} vs kernel {a}"
            );
        }
        drop(reference);

        for (p, min_cos) in [
            (Precision::Q8_0, 0.985),
            (Precision::BF16, 0.999),
            (Precision::F16, 0.99995),
        ] {
            let mut llm = load(&path, p);
            if p == Precision::Q8_0 {
                assert!(
                    llm.info.weights.starts_with(weights_from),
                    "{}",
                    llm.info.weights
                );
            } else {
                assert!(
                    llm.info.weights.starts_with(&p.name().to_uppercase()),
                    "{}",
                    llm.info.weights
                );
                // What a GPU runs: these weights with candle-op attention.
                llm.decoder.attention = AttentionImpl::CandleOps;
            }
            let (pre, dec) = logits(&llm);
            for (what, got, want) in [("prefill", &pre, &ref_pre), ("decode", &dec, &ref_dec)] {
                let c = cosine(got, want);
                eprintln!("{id} {} {what}: cosine to f32 {c:.6}", p.name());
                assert!(c > min_cos, "{id} {} {what}: cosine to f32 {c}", p.name());
                assert_eq!(
                    argmax(got),
                    argmax(want),
                    "{id} {} {what}: the top token differs from f32",
                    p.name()
                );
            }
        }
    }
}

/// `--dtype` end to end: records say how their weights ran, a run directory refuses to
/// mix precisions, the judge scores through the same flag, and a bad value is one clear
/// line.
#[test]
fn dtype_flag_reaches_records_fingerprints_and_the_judge() {
    use common::{flywheel, records_by_id, run, stderr, write_spec};
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 1, 10, 0.0);
    let out = dir.path().join("r");
    let gen = |dtype: Option<&str>| {
        let mut c = flywheel();
        if let Some(d) = dtype {
            c.args(["--dtype", d]);
        }
        run(c
            .args(["generate", "--device", "cpu"])
            .arg(&spec)
            .arg("--out")
            .arg(&out))
    };
    let o = gen(Some("bf16"));
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records_by_id(&out.join("generated.jsonl"));
    assert_eq!(recs.len(), 2);
    for line in recs.values() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let w = r["provenance"]["generator"]["weights"].as_str().unwrap();
        assert!(w.starts_with("BF16 (from "), "{w}");
        assert!(!r["messages"][2]["content"].as_str().unwrap().is_empty());
    }
    // The CPU default is q8_0: these records were not made that way.
    let o = gen(None);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("weights") && e.contains("--force"), "{e}");
    // The same precision resumes with nothing to do.
    let o = gen(Some("bf16"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        common::stdout(&o).contains("2 already done, 0 written"),
        "{}",
        common::stdout(&o)
    );

    let o = gen(Some("int4"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("int4") && e.contains("bf16") && !e.contains("panicked"),
        "{e}"
    );

    // The judge through the same flag: f16 scores track f32 to rounding, while q8_0's
    // (int8 activations) visibly differ, which shows the flag reached the judge.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/judge_labeled.jsonl");
    let judge = |dtype: &str| {
        let dst = dir.path().join(format!("judged-{dtype}.jsonl"));
        let o = run(flywheel()
            .args(["--dtype", dtype, "judge", "--device", "cpu"])
            .args(["--criteria", "The answer is correct.", "--scale", "yes-no"])
            .arg("--input")
            .arg(&fixture)
            .arg("--output")
            .arg(&dst));
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(&dst)
            .unwrap()
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                r["scores"]["judge"]["judge"]["normalized"]
                    .as_f64()
                    .unwrap()
            })
            .collect::<Vec<f64>>()
    };
    let worst = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f64, f64::max)
    };
    let (f32s, f16s, q8s) = (judge("f32"), judge("f16"), judge("q8_0"));
    assert!(f32s.len() >= 10);
    let (d16, d8) = (worst(&f32s, &f16s), worst(&f32s, &q8s));
    eprintln!("judge max |score - f32 score|: f16 {d16:.5}, q8_0 {d8:.5}");
    assert!(d16 < 0.02, "f16 {f16s:?} vs f32 {f32s:?}");
    assert!(d8 > 1e-4, "q8_0 scores equal f32's: was --dtype ignored?");
}

/// The benches run end to end and report a share of a measured bound, at two precisions.
#[test]
fn bench_generate_and_judge_report_shares_of_their_bounds() {
    use common::{flywheel, run, stderr, stdout};
    model_file("smollm2-135m-instruct");
    for dtype in ["q8_0", "bf16"] {
        let o = run(flywheel().args([
            "--dtype",
            dtype,
            "bench",
            "generate",
            "--device",
            "cpu",
            "--batch-sizes",
            "1,2",
            "--tokens",
            "4",
            "--prompt-tokens",
            "16",
            "--runs",
            "1",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let json: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap()).expect("last line is JSON");
        assert_eq!(json["precision"], dtype);
        assert!(json["card"].as_str().unwrap().starts_with("cpu ("));
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "prefill + two decode rows: {out}");
        for r in rows {
            let share = r["share_of_bound"].as_f64().unwrap();
            assert!(share > 0.0 && share.is_finite(), "{r}");
        }

        let o = run(flywheel().args([
            "--dtype",
            dtype,
            "bench",
            "judge",
            "--device",
            "cpu",
            "--items",
            "4",
            "--batch-sizes",
            "1,4",
            "--runs",
            "1",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let json: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap()).expect("last line is JSON");
        assert_eq!(json["precision"], dtype);
        assert!(json["shared_prefix_tokens"].as_u64().unwrap() >= 8);
        for r in json["rows"].as_array().unwrap() {
            let share = r["share_of_bound"].as_f64().unwrap();
            assert!(share > 0.0 && share.is_finite(), "{r}");
        }
    }
}

/// Automatic prefix reuse: a prompt that extends a finished sequence (the next turn of
/// the same chat) copies that sequence's KV rows instead of prefilling them. The
/// output must be byte-identical to a cold prefill, alone or beside another sequence,
/// since records may not depend on what the pool held (resume starts with it empty).
#[test]
fn reused_prefix_gives_the_same_tokens_as_a_cold_prefill() {
    use flywheel::engine::{GenParams, Request};
    use flywheel::models::chat::Message;
    let llm = load(&model_file("smollm2-135m-instruct"), Precision::Q8_0);
    let params = GenParams {
        sampling: Default::default(),
        max_new_tokens: 24,
        batch_size: 4,
        stop: Vec::new(),
    };
    let run = |reqs: Vec<Request>| {
        let mut outs = std::collections::BTreeMap::new();
        let stats = llm
            .generate(reqs, &params, |o| {
                outs.insert(o.id.clone(), o);
                Ok(())
            })
            .expect("generate");
        (outs, stats)
    };
    let first = vec![Message::new("user", "Name three rivers in Europe.")];
    let ids = llm.prompt_ids(&first).expect("prompt");
    let (a, _) = run(vec![Request::new("a".into(), ids, 1)]);
    let mut chat = first.clone();
    chat.push(Message::new("assistant", a["a"].text.trim()));
    chat.push(Message::new("user", "Now name two more."));
    let follow = llm.prompt_ids(&chat).expect("prompt");
    let other = llm
        .prompt_ids(&[Message::new("user", "What is rust on iron?")])
        .expect("prompt");

    // Warm: the pool holds the first turn, so the follow-up copies its rows.
    let (warm, ws) = run(vec![
        Request::new("f".into(), follow.clone(), 2),
        Request::new("o".into(), other.clone(), 3),
    ]);
    assert!(
        ws.reused_tokens >= a["a"].prompt_tokens,
        "the follow-up should reuse at least the first turn's prompt ({} positions), reused {}",
        a["a"].prompt_tokens,
        ws.reused_tokens
    );
    // Cold, alone: every position prefilled.
    llm.clear_pool();
    let (cold, cs) = run(vec![Request::new("f".into(), follow, 2)]);
    assert_eq!(cs.reused_tokens, 0, "a cleared pool reuses nothing");
    assert_eq!(
        warm["f"].tokens, cold["f"].tokens,
        "reused rows changed the output"
    );
    assert_eq!(warm["f"].text, cold["f"].text);
    // And the sequence beside it is unaffected by the other's reuse.
    llm.clear_pool();
    let (alone, _) = run(vec![Request::new("o".into(), other, 3)]);
    assert_eq!(warm["o"].tokens, alone["o"].tokens);
}
