//! The dataset report: `report.json` for machines and a self-contained `report.html` (inline
//! SVG, no network) for people, built from what the run directory holds: the funnel with
//! the reason for every loss, judge scores, similarity, lengths, diversity and collapse
//! signals (synthetic against the real anchor), privacy findings, models and settings.

pub mod diversity;
pub mod html;
mod scan;
mod steps;

use crate::error::{Error, Result};
use crate::models::FetchPolicy;
use crate::store::{write_atomic, Manifest, RunDir};
use candle_core::Device;
use scan::Scan;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to build a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Embedder for similarity and dispersion; `None`: the run's own (from the manifest) or
    /// the default; `Some("none")`: skip the embedding-based sections.
    pub embedder: Option<String>,
    /// Where the embedder runs.
    pub device: Device,
    pub fetch: FetchPolicy,
    /// Progress bars while embedding.
    pub progress: bool,
}

/// Where the report went.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub json: PathBuf,
    pub html: PathBuf,
    pub warnings: Vec<String>,
}

/// What `flywheel report` prints: the report's warnings, then where it went.
impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(
            f,
            "report: {} and {}",
            self.html.display(),
            self.json.display()
        )
    }
}

impl ReportSummary {
    /// The line `flywheel run` prints after `[6/6] report:`, warnings indented below it.
    pub fn run_line(&self) -> String {
        let mut line = format!("{}", self.html.display());
        for w in &self.warnings {
            line.push_str(&format!("\n  warning: {w}"));
        }
        line
    }
}

