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

use crate::engine::{GenParams, Request, Runtime};
use crate::error::{Error, Result};
use crate::models::{resolve, FetchPolicy};
use crate::record::{Line, View};
use crate::spec::{Policy, PrivacySection, Spec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{write_atomic, write_jsonl, AtomicWriter, Manifest, RunDir};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How an audit runs (not what it checks: that is the spec's `[privacy]`).
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Where the embedder runs, and the teacher of the canary test in what precision.
    pub runtime: Runtime,
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
    /// Input lines that are not JSON records: not scanned, so not passed on; each is
    /// listed (line and reason, never its text) under `bad_input` in `privacy.json`.
    pub bad_input: usize,
    pub wall_seconds: f64,
    #[serde(skip)]
    pub audited_path: PathBuf,
    #[serde(skip)]
    pub privacy_path: PathBuf,
    #[serde(skip)]
    pub embedder: Option<ModelEntry>,
}

/// What `flywheel audit` prints: what passed and why the rest did not, then the distance
/// to closest record and the canary test when they ran.
impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pii: Vec<String> = self
            .pii_by_kind
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        write!(
            f,
            "audit: {} records → {} passed, {} dropped, {} redacted, {} flagged, {} bad input lines left out; PII: {}; copies of real text: {}; too close to a real record: {} → {}",
            self.records, self.passed, self.dropped, self.redacted, self.flagged, self.bad_input,
            if pii.is_empty() { "none".into() } else { pii.join(", ") },
            self.copies, self.dcr_flagged, self.privacy_path.display()
        )?;
        if let Some(d) = &self.dcr {
            write!(
                f,
                "\ndistance to closest record: {:.1}% of synthetic records are closer to real data than the median real record ({:.1}% closer than 95% of them)",
                100.0 * d.share_closer_than_real_median,
                100.0 * d.share_closer_than_real_p95
            )?;
        }
        if let Some(c) = &self.canary {
            write!(
                f,
                "\ncanaries: {} planted, {} resurfaced in full, {} in part; {} of {} control canaries found (false alarms)",
                c.planted, c.resurfaced_full, c.resurfaced_partial, c.control_found, c.planted
            )?;
        }
        Ok(())
    }
}

