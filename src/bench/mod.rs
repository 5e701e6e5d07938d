//! `flywheel bench generate`: engine throughput on this machine, each figure next to a
//! hardware bound measured in the same run (memory copy bandwidth for decode, a GEMM
//! rate for prefill and wide batches), so numbers read as shares of what the machine can
//! do rather than as absolute claims.

pub mod dedup;
pub mod merge;

use crate::engine::model::{Decoder, Segment};
use crate::engine::{device, Llm, Precision, Runtime};
use crate::error::Result;
use crate::models::{resolve, FetchPolicy};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::time::Instant;

/// What a bench measured: a human-readable table (and ratios to references), then one
/// JSON line with every figure, for scripts. The caller prints it; progress notes that say
/// what is being measured go to stderr as the bench runs.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        write!(f, "{}", self.json)
    }
}

/// Settings of `flywheel bench generate`.
#[derive(Debug, Clone)]
pub struct GenerateBench {
    /// Model id or GGUF path.
    pub model: String,
    pub runtime: Runtime,
    /// Numbers of concurrent sequences to decode.
    pub batch_sizes: Vec<usize>,
    /// Tokens decoded per sequence in each measurement.
    pub tokens: usize,
    /// Prompt length for the prefill measurement.
    pub prompt_tokens: usize,
    /// Repetitions; the median is reported.
    pub runs: usize,
    /// A Python with llama-cpp-python: measure llama.cpp on the same file in this run.
    pub llama_cpp: Option<std::path::PathBuf>,
    /// The multi-step case (`None`: skipped).
    pub multi_step: Option<MultiStep>,
    /// The end-to-end chat case (`None`: skipped).
    pub end_to_end: Option<EndToEnd>,
    /// The constrained-decoding case (`None`: skipped).
    pub constraint: Option<ConstraintCase>,
}

/// Settings of the constrained case of `bench generate`: the same chat prompts generated
/// with and without a constraint, at batch 1 and 16.
#[derive(Debug, Clone)]
pub struct ConstraintCase {
    pub constraint: crate::constrain::Constraint,
    /// The file it came from, for the printout.
    pub file: std::path::PathBuf,
    pub records: usize,
    pub tokens: usize,
}

/// Times `case` with and without its constraint at batch 1 and 16.
fn constraint_case(
    llm: &Llm,
    case: &ConstraintCase,
    out: &mut Vec<String>,
) -> Result<serde_json::Value> {
    use crate::engine::{GenParams, Request};
    use crate::models::chat::Message;
    let grammar = llm.compile(&case.constraint)?;
    let mut rows = Vec::new();
    out.push(format!(
        "constrained decoding ({} from {}, {} chat prompts, up to {} new tokens, sampled):",
        case.constraint.kind(),
        case.file.display(),
        case.records,
        case.tokens
    ));
    for batch in [1usize, 16] {
        let mut pair = Vec::new();
        for constrained in [false, true] {
            let mut reqs = Vec::new();
            for i in 0..case.records {
                let msgs = [Message::new(
                    "user",
                    format!("Write a customer support ticket, as JSON, about problem number {i}."),
                )];
                let mut r = Request::new(format!("{i}"), llm.prompt_ids(&msgs)?, i as u64);
                if constrained {
                    r.constraint = Some(grammar.clone());
                }
                reqs.push(r);
            }
            let params = GenParams {
                sampling: crate::spec::Sampling {
                    temperature: 0.7,
                    ..Default::default()
                },
                max_new_tokens: case.tokens,
                batch_size: batch,
                stop: Vec::new(),
            };
            let mut valid = 0usize;
            let t0 = Instant::now();
            let stats = llm.generate(reqs, &params, |o| {
                valid += usize::from(o.valid == Some(true));
                Ok(())
            })?;
            let secs = t0.elapsed().as_secs_f64();
            let tps = stats.generated_tokens as f64 / secs;
            let mask_us = if stats.masks > 0 {
                1e6 * stats.mask_seconds / stats.masks as f64
            } else {
                0.0
            };
            pair.push(tps);
            rows.push(serde_json::json!({
                "batch": batch, "constrained": constrained, "tokens_per_s": tps,
                "generated_tokens": stats.generated_tokens, "seconds": secs,
                "masks": stats.masks, "mask_us_per_token": mask_us,
                "valid": if constrained { Some(valid) } else { None },
            }));
            out.push(format!(
                "  batch {batch:<3} {}: {tps:.1} tok/s ({} tokens in {secs:.1} s){}",
                if constrained { "constrained  " } else { "unconstrained" },
                stats.generated_tokens,
                if constrained {
                    format!(
                        "; mask {mask_us:.0} µs per token, computed beside the forward; {valid}/{} valid",
                        case.records
                    )
                } else {
                    String::new()
                }
            ));
        }
        out.push(format!(
            "  batch {batch:<3} constrained / unconstrained tokens/s: {:.2}× (overhead {:.0}%)",
            pair[1] / pair[0],
            100.0 * (1.0 - pair[1] / pair[0])
        ));
    }
    Ok(serde_json::Value::Array(rows))
}