/// Fixed-width histogram over [lo, hi] with `bins` bins (values outside are clamped).
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Value {
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let b = (((v - lo) / (hi - lo)) * bins as f64).floor();
        counts[(b.max(0.0) as usize).min(bins - 1)] += 1;
    }
    let edges: Vec<f64> = (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect();
    json!({"edges": edges, "counts": counts, "n": values.len()})
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// The loss-table group of a rejection: filter reasons by their first word, duplicates by
/// method (their reasons name the survivor), eval overlap as one row.
fn loss_group(stage: &str, reason: &str) -> String {
    if reason.starts_with("contaminated:") {
        "contaminated (eval overlap)".into()
    } else if stage == "filter" || stage == "bad_input" {
        reason.split(' ').next().unwrap_or("").to_string()
    } else {
        format!("{stage} duplicate")
    }
}

/// Builds `report.json`'s value from a run directory.
pub fn build(dir: &Path, opts: &ReportOptions) -> Result<Value> {
    let f = Scan::read(dir)?;
    let step_rejected = steps::read_step_rejections(&RunDir::new(dir));
    let (funnel, losses) = funnel_and_losses(&f, &step_rejected);
    let (judges, agreement) = judge_scores(&f);
    // ---- lengths and diversity ----
    let lengths = lengths(&f.synthetic.words, &f.real.words);
    let (syn_text, real_text) = (&f.synthetic.sample, &f.real.sample);
    let (k, mut div_syn, mut div_real) = text_diversity(syn_text, real_text);
    div_syn["n"] = json!(f.synthetic.n);
    if !div_real.is_null() {
        div_real["n"] = json!(f.real.n);
    }
    let mut similarity = embedding_diversity(
        &f.manifest,
        opts,
        syn_text,
        real_text,
        &mut div_syn,
        &mut div_real,
    )?;
    if similarity.is_object() {
        // Nearest neighbours are searched within the sample (see scan::TEXT_SAMPLE).
        similarity["n"] = json!(syn_text.len());
        similarity["of"] = json!(f.synthetic.n);
    }
    let warnings = collapse_warnings(&div_syn, &div_real);
    let manifest = &f.manifest;
    // A blend that fell short of the spec (exit code 3) says so here too.
    let short = manifest.stages.get("blend").and_then(|b| {
        let get = |k: &str| b.extra.get(k).and_then(Value::as_u64).unwrap_or(0);
        (get("missing_real") + get("missing_synthetic") > 0).then(|| {
            json!({"asked_total": b.extra.get("asked_total"),
                   "asked_real_share": b.extra.get("asked_real_share"),
                   "missing_synthetic": get("missing_synthetic"),
                   "missing_real": get("missing_real")})
        })
    });
    let dataset_v = f.dataset.map(|(syn, real)| {
        let total = syn + real;
        let share = |k: usize| {
            if total == 0 {
                0.0
            } else {
                k as f64 / total as f64
            }
        };
        json!({"total": total, "synthetic": syn, "real": real,
               "synthetic_share": share(syn), "real_share": share(real),
               "short": short})
    });
    let privacy_v = f.privacy.as_ref().map(|p| {
        json!({"summary": p["summary"], "policy": p["policy"], "dcr": p["dcr"],
               "findings_by_check": count_by(&p["findings"], "check")})
    });
    let stages: BTreeMap<&String, Value> = manifest
        .stages
        .iter()
        .map(|(k, s)| {
            (
                k,
                json!({"status": s.status, "wall_seconds": s.wall_seconds, "done": s.done}),
            )
        })
        .collect();
    let mut report = json!({
        "run": {"name": dir.file_name().and_then(|f| f.to_str()), "spec_sha256": manifest.spec_sha256,
                "spec_path": manifest.spec_path, "flywheel": env!("CARGO_PKG_VERSION")},
        "models": manifest.models,
        "settings": {"generation": manifest.generation_fingerprint,
                     "dedup": manifest.stages.get("dedup").map(|s| &s.extra)},
        "stages": stages,
        "funnel": funnel,
        "losses": losses,
        "dataset": dataset_v,
        "judges": judges,
        "judge_agreement": agreement,
        "similarity": similarity,
        "lengths": lengths,
        "diversity": {"synthetic": div_syn, "real": div_real, "text_metrics_sample": k, "warnings": warnings},
        "privacy": privacy_v,
    });
    // Generation programs' sections, only where the run has such data: a plain task's
    // report keeps exactly its keys.
    let programs = [
        (
            "step_funnel",
            steps::step_funnel(dir, &f.steps, &step_rejected),
        ),
        (
            "turns",
            f.programs.as_ref().and_then(|(set, t)| t.turns(set)),
        ),
        (
            "difficulty",
            f.programs.as_ref().and_then(|(set, t)| t.difficulty(set)),
        ),
        ("structured", structured(&f)),
        ("truncation", truncation(&f)),
        ("pass_rates", pass_rates(&f)),
        ("review", review(dir, &f)?),
    ];
    for (k, v) in programs {
        if let Some(v) = v {
            report[k] = v;
        }
    }
    Ok(report)
}

/// People's decisions (`flywheel review`) on the candidates blend took from: see
/// [`crate::review::stats::section`]. `None` when no one reviewed.
fn review(dir: &Path, f: &Scan) -> Result<Option<Value>> {
    let rd = RunDir::new(dir);
    if !rd.review().exists() || !rd.audited().exists() {
        return Ok(None);
    }
    let r = f
        .manifest
        .stages
        .get("blend")
        .and_then(|b| b.extra.get("review"));
    let sample = r.and_then(|r| r["sample"].as_u64()).map(|n| n as usize);
    let seed = r.and_then(|r| r["seed"].as_u64()).unwrap_or(0);
    let index = crate::review::queue::Index::build(&rd.audited(), &rd.rejected(), sample, seed)?;
    let log = crate::review::Log::load(&rd.review())?;
    Ok(crate::review::stats::section(&index, &log))
}

/// Constrained tasks (`output = { … }`): per task, the records generated under the
/// constraint, how many match it in full, and how many ran out of tokens mid-grammar
/// (rejected as `truncated_in_grammar`). `None` when no record was constrained.
fn structured(f: &Scan) -> Option<Value> {
    if f.structured.is_empty() {
        return None;
    }
    Some(Value::Array(
        f.structured
            .iter()
            .map(|((task, kind), &(n, valid))| {
                json!({"task": task, "constraint": kind, "records": n, "valid": valid,
                       "truncated_in_grammar": n - valid})
            })
            .collect(),
    ))
}

/// The unbiased pass@k of one prompt with `n` samples of which `c` passed (Chen et al.,
/// 2021): 1 − C(n−c, k) / C(n, k).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || k > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    // C(n−c, k) / C(n, k) = ∏_{i=n−c+1}^{n} (1 − k / i)
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

/// Per task with verifiers: samples, how many passed every verifier they were checked
/// with, pass@1 and pass@n over prompts (n = the samples per prompt), and prompts no
/// sample solved. `None` when no record has a verifier verdict.
fn pass_rates(f: &Scan) -> Option<Value> {
    let by = &f.pass;
    if by.is_empty() {
        return None;
    }
    Some(Value::Array(
        by.iter()
            .map(|(task, prompts)| {
                let samples: usize = prompts.values().map(|p| p.0).sum();
                let passed: usize = prompts.values().map(|p| p.1).sum();
                let n = prompts.values().map(|p| p.0).min().unwrap_or(1);
                let mean = |k: usize| {
                    prompts
                        .values()
                        .map(|&(m, c)| pass_at_k(m, c, k))
                        .sum::<f64>()
                        / prompts.len() as f64
                };
                json!({"task": task, "samples": samples, "passed": passed,
                       "pass_rate": passed as f64 / samples.max(1) as f64,
                       "prompts": prompts.len(), "n": n,
                       "pass_at_1": mean(1), "pass_at_n": mean(n),
                       "unsolved_prompts": prompts.values().filter(|p| p.1 == 0).count()})
            })
            .collect(),
    ))
}

/// Per task: records generated, how many hit `max_new_tokens` (`finish_reason =
/// "length"`: they stop mid-sentence), and how many of those the filter rejected as
/// `truncated` (all of them unless `[filter] allow_truncated = true`). `None` when no
/// record hit the limit.
fn truncation(f: &Scan) -> Option<Value> {
    let mut by: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (task, &(n, length)) in &f.generated_by_task {
        let e = by.entry(task).or_default();
        e.0 += n;
        e.1 += length;
    }
    for (task, &c) in &f.rejected_truncated {
        by.entry(task).or_default().2 += c;
    }
    if by.values().all(|e| e.1 == 0) {
        return None;
    }
    Some(Value::Array(
        by.into_iter()
            .map(|(task, (n, length, rejected))| {
                json!({"task": task, "records": n, "hit_max_new_tokens": length,
                       "rejected_truncated": rejected})
            })
            .collect(),
    ))
}

/// The funnel (records left after each stage) and the losses (how many each stage
/// removed, and why).
fn funnel_and_losses(f: &Scan, step_rejected: &[steps::StepRejection]) -> (Vec<Value>, Vec<Value>) {
    let planned = f.manifest.stages.get("generate").map(|s| s.planned);
    let syn = f.dataset.map(|d| d.0);
    let mut losses: Vec<Value> = Vec::new();
    let by_reason = &f.rejected;
    // Records that failed a step (tasks with steps) are lost at generation, each for a
    // reason; the rest of the shortfall is the plain "not generated".
    losses.extend(steps::step_losses(step_rejected));
    if let (Some(p), Some(g)) = (planned, f.generated) {
        let g = g + step_rejected.len();
        if p > g {
            losses.push(json!({"stage": "generate", "reason": "not generated (prompt too long for the model, or the run was stopped)", "count": p - g}));
        }
    }
    let filtered_out: usize = by_reason
        .iter()
        .filter(|((s, _), _)| s == "filter" || s == "bad_input")
        .map(|(_, c)| c)
        .sum();
    for ((stage, reason), count) in by_reason {
        let stage = if stage == "filter" || stage == "bad_input" {
            "filter"
        } else {
            "dedup"
        };
        losses.push(json!({"stage": stage, "reason": reason, "count": count}));
    }
    let mut audit_drops: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(p) = &f.privacy {
        for d in p["dropped"].as_array().into_iter().flatten() {
            // A record dropped for several reasons is one loss, under its first reason.
            if let Some(r) = d["reasons"].as_array().and_then(|a| a.first()) {
                let k = r
                    .as_str()
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                *audit_drops.entry(k).or_default() += 1;
            }
        }
    }
    for (k, c) in &audit_drops {
        let what = match k.as_str() {
            "pii" => "personal data (policy: drop)",
            "copy" => "copies a real record (policy: drop)",
            "dcr" => "too close to a real record (policy: drop)",
            _ => k,
        };
        losses.push(json!({"stage": "audit", "reason": what, "count": c}));
    }
    // Reviewers' rejections and records held back for review leave at blend too.
    let mut reviewed_out = 0;
    if let Some(r) = f
        .manifest
        .stages
        .get("blend")
        .and_then(|b| b.extra.get("review"))
    {
        for (why, c) in r["rejected"].as_object().into_iter().flatten() {
            let c = c.as_u64().unwrap_or(0) as usize;
            reviewed_out += c;
            losses.push(json!({"stage": "review", "reason": why, "count": c}));
        }
        let held = r["held_back"].as_u64().unwrap_or(0) as usize;
        if held > 0 {
            reviewed_out += held;
            losses.push(json!({"stage": "review", "reason": "not reviewed ([review] required = true)", "count": held}));
        }
    }
    if let (Some(a), Some(syn)) = (f.audited.or(f.kept), syn) {
        let a = a.saturating_sub(reviewed_out);
        if a > syn {
            losses.push(json!({"stage": "blend", "reason": "not selected (the real/synthetic ratio or max_synthetic)", "count": a - syn}));
        }
    }
    let verified_n = f.verified;
    let mut funnel = vec![];
    let mut step = |stage: &str, count: Option<usize>| {
        if let Some(c) = count {
            funnel.push(json!({"stage": stage, "count": c}));
        }
    };
    step("planned", planned);
    step("generated", f.generated);
    step("verified", verified_n);
    step(
        "passed filter",
        verified_n.map(|v| v.saturating_sub(filtered_out)),
    );
    step("deduped", f.kept);
    step("passed audit", f.audited);
    step("blended (synthetic)", syn);

    (funnel, losses)
}

/// Each judge's score histogram and mean, and the agreement of every pair of judges on
/// the records both scored.
fn judge_scores(f: &Scan) -> (serde_json::Map<String, Value>, Vec<Value>) {
    let mut judges = serde_json::Map::new();
    for (name, v) in &f.judges {
        let s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        judges.insert(
            name.clone(),
            json!({"histogram": histogram(&s, 0.0, 1.0, 10), "mean": s.iter().sum::<f64>() / s.len().max(1) as f64, "n": s.len()}),
        );
    }
    // Both judges' scores of the same line are of the same record.
    let names: Vec<&String> = f.judges.keys().collect();
    let mut agreement = Vec::new();
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            let (x, y): (Vec<f64>, Vec<f64>) = f.judges[names[a]]
                .iter()
                .zip(&f.judges[names[b]])
                .filter(|(s, t)| !s.is_nan() && !t.is_nan())
                .map(|(s, t)| (*s, *t))
                .unzip();
            agreement.push(json!({"a": names[a], "b": names[b], "pearson": crate::verify::stage::pearson(&x, &y), "n": x.len()}));
        }
    }

    (judges, agreement)
}

