//! `flywheel bench embed` and `flywheel bench dedup`: the embedder's sentences/s and the
//! dedup methods' throughput and quality, each optionally next to its Python peer
//! (sentence-transformers; datasketch, numpy, FAISS) measured in the same run on the same
//! data and threads.

use super::{gemm_rates, run_python, BenchReport};
use crate::dedup::corpus::{self, CorpusSpec};
use crate::dedup::{self, semantic, Item, MinHashOptions, Shingle};
use crate::embed::Embedder;
use crate::engine::device;
use crate::error::{Error, Result};
use crate::models::{resolve, FetchPolicy};
use candle_core::Device;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Settings of `flywheel bench embed`.
#[derive(Debug, Clone)]
pub struct EmbedBench {
    /// Embedder: a built-in id or a local sentence-transformers folder.
    pub model: String,
    /// Sentences to embed.
    pub n: usize,
    pub device: Device,
    /// Tokens per packed forward.
    pub token_budget: usize,
    /// Repetitions; the median is reported.
    pub runs: usize,
    /// A Python with sentence-transformers: measure it on the same sentences in this run.
    pub reference: Option<PathBuf>,
}

/// Settings of `flywheel bench dedup`.
#[derive(Debug, Clone)]
pub struct DedupBench {
    /// Documents for MinHash and vectors for semantic all-pairs.
    pub n: usize,
    /// Vectors for the k-means (clustered) semantic path; 0 skips it.
    pub kmeans_n: usize,
    /// Vector width.
    pub dim: usize,
    /// All-pairs cosine threshold.
    pub threshold: f32,
    pub shingle: Shingle,
    /// A Python with datasketch, numpy and faiss-cpu: measure them on the same data.
    pub reference: Option<PathBuf>,
    /// Where the all-pairs similarity kernel also runs (a CUDA device), checked against
    /// the CPU's pairs; the CPU: not run.
    pub device: Device,
    /// Signatures for the merge case (the global MinHash of `flywheel merge`: LSH banding
    /// and clusters over every shard's signatures); 0 skips it.
    pub merge_n: usize,
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

/// Seeded sentences: the corpus paragraphs cut at full stops.
pub fn bench_sentences(n: usize) -> Vec<String> {
    let c = corpus::build(CorpusSpec {
        bases: n / 3 + 10,
        ..Default::default()
    });
    c.texts
        .iter()
        .flat_map(|t| t.split_inclusive(". ").map(|s| s.trim().to_string()))
        .filter(|s| s.split_whitespace().count() >= 5)
        .take(n)
        .collect()
}

fn time_median(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::new();
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        f()?;
        v.push(t0.elapsed().as_secs_f64());
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

/// Embedding throughput, optionally against sentence-transformers.
pub fn embed(args: &EmbedBench) -> Result<BenchReport> {
    let dev = &args.device;
    let mut emb = Embedder::load(&args.model, FetchPolicy::from_env(), dev)?;
    emb.set_token_budget(args.token_budget);
    let sentences = bench_sentences(args.n);
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|s| emb.tokenize(s).map(|t| t.0.len()))
        .sum::<Result<usize>>()?;
    let threads = rayon::current_num_threads();
    eprintln!(
        "bench embed: {} on {} · {threads} threads · {} · {} sentences, {:.1} tokens each on average",
        emb.id,
        device::name(dev),
        cpu_name(),
        refs.len(),
        tokens as f64 / refs.len() as f64
    );
    let mut ours = Vec::new();
    let t = time_median(args.runs, || {
        ours = emb.embed(&refs, |_| {})?;
        Ok(())
    })?;
    let sps = refs.len() as f64 / t;
    // FLOPs per token of the encoder's matmuls (QKV, output, two FFN) — attention excluded.
    let h = emb.dim() as f64;
    let flops = tokens as f64 * 6.0 * 2.0 * (4.0 * h * h + 2.0 * h * 4.0 * h);
    let (gemm, _) = gemm_rates(dev)?;
    let mut out = Vec::new();
    out.push(
        "| embedder | sentences/s | tokens/s | matmul GFLOP/s | share of f32 GEMM bound |"
            .to_string(),
    );
    out.push("|---|---|---|---|---|".to_string());
    out.push(format!(
        "| flywheel (packed, no padding) | {sps:.0} | {:.0} | {:.1} | {:.0}% of {gemm:.0} |",
        tokens as f64 / t,
        flops / t / 1e9,
        100.0 * flops / t / 1e9 / gemm
    ));
    let mut line = json!({"bench": "embed", "model": emb.id, "device": device::name(dev), "threads": threads,
        "sentences": refs.len(), "tokens": tokens, "sentences_per_s": sps, "tokens_per_s": tokens as f64 / t,
        "gemm_gflops": gemm});
    if let Some(py) = &args.reference {
        let m = resolve(&args.model, FetchPolicy::from_env())?;
        let dir = m
            .files
            .first()
            .and_then(|f| f.path.parent())
            .ok_or_else(|| Error::Model("embedder has no files".into()))?;
        let v = run_python(
            py,
            include_str!("../../benches/st_embed_reference.py"),
            &[
                dir.display().to_string(),
                "64".into(),
                threads.to_string(),
                args.runs.to_string(),
            ],
            &serde_json::to_string(&sentences).unwrap_or_default(),
        )?;
        let rs = v["sentences_per_s"].as_f64().unwrap_or(0.0);
        let mut min_cos = f32::INFINITY;
        for (r, o) in v["first_vectors"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&ours)
        {
            let c: f32 = r
                .as_array()
                .into_iter()
                .flatten()
                .zip(&o.vector)
                .map(|(a, b)| a.as_f64().unwrap_or(0.0) as f32 * b)
                .sum();
            min_cos = min_cos.min(c);
        }
        out.push(format!(
            "| {} (batch 64) | {rs:.0} | {:.0} | | |",
            v["version"].as_str().unwrap_or("reference"),
            tokens as f64 / (refs.len() as f64 / rs)
        ));
        out.push(format!(
            "\nflywheel / sentence-transformers: {:.2}× sentences/s; min cosine between their vectors on the first 64: {min_cos:.5}",
            sps / rs
        ));
        out.push(format!("peer conditions: same sentences, model files and {threads} threads (torch.set_num_threads); sentence-transformers at batch 64; each side one warm-up then the median of {} runs", args.runs));
        line["reference"] = json!({"version": v["version"], "sentences_per_s": rs, "ratio": sps / rs, "min_cosine_first_64": min_cos});
    }
    Ok(BenchReport {
        lines: out,
        json: line,
    })
}

/// Unit vectors with structure: random centers, points scattered around them, and planted
/// near-copies (1% of rows), so a threshold finds real pairs. Returns the planted pairs too.
fn bench_vectors(n: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<(u32, u32)>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let centers = (n / 50).max(1);
    let gauss = |rng: &mut rand_chacha::ChaCha8Rng| -> f32 {
        // Box–Muller
        let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-9), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let c: Vec<f32> = (0..centers * dim).map(|_| gauss(&mut rng)).collect();
    let mut v = vec![0f32; n * dim];
    let mut planted = Vec::new();
    for i in 0..n {
        let k = rng.random_range(0..centers);
        let copy_of = (i > 0 && rng.random_bool(0.01)).then(|| rng.random_range(0..i));
        if let Some(j) = copy_of {
            planted.push((j as u32, i as u32));
        }
        for d in 0..dim {
            v[i * dim + d] = match copy_of {
                Some(j) => v[j * dim + d] + 0.02 * gauss(&mut rng),
                None => c[k * dim + d] + 1.2 * gauss(&mut rng),
            };
        }
        crate::embed::normalize(&mut v[i * dim..(i + 1) * dim]);
    }
    (v, planted)
}

/// MinHash-LSH docs/s and F1, semantic all-pairs and k-means timings, optionally against
/// datasketch, numpy and FAISS.
pub fn dedup(args: &DedupBench) -> Result<BenchReport> {
    let dev = &args.device;
    let threads = rayon::current_num_threads();
    let shingle = args.shingle;
    eprintln!(
        "bench dedup: {threads} threads · {} · MinHash on {} docs ({}), all-pairs {} × {} at {}",
        cpu_name(),
        args.n,
        shingle.name(),
        args.n,
        args.dim,
        args.threshold
    );
    // MinHash end to end on the labeled corpus.
    let mut c = corpus::build(CorpusSpec {
        bases: (args.n as f64 / 2.8) as usize + 1,
        ..Default::default()
    });
    c.texts.truncate(args.n);
    c.group.truncate(args.n);
    let items: Vec<Item> = c
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| Item {
            id: i.to_string(),
            text: t.clone(),
            score: None,
        })
        .collect();
    let opts = MinHashOptions {
        shingle,
        ..Default::default()
    };
    let mut out = Vec::new();
    let t_mh = time_median(3, || {
        out = vec![None; items.len()];
        dedup::minhash(&items, &opts, &mut out);
        Ok(())
    })?;
    let f = corpus::score(&c.group, &dedup::clusters(&items, &out));
    let docs_s = items.len() as f64 / t_mh;
    let mut out = Vec::new();
    out.push("| method | N | time | rate | quality |".to_string());
    out.push("|---|---|---|---|---|".to_string());
    out.push(format!(
        "| flywheel MinHash-LSH (128 perms, {}, 0.8) | {} | {t_mh:.3} s | {docs_s:.0} docs/s | P {:.3} R {:.3} F1 {:.3} |",
        shingle.name(),
        items.len(),
        f.precision,
        f.recall,
        f.f1
    ));
    // Lines printed after the table.
    let mut notes: Vec<String> = Vec::new();
    let mut line = json!({"bench": "dedup", "threads": threads, "minhash": {"docs": items.len(), "shingle": shingle.name(),
        "seconds": t_mh, "docs_per_s": docs_s, "precision": f.precision, "recall": f.recall, "f1": f.f1}});
    if let Some(py) = &args.reference {
        let mut refs = Vec::new();
        for sh in [shingle.name(), "word:5".to_string()] {
            let req = json!({"texts": c.texts, "group": c.group, "shingle": sh, "threshold": 0.8});
            let v = run_python(
                py,
                include_str!("../../benches/dedup_reference.py"),
                &["minhash".into(), threads.to_string(), "3".into()],
                &req.to_string(),
            )?;
            let rate = v["docs_per_s"].as_f64().unwrap_or(0.0);
            let one = v["docs_per_s_one_process"].as_f64().unwrap_or(0.0);
            let version = v["version"].as_str().unwrap_or("datasketch");
            let quality = format!(
                "P {:.3} R {:.3} F1 {:.3}",
                v["precision"].as_f64().unwrap_or(0.0),
                v["recall"].as_f64().unwrap_or(0.0),
                v["f1"].as_f64().unwrap_or(0.0)
            );
            out.push(format!(
                "| {version} MinHash+LSH ({sh}, 0.8), signatures in {threads} worker processes | {} | {:.3} s | {rate:.0} docs/s | {quality} |",
                items.len(),
                v["seconds"].as_f64().unwrap_or(0.0),
            ));
            out.push(format!(
                "| {version} MinHash+LSH ({sh}, 0.8), one process | {} | {:.3} s | {one:.0} docs/s | {quality} |",
                items.len(),
                v["seconds_one_process"].as_f64().unwrap_or(0.0),
            ));
            refs.push(
                json!({"shingle": sh, "docs_per_s": rate, "docs_per_s_one_process": one,
                "workers": v["workers"], "f1": v["f1"], "ratio": docs_s / rate,
                "ratio_per_thread": (docs_s / threads as f64) / one}),
            );
        }
        // A ratio only where both ran the same shingles (the word:5 rows show datasketch's
        // quality with another shingling, for reference).
        for r in refs
            .iter()
            .filter(|r| r["shingle"] == shingle.name().as_str())
        {
            notes.push(format!(
                "flywheel / datasketch ({}): {:.1}× at {threads} workers each · {:.1}× per thread (flywheel ÷ {threads} against one datasketch process)",
                r["shingle"].as_str().unwrap_or("?"),
                r["ratio"].as_f64().unwrap_or(0.0),
                r["ratio_per_thread"].as_f64().unwrap_or(0.0),
            ));
        }
        notes.push(format!("peer conditions: same corpus, {threads} threads/processes, one warm-up run then the median of 3 (as flywheel); datasketch's LSH index is single-threaded, so only its signatures use the worker pool"));
        line["minhash"]["reference"] = json!(refs);
    }

