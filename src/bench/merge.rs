//! `flywheel bench merge`: the merge's global dedup at scale, on synthetic records, with
//! its time and memory. Shards write seeded records (a third of them near copies of the
//! record before, one word changed) and make their dedup index with the product's code
//! (`build_signatures`); with `--semantic`, each shard's embedding part holds seeded unit
//! vectors (a third of them near copies) instead of model output, since embedding ten
//! million texts on a CPU takes hours and is not what is measured. Then the merge's own
//! steps: records joined, indexes joined (`index::join`), and the global pass
//! (`run_indexed`), whose peak memory is sampled from `/proc/self/status` as it runs.

use super::BenchReport;
use crate::dedup::index::{self, EmbSettings};
use crate::dedup::stage::{run_indexed, sig_settings, DedupOptions};
use crate::dedup::{MinHashOptions, SemanticOptions};
use crate::error::{Error, Result};
use crate::spec::{FilterSection, Shard};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Settings of `flywheel bench merge`.
#[derive(Debug, Clone)]
pub struct MergeBench {
    pub records: usize,
    pub shards: usize,
    /// Semantic dedup too, on seeded vectors of this width (0: MinHash and exact only).
    pub semantic_dim: usize,
    /// Where the shards and the merged run go (default: a temporary directory, removed).
    pub dir: Option<PathBuf>,
    /// Audit, blend and report the kept records too, each measured.
    pub stages: bool,
}

const WORDS: usize = 40;
const VOCAB: usize = 5000;

/// Record `i`'s text: seeded words; a near copy (i % 3 == 2) is record i−1's text with
/// one word changed.
fn text(i: usize) -> String {
    let words = |j: usize| -> Vec<usize> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(j as u64);
        (0..WORDS).map(|_| r.random_range(0..VOCAB)).collect()
    };
    let mut w = if i % 3 == 2 { words(i - 1) } else { words(i) };
    if i % 3 == 2 {
        w[i % WORDS] = VOCAB + i % 7;
    }
    w.iter()
        .map(|x| format!("w{x:x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Record `i`'s unit vector: seeded; a near copy is record i−1's plus small noise.
fn vector(i: usize, dim: usize) -> Vec<f32> {
    let base = |j: usize| -> Vec<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0xe_0000_0000 + j as u64);
        (0..dim).map(|_| r.random::<f32>() - 0.5).collect()
    };
    let mut v = if i % 3 == 2 { base(i - 1) } else { base(i) };
    if i % 3 == 2 {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0xf_0000_0000 + i as u64);
        let scale = v.iter().map(|x| x * x).sum::<f32>().sqrt() * 0.1 / (dim as f32).sqrt();
        v.iter_mut()
            .for_each(|x| *x += (r.random::<f32>() - 0.5) * scale);
    }
    crate::embed::normalize(&mut v);
    v
}

fn id(i: usize) -> String {
    format!("r{i:010}")
}

/// Peak anonymous memory (`RssAnon`) while it lives, sampled every 20 ms.
struct AnonPeak {
    stop: std::sync::Arc<AtomicBool>,
    peak: std::sync::Arc<AtomicU64>,
    t: Option<std::thread::JoinHandle<()>>,
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

impl AnonPeak {
    fn start() -> AnonPeak {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let peak = std::sync::Arc::new(AtomicU64::new(status_kb("RssAnon:")));
        let (s, p) = (stop.clone(), peak.clone());
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kb("RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        AnonPeak {
            stop,
            peak,
            t: Some(t),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed).max(status_kb("RssAnon:"))
    }
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Runs the merge bench.
pub fn merge(args: &MergeBench) -> Result<BenchReport> {
    let n = args.records;
    let k = args.shards.max(1);
    let tmp;
    let root: PathBuf = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("flywheel-bench-merge-")
                .tempdir()
                .map_err(|e| Error::io("cannot create", std::env::temp_dir(), e))?;
            tmp.path().to_path_buf()
        }
    };
    let shard_dir = |s: usize| {
        root.join(format!(
            "shards/{}",
            Shard { index: s, count: k }.dir_name()
        ))
    };
    let mut opts = DedupOptions::from_spec(
        &FilterSection::default(),
        &Default::default(),
        Path::new("."),
    );
    opts.exact = true;
    opts.minhash = Some(MinHashOptions::default());
    opts.semantic = (args.semantic_dim > 0).then(SemanticOptions::default);
    opts.embedder = "synthetic".into();
    opts.progress = false;

