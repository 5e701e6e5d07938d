//! The report's one streamed pass over a run directory. Each stage's file is read record
//! by record and folded into what the report shows: counts, per-task tallies, judge scores
//! by line, word lengths and a bounded sample of texts. No file is held whole, so a merged
//! run of millions of records reports in memory that grows by a few bytes per record
//! (scores and lengths), not by its text.

use super::steps::{ProgramTally, StepTally};
use crate::error::{Error, Result};
use crate::record::read::for_each_record;
use crate::record::View;
use crate::store::{Manifest, RunDir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The texts measured for distinct-n, self-BLEU and embedding spread, per side: the first
/// this many of the dataset (which blend shuffled, so they are a seeded random sample).
/// Distinct-n falls as a set grows and nearest-neighbour search is quadratic, so a bounded
/// sample keeps both comparable and affordable at any run size.
pub(super) const TEXT_SAMPLE: usize = 10_000;

/// One side of the dataset (synthetic or real): every record's response length in words,
/// and the first [`TEXT_SAMPLE`] responses.
#[derive(Default)]
pub(super) struct Texts {
    pub n: usize,
    pub words: Vec<u32>,
    pub sample: Vec<String>,
}

impl Texts {
    fn add(&mut self, r: &Value) {
        let text = View::new(r).last_assistant();
        self.n += 1;
        self.words
            .push(u32::try_from(super::words(&text)).unwrap_or(u32::MAX));
        if self.sample.len() < TEXT_SAMPLE {
            self.sample.push(text);
        }
    }
}

/// What the report needs from a run directory (`None`: that stage has not run).
pub(super) struct Scan {
    pub manifest: Manifest,
    pub generated: Option<usize>,
    pub verified: Option<usize>,
    pub kept: Option<usize>,
    pub audited: Option<usize>,
    /// `(synthetic, real)` records in `dataset.jsonl`.
    pub dataset: Option<(usize, usize)>,
    pub privacy: Option<Value>,
    /// Rejections grouped for the loss table: `(stage, group)` → count.
    pub rejected: BTreeMap<(String, String), usize>,
    /// Per task: rejections for `truncated`.
    pub rejected_truncated: BTreeMap<String, usize>,
    /// Per task: generated records, and those that hit `max_new_tokens`.
    pub generated_by_task: BTreeMap<String, (usize, usize)>,
    /// Per (task, constraint): records generated under it, and those valid.
    pub structured: BTreeMap<(String, String), (usize, usize)>,
    /// Per judge: its score of each `verified.jsonl` line (NaN where it gave none).
    pub judges: BTreeMap<String, Vec<f64>>,
    /// Per task, per prompt: samples with a verifier verdict, and those passing all.
    pub pass: BTreeMap<String, BTreeMap<String, (usize, usize)>>,
    /// The dataset's synthetic side (or `kept.jsonl` before blend) and its real side.
    pub synthetic: Texts,
    pub real: Texts,
    /// Turns and difficulty, on the furthest synthetic set the run reached (its name).
    pub programs: Option<(&'static str, ProgramTally)>,
    pub steps: StepTally,
}

impl Scan {
    pub fn read(dir: &Path) -> Result<Scan> {
        let manifest = Manifest::load(dir)?.ok_or_else(|| {
            Error::Spec(format!(
                "{} has no manifest.json: is it a flywheel run directory? (runs/<name>)",
                dir.display()
            ))
        })?;
        let rd = RunDir::new(dir);
        let exists = |p: PathBuf| p.exists().then_some(p);
        let latest = [
            ("dataset", rd.dataset()),
            ("audited", rd.audited()),
            ("kept", rd.kept()),
            ("verified", rd.verified()),
            ("generated", rd.generated()),
        ]
        .into_iter()
        .find(|(_, p)| p.exists())
        .map(|(name, _)| name);
        let steps = StepTally::new(&manifest);
        let mut s = Scan {
            manifest,
            generated: None,
            verified: None,
            kept: None,
            audited: None,
            dataset: None,
            privacy: match std::fs::read(rd.privacy()) {
                Ok(b) => serde_json::from_slice(&b).ok(),
                Err(_) => None,
            },
            rejected: BTreeMap::new(),
            rejected_truncated: BTreeMap::new(),
            generated_by_task: BTreeMap::new(),
            structured: BTreeMap::new(),
            judges: BTreeMap::new(),
            pass: BTreeMap::new(),
            synthetic: Texts::default(),
            real: Texts::default(),
            programs: latest.map(|l| (l, ProgramTally::default())),
            steps,
        };
        let mut programs = s.programs.take();
        let mut tally = |set: &str, r: &Value| {
            if let Some((name, t)) = programs.as_mut() {
                if *name == set {
                    t.add(r);
                }
            }
        };
        if let Some(p) = exists(rd.generated()) {
            s.generated = Some(fold(&p, |r| {
                s.generated_record(&r);
                tally("generated", &r);
            })?);
        }
        if let Some(p) = exists(rd.verified()) {
            let mut line = 0;
            s.verified = Some(fold(&p, |r| {
                s.verified_record(line, &r);
                tally("verified", &r);
                line += 1;
            })?);
            for v in s.judges.values_mut() {
                v.resize(line, f64::NAN);
            }
        }
        let blended = rd.dataset().exists();
        if let Some(p) = exists(rd.kept()) {
            s.kept = Some(fold(&p, |r| {
                if !blended {
                    s.synthetic.add(&r);
                }
                tally("kept", &r);
            })?);
        }
        if let Some(p) = exists(rd.rejected()) {
            fold(&p, |r| s.rejected_record(&r))?;
        }
        if let Some(p) = exists(rd.audited()) {
            s.audited = Some(fold(&p, |r| tally("audited", &r))?);
        }
        if let Some(p) = exists(rd.dataset()) {
            fold(&p, |r| {
                if r["source"] == "real" {
                    s.real.add(&r);
                } else {
                    s.synthetic.add(&r);
                    tally("dataset", &r);
                }
            })?;
            s.dataset = Some((s.synthetic.n, s.real.n));
        }
        s.programs = programs;
        Ok(s)
    }

    fn generated_record(&mut self, r: &Value) {
        let task = task(r);
        let e = self.generated_by_task.entry(task.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(r["provenance"]["finish_reason"] == "length");
        let o = &r["meta"]["output"];
        if let Some(kind) = o["constraint"].as_str() {
            let e = self.structured.entry((task, kind.to_string())).or_default();
            e.0 += 1;
            e.1 += usize::from(o["valid"] == true);
        }
        self.steps.add(r);
    }

    fn verified_record(&mut self, line: usize, r: &Value) {
        for (name, j) in r["scores"]["judge"].as_object().into_iter().flatten() {
            if let Some(score) = j["normalized"].as_f64().or(j["score"].as_f64()) {
                let v = self.judges.entry(name.clone()).or_default();
                v.resize(line, f64::NAN);
                v.push(score);
            }
        }
        let Some(vs) = r.pointer("/scores/verifiers").and_then(Value::as_object) else {
            return;
        };
        if vs.is_empty() {
            return;
        }
        let pass = vs.values().all(|v| v["pass"] == true);
        let prompt = crate::record::prompt_key(r)
            .unwrap_or_else(|| r["id"].as_str().unwrap_or("").to_string());
        let e = self
            .pass
            .entry(task(r))
            .or_default()
            .entry(prompt)
            .or_default();
        e.0 += 1;
        e.1 += usize::from(pass);
    }

    fn rejected_record(&mut self, r: &Value) {
        let d = &r["decision"];
        let stage = d["stage"].as_str().unwrap_or("dedup").to_string();
        let reason = d["reason"].as_str().unwrap_or("");
        if reason == "truncated" {
            *self.rejected_truncated.entry(task(r)).or_default() += 1;
        }
        let group = super::loss_group(&stage, reason);
        *self.rejected.entry((stage, group)).or_default() += 1;
    }
}

fn task(r: &Value) -> String {
    r["meta"]["task"].as_str().unwrap_or("").to_string()
}

/// Streams `path`'s records into `f`; returns how many there were.
fn fold(path: &Path, mut f: impl FnMut(Value)) -> Result<usize> {
    let mut n = 0;
    for_each_record(path, |r| {
        n += 1;
        f(r);
        Ok(())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::{build, ReportOptions};
    use super::TEXT_SAMPLE;
    use crate::models::FetchPolicy;
    use serde_json::{json, Value};
    use std::path::Path;

    fn write(path: &Path, rows: impl Iterator<Item = Value>) {
        let body: String = rows.map(|r| format!("{r}\n")).collect();
        std::fs::write(path, body).unwrap();
    }

    fn rec(i: usize, source: &str) -> Value {
        let words = "w ".repeat(1 + i % 5);
        json!({"id": format!("{source}{i}"), "source": source,
               "messages": [{"role": "user", "content": "q"},
                            {"role": "assistant", "content": format!("{words}{i}")}],
               "meta": {"task": "t", "turns": 1 + i % 3}})
    }

    /// A run larger than the text sample: counts, lengths and turns cover every record,
    /// the text metrics only the sample; two judges agree on the lines both scored.
    #[test]
    fn counts_cover_every_record_and_text_metrics_a_bounded_sample() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let n = TEXT_SAMPLE + 50;
        let m = json!({"flywheel": "0.1.0", "spec_path": "", "spec_sha256": "", "models": [],
                       "stages": {}});
        std::fs::write(d.join("manifest.json"), m.to_string()).unwrap();
        // Judge b scores every other line; agreement pairs only those.
        write(
            &d.join("verified.jsonl"),
            (0..100).map(|i| {
                let mut r = rec(i, "synthetic");
                let s = (i % 10) as f64 / 10.0;
                r["scores"] = json!({"judge": {"a": {"normalized": s}}});
                if i % 2 == 0 {
                    r["scores"]["judge"]["b"] = json!({"score": 1.0 - s});
                }
                r
            }),
        );
        write(&d.join("kept.jsonl"), (0..n).map(|i| rec(i, "synthetic")));
        let opts = ReportOptions {
            embedder: Some("none".into()),
            device: candle_core::Device::Cpu,
            fetch: FetchPolicy::Offline,
            progress: false,
        };
        // Before blend: the kept records are the synthetic side, sampled alone.
        let r = build(d, &opts).unwrap();
        assert_eq!(r["diversity"]["synthetic"]["n"], n);
        assert_eq!(r["diversity"]["text_metrics_sample"], TEXT_SAMPLE);
        assert_eq!(r["lengths"]["synthetic"]["n"], n);
        assert_eq!(r["turns"]["n"], n);
        assert_eq!(r["turns"]["set"], "kept");
        assert_eq!(r["judges"]["a"]["n"], 100);
        assert_eq!(r["judges"]["b"]["n"], 50);
        let ag = &r["judge_agreement"][0];
        assert_eq!(ag["n"], 50);
        assert!((ag["pearson"].as_f64().unwrap() + 1.0).abs() < 1e-9, "{ag}");
        // After blend: the dataset's two sides, the text metrics on equal samples.
        write(
            &d.join("dataset.jsonl"),
            (0..n)
                .map(|i| rec(i, "synthetic"))
                .chain((0..20).map(|i| rec(i, "real"))),
        );
        let r = build(d, &opts).unwrap();
        assert_eq!(r["dataset"]["total"], n + 20);
        assert_eq!(r["dataset"]["real"], 20);
        assert_eq!(r["diversity"]["synthetic"]["n"], n);
        assert_eq!(r["diversity"]["real"]["n"], 20);
        assert_eq!(r["diversity"]["text_metrics_sample"], 20);
        assert_eq!(r["lengths"]["synthetic"]["n"], n);
        assert_eq!(r["lengths"]["real"]["n"], 20);
        let hist: u64 = r["turns"]["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(hist as usize, n, "turns on the dataset's synthetic side");
        assert_eq!(r["turns"]["set"], "dataset");
    }

    /// A bad line in a stage's file stops the report, naming the file and line.
    #[test]
    fn a_bad_line_is_an_error_naming_its_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let m = json!({"flywheel": "0.1.0", "spec_path": "", "spec_sha256": "", "models": [],
                       "stages": {}});
        std::fs::write(d.join("manifest.json"), m.to_string()).unwrap();
        std::fs::write(d.join("kept.jsonl"), "{\"id\":\"a\"}\nnot json\n").unwrap();
        let opts = ReportOptions {
            embedder: Some("none".into()),
            device: candle_core::Device::Cpu,
            fetch: FetchPolicy::Offline,
            progress: false,
        };
        let e = build(d, &opts).unwrap_err().to_string();
        assert!(e.contains("kept.jsonl") && e.contains(":2"), "{e}");
    }
}
