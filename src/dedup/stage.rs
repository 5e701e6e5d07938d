//! The filter & dedup stage: verified records → `kept.jsonl` + `rejected.jsonl`.
//!
//! Order: unreadable lines, then the spec's keep-rules (judge thresholds, required
//! verifiers), then decontamination (so a contaminated record never becomes the survivor of
//! a duplicate cluster), then exact, MinHash and semantic dedup. Every input line ends up
//! in exactly one of the two outputs, with a `decision` saying why. The whole stage is
//! recomputed on a rerun (it is global by nature and fast); both files are replaced
//! atomically, so a crash leaves the previous result or none, never a half.

use super::decontam::{EvalIndex, EvalItem};
use super::{Item, MinHashOptions, Reason, SemanticOptions, Shingle};
use crate::error::{Error, Result};
use crate::models::FetchPolicy;
use crate::spec::{DedupSection, FilterSection, Spec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{Manifest, RunDir};
use candle_core::Device;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings for one dedup run (from a spec's `[filter]`/`[dedup]` or from flags).
#[derive(Debug, Clone)]
pub struct DedupOptions {
    pub exact: bool,
    pub minhash: Option<MinHashOptions>,
    pub semantic: Option<SemanticOptions>,
    pub embedder: String,
    /// Which text to compare (see [`crate::record::View::text`]).
    pub field: String,
    /// Eval sets to decontaminate against.
    pub against: Vec<PathBuf>,
    pub ngram: usize,
    pub against_semantic: Option<f32>,
    pub filter: FilterSection,
    /// Where the embedder runs.
    pub device: Device,
    pub fetch: FetchPolicy,
    pub progress: bool,
    /// Read the records in id order rather than file order. A run's records have stable
    /// ids, and the order they were written in depends on when each finished (batching,
    /// a resume, how many shards made them); in id order, ties (which duplicate survives)
    /// and everything downstream (the blend's seeded shuffle) depend on the records
    /// alone. Off for `flywheel dedup --input FILE`, where the earliest line survives.
    pub id_order: bool,
}

impl DedupOptions {
    /// Options from a spec section; relative eval paths resolve against `base`.
    pub fn from_spec(f: &FilterSection, d: &DedupSection, base: &Path) -> DedupOptions {
        let shingle = Shingle::parse(&d.shingle).unwrap_or(Shingle::Char(5));
        DedupOptions {
            exact: d.exact,
            minhash: d.minhash.get(0.8).map(|t| MinHashOptions {
                threshold: t as f32,
                num_perm: d.num_perm,
                shingle,
                exact_jaccard: d.exact_jaccard,
                ..Default::default()
            }),
            semantic: d.semantic.get(0.92).map(|t| SemanticOptions {
                threshold: t as f32,
                ..Default::default()
            }),
            embedder: d.embedder.clone(),
            field: d.field.clone(),
            against: d.against.iter().map(|p| base.join(p)).collect(),
            ngram: d.ngram,
            against_semantic: d.against_semantic.map(|x| x as f32),
            filter: f.clone(),
            device: Device::Cpu,
            fetch: FetchPolicy::from_env(),
            progress: false,
            id_order: true,
        }
    }

    fn needs_embedder(&self) -> bool {
        self.semantic.is_some() || (self.against_semantic.is_some() && !self.against.is_empty())
    }
}

/// What a dedup run did.
#[derive(Debug, Clone, Default)]
pub struct DedupSummary {
    pub kept_path: PathBuf,
    pub rejected_path: PathBuf,
    pub records: usize,
    pub kept: usize,
    /// Rejections by method: filter, decontam, exact, minhash, semantic, bad_input, …
    pub by_method: BTreeMap<String, usize>,
    pub eval_items: usize,
    pub eval_skipped_short: usize,
    pub embedded: usize,
    pub embed_seconds: f64,
    pub truncated: usize,
    pub wall_seconds: f64,
    pub embedder: Option<ModelEntry>,
}

impl DedupSummary {
    /// Rejections by method (`exact 3, minhash 2`), or `None` when nothing was rejected.
    fn by_method(&self) -> Option<String> {
        let by: Vec<String> = self
            .by_method
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        (!by.is_empty()).then(|| by.join(", "))
    }

    /// The line `flywheel run` prints after `[3/6] dedup:`.
    pub fn run_line(&self) -> String {
        format!(
            "{} → {} kept ({}) in {:.1}s",
            self.records,
            self.kept,
            self.by_method().unwrap_or_else(|| "none rejected".into()),
            self.wall_seconds
        )
    }
}

/// What `flywheel dedup` prints: the counts by method, the embedding and decontamination
/// work, and where kept and rejected records went.
impl std::fmt::Display for DedupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "dedup: {} records → {} kept, {} rejected ({}) in {:.1}s",
            self.records,
            self.kept,
            self.records - self.kept,
            self.by_method().unwrap_or_else(|| "none".into()),
            self.wall_seconds
        )?;
        if self.embedded > 0 {
            writeln!(
                f,
                "embedded {} texts in {:.1}s ({:.0}/s), {} truncated to the model's window",
                self.embedded,
                self.embed_seconds,
                self.embedded as f64 / self.embed_seconds.max(1e-9),
                self.truncated
            )?;
        }
        if self.eval_items > 0 {
            writeln!(
                f,
                "decontaminated against {} eval items ({} shorter than {} words not indexed)",
                self.eval_items,
                self.eval_skipped_short,
                super::decontam::MIN_WORDS
            )?;
        }
        write!(
            f,
            "kept → {}\nrejected → {}",
            self.kept_path.display(),
            self.rejected_path.display()
        )
    }
}