/// Response lengths in words, synthetic beside real.
fn lengths(syn_words: &[u32], real_words: &[u32]) -> Value {
    let syn_len: Vec<f64> = syn_words.iter().map(|&w| f64::from(w)).collect();
    let real_len: Vec<f64> = real_words.iter().map(|&w| f64::from(w)).collect();
    let max_len = syn_len
        .iter()
        .chain(&real_len)
        .cloned()
        .fold(10.0, f64::max);
    let hi = (max_len / 10.0).ceil() * 10.0;
    json!({
        "unit": "words",
        "synthetic": histogram(&syn_len, 0.0, hi, 10),
        "real": histogram(&real_len, 0.0, hi, 10),
        "synthetic_median": median(&syn_len),
        "real_median": if real_len.is_empty() { Value::Null } else { json!(median(&real_len)) },
    })
}

/// distinct-n and self-BLEU, on equal-size samples of both sides (distinct-n falls as a
/// set grows). Returns the sample size and each side's metrics.
fn text_diversity(syn_text: &[String], real_text: &[String]) -> (usize, Value, Value) {
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // Self-BLEU is quadratic: a seeded-order sample of at most 200 texts.
    let sample = |v: &[String]| -> Vec<String> { v.iter().take(200).cloned().collect() };
    let text_div = |v: &[String]| {
        json!({
            "n": v.len(),
            "distinct_1": diversity::distinct_n(&refs(v), 1),
            "distinct_2": diversity::distinct_n(&refs(v), 2),
            "distinct_3": diversity::distinct_n(&refs(v), 3),
            "self_bleu": diversity::self_bleu(&refs(&sample(v))),
        })
    };
    // distinct-n falls as a set grows, so both sides are measured on samples of one size.
    let k = if real_text.is_empty() {
        syn_text.len()
    } else {
        syn_text.len().min(real_text.len())
    };
    let div_syn = text_div(&syn_text[..k]);
    let div_real = if real_text.is_empty() {
        Value::Null
    } else {
        text_div(&real_text[..k])
    };
    (k, div_syn, div_real)
}