    // Semantic all-pairs, exact.
    let dim = args.dim;
    let (v, _) = bench_vectors(args.n, dim, 11);
    let mut pairs = Vec::new();
    let t_ap = time_median(3, || {
        pairs = semantic::self_pairs(&v, dim, args.threshold);
        Ok(())
    })?;
    let n = args.n as f64;
    let cmp = n * (n - 1.0) / 2.0;
    let (gemm, _) = gemm_rates(&candle_core::Device::Cpu)?;
    let gflops = cmp * 2.0 * dim as f64 / t_ap / 1e9;
    out.push(format!(
        "| flywheel all-pairs cosine ≥ {} (tiled gemm + fused threshold) | {} × {dim} | {t_ap:.3} s | {:.2e} pairs/s ({gflops:.0} GFLOP/s, {:.0}% of {gemm:.0} measured f32 GEMM) | {} pairs |",
        args.threshold,
        args.n,
        cmp / t_ap,
        100.0 * gflops / gemm,
        pairs.len()
    ));
    line["allpairs"] = json!({"n": args.n, "dim": dim, "threshold": args.threshold, "seconds": t_ap,
        "pairs_per_s": cmp / t_ap, "pairs_found": pairs.len(), "gflops": gflops, "gemm_gflops": gemm});
    if !dev.is_cpu() {
        let g = gpu_allpairs(dev, &v, dim, args.threshold, &pairs)?;
        let (t, dev_gemm) = (
            g["seconds"].as_f64().unwrap_or(0.0),
            g["gemm_gflops"].as_f64().unwrap_or(0.0),
        );
        let gf = cmp * 2.0 * dim as f64 / t / 1e9;
        out.push(format!(
            "| flywheel similarity kernel on {} | {} × {dim} | {t:.4} s | {:.2e} pairs/s ({gf:.0} GFLOP/s, {:.0}% of {dev_gemm:.0} measured f32 GEMM on the device) | {} pairs, {} ({}) |",
            device::name(dev),
            args.n,
            cmp / t,
            100.0 * gf / dev_gemm,
            g["pairs_found"],
            if g["agrees_with_cpu"] == true { "same as the CPU" } else { "DIFFERS from the CPU" },
            g["difference"]
        ));
        line["allpairs_device"] = g;
    }
    if let Some(py) = &args.reference {
        let tmp = std::env::temp_dir().join(format!("flywheel-bench-{}.npy", std::process::id()));
        crate::store::write_atomic(&tmp, &crate::embed::npy_bytes(&v, args.n, dim))?;
        let r = run_python(
            py,
            include_str!("../../benches/dedup_reference.py"),
            &["allpairs".into(), threads.to_string(), "3".into()],
            &json!({"npy": tmp, "threshold": args.threshold}).to_string(),
        );
        let _ = std::fs::remove_file(&tmp);
        let r = r?;
        let (tn, tf) = (
            r["numpy_seconds"].as_f64().unwrap_or(0.0),
            r["faiss_seconds"].as_f64().unwrap_or(0.0),
        );
        out.push(format!(
            "| numpy blocked matmul (block 2048) | {} × {dim} | {tn:.3} s | {:.2e} pairs/s | {} pairs |",
            args.n,
            cmp / tn,
            r["numpy_pairs"]
        ));
        out.push(format!(
            "| FAISS IndexFlatIP range_search | {} × {dim} | {tf:.3} s | {:.2e} pairs/s | {} pairs |",
            args.n,
            cmp / tf,
            r["faiss_pairs"]
        ));
        notes.push(format!("numpy/FAISS: one warm-up run then the median of 3, {threads} BLAS/OpenMP threads (as flywheel)"));
        line["allpairs"]["reference"] = json!({"version": r["version"], "numpy_seconds": tn, "faiss_seconds": tf,
            "numpy_pairs": r["numpy_pairs"], "faiss_pairs": r["faiss_pairs"],
            "speedup_vs_numpy": tn / t_ap, "speedup_vs_faiss": tf / t_ap});
    }