/// `flywheel dedup SPEC`: `<run>/verified.jsonl` (or `input`) → `<run>/kept.jsonl` and
/// `<run>/rejected.jsonl`.
pub fn run_spec(spec: &Spec, input: Option<&Path>, opts: &DedupOptions) -> Result<DedupSummary> {
    let dir = RunDir::new(spec.run_dir());
    let input = RunDir::input(
        input,
        dir.verified(),
        &format!("verify {}", spec.path.display()),
    )?;
    let _lock = crate::store::create_run_dir(dir.path())?;
    let s = run(&input, &dir.kept(), &dir.rejected(), opts)?;
    let mut st = StageStatus {
        status: "done".into(),
        planned: s.records,
        done: s.records,
        written_this_run: s.records,
        wall_seconds: s.wall_seconds,
        ..Default::default()
    };
    st.extra.insert("kept".into(), s.kept.into());
    st.extra.insert("rejected_by".into(), json!(s.by_method));
    st.extra.insert("embedded".into(), s.embedded.into());
    st.extra
        .insert("embed_truncated".into(), s.truncated.into());
    st.extra.insert(
        "against".into(),
        json!(opts
            .against
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()),
    );
    Manifest::mark_stage(
        dir.path(),
        (&spec.path, spec.sha256()),
        "dedup",
        st,
        s.embedder.as_slice(),
    )?;
    Ok(s)
}

/// One input line: a record, or why it could not be read.
enum Line {
    Record {
        value: Value,
        id: String,
        text: Option<String>,
    },
    Bad {
        line: usize,
        raw: String,
        why: String,
    },
}

/// Reads a JSONL file with the shared tolerant reader, so one bad line (not UTF-8, not
/// JSON) becomes a rejection naming it instead of failing the whole file.
fn read_lines(path: &Path, field: &str) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for l in crate::record::lines::read(path, false)? {
        let (line, value) = match l {
            crate::record::lines::Line::Record { line, value } => (line, value),
            crate::record::lines::Line::Bad(b) => {
                out.push(Line::Bad {
                    line: b.line,
                    raw: b.raw,
                    why: b.reason,
                });
                continue;
            }
        };
        let mut id = match value.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line:{line}"),
        };
        // Ids name survivors in `dup_of`; a repeated id would make that ambiguous.
        let count = seen.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            id = format!("{id}@line:{line}");
        }
        let text = crate::record::View::new(&value).text(field);
        out.push(Line::Record { value, id, text });
    }
    Ok(out)
}