/// The synthetic set's nearest-neighbour similarity histogram, and both sides' embedding
/// dispersion added to their diversity metrics (`Null` with no embedder or < 2 records).
fn embedding_diversity(
    manifest: &Manifest,
    opts: &ReportOptions,
    syn_text: &[String],
    real_text: &[String],
    div_syn: &mut Value,
    div_real: &mut Value,
) -> Result<Value> {
    let embedder = match &opts.embedder {
        Some(e) => Some(e.clone()).filter(|e| e != "none"),
        None => Some(
            manifest
                .models
                .iter()
                .find(|m| m.role == "embedder")
                .map_or(crate::spec::DEFAULT_EMBEDDER.to_string(), |m| m.id.clone()),
        ),
    };
    let mut similarity = Value::Null;
    if let Some(eid) = embedder.filter(|_| syn_text.len() >= 2) {
        let emb = crate::runtime::embedder(&eid, opts.fetch, &opts.device)?;
        let d = emb.dim();
        let sd = diversity::dispersion(
            &emb.embed_flat(syn_text, opts.progress, "report: embed synthetic")?,
            d,
        );
        let nn: Vec<f64> = sd.nn_cosines.iter().map(|&c| c as f64).collect();
        similarity = json!({
            "what": "each synthetic record's nearest-neighbour cosine within the synthetic set",
            "embedder": eid,
            "histogram": histogram(&nn, 0.0, 1.0, 20),
            "median": median(&nn),
        });
        div_syn["mean_pairwise_distance"] = json!(sd.mean_pairwise_distance);
        div_syn["near_neighbour_share"] = json!(sd.near_neighbour_share);
        if real_text.len() >= 2 {
            let rd = diversity::dispersion(
                &emb.embed_flat(real_text, opts.progress, "report: embed real")?,
                d,
            );
            div_real["mean_pairwise_distance"] = json!(rd.mean_pairwise_distance);
            div_real["near_neighbour_share"] = json!(rd.near_neighbour_share);
        }
    }
    Ok(similarity)
}

