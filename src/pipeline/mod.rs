//! `flywheel run`: every stage in order over one run directory: generate → verify → dedup
//! → audit → blend → report.
//!
//! Every stage obeys one contract ([`Stage`]): it names the files it reads, the settings it
//! uses and the files it writes. One loop ([`run_stages`]) decides freshness for all of
//! them, so no stage can get it wrong on its own: a stage is skipped only when its
//! fingerprint (the content of its inputs, its settings, the device and precision, the
//! tool version) is the one recorded when it last finished *and* every output it wrote is
//! still there with the sha256 recorded then. Generate and verify also resume record by
//! record, so a killed run loses at most the batch in flight. The audit runs before the
//! blend so that dropping a record cannot silently shift the real/synthetic ratio.

pub mod merge;
mod stages;

use crate::error::{Error, Result};
use crate::models::FetchPolicy;
use crate::spec::Spec;
use crate::store::manifest::StageStatus;
use crate::store::{Manifest, RunDir};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub use stages::all as stages;

/// How to run the pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Device and matmul precision of the models.
    pub runtime: crate::engine::Runtime,
    pub fetch: FetchPolicy,
    pub progress: bool,
    /// Move records made with other settings aside instead of refusing (as `generate --force`).
    pub force: bool,
    /// Run the canary test with this many canaries during the audit.
    pub canaries: usize,
}

/// The stages, in order.
pub const STAGES: [&str; 6] = ["generate", "verify", "dedup", "audit", "blend", "report"];

/// What a stage sees: the spec, its run directory, and how models run.
pub struct Ctx<'a> {
    pub spec: &'a Spec,
    pub dir: &'a RunDir,
    pub opts: &'a RunOptions,
}

/// What a stage that ran reports.
pub struct StageReport {
    /// The summary line printed after `[i/n] name:`.
    pub line: String,
    /// Set when the stage wrote its outputs but fell short of what the spec asked (a blend
    /// shortfall): the run goes on, the stage is not marked up to date, and the run ends
    /// with this error.
    pub shortfall: Option<Error>,
}

impl StageReport {
    pub fn done(line: impl Into<String>) -> StageReport {
        StageReport {
            line: line.into(),
            shortfall: None,
        }
    }
}

/// One stage of the factory. Adding a stage is one `impl Stage` and a place in
/// [`stages`]; freshness, skipping, marking and resume come from [`run_stages`].
pub trait Stage {
    /// The stage's name in the manifest and in printed lines.
    fn name(&self) -> &'static str;
    /// Files it reads; their content is part of its fingerprint (a missing file counts as
    /// absent, not as an error: the stage itself says what is missing).
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf>;
    /// The settings it uses (spec sections, runtime), as text for the fingerprint.
    fn settings(&self, cx: &Ctx<'_>) -> Result<String>;
    /// Every file it writes: it is up to date only while all are there, unchanged.
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf>;
    /// Does the work.
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport>;
}

/// What one stage did, as printed.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub stage: &'static str,
    pub skipped: bool,
    pub line: String,
}

/// Hash of the files a stage reads, by content and not by path (missing files hash as
/// absent), and the settings it uses.
fn fingerprint(files: &[PathBuf], settings: &str) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(settings.as_bytes());
    for f in files {
        // Streamed: a run's records can be larger than memory.
        match crate::models::checksum::sha256_stream(f) {
            Ok(s) => h.update(s.as_bytes()),
            Err(_) => h.update(b"<absent>"),
        }
    }
    format!("{:x}", h.finalize())
}

/// sha256 of each output, by file name; `None` when one is missing.
fn output_hashes(outputs: &[PathBuf]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut m = serde_json::Map::new();
    for p in outputs {
        let sha = crate::models::checksum::sha256_stream(p).ok()?;
        let name = p.file_name()?.to_string_lossy().into_owned();
        m.insert(name, sha.into());
    }
    Some(m)
}