impl AuditSummary {
    /// The line `flywheel run` prints after `[4/6] audit:`.
    pub fn run_line(&self) -> String {
        let mut line = format!(
            "{} records → {} passed ({} dropped, {} redacted, {} flagged) in {:.1}s",
            self.records, self.passed, self.dropped, self.redacted, self.flagged, self.wall_seconds
        );
        if self.bad_input > 0 {
            line.push_str(&format!(
                "; {} bad input lines left out (see privacy.json)",
                self.bad_input
            ));
        }
        line
    }
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

/// `flywheel audit SPEC`: `<run>/kept.jsonl` (or `input`) → `<run>/audited.jsonl` and
/// `<run>/privacy.json`. Bad input lines are reported and left out (see [`run_spec_with`]).
pub fn run_spec(spec: &Spec, input: Option<&Path>, opts: &AuditOptions) -> Result<AuditSummary> {
    run_spec_with(spec, input, opts, false)
}

/// [`run_spec`]; with `strict`, the first bad input line is an error naming `file:line`.
pub fn run_spec_with(
    spec: &Spec,
    input: Option<&Path>,
    opts: &AuditOptions,
    strict: bool,
) -> Result<AuditSummary> {
    let dir = RunDir::new(spec.run_dir());
    let input = RunDir::input(input, dir.kept(), &format!("dedup {}", spec.path.display()))?;
    let _lock = crate::store::create_run_dir(dir.path())?;
    let started = Instant::now();
    let mut s = audit_files(
        &AuditFiles {
            input: &input,
            audited: &dir.audited(),
            privacy_json: &dir.privacy(),
            strict,
        },
        &spec.sensitive_files(),
        &spec.privacy,
        spec.run.seed,
        opts,
    )?;
    if opts.canaries > 0 {
        let c = canary_test(spec, opts, dir.path())?;
        s.canary = Some(c);
        // Re-write privacy.json with the canary section.
        let mut pj: Value = serde_json::from_slice(
            &std::fs::read(&s.privacy_path)
                .map_err(|e| Error::io("cannot read", &s.privacy_path, e))?,
        )
        .map_err(|e| Error::Internal(format!("privacy.json: {e}")))?;
        pj["canary"] = json!(s.canary);
        write_json(&s.privacy_path, &pj)?;
    }
    if opts.canaries > 0 {
        s.wall_seconds = started.elapsed().as_secs_f64();
    }
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
    st.extra.insert("bad_input".into(), s.bad_input.into());
    Manifest::mark_stage(
        dir.path(),
        (&spec.path, spec.sha256()),
        "audit",
        st,
        s.embedder.as_slice(),
    )?;
    Ok(s)
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads the real records of every sensitive file (bad rows are counted, not fatal).
pub fn read_real(files: &[PathBuf]) -> Result<(Vec<Value>, Vec<String>)> {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        let r = crate::record::real::read(f, false)?;
        recs.extend(r.records);
        bad.extend(r.bad);
    }
    Ok((recs, bad))
}

/// The real records an audit compares against: ids, whole texts (for copies) and
/// responses (for DCR). Read streamed, so only these strings are held.
#[derive(Default)]
struct Real {
    ids: Vec<String>,
    all: Vec<String>,
    response: Vec<String>,
    bad: Vec<String>,
}

impl Real {
    fn read(files: &[PathBuf]) -> Result<Real> {
        let (mut ids, mut all, mut response, mut bad) = (vec![], vec![], vec![], vec![]);
        for f in files {
            crate::record::real::for_each(
                f,
                false,
                |r| {
                    let v = View::new(&r);
                    all.push(v.text("auto").unwrap_or_default());
                    response.push(v.response_text());
                    ids.push(r["id"].as_str().unwrap_or("").to_string());
                    Ok(())
                },
                |b| bad.push(b),
            )?;
        }
        Ok(Real {
            ids,
            all,
            response,
            bad,
        })
    }
}

/// Synthetic responses embedded per chunk: bounds what the audit holds at once.
const DCR_CHUNK: usize = 2048;

/// Distance to closest record, computed a chunk of synthetic records at a time as the
/// input streams by. The embedder is loaded, and the real data embedded, at the first
/// record: an audit with no records or no real data embeds nothing.
struct Dcr<'a> {
    cfg: &'a PrivacySection,
    real: &'a Real,
    seed: u64,
    opts: &'a AuditOptions,
    loaded: Option<DcrModel>,
    chunk: Vec<String>,
    nearest: Vec<(f32, u32)>,
    to_rest: Vec<f32>,
}

/// The embedder and the real side, embedded once.
struct DcrModel {
    emb: std::rc::Rc<crate::embed::Embedder>,
    entry: ModelEntry,
    real: Vec<f32>,
    /// The real rows left after the holdout, and each held-out row's nearest cosine to
    /// them (`None` with fewer than 2 real rows).
    rest: Option<(Vec<f32>, Vec<f32>, usize)>,
    bar: indicatif::ProgressBar,
}

/// What the DCR pass found: each record's nearest real record (cosine, row), empty with
/// no embedder; the comparison with held-out real data; the embedder used.
struct DcrFound {
    nearest: Vec<(f32, u32)>,
    stats: Option<dcr::DcrStats>,
    embedder: Option<ModelEntry>,
}

impl<'a> Dcr<'a> {
    fn new(cfg: &'a PrivacySection, real: &'a Real, seed: u64, opts: &'a AuditOptions) -> Self {
        Dcr {
            cfg,
            real,
            seed,
            opts,
            loaded: None,
            chunk: Vec::new(),
            nearest: Vec::new(),
            to_rest: Vec::new(),
        }
    }

    fn on(&self) -> bool {
        self.cfg.embedder != "none" && !self.real.ids.is_empty()
    }