fn count_by(arr: &Value, key: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in arr.as_array().into_iter().flatten() {
        *m.entry(f[key].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    m
}

/// Plain-language warnings when the synthetic set is markedly narrower than the real one.
pub fn collapse_warnings(syn: &Value, real: &Value) -> Vec<String> {
    let mut w = Vec::new();
    let get = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_f64());
    if real.is_null() {
        w.push("No real anchor data in the dataset: diversity can only be judged in absolute terms. Add [blend].real to compare.".into());
    }
    if let (Some(s), Some(r)) = (
        get(syn, "mean_pairwise_distance"),
        get(real, "mean_pairwise_distance"),
    ) {
        if s < 0.8 * r {
            w.push(format!("The synthetic records are markedly narrower than the real ones: their mean embedding distance is {s:.3} against {r:.3} for real data ({:.0}% of it). Add seeds, personas or tasks, or raise the temperature.", 100.0 * s / r));
        }
    }
    if let (Some(s), Some(r)) = (get(syn, "distinct_2"), get(real, "distinct_2")) {
        if s < 0.8 * r {
            w.push(format!("Synthetic wording is repetitive: distinct-2 is {s:.3} against {r:.3} for real data."));
        }
    }
    if let (Some(s), Some(r)) = (get(syn, "self_bleu"), get(real, "self_bleu")) {
        if s > r + 0.1 {
            w.push(format!("Synthetic records resemble each other: self-BLEU {s:.3} against {r:.3} for real data (higher = more alike)."));
        }
    }
    if let Some(s) = get(syn, "near_neighbour_share") {
        if s > 0.3 {
            w.push(format!(
                "{:.0}% of synthetic records have a near-twin (cosine ≥ 0.9) in the set.",
                100.0 * s
            ));
        }
    }
    w
}

/// Writes `report.json` and `report.html` into the run directory.
pub fn write(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    let started = std::time::Instant::now();
    // Not a directory: `build` says what is wrong with it.
    let _lock = if dir.is_dir() {
        Some(crate::store::RunLock::acquire(dir)?)
    } else {
        None
    };
    let v = build(dir, opts)?;
    let rd = RunDir::new(dir);
    let json_path = rd.report_json();
    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&json_path, &bytes)?;
    let html_path = rd.report_html();
    write_atomic(&html_path, html::render(&v).as_bytes())?;
    let warnings = v["diversity"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    let mut m = Manifest::load(dir)?.unwrap_or_default();
    m.stages.insert(
        "report".into(),
        crate::store::manifest::StageStatus {
            status: "done".into(),
            wall_seconds: started.elapsed().as_secs_f64(),
            ..Default::default()
        },
    );
    m.save(dir)?;
    Ok(ReportSummary {
        json: json_path,
        html: html_path,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_is_the_unbiased_estimator() {
        // Exact against the binomial formula 1 - C(n-c, k) / C(n, k).
        fn choose(n: u64, k: u64) -> f64 {
            (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product()
        }
        for n in 1..=8usize {
            for c in 0..=n {
                for k in 1..=n {
                    let want = if n - c < k {
                        1.0
                    } else {
                        1.0 - choose((n - c) as u64, k as u64) / choose(n as u64, k as u64)
                    };
                    assert!((pass_at_k(n, c, k) - want).abs() < 1e-12, "{n} {c} {k}");
                }
            }
        }
        assert_eq!(pass_at_k(4, 1, 1), 0.25);
        assert_eq!(pass_at_k(4, 1, 4), 1.0);
        assert_eq!(pass_at_k(4, 0, 4), 0.0);
    }

    #[test]
    fn histogram_bins_and_clamps() {
        let h = histogram(&[0.0, 0.05, 0.5, 0.99, 1.0, 7.0, f64::NAN], 0.0, 1.0, 10);
        assert_eq!(h["counts"], json!([2, 0, 0, 0, 0, 1, 0, 0, 0, 3]));
        assert_eq!(h["edges"].as_array().unwrap().len(), 11);
    }

    #[test]
    fn warnings_fire_only_when_narrower() {
        let real = json!({"mean_pairwise_distance": 0.8, "distinct_2": 0.9, "self_bleu": 0.1});
        let fine = json!({"mean_pairwise_distance": 0.75, "distinct_2": 0.85, "self_bleu": 0.15, "near_neighbour_share": 0.0});
        assert!(collapse_warnings(&fine, &real).is_empty());
        let narrow = json!({"mean_pairwise_distance": 0.3, "distinct_2": 0.4, "self_bleu": 0.5, "near_neighbour_share": 0.6});
        assert_eq!(collapse_warnings(&narrow, &real).len(), 4);
    }
}