/// llama.cpp's figures on the same file, from `benches/llama_cpp_reference.py`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct LlamaCppReference {
    pub llama_cpp_version: String,
    pub prefill_tokens_per_s: f64,
    /// Batch-1 decode.
    pub decode_tokens_per_s: f64,
    /// Aggregate decode by batch size, through the batched API (`llama_batch`).
    #[serde(default)]
    pub decode: std::collections::BTreeMap<String, f64>,
    /// End to end: chat completions one by one (new tokens/s), when asked.
    #[serde(default)]
    pub chat_tokens_per_s: Option<f64>,
    pub threads: usize,
}

fn llama_cpp_reference(
    python: &std::path::Path,
    model: &std::path::Path,
    args: &GenerateBench,
    threads: usize,
) -> Result<LlamaCppReference> {
    // The end-to-end prompts, as chat messages, and where to write llama.cpp's answers.
    let out =
        std::env::temp_dir().join(format!("flywheel-llama-chat-{}.jsonl", std::process::id()));
    let chat = args.end_to_end.as_ref().map(|e| {
        let s = e2e_sampling();
        let prompts: Vec<_> = crate::generate::bench::chat_prompts(e.records)
            .into_iter()
            .map(|p| serde_json::json!([{"role": "user", "content": p}]))
            .collect();
        serde_json::json!({"prompts": prompts, "max_tokens": e.tokens, "temperature": s.temperature,
            "top_p": s.top_p, "top_k": s.top_k, "repeat_penalty": s.repetition_penalty, "out": out})
        .to_string()
    });
    let v = run_python(
        python,
        include_str!("../../benches/llama_cpp_reference.py"),
        &[
            model.display().to_string(),
            args.prompt_tokens.to_string(),
            args.tokens.to_string(),
            threads.to_string(),
            args.runs.to_string(),
            args.batch_sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ]
        .into_iter()
        .chain(chat)
        .collect::<Vec<_>>(),
        "",
    )?;
    let _ = std::fs::remove_file(&out);
    serde_json::from_value(v)
        .map_err(|e| crate::Error::Model(format!("unexpected llama.cpp reference output: {e}")))
}

/// One row of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub phase: String,
    pub batch: usize,
    pub tokens_per_s: f64,
    pub bound_tokens_per_s: f64,
    pub share_of_bound: f64,
}