/// Whether `stage` finished with these same inputs, and every output it wrote is still
/// there, unchanged (a deleted or edited output makes it run again).
fn up_to_date(dir: &RunDir, stage: &str, outputs: &[PathBuf], fp: &str) -> Result<bool> {
    let Some(m) = Manifest::load(dir.path())? else {
        return Ok(false);
    };
    let Some(s) = m.stages.get(stage) else {
        return Ok(false);
    };
    if s.status != "done" || s.extra.get("input_fingerprint").and_then(|v| v.as_str()) != Some(fp) {
        return Ok(false);
    }
    let Some(recorded) = s.extra.get("outputs").and_then(|v| v.as_object()) else {
        return Ok(false);
    };
    Ok(output_hashes(outputs).is_some_and(|now| &now == recorded))
}

/// Records that `stage` finished from inputs `fp`, and the outputs it left.
fn mark(dir: &RunDir, stage: &str, outputs: &[PathBuf], fp: &str) -> Result<()> {
    let mut m = Manifest::load(dir.path())?.unwrap_or_default();
    let hashes = output_hashes(outputs);
    let s = m
        .stages
        .entry(stage.to_string())
        .or_insert_with(|| StageStatus {
            status: "done".into(),
            ..Default::default()
        });
    s.extra.insert("input_fingerprint".into(), fp.into());
    match hashes {
        Some(o) => s.extra.insert("outputs".into(), o.into()),
        None => s.extra.remove("outputs"),
    };
    m.save(dir.path())
}

/// The one loop: for each stage, fingerprint → skip if up to date → run → mark. A stage's
/// fingerprint is taken before it runs: its inputs are what it saw. `on_stage` sees each
/// outcome as it happens; a shortfall is returned after the last stage.
pub fn run_stages(
    stages: &[&dyn Stage],
    cx: &Ctx<'_>,
    mut on_stage: impl FnMut(&StageOutcome),
) -> Result<Vec<StageOutcome>> {
    let mut outcomes = Vec::new();
    let mut shortfall = None;
    for stage in stages {
        if crate::engine::INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let outputs = stage.outputs(cx);
        let fp = fingerprint(&stage.inputs(cx), &stage.settings(cx)?);
        let (skipped, line) = if up_to_date(cx.dir, stage.name(), &outputs, &fp)? {
            (true, "up to date (inputs unchanged), skipped".to_string())
        } else {
            let r = stage.run(cx)?;
            // A stage that fell short is finished but not up to date: it runs again.
            match r.shortfall {
                Some(e) => shortfall = Some(e),
                None => mark(cx.dir, stage.name(), &outputs, &fp)?,
            }
            (false, r.line)
        };
        let o = StageOutcome {
            stage: stage.name(),
            skipped,
            line,
        };
        on_stage(&o);
        outcomes.push(o);
    }
    match shortfall {
        Some(e) => Err(e),
        None => Ok(outcomes),
    }
}

/// Runs every stage of the factory for `spec`. A blend shortfall still writes the dataset
/// and the report, then returns [`Error::Shortfall`].
pub fn run(
    spec: &Spec,
    opts: &RunOptions,
    on_stage: impl FnMut(&StageOutcome),
) -> Result<Vec<StageOutcome>> {
    let rd = RunDir::new(spec.run_dir());
    // One writer per run directory, for the whole run (stages take it again, re-entrantly).
    let _lock = crate::store::create_run_dir(rd.path())?;
    if let Some(m) = Manifest::load(rd.path())? {
        // By file name: the same spec reached through another relative path is no conflict.
        let same_file =
            m.spec_path.is_empty() || Path::new(&m.spec_path).file_name() == spec.path.file_name();
        if !same_file && !opts.force && m.generation_fingerprint.is_some() {
            return Err(Error::RunConflict(format!(
                "{} was made by another spec ({}); this one is {}. Use another [run].name, or --force to reuse the directory",
                rd.path().display(),
                m.spec_path,
                spec.path.display()
            )));
        }
    }
    let cx = Ctx {
        spec,
        dir: &rd,
        opts,
    };
    let all = stages();
    let refs: Vec<&dyn Stage> = all.iter().map(|s| s.as_ref()).collect();
    run_stages(&refs, &cx, on_stage)
}

#[cfg(test)]
mod tests;