    // The k-means path at large N; recall on the planted near-copies.
    if args.kmeans_n > 0 {
        let (big, planted) = bench_vectors(args.kmeans_n, dim, 12);
        let t0 = Instant::now();
        let got = semantic::pairs_clustered(&big, dim, args.threshold, 2_000, 1);
        let t_km = t0.elapsed().as_secs_f64();
        // Recall on the planted near-copies (all far above the threshold).
        let found: std::collections::HashSet<(u32, u32)> = got.iter().map(|p| (p.i, p.j)).collect();
        let hit = planted.iter().filter(|p| found.contains(p)).count();
        let recall = hit as f64 / planted.len().max(1) as f64;
        out.push(format!(
            "| flywheel k-means path (clusters of ~2000, 2 probes, 8 rounds) | {} × {dim} | {t_km:.3} s | {:.0} vectors/s | {} pairs; recall {recall:.4} of {} planted near-copies |",
            args.kmeans_n,
            args.kmeans_n as f64 / t_km,
            got.len(),
            planted.len()
        ));
        line["kmeans"] = json!({"n": args.kmeans_n, "seconds": t_km, "pairs_found": got.len(), "sampled_recall": recall});
    }
    if args.merge_n > 0 {
        let m = merge_case(args.merge_n);
        out.push(format!(
            "| merge: LSH banding + clusters over precomputed signatures (128 perms, 0.8) | {} | {:.3} s | {:.0} signatures/s | {} clusters found of {} planted; peak memory +{:.0} MiB ({:.0} bytes per signature) |",
            m["n"], m["seconds"].as_f64().unwrap_or(0.0), m["signatures_per_s"].as_f64().unwrap_or(0.0),
            m["clusters_found"], m["clusters_planted"], m["peak_mib"].as_f64().unwrap_or(0.0),
            m["bytes_per_signature"].as_f64().unwrap_or(0.0)
        ));
        notes.push(format!(
            "merge memory: {:.0} bytes per signature measured, so 10 million signatures need about {:.1} GiB (signatures, band hashes, buckets and ids; records stream from disk)",
            m["bytes_per_signature"].as_f64().unwrap_or(0.0),
            m["bytes_per_signature"].as_f64().unwrap_or(0.0) * 1e7 / (1u64 << 30) as f64
        ));
        line["merge"] = m;
    }
    out.extend(notes);
    Ok(BenchReport {
        lines: out,
        json: line,
    })
}