/// The survivor priority: the combined judge score when the record has one.
fn priority(v: &Value) -> Option<f64> {
    v.pointer("/scores/judge_combined/score")
        .and_then(Value::as_f64)
}

fn sample_index(v: &Value) -> u64 {
    v.pointer("/meta/sample_index")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// `[filter] per_prompt`: the passing samples that are not selected, by line, with the
/// reason (`per_prompt:not_best`, `per_prompt:not_first`).
fn per_prompt(lines: &[Line], f: &FilterSection) -> HashMap<usize, String> {
    use crate::spec::PerPrompt;
    let reason = match f.per_prompt {
        PerPrompt::All | PerPrompt::AllPassing => return HashMap::new(),
        PerPrompt::Best => "per_prompt:not_best",
        PerPrompt::FirstPassing => "per_prompt:not_first",
    };
    let mut groups: HashMap<String, Vec<(usize, &Value)>> = HashMap::new();
    for (k, l) in lines.iter().enumerate() {
        if let Line::Record {
            value,
            text: Some(_),
            ..
        } = l
        {
            if value.get("bad_input").is_none() && filter_reason(value, f).is_none() {
                if let Some(key) = crate::record::prompt_key(value) {
                    groups.entry(key).or_default().push((k, value));
                }
            }
        }
    }
    let mut out = HashMap::new();
    for (_, mut g) in groups {
        // Best first: the highest combined judge score, then the lowest sample index.
        g.sort_by(|(_, a), (_, b)| {
            let (sa, sb) = (
                priority(a).unwrap_or(f64::NEG_INFINITY),
                priority(b).unwrap_or(f64::NEG_INFINITY),
            );
            let by_score = if f.per_prompt == PerPrompt::Best {
                sb.total_cmp(&sa)
            } else {
                std::cmp::Ordering::Equal
            };
            by_score.then(sample_index(a).cmp(&sample_index(b)))
        });
        for (k, _) in g.into_iter().skip(1) {
            out.insert(k, reason.to_string());
        }
    }
    out
}

/// The first keep-rule a record fails, as a reason string.
pub fn filter_reason(v: &Value, f: &FilterSection) -> Option<String> {
    // A constrained answer that stopped mid-grammar (out of tokens) is a valid prefix,
    // never a valid record.
    if v.pointer("/meta/output/valid") == Some(&Value::Bool(false)) {
        return Some("truncated_in_grammar".into());
    }
    // An answer that ran out of tokens stops mid-sentence: wrong data unless asked for.
    // A constrained answer whose grammar was complete at the limit is whole, not cut off.
    let complete = v.pointer("/meta/output/valid") == Some(&Value::Bool(true));
    if !f.allow_truncated
        && !complete
        && v.pointer("/provenance/finish_reason")
            .and_then(Value::as_str)
            == Some("length")
    {
        return Some("truncated".into());
    }
    if let Some(min) = f.min_judge {
        match priority(v) {
            None => return Some("judge:missing".into()),
            Some(s) if s < min => return Some(format!("judge<{min}")),
            _ => {}
        }
    }
    for (name, min) in &f.min_score {
        match v
            .pointer(&format!("/scores/judge/{name}/score"))
            .and_then(Value::as_f64)
        {
            None => return Some(format!("judge:{name}:missing")),
            Some(s) if s < *min => return Some(format!("judge:{name}<{min}")),
            _ => {}
        }
    }
    let verdicts = v.pointer("/scores/verifiers").and_then(Value::as_object);
    let passed =
        |name: &str| -> Option<bool> { verdicts?.get(name)?.get("pass").and_then(Value::as_bool) };
    match &f.require {
        None => {
            if let Some(vs) = verdicts {
                for name in vs.keys() {
                    if passed(name) == Some(false) {
                        return Some(format!("verifier:{name}"));
                    }
                }
            }
        }
        Some(names) => {
            for name in names {
                match passed(name) {
                    Some(true) => {}
                    Some(false) => return Some(format!("verifier:{name}")),
                    None => return Some(format!("verifier:{name}:missing")),
                }
            }
        }
    }
    None
}

/// Loads an eval set: JSONL (`.jsonl`/`.json`: each record's text fields) or plain text
/// (each non-empty line is an item).
pub fn load_eval(path: &Path) -> Result<Vec<EvalItem>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read eval set", path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let file = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json" | "ndjson")
    );
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            out.push(EvalItem {
                file: file.clone(),
                id: format!("line{}", n + 1),
                text: line.to_string(),
            });
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| Error::BadInput {
            path: path.to_path_buf(),
            line: n + 1,
            reason: format!("eval set line is not JSON ({e})"),
            advice: "",
        })?;
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(x)) => x.to_string(),
            _ => format!("line{}", n + 1),
        };
        // Every string field (question, answer, options…) and message contents.
        let mut parts: Vec<String> = Vec::new();
        if let Some(o) = v.as_object() {
            for (k, x) in o {
                match x {
                    Value::String(s) if k != "id" => parts.push(s.clone()),
                    Value::Array(a) if k == "messages" => parts.extend(
                        a.iter()
                            .filter_map(|m| m.get("content").and_then(Value::as_str))
                            .map(str::to_string),
                    ),
                    _ => {}
                }
            }
        }
        out.push(EvalItem {
            file: file.clone(),
            id,
            text: parts.join("\n"),
        });
    }
    Ok(out)
}