/// Decode and prefill throughput at several batch sizes, each next to its hardware bound.
pub fn generate(args: &GenerateBench) -> Result<BenchReport> {
    let (dev, precision) = (&args.runtime.device, args.runtime.precision);
    let model = resolve(&args.model, FetchPolicy::from_env())?;
    let llm = Llm::load(&model, dev, precision, None)?;
    let d = &llm.decoder;
    let c = &d.cfg;
    let threads = rayon::current_num_threads();

    let copy_gbs = device_copy_bandwidth_gbs(dev)?;
    let mm_rate = matmul_gflops(dev, precision)?;
    // Weight bytes streamed per decode step: every matmul weight once, the LM head
    // included.
    let weight_values = matmul_weights(c);
    let weight_bytes = weight_values as f64 * precision.bytes_per_weight();
    let flops_per_token = 2.0 * weight_values as f64;
    let card = device::describe(dev);

    eprintln!(
        "bench generate: {} ({}) on {card} · {} threads · copy bandwidth {:.1} GB/s · {} matmul {:.1} GFLOP/s",
        llm.info.model, llm.info.weights, threads, copy_gbs, precision.name(), mm_rate
    );
    let mut rows = Vec::new();
    let mut out = Vec::new();

    // Prefill: one prompt of `prompt_tokens` tokens in one forward (ids within any
    // vocabulary: a tiny test model's too).
    let vocab = d.cfg.vocab as u32;
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|i| (100 + (i as u32 * 7919) % 20000) % vocab)
        .collect();
    let t = median(args.runs, || {
        let mut cache = d.new_cache(prompt.len() + 1)?;
        // A GPU runs asynchronously: the clock covers the work, not its launch.
        d.device().synchronize()?;
        let t0 = Instant::now();
        d.forward(&mut [Segment {
            cache: &mut cache,
            tokens: &prompt,
        }])?;
        d.device().synchronize()?;
        Ok(t0.elapsed().as_secs_f64())
    })?;
    // A prefill runs the LM head on its last position only.
    let prefill_flops_per_token =
        2.0 * (body_weights(c) as f64 + head_weights(c) as f64 / args.prompt_tokens.max(1) as f64);
    let bound = mm_rate * 1e9 / prefill_flops_per_token;
    rows.push(row("prefill", 1, args.prompt_tokens as f64 / t, bound));

    for &b in &args.batch_sizes {
        let t = median(args.runs, || {
            decode_seconds(d, b, args.prompt_tokens, args.tokens)
        })?;
        let tps = (b * args.tokens) as f64 / t;
        // Decode is bound by streaming the weights once per step (shared by the whole
        // batch) or by arithmetic, whichever is slower.
        let mem_bound = b as f64 * copy_gbs * 1e9 / weight_bytes;
        let flop_bound = mm_rate * 1e9 / flops_per_token;
        rows.push(row("decode", b, tps, mem_bound.min(flop_bound)));
    }

    out.push(format!(
        "{:<8} {:>5} {:>12} {:>12} {:>8}",
        "phase", "batch", "tok/s", "bound tok/s", "share"
    ));
    for r in &rows {
        out.push(format!(
            "{:<8} {:>5} {:>12.1} {:>12.1} {:>7.0}%",
            r.phase,
            r.batch,
            r.tokens_per_s,
            r.bound_tokens_per_s,
            100.0 * r.share_of_bound
        ));
    }
    let reference = match &args.llama_cpp {
        Some(py) => Some(llama_cpp_reference(
            py,
            &model.main_file().path,
            args,
            threads,
        )?),
        None => None,
    };
    if let Some(r) = &reference {
        out.push(format!("llama.cpp {} on the same file, {} threads, measured now: prefill {:.1} tok/s, batch-1 decode {:.1} tok/s", r.llama_cpp_version, r.threads, r.prefill_tokens_per_s, r.decode_tokens_per_s));
        let ours = |phase: &str, b: usize| {
            rows.iter()
                .find(|x| x.phase == phase && x.batch == b)
                .map(|x| x.tokens_per_s)
        };
        if let Some(p) = ours("prefill", 1) {
            out.push(format!(
                "  prefill:            flywheel / llama.cpp = {:.2}×",
                p / r.prefill_tokens_per_s
            ));
        }
        for &b in &args.batch_sizes {
            let theirs = r.decode.get(&b.to_string());
            if let (Some(d), Some(t)) = (ours("decode", b), theirs) {
                out.push(format!(
                    "  decode batch {b:<3}:   flywheel {d:.1} / llama.cpp {t:.1} tok/s (batched API, {b} sequence ids) = {:.2}×",
                    d / t
                ));
            }
        }
        out.push(format!(
            "  peer conditions: same GGUF file and {} threads; one warm-up then the median of {}; decode from the same prompt ids and lengths ({}–{} tokens) in both, greedy",
            r.threads,
            args.runs,
            args.prompt_tokens,
            args.prompt_tokens + 4
        ));
    }
    let e2e = match &args.end_to_end {
        Some(e) => {
            let s = e2e_sampling();
            let mut cases = Vec::new();
            for &b in &e.batch_sizes {
                cases.push(crate::generate::bench::chat_bench(
                    &args.model,
                    dev,
                    precision,
                    b,
                    e.tokens,
                    e.records,
                    &s,
                )?);
            }
            out.push(format!(
                "end to end ({} chat prompts, ≤ {} new tokens, temperature {} top_p {} top_k {}, records written):",
                e.records, e.tokens, s.temperature, s.top_p, s.top_k
            ));
            let theirs = reference.as_ref().and_then(|r| r.chat_tokens_per_s);
            for (b, c) in e.batch_sizes.iter().zip(&cases) {
                out.push(format!(
                    "  flywheel batch {b:<3}: {:.1} new tok/s ({} new tokens in {:.1} s){}",
                    c.tokens_per_s,
                    c.generated_tokens,
                    c.seconds,
                    theirs.map_or(String::new(), |t| format!(
                        " = {:.2}× llama.cpp's chat loop",
                        c.tokens_per_s / t
                    ))
                ));
            }
            if let Some(t) = theirs {
                out.push(format!(
                    "  llama.cpp create_chat_completion one by one: {t:.1} new tok/s (same prompts, sampling and chat template)"
                ));
            }
            Some(
                serde_json::json!({"records": e.records, "max_new_tokens": e.tokens,
                "batch_sizes": e.batch_sizes, "flywheel": cases, "llama_cpp_chat_tokens_per_s": theirs}),
            )
        }
        None => None,
    };
    let multi = match args.multi_step {
        Some(m) => {
            let [one, cont, quote] = crate::generate::bench::steps_bench(
                &args.model,
                dev,
                precision,
                m.batch,
                m.tokens,
                m.records,
            )?;
            // A step that quotes step 1's answer prefills it again: the "all tokens"
            // ratio counts every token through the model, which is what scheduling (not
            // the task's shape) decides.
            let all = |c: &crate::generate::bench::StepsCase| {
                (c.generated_tokens + c.prefill_tokens) as f64 / c.seconds
            };
            out.push(format!(
                "multi-step (real executor, {} records, batch {}, {} new tokens per record):",
                m.records, m.batch, m.tokens
            ));
            for (c, what) in [
                (&one, "1 step                       "),
                (&cont, "2 steps, s2 continues s1    "),
                (&quote, "2 steps, s2 quotes s1       "),
            ] {
                out.push(format!(
                    "  {what}: {:.1} new tok/s ({} new + {} prefilled + {} reused prompt tokens in {:.1} s; {:.1} tok/s through the model)",
                    c.tokens_per_s,
                    c.generated_tokens,
                    c.prefill_tokens,
                    c.reused_tokens,
                    c.seconds,
                    all(c)
                ));
            }
            let ratio = cont.tokens_per_s / one.tokens_per_s;
            out.push(format!(
                "  2-step / 1-step, new tokens/s: {ratio:.2}× continuing the chat (target ≥ 0.90: {}) · {:.2}× quoting the answer ({:.2}× counting prefilled tokens too)",
                if ratio >= 0.9 { "met" } else { "NOT met" },
                quote.tokens_per_s / one.tokens_per_s,
                all(&quote) / all(&one)
            ));
            Some(serde_json::json!({
                "batch": m.batch, "records": m.records, "tokens_per_record": m.tokens,
                "one_step": one, "two_step_continues": cont, "two_step_quotes": quote,
                "ratio": ratio,
                "ratio_quotes": quote.tokens_per_s / one.tokens_per_s,
                "ratio_quotes_all_tokens": all(&quote) / all(&one),
            }))
        }
        None => None,
    };
    let constrained = match &args.constraint {
        Some(c) => Some(constraint_case(&llm, c, &mut out)?),
        None => None,
    };
    out.push(format!("bounds: decode = min(batch × copy bandwidth ÷ {:.0} MB of {} weights per step, {} matmul rate ÷ {:.0} MFLOP per token); prefill = matmul rate ÷ {:.0} MFLOP per token (the LM head runs on the last position only)", weight_bytes / 1e6, precision.name(), precision.name(), flops_per_token / 1e6, prefill_flops_per_token / 1e6));
    let json = serde_json::json!({
        "bench": "generate",
        "model": llm.info.model,
        "weights": llm.info.weights,
        "precision": precision.name(),
        "device": device::name(dev),
        "card": card,
        "threads": threads,
        "copy_bandwidth_gb_s": copy_gbs,
        "matmul_gflop_s": mm_rate,
        "weight_bytes_per_step": weight_bytes,
        "flops_per_token": flops_per_token,
        "prefill_flops_per_token": prefill_flops_per_token,
        "tokens_per_sequence": args.tokens,
        "prompt_tokens": args.prompt_tokens,
        "rows": rows,
        "llama_cpp": reference,
        "multi_step": multi,
        "end_to_end": e2e,
        "constraint": constrained,
    });
    Ok(BenchReport { lines: out, json })
}