/// This process's resident memory and its peak so far (`VmRSS`, `VmHWM`), in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// The merge's global MinHash over `n` precomputed signatures (what shards hand over):
/// seeded random signatures, a third of them near copies of another (each of 128 values
/// kept with probability 0.95, so estimated Jaccard ≈ 0.95), banded for 0.8, clustered
/// with union-find. Time, clusters found against those planted, and the peak memory it
/// added (Linux `VmHWM` minus the resident size before).
fn merge_case(n: usize) -> serde_json::Value {
    use crate::dedup::minhash::{candidate_pairs, estimate, optimal_bands};
    use crate::dedup::unionfind::UnionFind;
    use rand::{Rng, SeedableRng};
    // Reset the peak to what is resident now (Linux ≥ 4.0), so earlier cases do not count.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss0, _) = memory();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let perms = 128;
    let mut sigs: Vec<Option<Vec<u32>>> = Vec::with_capacity(n);
    let mut planted = 0usize;
    for i in 0..n {
        if i % 3 == 2 {
            let base = sigs[i - 1].clone().unwrap_or_default();
            let s: Vec<u32> = base
                .iter()
                .map(|&v| {
                    if rng.random_bool(0.95) {
                        v
                    } else {
                        rng.random()
                    }
                })
                .collect();
            sigs.push(Some(s));
            planted += 1;
        } else {
            sigs.push(Some((0..perms).map(|_| rng.random()).collect()));
        }
    }
    let t0 = Instant::now();
    let (bands, rows) = optimal_bands(0.8, perms);
    let mut uf = UnionFind::new(n);
    candidate_pairs(&sigs, bands, rows, |a, b| {
        if uf.find(a) == uf.find(b) {
            return true;
        }
        let (Some(x), Some(y)) = (&sigs[a], &sigs[b]) else {
            return false;
        };
        if estimate(x, y) >= 0.8 {
            uf.union(a, b);
            return true;
        }
        false
    });
    let found = (0..n)
        .filter(|&i| i % 3 == 2 && uf.find(i) == uf.find(i - 1))
        .count();
    let secs = t0.elapsed().as_secs_f64();
    let (_, hwm) = memory();
    let peak = hwm.saturating_sub(rss0);
    json!({"n": n, "seconds": secs, "signatures_per_s": n as f64 / secs,
           "clusters_planted": planted, "clusters_found": found,
           "peak_mib": peak as f64 / (1u64 << 20) as f64,
           "bytes_per_signature": peak as f64 / n as f64})
}