    // The shards' records.
    eprintln!(
        "bench merge: writing {n} records in {k} shards under {}",
        root.display()
    );
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for s in 0..k {
        let d = shard_dir(s);
        std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, e))?;
        let p = d.join("verified.jsonl");
        let f = std::fs::File::create(&p).map_err(|e| Error::io("cannot write", &p, e))?;
        writers.push(std::io::BufWriter::with_capacity(1 << 20, f));
    }
    let mut bytes = 0u64;
    for i in 0..n {
        let r = json!({"id": id(i), "messages": [
            {"role": "user", "content": format!("Write note {}.", i / 3)},
            {"role": "assistant", "content": text(i)}],
            "scores": {"judge_combined": {"score": (i % 10) as f64 / 10.0}}});
        let mut line = serde_json::to_vec(&r).map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        bytes += line.len() as u64;
        let w = &mut writers[Shard::of(&id(i), k)];
        w.write_all(&line)
            .map_err(|e| Error::io("cannot write", &root, e))?;
    }
    for w in writers {
        w.into_inner()
            .map_err(|e| Error::io("cannot write", &root, e.into_error()))?;
    }
    let t_write = t0.elapsed().as_secs_f64();

    // Each shard's index, as `run --shard` makes it (embeddings planted).
    let t1 = Instant::now();
    let st = sig_settings(&opts);
    let mut parts = Vec::new();
    for s in 0..k {
        let d = shard_dir(s);
        let m = index::build_signatures(&d.join("verified.jsonl"), &d.join("index"), &st, false)?;
        if args.semantic_dim > 0 {
            let es = EmbSettings {
                field: opts.field.clone(),
                model: opts.embedder.clone(),
                device: "cpu".into(),
            };
            let rows = (0..n).filter(|&i| Shard::of(&id(i), k) == s).map(|i| {
                (
                    index::id_hash(&json!({"id": id(i)})),
                    Some(vector(i, args.semantic_dim)),
                )
            });
            index::write_embeddings(
                &d.join("index"),
                &m.source_sha256,
                &es,
                "synthetic",
                args.semantic_dim,
                rows,
            )?;
        }
        parts.push((d.join("index"), m.source_sha256));
    }
    let t_index = t1.elapsed().as_secs_f64();

    // The merge: records joined, indexes joined, then the global pass.
    let t2 = Instant::now();
    let joined = root.join("verified.jsonl");
    {
        use sha2::Digest;
        let f =
            std::fs::File::create(&joined).map_err(|e| Error::io("cannot write", &joined, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut h = sha2::Sha256::new();
        for s in 0..k {
            let b = std::fs::read(shard_dir(s).join("verified.jsonl"))
                .map_err(|e| Error::io("cannot read", &root, e))?;
            h.update(&b);
            w.write_all(&b)
                .map_err(|e| Error::io("cannot write", &joined, e))?;
        }
        w.flush()
            .map_err(|e| Error::io("cannot write", &joined, e))?;
        let notes = index::join(&parts, &root.join("index"), &format!("{:x}", h.finalize()))?;
        if !notes.is_empty() {
            return Err(Error::Internal(format!(
                "the shard indexes did not join: {notes:?}"
            )));
        }
    }
    let t_join = t2.elapsed().as_secs_f64();
    // Peak resident (mapped pages included) from here, and peak anonymous memory.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = status_kb("VmRSS:");
    let anon0 = status_kb("RssAnon:");
    let sampler = AnonPeak::start();
    let t3 = Instant::now();
    let s = run_indexed(
        &joined,
        &root.join("index"),
        &root.join("kept.jsonl"),
        &root.join("rejected.jsonl"),
        &opts,
    )?;
    let t_global = t3.elapsed().as_secs_f64();
    let anon = sampler.finish().saturating_sub(anon0);
    let hwm = status_kb("VmHWM:").saturating_sub(rss0);
    let planted = n / 3;
    let removed = n - s.kept;
    let per = anon as f64 / n.max(1) as f64;
    let mut lines = vec![
        format!(
            "bench merge: {n} synthetic records ({:.2} GiB of JSONL) in {k} shards, {planted} planted near copies; exact + MinHash 0.8 (128 perms){}",
            gib(bytes),
            if args.semantic_dim > 0 { format!(
                    " + semantic 0.92 ({} dims; {})",
                    args.semantic_dim,
                    if n > SemanticOptions::default().exact_up_to { "the k-means path" } else { "all pairs" }
                ) } else { String::new() }
        ),
        format!("| step | seconds | |"),
        format!("|---|---|---|"),
        format!("| shards write records | {t_write:.1} | |"),
        format!("| shards make their index (signatures{}) | {t_index:.1} | {:.0} records/s |", if args.semantic_dim > 0 { ", planted vectors" } else { "" }, n as f64 / t_index),
        format!("| merge joins records and indexes | {t_join:.1} | |"),
        format!("| merge's global dedup (streamed) | {t_global:.1} | {:.0} records/s; {} kept, {removed} removed ({:?}) |", n as f64 / t_global, s.kept, s.by_method),
        format!(
            "peak memory of the global dedup: {:.2} GiB anonymous ({per:.0} bytes per record), {:.2} GiB resident with the mapped index pages (reclaimable, file-backed)",
            gib(anon),
            gib(hwm)
        ),
        format!(
            "so 10 million records need about {:.1} GiB of anonymous memory for the global dedup",
            per * 1e7 / (1u64 << 30) as f64
        ),
    ];
    let stages = if args.stages {
        later_stages(&root, n, &mut lines)?
    } else {
        json!(null)
    };
    if args.dir.is_some() {
        lines.push(format!("files kept in {}", root.display()));
    }
    Ok(BenchReport {
        lines,
        json: json!({"bench": "merge", "records": n, "shards": k, "jsonl_bytes": bytes,
            "semantic_dim": args.semantic_dim, "planted": planted, "kept": s.kept, "removed": removed,
            "removed_by": s.by_method, "seconds": {"write": t_write, "index": t_index, "join": t_join, "global": t_global},
            "peak_anon_bytes": anon, "peak_resident_bytes": hwm, "anon_bytes_per_record": per,
            "stages": stages, "threads": rayon::current_num_threads()}),
    })
}

/// The merge's stages after dedup, on the kept records in a run directory `root/merged`
/// with a spec of their own: audit (PII, copies against a real set of `n / 10` records,
/// no DCR embedder), blend (30 % real) and report (no embedder), as `flywheel merge` runs
/// them, each with its seconds and peak anonymous memory.
fn later_stages(root: &Path, n: usize, lines: &mut Vec<String>) -> Result<serde_json::Value> {
    let real = root.join("real.jsonl");
    {
        let f = std::fs::File::create(&real).map_err(|e| Error::io("cannot write", &real, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        for i in 0..(n / 10).max(2) {
            let r = json!({"id": format!("real{i:09}"), "prompt": format!("Write note {i}."),
                           "response": text(n + 3 * i)});
            serde_json::to_writer(&mut w, &r).map_err(|e| Error::Internal(e.to_string()))?;
            w.write_all(b"\n")
                .map_err(|e| Error::io("cannot write", &real, e))?;
        }
        w.flush().map_err(|e| Error::io("cannot write", &real, e))?;
    }
    let spec_path = root.join("spec.toml");
    let text = format!(
        "[run]\nname = \"merged\"\nout_dir = {:?}\nseed = 1\n[[task]]\nname = \"note\"\ntemplate = \"Write a note.\"\n[privacy]\nembedder = \"none\"\n[blend]\nreal = [\"real.jsonl\"]\nreal_share = 0.3\n",
        root.display().to_string()
    );
    std::fs::write(&spec_path, &text).map_err(|e| Error::io("cannot write", &spec_path, e))?;
    let spec = crate::spec::Spec::parse(&spec_path, text)?;
    let run = spec.run_dir();
    std::fs::create_dir_all(&run).map_err(|e| Error::io("cannot create", &run, e))?;
    for f in ["kept.jsonl", "rejected.jsonl"] {
        std::fs::rename(root.join(f), run.join(f))
            .map_err(|e| Error::io("cannot move", root.join(f), e))?;
    }
    let runtime = crate::engine::Runtime::parse("cpu", "auto")?;
    let measure = |f: &mut dyn FnMut() -> Result<String>| -> Result<(f64, u64, String)> {
        // Memory the stage before freed goes back to the system first, or the allocator's
        // free lists would hide this stage's own peak.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
        let anon0 = status_kb("RssAnon:");
        let sampler = AnonPeak::start();
        let t = Instant::now();
        let what = f()?;
        Ok((
            t.elapsed().as_secs_f64(),
            sampler.finish().saturating_sub(anon0),
            what,
        ))
    };
    let audit = measure(&mut || {
        let opts = crate::privacy::AuditOptions {
            runtime: runtime.clone(),
            fetch: crate::models::FetchPolicy::Offline,
            progress: false,
            canaries: 0,
        };
        let s = crate::privacy::run_spec(&spec, None, &opts)?;
        Ok(format!(
            "{} records, {} passed, {} copies",
            s.records, s.passed, s.copies
        ))
    })?;
    let blend = measure(&mut || {
        let s = crate::blend::run_spec(&spec, None)?;
        Ok(format!("{} synthetic + {} real", s.synthetic, s.real))
    })?;
    let report = measure(&mut || {
        let opts = crate::report::ReportOptions {
            embedder: Some("none".into()),
            device: candle_core::Device::Cpu,
            fetch: crate::models::FetchPolicy::Offline,
            progress: false,
        };
        crate::report::write(&run, &opts)?;
        Ok("report.json, report.html".into())
    })?;
    let mut out = serde_json::Map::new();
    lines.push(
        "| later stage | seconds | peak anonymous memory | bytes per merged record | |".into(),
    );
    lines.push("|---|---|---|---|---|".into());
    for (name, (secs, anon, what)) in [("audit", audit), ("blend", blend), ("report", report)] {
        let per = anon as f64 / n.max(1) as f64;
        lines.push(format!(
            "| {name} | {secs:.1} | {:.2} GiB | {per:.0} | {what} |",
            gib(anon)
        ));
        out.insert(
            name.into(),
            json!({"seconds": secs, "peak_anon_bytes": anon, "anon_bytes_per_record": per}),
        );
    }
    Ok(serde_json::Value::Object(out))
}