/// Settings of the end-to-end case of `bench generate`: real chat prompts, sampling on,
/// records written, at each batch size; llama.cpp answers the same prompts one by one
/// through `create_chat_completion` (its chat loop).
#[derive(Debug, Clone)]
pub struct EndToEnd {
    pub records: usize,
    /// New tokens per record, at most.
    pub tokens: usize,
    pub batch_sizes: Vec<usize>,
}

/// The sampling of the end-to-end case, for both engines.
fn e2e_sampling() -> crate::spec::Sampling {
    crate::spec::Sampling {
        temperature: 0.7,
        top_p: 0.9,
        top_k: 40,
        repetition_penalty: 1.0,
        stop: Vec::new(),
    }
}

/// Settings of the multi-step case of `bench generate`.
#[derive(Debug, Clone, Copy)]
pub struct MultiStep {
    pub records: usize,
    pub batch: usize,
    /// New tokens per record, split evenly between the steps.
    pub tokens: usize,
}

fn row(phase: &str, batch: usize, tps: f64, bound: f64) -> Row {
    Row {
        phase: phase.into(),
        batch,
        tokens_per_s: tps,
        bound_tokens_per_s: bound,
        share_of_bound: tps / bound,
    }
}

/// Seconds to decode `tokens` greedy steps for `b` sequences (prefill not counted).
pub fn decode_seconds(d: &Decoder, b: usize, context: usize, tokens: usize) -> Result<f64> {
    let mut caches = Vec::with_capacity(b);
    let mut last = Vec::with_capacity(b);
    {
        // Distinct prompts of `context` tokens and a little more (ragged, like real
        // work): decoding attends over as many positions as llama.cpp's reference does.
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|i| {
                (0..(context.max(1) + i % 5))
                    .map(|j| (200 + ((i * 31 + j * 17) % 5000) as u32) % d.cfg.vocab as u32)
                    .collect()
            })
            .collect();
        for p in &prompts {
            caches.push(d.new_cache(p.len() + tokens + 1)?);
        }
        let mut segs: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(&prompts)
            .map(|(c, p)| Segment {
                cache: c,
                tokens: p,
            })
            .collect();
        let logits = d.forward(&mut segs)?;
        last.extend(logits.argmax(1)?.to_vec1::<u32>()?);
    }
    let t0 = Instant::now();
    for _ in 0..tokens {
        let feeds: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
        let mut segs: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(&feeds)
            .map(|(c, f)| Segment {
                cache: c,
                tokens: f,
            })
            .collect();
        let logits = d.forward(&mut segs)?;
        last = logits.argmax(1)?.to_vec1::<u32>()?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn median(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    f()?; // warm-up
    let mut v = Vec::new();
    for _ in 0..runs.max(1) {
        v.push(f()?);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

/// Memory bandwidth of the device the model runs on: host copy bandwidth on the CPU, a
/// device-to-device copy of 256 MiB on a GPU (its HBM is what decode streams weights from).
pub fn device_copy_bandwidth_gbs(dev: &Device) -> Result<f64> {
    if dev.is_cpu() {
        return Ok(copy_bandwidth_gbs());
    }
    let n = 64 << 20; // f32 values: 256 MiB
    let src = Tensor::zeros(n, candle_core::DType::F32, dev)?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        dev.synchronize()?;
        let t0 = Instant::now();
        let dst = src.copy()?;
        dev.synchronize()?;
        best = best.min(t0.elapsed().as_secs_f64());
        drop(dst);
    }
    Ok(2.0 * 4.0 * n as f64 / best / 1e9)
}

/// Memory traffic of a parallel copy of 256 MiB (read + write), GB/s, best of 5.
pub fn copy_bandwidth_gbs() -> f64 {
    use rayon::prelude::*;
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        dst.par_chunks_mut(1 << 20)
            .zip(src.par_chunks(1 << 20))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t0.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * n as f64 / best / 1e9
}

/// Values in every matmul weight of a decoder (the LM head included): a forward pass
/// costs two FLOP per value and token, and a decode step streams each value once.
pub fn matmul_weights(c: &crate::engine::model::Config) -> usize {
    body_weights(c) + head_weights(c)
}

/// The matmul weights every token runs through: the transformer blocks.
pub fn body_weights(c: &crate::engine::model::Config) -> usize {
    let per_layer = c.hidden * (c.n_heads + 2 * c.n_kv_heads) * c.head_dim
        + c.n_heads * c.head_dim * c.hidden
        + 3 * c.hidden * c.ffn;
    c.n_layers * per_layer
}

/// The LM head's weights. A prefill or a judge item runs it on its last position only
/// (the engine computes logits for the last token of each segment), a decode step on
/// every sequence.
pub fn head_weights(c: &crate::engine::model::Config) -> usize {
    c.vocab * c.hidden
}

/// The matmul rate a model in `precision` can reach on the device, GFLOP/s: a square
/// GEMM in that dtype for dense weights, the Q8_0 kernel at 16 rows for Q8_0.
pub fn matmul_gflops(dev: &Device, precision: Precision) -> Result<f64> {
    match precision.dense_dtype() {
        Some(dt) => dense_gemm_gflops(dev, dt),
        None => Ok(gemm_rates(dev)?.1),
    }
}

/// Square GEMM rate in `dt`, GFLOP/s, best of 5: n = 1024 on the CPU; on a GPU n = 8192,
/// ten per timing, synchronized, so that launch overhead does not hide the card's rate.
pub fn dense_gemm_gflops(dev: &Device, dt: DType) -> Result<f64> {
    let (n, reps) = if dev.is_cpu() { (1024, 1) } else { (8192, 10) };
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dt)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dt)?;
    drop(a.matmul(&b)?); // warm-up (cuBLAS handles, heuristics)
    dev.synchronize()?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..reps {
            drop(std::hint::black_box(a.matmul(&b)?));
        }
        dev.synchronize()?;
        best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// (f32 GEMM GFLOP/s, Q8_0 matmul GFLOP/s at 16 rows × 1536 × 1536), best of 5.
pub fn gemm_rates(dev: &Device) -> Result<(f64, f64)> {
    let f32_rate = dense_gemm_gflops(dev, DType::F32)?;
    let w = Tensor::randn(0f32, 1.0, (1536, 1536), &Device::Cpu)?;
    let q = QMatMul::from_qtensor(QTensor::quantize_onto(&w, GgmlDType::Q8_0, dev)?)?;
    let x = Tensor::randn(0f32, 1.0, (16, 1536), dev)?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..10 {
            q.forward(&x)?.sum_all()?.to_scalar::<f32>()?;
        }
        best = best.min(t0.elapsed().as_secs_f64() / 10.0);
    }
    let q8_rate = 2.0 * 16.0 * 1536.0 * 1536.0 / best / 1e9;
    Ok((f32_rate, q8_rate))
}