/// Times the CUDA similarity kernel on `v` (median of 3) and compares its pairs with the
/// CPU's (same pairs; similarities within 1e-4).
#[cfg(feature = "cuda")]
fn gpu_allpairs(
    dev: &candle_core::Device,
    v: &[f32],
    dim: usize,
    threshold: f32,
    cpu: &[semantic::Pair],
) -> Result<serde_json::Value> {
    let candle_core::Device::Cuda(cd) = dev else {
        return Err(Error::Device(format!(
            "{}: not a CUDA device",
            device::name(dev)
        )));
    };
    let mut got = Vec::new();
    let t = time_median(3, || {
        got = dedup::cuda::pairs(cd, v, None, dim, threshold)?;
        Ok(())
    })?;
    let (gemm, _) = gemm_rates(dev)?;
    let key = |p: &semantic::Pair| (p.i, p.j);
    let a: std::collections::BTreeMap<_, f32> = cpu.iter().map(|p| (key(p), p.sim)).collect();
    let b: std::collections::BTreeMap<_, f32> = got.iter().map(|p| (key(p), p.sim)).collect();
    // Pairs within 1e-4 of the threshold may fall either side: rounding, not a bug.
    let near = |s: f32| (s - threshold).abs() < 1e-4;
    let only_cpu = a
        .iter()
        .filter(|(k, s)| !b.contains_key(*k) && !near(**s))
        .count();
    let only_gpu = b
        .iter()
        .filter(|(k, s)| !a.contains_key(*k) && !near(**s))
        .count();
    let max_diff = a
        .iter()
        .filter_map(|(k, s)| b.get(k).map(|t| (s - t).abs()))
        .fold(0f32, f32::max);
    Ok(
        json!({"device": device::name(dev), "seconds": t, "pairs_found": got.len(), "gemm_gflops": gemm,
        "agrees_with_cpu": only_cpu == 0 && only_gpu == 0 && max_diff < 1e-4,
        "difference": format!("{only_cpu} only on CPU, {only_gpu} only on GPU, max |Δsim| {max_diff:.1e}")}),
    )
}

#[cfg(not(feature = "cuda"))]
fn gpu_allpairs(
    dev: &candle_core::Device,
    _v: &[f32],
    _dim: usize,
    _threshold: f32,
    _cpu: &[semantic::Pair],
) -> Result<serde_json::Value> {
    Err(Error::Device(format!(
        "{}: this build has no CUDA (rebuild with --features cuda)",
        device::name(dev)
    )))
}