    fn add(&mut self, response: String) -> Result<()> {
        if !self.on() {
            return Ok(());
        }
        self.chunk.push(response);
        if self.chunk.len() >= DCR_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn load(&self) -> Result<DcrModel> {
        let opts = self.opts;
        let emb = crate::runtime::embedder(&self.cfg.embedder, opts.fetch, &opts.runtime.device)?;
        let entry = ModelEntry {
            role: "embedder".into(),
            id: emb.id.clone(),
            file: String::new(),
            sha256: emb.weights_sha256.clone(),
        };
        let d = emb.dim();
        let real = emb.embed_flat(&self.real.response, opts.progress, "audit: embed real")?;
        let rest =
            dcr::split(self.real.ids.len(), self.cfg.holdout, self.seed).map(|(rest, hold)| {
                let pick = |idx: &[usize]| -> Vec<f32> {
                    idx.iter()
                        .flat_map(|&i| real[i * d..(i + 1) * d].iter().copied())
                        .collect()
                };
                let restv = pick(&rest);
                let h = dcr::nearest(&pick(&hold), &restv, d)
                    .into_iter()
                    .map(|x| x.0)
                    .collect();
                (restv, h, rest.len())
            });
        Ok(DcrModel {
            bar: crate::progress::spinner(opts.progress, "audit: embed synthetic"),
            emb,
            entry,
            real,
            rest,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        if self.loaded.is_none() {
            self.loaded = Some(self.load()?);
        }
        let Some(m) = &self.loaded else {
            return Ok(());
        };
        let d = m.emb.dim();
        let refs: Vec<&str> = self.chunk.iter().map(String::as_str).collect();
        let sv: Vec<f32> = m
            .emb
            .embed(&refs, |n| m.bar.inc(n as u64))?
            .into_iter()
            .flat_map(|e| e.vector)
            .collect();
        self.nearest.extend(
            dcr::nearest(&sv, &m.real, d)
                .into_iter()
                .map(|(c, j)| (c, j as u32)),
        );
        if let Some((restv, _, _)) = &m.rest {
            self.to_rest
                .extend(dcr::nearest(&sv, restv, d).into_iter().map(|x| x.0));
        }
        self.chunk.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<DcrFound> {
        self.flush()?;
        let Some(m) = self.loaded else {
            return Ok(DcrFound {
                nearest: Vec::new(),
                stats: None,
                embedder: None,
            });
        };
        m.bar.finish_and_clear();
        Ok(DcrFound {
            stats: m
                .rest
                .as_ref()
                .map(|(_, h, n)| dcr::compare(&self.to_rest, h, *n)),
            nearest: self.nearest,
            embedder: Some(m.entry),
        })
    }
}

/// The files of one audit.
#[derive(Debug, Clone, Copy)]
pub struct AuditFiles<'a> {
    pub input: &'a Path,
    pub audited: &'a Path,
    pub privacy_json: &'a Path,
    /// The first input line that is not a JSON record is an error (else it is reported
    /// and left out).
    pub strict: bool,
}

/// The audit proper, on any JSONL of records (bad lines reported and left out).
pub fn audit(
    input: &Path,
    audited: &Path,
    privacy_json: &Path,
    sensitive: &[PathBuf],
    cfg: &PrivacySection,
    seed: u64,
    opts: &AuditOptions,
) -> Result<AuditSummary> {
    let files = AuditFiles {
        input,
        audited,
        privacy_json,
        strict: false,
    };
    audit_files(&files, sensitive, cfg, seed, opts)
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Calls `f(pointer, text)` on every string of a record that reaches the dataset: every
/// field at any depth (chat messages with the system turn, `prompt`/`response`, alpaca
/// fields, `meta.vars`, …) except the top-level `id`, which other files refer to.
fn each_string(v: &mut Value, f: &mut impl FnMut(&str, &mut String)) {
    fn walk(v: &mut Value, ptr: &mut String, f: &mut impl FnMut(&str, &mut String)) {
        match v {
            Value::String(s) => f(ptr, s),
            Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    let n = ptr.len();
                    ptr.push_str(&format!("/{i}"));
                    walk(x, ptr, f);
                    ptr.truncate(n);
                }
            }
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if ptr.is_empty() && k == "id" {
                        continue;
                    }
                    let n = ptr.len();
                    ptr.push('/');
                    ptr.push_str(&pointer_key(k));
                    walk(x, ptr, f);
                    ptr.truncate(n);
                }
            }
            _ => {}
        }
    }
    walk(v, &mut String::new(), f)
}

/// The fields the model wrote, as (pointer, text): assistant turns, or the response field
/// of a non-chat record. Prompts come from the spec, so comparing them with real prompts
/// would flag every record that shares a template.
fn response_fields(r: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(msgs) = r.get("messages").and_then(Value::as_array) {
        for (i, m) in msgs.iter().enumerate() {
            if let (Some("assistant"), Some(c)) = (
                m.get("role").and_then(Value::as_str),
                m.get("content").and_then(Value::as_str),
            ) {
                out.push((format!("/messages/{i}/content"), c));
            }
        }
    }
    for k in ["response", "output", "completion", "text", "content"] {
        if let Some(t) = r.get(k).and_then(Value::as_str) {
            out.push((format!("/{k}"), t));
        }
    }
    out
}