/// Filters and deduplicates `input` into `kept` and `rejected`.
pub fn run(
    input: &Path,
    kept: &Path,
    rejected: &Path,
    opts: &DedupOptions,
) -> Result<DedupSummary> {
    let t0 = Instant::now();
    let mut lines = read_lines(input, &opts.field)?;
    if opts.id_order {
        // Unreadable lines first (by line number), then records by id; stable.
        lines.sort_by(|a, b| match (a, b) {
            (Line::Bad { line: x, .. }, Line::Bad { line: y, .. }) => x.cmp(y),
            (Line::Bad { .. }, Line::Record { .. }) => std::cmp::Ordering::Less,
            (Line::Record { .. }, Line::Bad { .. }) => std::cmp::Ordering::Greater,
            (Line::Record { id: x, .. }, Line::Record { id: y, .. }) => x.cmp(y),
        });
    }
    // Eval sets first: a missing file fails before any work.
    let mut eval = Vec::new();
    for p in &opts.against {
        if !p.is_file() {
            return Err(Error::Spec(format!(
                "eval set {} does not exist (from --against / dedup.against)",
                p.display()
            )));
        }
        eval.extend(load_eval(p)?);
    }

    let not_selected = per_prompt(&lines, &opts.filter);
    let mut items: Vec<Item> = Vec::new();
    let mut line_of_item: Vec<usize> = Vec::new();
    let mut pre: Vec<Option<String>> = vec![None; lines.len()];
    for (k, l) in lines.iter().enumerate() {
        match l {
            Line::Bad { why, .. } => pre[k] = Some(why.clone()),
            Line::Record { value, id, text } => {
                // A line verify could not read, carried to here with its reason.
                if let Some(why) = value.pointer("/bad_input/reason").and_then(Value::as_str) {
                    pre[k] = Some(why.to_string());
                } else if text.is_none() {
                    pre[k] = Some(format!(
                        "bad_input:no_text (no {:?} field to compare)",
                        opts.field
                    ));
                } else if let Some(r) = filter_reason(value, &opts.filter) {
                    pre[k] = Some(r);
                } else if let Some(r) = not_selected.get(&k) {
                    pre[k] = Some(r.clone());
                } else {
                    items.push(Item {
                        id: id.clone(),
                        text: text.clone().unwrap_or_default(),
                        score: priority(value),
                    });
                    line_of_item.push(k);
                }
            }
        }
    }

    let mut out: Vec<Option<Reason>> = vec![None; items.len()];
    let index = (!eval.is_empty()).then(|| EvalIndex::build(eval.clone(), opts.ngram));
    if let Some(idx) = &index {
        super::decontaminate(&items, idx, &mut out);
    }
    if opts.exact {
        super::exact(&items, &mut out);
    }
    if let Some(m) = &opts.minhash {
        super::minhash(&items, m, &mut out);
    }

    let mut summary = DedupSummary {
        kept_path: kept.to_path_buf(),
        rejected_path: rejected.to_path_buf(),
        eval_items: eval.len(),
        eval_skipped_short: index.as_ref().map_or(0, |i| i.skipped),
        ..Default::default()
    };
    let mut embed_info: Vec<Option<(usize, usize)>> = vec![None; items.len()];
    let mut embedder_id = String::new();
    if opts.needs_embedder() {
        let emb = crate::runtime::embedder(&opts.embedder, opts.fetch, &opts.device)?;
        embedder_id = emb.id.clone();
        summary.embedder = Some(ModelEntry {
            role: "embedder".into(),
            id: emb.id.clone(),
            file: opts.embedder.clone(),
            sha256: emb.weights_sha256.clone(),
        });
        let alive: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
        let texts: Vec<&str> = alive.iter().map(|&i| items[i].text.as_str()).collect();
        let te = Instant::now();
        let pb = crate::progress::bar(texts.len(), opts.progress, "embed");
        let vecs = emb.embed(&texts, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        summary.embed_seconds = te.elapsed().as_secs_f64();
        summary.embedded = texts.len();
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); items.len()];
        for (&i, e) in alive.iter().zip(vecs) {
            embed_info[i] = Some((e.tokens, e.truncated_tokens));
            summary.truncated += (e.truncated_tokens > 0) as usize;
            vectors[i] = e.vector;
        }
        if let (Some(t), Some(_)) = (opts.against_semantic, &index) {
            let evecs = emb.embed(
                &eval.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
                |_| {},
            )?;
            let dim = emb.dim();
            let live: Vec<usize> = alive
                .iter()
                .copied()
                .filter(|&i| vectors[i].iter().all(|x| x.is_finite()))
                .collect();
            let a: Vec<f32> = live
                .iter()
                .flat_map(|&i| vectors[i].iter().copied())
                .collect();
            let b: Vec<f32> = evecs
                .iter()
                .flat_map(|e| e.vector.iter().copied())
                .collect();
            for p in super::semantic::cross_pairs(&a, &b, dim, t) {
                let i = live[p.i as usize];
                if out[i].is_none() {
                    let e = &eval[p.j as usize];
                    out[i] = Some(Reason::Contaminated {
                        file: e.file.clone(),
                        id: e.id.clone(),
                    });
                }
            }
        }
        if let Some(s) = &opts.semantic {
            super::semantic_on(&items, &vectors, s, &opts.device, &mut out)?;
        }
    }

    // A record matched to one that a later method removed (exact, then MinHash…) names its
    // match in `dup_of` and, in `survivor`, the kept record at the end of that chain.
    let survivor = super::clusters(&items, &out);

    // Write both files in input order, atomically.
    let mut item_at: Vec<Option<usize>> = vec![None; lines.len()];
    for (i, &k) in line_of_item.iter().enumerate() {
        item_at[k] = Some(i);
    }
    let tmp = |p: &Path| p.with_extension("jsonl.tmp");
    let open = |p: &Path| -> Result<std::io::BufWriter<std::fs::File>> {
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| Error::io("cannot create", d, e))?;
        }
        let f = std::fs::File::create(tmp(p)).map_err(|e| Error::io("cannot write", tmp(p), e))?;
        Ok(std::io::BufWriter::new(f))
    };
    let (mut kw, mut rw) = (open(kept)?, open(rejected)?);
    for (k, l) in lines.into_iter().enumerate() {
        let (mut value, decision, keep) = match l {
            Line::Bad { line, raw, why } => {
                *summary.by_method.entry("bad_input".into()).or_default() += 1;
                (
                    json!({"line": line, "raw": raw}),
                    json!({"kept": false, "reason": why, "stage": "input"}),
                    false,
                )
            }
            Line::Record { value, .. } => {
                let mut d = serde_json::Map::new();
                let keep = match (&pre[k], item_at[k]) {
                    (Some(why), _) => {
                        let stage = if why.starts_with("bad_input") {
                            "input"
                        } else {
                            "filter"
                        };
                        *summary
                            .by_method
                            .entry(
                                if stage == "input" {
                                    "bad_input"
                                } else {
                                    "filter"
                                }
                                .into(),
                            )
                            .or_default() += 1;
                        d.insert("reason".into(), why.clone().into());
                        d.insert("stage".into(), stage.into());
                        false
                    }
                    (None, Some(i)) => {
                        if let Some((tokens, trunc)) = embed_info[i] {
                            d.insert(
                                "embedding".into(),
                                json!({"model": embedder_id, "tokens": tokens, "truncated_tokens": trunc, "handling": if trunc > 0 { "truncated" } else { "whole" }}),
                            );
                        }
                        match &out[i] {
                            None => {
                                d.insert("reason".into(), Value::Null);
                                true
                            }
                            Some(r) => {
                                *summary.by_method.entry(r.method().into()).or_default() += 1;
                                d.insert("reason".into(), r.to_string().into());
                                d.insert("stage".into(), r.method().into());
                                if let Some((of, sim)) = r.dup_of() {
                                    d.insert("dup_of".into(), of.into());
                                    let last = &items[survivor[i]].id;
                                    if last != of {
                                        d.insert("survivor".into(), last.as_str().into());
                                    }
                                    if let Some(s) = sim {
                                        d.insert(
                                            "similarity".into(),
                                            json!((s as f64 * 1e4).round() / 1e4),
                                        );
                                    }
                                }
                                false
                            }
                        }
                    }
                    (None, None) => false,
                };
                d.insert("kept".into(), keep.into());
                (value, Value::Object(d), keep)
            }
        };
        if let Some(o) = value.as_object_mut() {
            o.insert("decision".into(), decision);
        }
        summary.records += 1;
        let w = if keep {
            summary.kept += 1;
            &mut kw
        } else {
            &mut rw
        };
        serde_json::to_writer(&mut *w, &value)
            .map_err(|e| Error::Internal(format!("cannot serialize a record: {e}")))?;
        w.write_all(b"\n")
            .map_err(|e| Error::io("cannot write", tmp(kept), e))?;
    }
    for (w, p) in [(kw, kept), (rw, rejected)] {
        let f = w
            .into_inner()
            .map_err(|e| Error::io("cannot write", tmp(p), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", tmp(p), e))?;
        std::fs::rename(tmp(p), p).map_err(|e| Error::io("cannot replace", p, e))?;
    }
    summary.wall_seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cut_off_answers_are_rejected_unless_allowed() {
        let cut = json!({"provenance": {"finish_reason": "length"}});
        let ended = json!({"provenance": {"finish_reason": "eos"}});
        let real = json!({"messages": []});
        let mut f = FilterSection::default();
        assert_eq!(filter_reason(&cut, &f), Some("truncated".into()));
        assert_eq!(filter_reason(&ended, &f), None);
        assert_eq!(filter_reason(&real, &f), None);
        let whole =
            json!({"meta": {"output": {"valid": true}}, "provenance": {"finish_reason": "length"}});
        assert_eq!(filter_reason(&whole, &f), None);
        // A constrained answer cut off mid-grammar says so, allowed or not.
        let grammar = json!({"meta": {"output": {"valid": false}}, "provenance": {"finish_reason": "length"}});
        f.allow_truncated = true;
        assert_eq!(filter_reason(&cut, &f), None);
        assert_eq!(
            filter_reason(&grammar, &f),
            Some("truncated_in_grammar".into())
        );
    }
}
