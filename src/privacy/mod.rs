//! The privacy audit of synthetic records against the sensitive real data: PII, copied
//! runs of real text, distance to the closest real record, and the canary test.
//!
//! It runs before the blend, so a `drop` policy removes records before the real/synthetic
//! ratio is set (dropping after the blend would silently shift the ratio). Every finding
//! is in `privacy.json`; a flagged record carries it under `privacy`; nothing passes
//! silently.

pub mod canary;
pub mod copy;
pub mod dcr;
pub mod pii;

use crate::dedup::stage::text_of;
use crate::embed::Embedder;
use crate::engine::{self, GenParams, Llm, Request};
use crate::error::{Error, Result};
use crate::models::{resolve, FetchPolicy};
use crate::spec::{Policy, PrivacySection, Spec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{write_atomic, write_jsonl, Manifest};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How an audit runs (not what it checks: that is the spec's `[privacy]`).
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub device: String,
    /// Matmul precision of the teacher in the canary test.
    pub dtype: String,
    pub fetch: FetchPolicy,
    pub progress: bool,
    /// Run the canary test with this many canaries (0: skip it).
    pub canaries: usize,
}

/// What an audit found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditSummary {
    pub records: usize,
    pub passed: usize,
    pub flagged: usize,
    pub redacted: usize,
    pub dropped: usize,
    pub pii_by_kind: BTreeMap<String, usize>,
    pub copies: usize,
    pub dcr_flagged: usize,
    pub dcr: Option<dcr::DcrStats>,
    pub canary: Option<CanaryResult>,
    pub real_records: usize,
    pub real_bad_rows: usize,
    pub wall_seconds: f64,
    #[serde(skip)]
    pub audited_path: PathBuf,
    #[serde(skip)]
    pub privacy_path: PathBuf,
    #[serde(skip)]
    pub embedder: Option<ModelEntry>,
}

/// The canary test's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CanaryResult {
    pub planted: usize,
    pub outputs: usize,
    /// Planted canaries reproduced in full by some output.
    pub resurfaced_full: usize,
    /// Planted canaries reproduced in part (the number, or two words in a row).
    pub resurfaced_partial: usize,
    /// Control canaries (never shown to the teacher) found: false alarms of the search.
    pub control_found: usize,
    pub details: Vec<Value>,
}

/// Keeps PII out of the report it is reported in: `jane.doe@x.org` → `ja…rg (15 chars)`.
fn mask(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    if c.len() <= 6 {
        return format!("… ({} chars)", c.len());
    }
    format!(
        "{}…{} ({} chars)",
        c[..2].iter().collect::<String>(),
        c[c.len() - 2..].iter().collect::<String>(),
        c.len()
    )
}

/// `flywheel audit SPEC`: `<run>/kept.jsonl` (or `input`) → `<run>/audited.jsonl` and
/// `<run>/privacy.json`.
pub fn run_spec(spec: &Spec, input: Option<&Path>, opts: &AuditOptions) -> Result<AuditSummary> {
    let dir = spec.run_dir();
    let input = input
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("kept.jsonl"));
    if !input.exists() {
        return Err(Error::Spec(format!(
            "{} does not exist: run `flywheel dedup {}` first (or pass --input FILE)",
            input.display(),
            spec.path.display()
        )));
    }
    let _lock = crate::store::create_run_dir(&dir)?;
    let started = Instant::now();
    let mut s = audit(
        &input,
        &dir.join("audited.jsonl"),
        &dir.join("privacy.json"),
        &spec.sensitive_files(),
        &spec.privacy,
        spec.run.seed,
        opts,
    )?;
    if opts.canaries > 0 {
        let c = canary_test(spec, opts, &dir)?;
        s.canary = Some(c);
        // Re-write privacy.json with the canary section.
        let mut pj: Value = serde_json::from_slice(
            &std::fs::read(&s.privacy_path)
                .map_err(|e| Error::io("cannot read", &s.privacy_path, e))?,
        )
        .map_err(|e| Error::Model(format!("internal: privacy.json: {e}")))?;
        pj["canary"] = json!(s.canary);
        write_json(&s.privacy_path, &pj)?;
    }
    if opts.canaries > 0 {
        s.wall_seconds = started.elapsed().as_secs_f64();
    }
    let mut m = Manifest::load(&dir)?.unwrap_or_default();
    let mut st = StageStatus {
        status: "done".into(),
        planned: s.records,
        done: s.records,
        written_this_run: s.passed,
        wall_seconds: s.wall_seconds,
        ..Default::default()
    };
    st.extra.insert("passed".into(), s.passed.into());
    st.extra.insert("dropped".into(), s.dropped.into());
    st.extra.insert("flagged".into(), s.flagged.into());
    st.extra.insert("redacted".into(), s.redacted.into());
    m.stages.insert("audit".into(), st);
    if let Some(e) = &s.embedder {
        m.models.retain(|x| x.role != e.role);
        m.models.push(e.clone());
    }
    m.save(&dir)?;
    Ok(s)
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Model(format!("internal: {e}")))?;
    write_atomic(path, &bytes)
}