/// Character offsets of a byte span: findings point into the text by characters.
fn char_span(text: &str, start: usize, end: usize) -> (usize, usize) {
    let a = text[..start].chars().count();
    (a, a + text[start..end].chars().count())
}

/// The audit proper, on the records of `files.input`.
pub fn audit_files(
    files: &AuditFiles<'_>,
    sensitive: &[PathBuf],
    cfg: &PrivacySection,
    seed: u64,
    opts: &AuditOptions,
) -> Result<AuditSummary> {
    let AuditFiles {
        input,
        audited,
        privacy_json,
        strict,
    } = *files;
    let started = Instant::now();
    let input_copy = crate::record::lines::Rereadable::new(input)?;
    let input = input_copy.path();
    let mut real = Real::read(sensitive)?;
    // Copies: the longest run over the record's response fields, located by field and span.
    let index = copy::CopyIndex::build(
        real.ids
            .iter()
            .map(String::as_str)
            .zip(real.all.iter().map(String::as_str)),
    );
    // The index holds the words; the texts are not needed again.
    real.all = Vec::new();
    // Pass 1: bad lines, the record count, and each record's nearest real record (its
    // response embedded a chunk at a time, so no record is held).
    let mut bad_lines = Vec::new();
    let mut dcr = Dcr::new(cfg, &real, seed, opts);
    let mut n_records = 0usize;
    crate::record::lines::for_each(input, strict, |l| {
        match l {
            Line::Record { value, .. } => {
                n_records += 1;
                dcr.add(View::new(&value).response_text())?;
            }
            Line::Bad(b) => bad_lines.push(b),
        }
        Ok(())
    })?;
    let dcr = dcr.finish()?;
    crate::record::lines::warn(
        input,
        &bad_lines,
        "not audited, left out; listed under bad_input in privacy.json",
    );
    for b in &real.bad {
        eprintln!("warning: real data: {b} (skipped)");
    }

    let mut summary = AuditSummary {
        records: n_records,
        real_records: real.ids.len(),
        real_bad_rows: real.bad.len(),
        bad_input: bad_lines.len(),
        audited_path: audited.to_path_buf(),
        privacy_path: privacy_json.to_path_buf(),
        embedder: dcr.embedder.clone(),
        dcr: dcr.stats.clone(),
        ..Default::default()
    };
    // The ten records closest to a real one, for privacy.json (their ids come in pass 2).
    let mut order: Vec<usize> = (0..dcr.nearest.len()).collect();
    order.sort_by(|&a, &b| dcr.nearest[b].0.total_cmp(&dcr.nearest[a].0));
    order.truncate(10);
    let mut closest_ids: HashMap<usize, Value> = HashMap::new();
    // Pass 2: the policies, record by record, written as they go.
    let mut out = AtomicWriter::create(audited)?;
    let mut findings = Vec::new();
    let mut dropped = Vec::new();
    let mut i = 0usize;
    crate::record::lines::for_each(input, false, |l| {
        let Line::Record { value, .. } = l else {
            return Ok(());
        };
        let mut rec = crate::record::with_id(value);
        if i >= n_records {
            return Err(Error::Spec(format!(
                "{} changed while it was audited; run the audit again",
                input.display()
            )));
        }
        if order.contains(&i) {
            closest_ids.insert(i, rec["id"].clone());
        }
        let nearest = dcr.nearest.get(i).copied();
        let copy = response_fields(&rec)
            .into_iter()
            .filter_map(|(field, t)| index.longest(t).map(|c| (field, c)))
            .filter(|(_, c)| c.words >= cfg.copy_words || c.chars >= cfg.copy_chars)
            .max_by_key(|(_, c)| c.words);
        i += 1;
        let id = rec["id"].as_str().unwrap_or("").to_string();
        let drop = apply_policies(
            &mut rec,
            copy,
            nearest,
            cfg,
            &real.ids,
            &mut summary,
            &mut findings,
        );
        if !drop.is_empty() {
            summary.dropped += 1;
            dropped.push(json!({"id": id, "reasons": drop}));
            return Ok(());
        }
        summary.passed += 1;
        serde_json::to_writer(&mut out, &rec)
            .map_err(|e| Error::Internal(format!("cannot serialize record: {e}")))?;
        out.write_all(b"\n")
            .map_err(|e| Error::io("cannot write", audited, e))
    })?;
    if i != n_records {
        return Err(Error::Spec(format!(
            "{} changed while it was audited; run the audit again",
            input.display()
        )));
    }
    let dcr_closest: Vec<Value> = order
        .iter()
        .map(|&i| {
            let (c, j) = dcr.nearest[i];
            json!({"id": closest_ids.get(&i), "real_id": real.ids[j as usize], "cosine": c})
        })
        .collect();
    summary.wall_seconds = started.elapsed().as_secs_f64();
    out.commit()?;
    let report = json!({
        "summary": summary,
        "policy": cfg,
        "sensitive": sensitive.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "real_bad_rows": real.bad,
        // Where each unreadable input line is and why; its text could hold what this
        // report protects, so it is not repeated.
        "bad_input": bad_lines.iter().map(|b| json!({"line": b.line, "reason": b.reason})).collect::<Vec<_>>(),
        "findings": findings,
        "dropped": dropped,
        "dcr": {"stats": summary.dcr, "closest": dcr_closest, "threshold": cfg.dcr_threshold},
    });
    write_json(privacy_json, &report)?;
    Ok(summary)
}