/// Settings of `flywheel bench judge`.
#[derive(Debug, Clone)]
pub struct JudgeBench {
    /// Judge model id or GGUF path.
    pub model: String,
    pub runtime: Runtime,
    /// Items in the fixed synthetic set.
    pub items: usize,
    /// Items per forward pass.
    pub batch_sizes: Vec<usize>,
    /// Repetitions; the median is reported.
    pub runs: usize,
    /// A Python with llama-cpp-python: score the same token ids with llama.cpp in this run.
    pub llama_cpp: Option<std::path::PathBuf>,
}

/// A fixed, seeded set of judge items of about 200 prompt tokens.
pub fn judge_items(n: usize) -> Vec<crate::verify::judge::JudgeItem> {
    use rand::{Rng, SeedableRng};
    const WORDS: &[&str] = &[
        "the", "tide", "moon", "water", "rises", "because", "gravity", "pulls", "ocean", "twice",
        "each", "day", "sun", "also", "adds", "small", "effect", "when", "aligned", "spring",
        "neap", "coast", "harbour", "level", "changes", "energy", "planet", "orbit", "earth",
        "rotates", "bulge", "side", "opposite", "height", "depends", "shape",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261122);
    let mut words = |k: usize| {
        (0..k)
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    (0..n)
        .map(|i| crate::verify::judge::JudgeItem {
            prompt: format!("Question {i}: why does {}?", words(12)),
            response: format!("{}.", words(110)),
        })
        .collect()
}

/// Judge throughput (items/s) at several batch sizes on a fixed item set.
pub fn judge(args: &JudgeBench) -> Result<BenchReport> {
    use crate::verify::judge::{Judge, Rubric};
    let (dev, precision) = (&args.runtime.device, args.runtime.precision);
    let model = resolve(&args.model, FetchPolicy::from_env())?;
    let llm = Llm::load(&model, dev, precision, None)?;
    let rubric = Rubric {
        criteria: "The answer is correct, on topic, complete and clearly written.".into(),
        scale: "yes-no".into(),
        system: None,
        rationale: false,
    };
    let judge = Judge::new("bench", &llm, rubric, 1024)?;
    let items = judge_items(args.items);
    let ids: Vec<Vec<u32>> = items
        .iter()
        .map(|it| llm.prompt_ids_raw(&judge.prompt_text(it)?))
        .collect::<Result<_>>()?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let threads = rayon::current_num_threads();
    let card = device::describe(dev);
    // The judge prefills the prefix all items share once, then each item's own tokens:
    // the bound counts the tokens that actually run (two FLOP per weight each).
    let shared = shared_prefix(&ids);
    let run_tokens = shared + tokens - shared * ids.len();
    let mm_rate = matmul_gflops(dev, precision)?;
    // Every token that runs goes through the blocks; the LM head runs once per item (its
    // verdict position).
    let cfg = &llm.decoder.cfg;
    let flops_per_item = 2.0
        * (body_weights(cfg) as f64 * run_tokens as f64 / items.len() as f64
            + head_weights(cfg) as f64);
    let bound_items_per_s = mm_rate * 1e9 / flops_per_item;
    eprintln!(
        "bench judge: {} ({}) on {card} · {} threads · {} items, {:.0} prompt tokens each on average, {shared} shared · {} matmul {:.1} GFLOP/s",
        llm.info.model, llm.info.weights, threads, items.len(), tokens as f64 / items.len() as f64, precision.name(), mm_rate
    );
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for &b in &args.batch_sizes {
        let t = median(args.runs, || {
            let t0 = Instant::now();
            judge.score(&items, b)?;
            Ok(t0.elapsed().as_secs_f64())
        })?;
        let ips = items.len() as f64 / t;
        rows.push(serde_json::json!({"batch": b, "items_per_s": ips, "prompt_tokens_per_s": tokens as f64 / t, "share_of_bound": ips / bound_items_per_s}));
    }
    let base = rows
        .iter()
        .find(|r| r["batch"] == 1)
        .or(rows.first())
        .map(|r| r["items_per_s"].as_f64().unwrap_or(1.0))
        .unwrap_or(1.0);
    out.push(format!(
        "{:>5} {:>10} {:>16} {:>10} {:>7}",
        "batch", "items/s", "prompt tok/s", "vs batch 1", "share"
    ));
    for r in rows.iter_mut() {
        let ips = r["items_per_s"].as_f64().unwrap_or(0.0);
        r["speedup_vs_batch_1"] = serde_json::json!(ips / base);
        out.push(format!(
            "{:>5} {:>10.2} {:>16.1} {:>9.2}× {:>6.0}%",
            r["batch"],
            ips,
            r["prompt_tokens_per_s"].as_f64().unwrap_or(0.0),
            ips / base,
            100.0 * ips / bound_items_per_s
        ));
    }
    let reference = match &args.llama_cpp {
        None => None,
        Some(py) => {
            let mut input = String::new();
            for v in &ids {
                input.push_str(&serde_json::to_string(v).unwrap_or_default());
                input.push('\n');
            }
            let v = run_python(
                py,
                include_str!("../../benches/llama_cpp_judge_reference.py"),
                &[
                    model.main_file().path.display().to_string(),
                    threads.to_string(),
                    args.runs.to_string(),
                ],
                &input,
            )?;
            let best = v["items_per_s"]
                .as_f64()
                .unwrap_or(0.0)
                .max(v["items_per_s_prefix_reuse"].as_f64().unwrap_or(0.0));
            let ours = rows
                .iter()
                .filter_map(|r| r["items_per_s"].as_f64())
                .fold(0.0, f64::max);
            out.push(format!(
                "llama.cpp {} on the same token ids, {} threads, measured now: {:.2} items/s one by one, {:.2} with the {}-token shared prefix reused; flywheel best / llama.cpp best = {:.2}×",
                v["llama_cpp_version"], threads, v["items_per_s"].as_f64().unwrap_or(0.0), v["items_per_s_prefix_reuse"].as_f64().unwrap_or(0.0), v["shared_prefix_tokens"], ours / best.max(1e-9)
            ));
            out.push(format!(
                "peer conditions: same GGUF file, token ids and {threads} threads; each side one warm-up then the median of {} runs; llama.cpp scores one item per call (its API reads one sequence's logits at a time), flywheel packs items into batches",
                args.runs
            ));
            Some(v)
        }
    };
    out.push(format!("bound: {} matmul rate ÷ (2 FLOP × ({:.0} M block weights × {:.0} tokens run per item, the shared prefix counted once, + {:.0} M LM-head weights once))", precision.name(), body_weights(cfg) as f64 / 1e6, run_tokens as f64 / items.len() as f64, head_weights(cfg) as f64 / 1e6));
    let json = serde_json::json!({"bench": "judge", "model": llm.info.model, "weights": llm.info.weights, "precision": precision.name(), "device": device::name(dev), "card": card, "threads": threads, "items": items.len(), "prompt_tokens": tokens, "shared_prefix_tokens": shared, "matmul_gflop_s": mm_rate, "bound_items_per_s": bound_items_per_s, "rows": rows, "llama_cpp": reference});
    Ok(BenchReport { lines: out, json })
}

/// Length of the prefix every id list shares, leaving each at least one token of its own
/// (as the judge computes it).
fn shared_prefix(ids: &[Vec<u32>]) -> usize {
    let Some(first) = ids.first() else { return 0 };
    if ids.len() < 2 {
        return 0;
    }
    let mut p = ids
        .iter()
        .map(|v| v.len().saturating_sub(1))
        .min()
        .unwrap_or(0);
    for v in &ids[1..] {
        p = p.min(first.iter().zip(v).take_while(|(a, b)| a == b).count());
    }
    if p >= 8 {
        p
    } else {
        0
    }
}

/// Runs an embedded Python script with arguments and stdin; parses its last line as JSON.
pub(crate) fn run_python(
    python: &std::path::Path,
    script: &str,
    args: &[String],
    stdin: &str,
) -> Result<serde_json::Value> {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| crate::Error::Model(format!("cannot run {}: {e}", python.display())))?;
    if let Some(mut si) = child.stdin.take() {
        si.write_all(stdin.as_bytes())
            .map_err(|e| crate::Error::Model(format!("writing to the reference: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| crate::Error::Model(format!("reference failed: {e}")))?;
    if !out.status.success() {
        return Err(crate::Error::Model(format!(
            "the Python reference failed (are its packages installed for {}? see benches/): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| crate::Error::Model(format!("unexpected reference output {line:?}: {e}")))
}
