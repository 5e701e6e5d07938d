//! The filter & dedup stage: verified records → `kept.jsonl` + `rejected.jsonl`.
//!
//! Order: unreadable lines, then the spec's keep-rules (judge thresholds, required
//! verifiers), then decontamination (so a contaminated record never becomes the survivor of
//! a duplicate cluster), then exact, MinHash and semantic dedup. Every input line ends up
//! in exactly one of the two outputs, with a `decision` saying why. The whole stage is
//! recomputed on a rerun (it is global by nature; the per-record work is cached in the
//! dedup index, see [`super::index`]); both files are replaced atomically, so a crash
//! leaves the previous result or none, never a half. This file holds the settings, the
//! keep-rules and the spec entry point; the streamed pass itself is `global.rs`.

use super::decontam::EvalItem;
use super::{MinHashOptions, SemanticOptions, Shingle};
use crate::error::{Error, Result};
use crate::models::FetchPolicy;
use crate::spec::{DedupSection, FilterSection, Spec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{Manifest, RunDir};
use candle_core::Device;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

    pub fn needs_embedder(&self) -> bool {
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
        if self.embedded > 0 && self.embed_seconds > 0.0 {
            writeln!(
                f,
                "embedded {} texts in {:.1}s ({:.0}/s), {} truncated to the model's window",
                self.embedded,
                self.embed_seconds,
                self.embedded as f64 / self.embed_seconds,
                self.truncated
            )?;
        } else if self.embedded > 0 {
            writeln!(
                f,
                "compared {} embeddings from the dedup index (made earlier), {} truncated to the model's window",
                self.embedded, self.truncated
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

pub use super::global::{build_index, emb_settings, run, run_indexed, sig_settings};

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
    let s = run_indexed(&input, &dir.index(), &dir.kept(), &dir.rejected(), opts)?;
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

/// The survivor priority: the combined judge score when the record has one.
pub(super) fn priority(v: &Value) -> Option<f64> {
    v.pointer("/scores/judge_combined/score")
        .and_then(Value::as_f64)
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