/// Reads the real records of every sensitive file (bad rows are counted, not fatal).
pub fn read_real(files: &[PathBuf]) -> Result<(Vec<Value>, Vec<String>)> {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        let r = crate::blend::real::read(f, false)?;
        recs.extend(r.records);
        bad.extend(r.bad);
    }
    Ok((recs, bad))
}

/// The audit proper, on any JSONL of records.
pub fn audit(
    input: &Path,
    audited: &Path,
    privacy_json: &Path,
    sensitive: &[PathBuf],
    cfg: &PrivacySection,
    seed: u64,
    opts: &AuditOptions,
) -> Result<AuditSummary> {
    let started = Instant::now();
    let records = crate::verify::stage::read_records(input)?;
    let (real, real_bad) = read_real(sensitive)?;
    for b in &real_bad {
        eprintln!("warning: real data: {b} (skipped)");
    }
    // The model wrote only the responses; prompts come from the spec, so comparing them
    // with real prompts would flag every record that shares a template.
    let response = |r: &Value| {
        text_of(r, "assistant")
            .filter(|t| !t.is_empty())
            .or_else(|| text_of(r, "auto"))
            .unwrap_or_default()
    };
    let syn_text: Vec<String> = records.iter().map(response).collect();
    let real_all: Vec<String> = real
        .iter()
        .map(|r| text_of(r, "auto").unwrap_or_default())
        .collect();
    let real_text: Vec<String> = real.iter().map(response).collect();
    let real_ids: Vec<String> = real
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();

    // Copies.
    let index = copy::CopyIndex::build(
        real_ids
            .iter()
            .map(String::as_str)
            .zip(real_all.iter().map(String::as_str)),
    );
    let copies: Vec<Option<copy::Copy>> = syn_text
        .iter()
        .map(|t| {
            index
                .longest(t)
                .filter(|c| c.words >= cfg.copy_words || c.chars >= cfg.copy_chars)
        })
        .collect();

    // Distance to closest record.
    let mut summary = AuditSummary {
        records: records.len(),
        real_records: real.len(),
        real_bad_rows: real_bad.len(),
        audited_path: audited.to_path_buf(),
        privacy_path: privacy_json.to_path_buf(),
        ..Default::default()
    };
    let mut nearest_real: Vec<Option<(f32, usize)>> = vec![None; records.len()];
    let mut dcr_closest = Vec::new();
    let embed_on = cfg.embedder != "none" && !real.is_empty() && !records.is_empty();
    if embed_on {
        let dev = engine::device::parse(&opts.device)?;
        let emb = Embedder::load(&cfg.embedder, opts.fetch, &dev)?;
        summary.embedder = Some(ModelEntry {
            role: "embedder".into(),
            id: emb.id.clone(),
            file: String::new(),
            sha256: emb.weights_sha256.clone(),
        });
        let d = emb.dim();
        let sv = emb.embed_flat(&syn_text, opts.progress, "audit: embed synthetic")?;
        let rv = emb.embed_flat(&real_text, opts.progress, "audit: embed real")?;
        for (i, (c, j)) in dcr::nearest(&sv, &rv, d).into_iter().enumerate() {
            nearest_real[i] = Some((c, j));
        }
        if let Some((rest, hold)) = dcr::split(real.len(), cfg.holdout, seed) {
            let pick = |idx: &[usize]| -> Vec<f32> {
                idx.iter()
                    .flat_map(|&i| rv[i * d..(i + 1) * d].iter().copied())
                    .collect()
            };
            let restv = pick(&rest);
            let hv = pick(&hold);
            let h: Vec<f32> = dcr::nearest(&hv, &restv, d)
                .into_iter()
                .map(|x| x.0)
                .collect();
            let s: Vec<f32> = dcr::nearest(&sv, &restv, d)
                .into_iter()
                .map(|x| x.0)
                .collect();
            summary.dcr = Some(dcr::compare(&s, &h, rest.len()));
        }
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (
                nearest_real[a].map_or(0.0, |v| v.0),
                nearest_real[b].map_or(0.0, |v| v.0),
            );
            y.total_cmp(&x)
        });
        for &i in order.iter().take(10) {
            if let Some((c, j)) = nearest_real[i] {
                dcr_closest
                    .push(json!({"id": records[i]["id"], "real_id": real_ids[j], "cosine": c}));
            }
        }
    }

    // Apply the policies, record by record.
    let mut out = Vec::with_capacity(records.len());
    let mut findings = Vec::new();
    let mut dropped = Vec::new();
    for (i, mut rec) in records.into_iter().enumerate() {
        let id = rec["id"].as_str().unwrap_or("").to_string();
        let mut flags: Vec<Value> = Vec::new();
        let mut drop_reasons: Vec<String> = Vec::new();
        let mut redacted: Vec<&'static str> = Vec::new();
        // PII, message by message so redaction keeps the chat shape.
        let mut pii_hits = Vec::new();
        if let Some(msgs) = rec.get_mut("messages").and_then(|m| m.as_array_mut()) {
            for m in msgs.iter_mut() {
                if m["role"] == "system" {
                    continue;
                }
                let Some(content) = m["content"].as_str().map(str::to_string) else {
                    continue;
                };
                let hits = pii::scan(&content);
                if hits.is_empty() {
                    continue;
                }
                if cfg.pii == Policy::Redact {
                    m["content"] = Value::String(pii::redact(&content, &hits));
                    redacted.extend(hits.iter().map(|h| h.kind.name()));
                }
                pii_hits.extend(hits);
            }
        } else if !syn_text[i].is_empty() {
            pii_hits = pii::scan(&syn_text[i]);
        }
        for h in &pii_hits {
            *summary.pii_by_kind.entry(h.kind.name().into()).or_default() += 1;
            findings.push(
                json!({"id": id, "check": "pii", "kind": h.kind.name(), "masked": mask(&h.text)}),
            );
        }
        if !pii_hits.is_empty() {
            let kinds: Vec<&str> = pii_hits.iter().map(|h| h.kind.name()).collect();
            match cfg.pii {
                Policy::Drop => drop_reasons.push(format!("pii:{}", kinds.join(","))),
                Policy::Flag => flags.push(json!({"check": "pii", "kinds": kinds})),
                Policy::Redact if redacted.is_empty() => {
                    // Not a chat record: nothing to redact in place, so flag instead.
                    flags.push(json!({"check": "pii", "kinds": kinds}))
                }
                Policy::Redact => {}
            }
        }
        if let Some(c) = &copies[i] {
            summary.copies += 1;
            findings.push(json!({"id": id, "check": "copy", "real_id": c.real_id, "words": c.words, "chars": c.chars,
                                 "excerpt": c.excerpt.chars().take(80).collect::<String>()}));
            let why = format!("copy:{}:{}w", c.real_id, c.words);
            match cfg.copy {
                Policy::Drop => drop_reasons.push(why),
                _ => flags.push(json!({"check": "copy", "real_id": c.real_id, "words": c.words, "chars": c.chars})),
            }
        }
        if let Some((cos, j)) = nearest_real[i].filter(|(c, _)| *c as f64 >= cfg.dcr_threshold) {
            summary.dcr_flagged += 1;
            findings.push(json!({"id": id, "check": "dcr", "real_id": real_ids[j], "cosine": cos}));
            match cfg.dcr {
                Policy::Drop => drop_reasons.push(format!("dcr:{}:{cos:.3}", real_ids[j])),
                _ => flags.push(json!({"check": "dcr", "real_id": real_ids[j], "cosine": cos})),
            }
        }
        if !drop_reasons.is_empty() {
            summary.dropped += 1;
            dropped.push(json!({"id": id, "reasons": drop_reasons}));
            continue;
        }
        if !redacted.is_empty() || !flags.is_empty() {
            let mut p = serde_json::Map::new();
            if !redacted.is_empty() {
                summary.redacted += 1;
                p.insert("redacted".into(), json!(redacted));
            }
            if !flags.is_empty() {
                summary.flagged += 1;
                p.insert("flags".into(), json!(flags));
            }
            rec["privacy"] = Value::Object(p);
        }
        out.push(rec);
    }
    summary.passed = out.len();
    summary.wall_seconds = started.elapsed().as_secs_f64();

    write_jsonl(audited, &out)?;
    let report = json!({
        "summary": summary,
        "policy": cfg,
        "sensitive": sensitive.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "real_bad_rows": real_bad,
        "findings": findings,
        "dropped": dropped,
        "dcr": {"stats": summary.dcr, "closest": dcr_closest, "threshold": cfg.dcr_threshold},
    });
    write_json(privacy_json, &report)?;
    Ok(summary)
}