/// Applies `[privacy]` to one record: PII found in every string that reaches the dataset
/// (and redacted where it stands), its longest copy of real text and its nearest real
/// record judged against the policies. Findings and counts go to `summary` and `findings`;
/// a passing record gets its `privacy` note. Returns the drop reasons (empty: it passes).
fn apply_policies(
    rec: &mut Value,
    copy: Option<(String, copy::Copy)>,
    nearest: Option<(f32, u32)>,
    cfg: &PrivacySection,
    real_ids: &[String],
    summary: &mut AuditSummary,
    findings: &mut Vec<Value>,
) -> Vec<String> {
    let id = rec["id"].as_str().unwrap_or("").to_string();
    let mut flags: Vec<Value> = Vec::new();
    let mut drop_reasons: Vec<String> = Vec::new();
    let mut redacted: Vec<&'static str> = Vec::new();
    // PII in every string that reaches the dataset, redacted where it stands.
    let mut pii_hits: Vec<(String, (usize, usize), pii::Kind)> = Vec::new();
    each_string(rec, &mut |field, text| {
        let hits = pii::scan(text);
        if hits.is_empty() {
            return;
        }
        for h in &hits {
            pii_hits.push((field.to_string(), char_span(text, h.start, h.end), h.kind));
        }
        if cfg.pii == Policy::Redact {
            *text = pii::redact(text, &hits);
            redacted.extend(hits.iter().map(|h| h.kind.name()));
        }
    });
    // The finding says where (record, field, character span in the input), never what.
    for (field, (start, end), kind) in &pii_hits {
        *summary.pii_by_kind.entry(kind.name().into()).or_default() += 1;
        findings.push(json!({"id": id, "check": "pii", "kind": kind.name(),
                             "field": field, "start": start, "end": end}));
    }
    if !pii_hits.is_empty() {
        let kinds: Vec<&str> = pii_hits.iter().map(|h| h.2.name()).collect();
        match cfg.pii {
            Policy::Drop => drop_reasons.push(format!("pii:{}", kinds.join(","))),
            Policy::Flag => flags.push(json!({"check": "pii", "kinds": kinds})),
            Policy::Redact => {}
        }
    }
    if let Some((field, c)) = &copy {
        summary.copies += 1;
        findings.push(json!({"id": id, "check": "copy", "real_id": c.real_id, "words": c.words, "chars": c.chars,
                             "field": field, "start": c.start, "end": c.end}));
        let why = format!("copy:{}:{}w", c.real_id, c.words);
        match cfg.copy {
            Policy::Drop => drop_reasons.push(why),
            _ => flags.push(
                json!({"check": "copy", "real_id": c.real_id, "words": c.words, "chars": c.chars}),
            ),
        }
    }
    if let Some((cos, j)) = nearest.filter(|(c, _)| *c as f64 >= cfg.dcr_threshold) {
        let j = j as usize;
        summary.dcr_flagged += 1;
        findings.push(json!({"id": id, "check": "dcr", "real_id": real_ids[j], "cosine": cos}));
        match cfg.dcr {
            Policy::Drop => drop_reasons.push(format!("dcr:{}:{cos:.3}", real_ids[j])),
            _ => flags.push(json!({"check": "dcr", "real_id": real_ids[j], "cosine": cos})),
        }
    }
    if !drop_reasons.is_empty() {
        return drop_reasons;
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
    drop_reasons
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
    let (device, precision) = (&opts.runtime.device, opts.runtime.precision);
    let model = resolve(&teacher.model, opts.fetch)?;
    let template = teacher
        .chat_template
        .as_deref()
        .map(crate::models::chat::ChatTemplate::from_override)
        .transpose()?;
    let llm = crate::runtime::llm(&model, device, precision, template)?;
    let mut requests = Vec::new();
    let mut planted_copy = Vec::new();
    for (k, c) in planted.iter().enumerate() {
        let rec = &real[k % real.len()];
        let text = View::new(rec).text("auto").unwrap_or_default();
        // At the start, so a copy cut short by max_new_tokens still reaches it.
        let example = format!("{} {text}", c.sentence);
        // The real text stays where it came from: this file names the record, not its words.
        planted_copy
            .push(json!({"real_id": rec["id"], "canary": c.secret, "sentence": c.sentence}));
        let mut vars = BTreeMap::new();
        vars.insert("example".to_string(), example);
        let prompt = crate::spec::render(&spec.privacy.canary_template, &vars);
        let msgs = vec![crate::models::chat::Message::new("user", prompt)];
        let id = format!("canary-{k}");
        let seed = crate::engine::sampler::record_seed(spec.run.seed, &id);
        requests.push(Request::new(id, llm.prompt_ids(&msgs)?, seed));
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
        // The output may repeat the real record it was shown, so privacy.json names it and
        // its length; the text itself is in canary_outputs.jsonl, beside the planted copy.
        let shown_in = format!("canary-{k}");
        let chars = outputs.get(&shown_in).map(|t| t.chars().count());
        res.details.push(
            json!({"canary": c.secret, "shown_in": shown_in, "found": best,
                                "output_chars": chars, "output_file": "canary_outputs.jsonl"}),
        );
    }
    for c in control {
        if outputs.values().any(|t| canary::find(t, c).is_some()) {
            res.control_found += 1;
        }
    }
    write_jsonl(&RunDir::new(dir).canary_planted(), &planted_copy)?;
    let outs: Vec<Value> = outputs
        .iter()
        .map(|(id, text)| json!({"id": id, "output": text}))
        .collect();
    write_jsonl(&RunDir::new(dir).canary_outputs(), &outs)?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> AuditOptions {
        AuditOptions {
            runtime: Runtime::cpu(),
            fetch: FetchPolicy::Offline,
            progress: false,
            canaries: 0,
        }
    }

    /// Every record shape, PII in every field that reaches the dataset (the system turn,
    /// non-chat prompts, alpaca fields, meta): all redacted, all located, none repeated.
    #[test]
    fn redaction_reaches_every_field_of_every_shape_and_findings_only_locate() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.jsonl");
        std::fs::write(&real, "{\"id\":\"r1\",\"prompt\":\"Describe the visit.\",\"response\":\"The patient arrived on Tuesday complaining of a sharp pain in the left knee after a fall.\"}\n").unwrap();
        let syn = dir.path().join("kept.jsonl");
        let recs = [
            json!({"id":"chat","messages":[{"role":"system","content":"Escalate to ops@corp.example.com."},{"role":"user","content":"My SSN is 123-45-6789"},{"role":"assistant","content":"Noted."}],"meta":{"vars":{"who":"call 5552345678"}}}),
            json!({"id":"pr","prompt":"Card 4111 1111 1111 1111?","response":"Mail jane.doe@example.com"}),
            json!({"id":"alp","instruction":"Host 10.1.2.3","input":"IBAN GB82 WEST 1234 5698 7654 32","output":"See fe80::1ff:fe23:4567:890a"}),
            json!({"id":"copy","prompt":"q","response":"Notes: the patient arrived on Tuesday complaining of a sharp pain in the left knee."}),
        ];
        std::fs::write(
            &syn,
            recs.iter()
                .map(|r| r.to_string() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        let cfg = PrivacySection {
            embedder: "none".into(),
            copy: Policy::Flag,
            ..Default::default()
        };
        let (out, pj) = (
            dir.path().join("audited.jsonl"),
            dir.path().join("privacy.json"),
        );
        let s = audit(&syn, &out, &pj, &[real], &cfg, 1, &opts()).unwrap();
        assert_eq!((s.passed, s.redacted, s.dropped), (4, 3, 0));
        let audited = std::fs::read_to_string(&out).unwrap();
        let report = std::fs::read_to_string(&pj).unwrap();
        for secret in [
            "ops@corp",
            "123-45-6789",
            "6789",
            "5552345678",
            "4111 1111",
            "jane.doe",
            "10.1.2.3",
            "GB82",
            "fe80",
            "the patient arrived",
            "left knee",
        ] {
            assert!(!report.contains(secret), "privacy.json repeats {secret:?}");
            if secret != "the patient arrived" && secret != "left knee" {
                assert!(!audited.contains(secret), "audited.jsonl keeps {secret:?}");
            }
        }
        for placeholder in [
            "[EMAIL]",
            "[US_SSN]",
            "[PHONE]",
            "[CREDIT_CARD]",
            "[IPV4]",
            "[IBAN]",
            "[IPV6]",
        ] {
            assert!(
                audited.contains(placeholder),
                "{placeholder} missing: {audited}"
            );
        }
        let p: Value = serde_json::from_str(&report).unwrap();
        let findings = p["findings"].as_array().unwrap();
        let find = |id: &str, field: &str| {
            findings
                .iter()
                .find(|f| f["id"] == id && f["field"] == field)
                .unwrap_or_else(|| panic!("no finding for {id} {field}: {findings:?}"))
        };
        // The span points at the PII in the input text, by characters.
        let f = find("chat", "/messages/0/content");
        assert_eq!(
            (f["kind"].as_str(), f["start"].as_u64(), f["end"].as_u64()),
            (Some("email"), Some(12), Some(32))
        );
        find("chat", "/messages/1/content");
        find("chat", "/meta/vars/who");
        find("pr", "/prompt");
        find("alp", "/instruction");
        find("alp", "/input");
        find("alp", "/output");
        let c = find("copy", "/response");
        assert_eq!(c["check"], "copy");
        let text = recs[3]["response"].as_str().unwrap();
        let run: String = text
            .chars()
            .skip(c["start"].as_u64().unwrap() as usize)
            .take((c["end"].as_u64().unwrap() - c["start"].as_u64().unwrap()) as usize)
            .collect();
        assert!(
            run.starts_with("the patient arrived") && run.ends_with("left knee"),
            "{run}"
        );
        assert!(findings
            .iter()
            .all(|f| f.get("masked").is_none() && f.get("excerpt").is_none()));
    }

    #[test]
    fn bad_input_lines_are_reported_without_their_text_and_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let syn = dir.path().join("kept.jsonl");
        std::fs::write(
            &syn,
            b"{\"id\":\"a\",\"prompt\":\"q\",\"response\":\"fine\"}\n{\"leak\": \"jane.doe@example.com\"\n\xff\n",
        )
        .unwrap();
        let cfg = PrivacySection {
            embedder: "none".into(),
            ..Default::default()
        };
        let (out, pj) = (
            dir.path().join("audited.jsonl"),
            dir.path().join("privacy.json"),
        );
        let s = audit(&syn, &out, &pj, &[], &cfg, 1, &opts()).unwrap();
        assert_eq!((s.records, s.passed, s.bad_input), (1, 1, 2));
        let report = std::fs::read_to_string(&pj).unwrap();
        assert!(!report.contains("jane.doe"), "{report}");
        let p: Value = serde_json::from_str(&report).unwrap();
        assert_eq!(p["bad_input"][0]["line"], 2);
        assert_eq!(p["bad_input"][1]["reason"], "bad_input:not_utf8");
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);
        let files = AuditFiles {
            input: &syn,
            audited: &out,
            privacy_json: &pj,
            strict: true,
        };
        let e = audit_files(&files, &[], &cfg, 1, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("kept.jsonl:2:"), "{e}");
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
            runtime: Runtime::cpu(),
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