/// Plants canaries in a copy of the real data, shows those records to the teacher as
/// examples, and searches its outputs for planted and control canaries.
pub fn canary_test(spec: &Spec, opts: &AuditOptions, dir: &Path) -> Result<CanaryResult> {
    let teacher = spec.teacher.as_ref().ok_or_else(|| {
        Error::Spec(format!(
            "{}: --canaries needs a [teacher] (the model whose outputs are tested)",
            spec.path.display()
        ))
    })?;
    let (real, _) = read_real(&spec.sensitive_files())?;
    if real.is_empty() {
        return Err(Error::Spec(format!(
            "{}: --canaries needs real data to plant them in ([blend].real or [privacy].sensitive)",
            spec.path.display()
        )));
    }
    let n = opts.canaries;
    let all = canary::make(2 * n, spec.run.seed);
    let (planted, control) = all.split_at(n);
    let device = engine::device::parse(&opts.device)?;
    let precision = engine::Precision::resolve(&opts.dtype, &device)?;
    let model = resolve(&teacher.model, opts.fetch)?;
    let template = teacher
        .chat_template
        .as_deref()
        .and_then(crate::models::chat::ChatTemplate::from_name);
    let llm = Llm::load(&model, &device, precision, template)?;
    let mut requests = Vec::new();
    let mut planted_copy = Vec::new();
    for (k, c) in planted.iter().enumerate() {
        let rec = &real[k % real.len()];
        let text = text_of(rec, "auto").unwrap_or_default();
        // At the start, so a copy cut short by max_new_tokens still reaches it.
        let example = format!("{} {text}", c.sentence);
        planted_copy.push(json!({"real_id": rec["id"], "canary": c.secret, "example": example}));
        let mut vars = BTreeMap::new();
        vars.insert("example".to_string(), example);
        let prompt = crate::spec::render(&spec.privacy.canary_template, &vars);
        let msgs = vec![crate::models::chat::Message::new("user", prompt)];
        let id = format!("canary-{k}");
        requests.push(Request {
            prompt_ids: llm.prompt_ids(&msgs)?,
            seed: crate::engine::sampler::record_seed(spec.run.seed, &id),
            id,
        });
    }
    let params = GenParams {
        sampling: teacher.sampling.clone(),
        max_new_tokens: teacher.max_new_tokens,
        batch_size: teacher.batch_size,
        stop: teacher.sampling.stop.clone(),
    };
    let mut outputs: BTreeMap<String, String> = BTreeMap::new();
    llm.generate(requests, &params, |o| {
        outputs.insert(o.id, o.text);
        Ok(())
    })?;
    let mut res = CanaryResult {
        planted: n,
        outputs: outputs.len(),
        ..Default::default()
    };
    for (k, c) in planted.iter().enumerate() {
        let best = outputs
            .values()
            .filter_map(|t| canary::find(t, c))
            .min_by_key(|f| *f != canary::Found::Full);
        match best {
            Some(canary::Found::Full) => res.resurfaced_full += 1,
            Some(canary::Found::Partial) => res.resurfaced_partial += 1,
            None => {}
        }
        res.details.push(
            json!({"canary": c.secret, "shown_in": format!("canary-{k}"), "found": best,
                                "output": outputs.get(&format!("canary-{k}"))}),
        );
    }
    for c in control {
        if outputs.values().any(|t| canary::find(t, c).is_some()) {
            res.control_found += 1;
        }
    }
    write_jsonl(&dir.join("canary_planted.jsonl"), &planted_copy)?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_the_middle() {
        assert_eq!(mask("jane.doe@x.org"), "ja…rg (14 chars)");
        assert_eq!(mask("1.2.3"), "… (5 chars)");
    }

    #[test]
    fn audit_applies_each_policy_and_hides_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.jsonl");
        std::fs::write(&real, "{\"id\":\"r1\",\"prompt\":\"Describe the visit.\",\"response\":\"The patient arrived on Tuesday complaining of a sharp pain in the left knee after a fall.\"}\n").unwrap();
        let syn = dir.path().join("kept.jsonl");
        let recs = [
            json!({"id":"a","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Mail me at jane.doe@example.com about it."}]}),
            json!({"id":"b","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Notes: the patient arrived on Tuesday complaining of a sharp pain in the left knee."}]}),
            json!({"id":"c","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Volcanoes form where magma reaches the surface."}]}),
        ];
        std::fs::write(
            &syn,
            recs.iter()
                .map(|r| r.to_string() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        let mut cfg = PrivacySection {
            embedder: "none".into(),
            ..Default::default()
        };
        let opts = AuditOptions {
            device: "cpu".into(),
            dtype: "auto".into(),
            fetch: FetchPolicy::Offline,
            progress: false,
            canaries: 0,
        };
        let (out, pj) = (
            dir.path().join("audited.jsonl"),
            dir.path().join("privacy.json"),
        );
        let s = audit(&syn, &out, &pj, std::slice::from_ref(&real), &cfg, 1, &opts).unwrap();
        assert_eq!(
            (s.records, s.passed, s.dropped, s.redacted, s.copies),
            (3, 2, 1, 1, 1)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("Mail me at [EMAIL] about it."));
        assert!(!text.contains("jane.doe"));
        assert!(
            !std::fs::read_to_string(&pj).unwrap().contains("jane.doe"),
            "privacy.json must not repeat the PII"
        );
        let p: Value = serde_json::from_str(&std::fs::read_to_string(&pj).unwrap()).unwrap();
        assert_eq!(p["dropped"][0]["id"], "b");
        assert!(p["dropped"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("copy:r1:"));

        cfg.pii = Policy::Flag;
        cfg.copy = Policy::Flag;
        let s = audit(&syn, &out, &pj, &[real], &cfg, 1, &opts).unwrap();
        assert_eq!((s.passed, s.flagged, s.dropped), (3, 2, 0));
        let lines: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["privacy"]["flags"][0]["kinds"][0], "email");
        assert_eq!(lines[1]["privacy"]["flags"][0]["check"], "copy");
        assert!(lines[2].get("privacy").is_none());
    }
}
