//! `flywheel run`: every stage in order over one run directory: generate → verify → dedup
//! → audit → blend → report.
//!
//! A stage whose inputs (the files it reads, the spec sections it uses, the tool version)
//! are unchanged since it last finished is skipped, and says so; one whose inputs changed
//! runs again. Generate and verify also resume record by record, so a killed run loses at
//! most the batch in flight. The audit runs before the blend so that dropping a record
//! cannot silently shift the real/synthetic ratio.

use crate::dedup::stage::DedupOptions;
use crate::error::{Error, Result};
use crate::generate::stage::GenerateOptions;
use crate::models::checksum::sha256_bytes;
use crate::models::FetchPolicy;
use crate::privacy::AuditOptions;
use crate::report::ReportOptions;
use crate::spec::Spec;
use crate::store::Manifest;
use crate::verify::stage::VerifyOptions;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// How to run the pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub device: String,
    /// Matmul precision of the models (see [`crate::engine::Precision`]).
    pub dtype: String,
    pub fetch: FetchPolicy,
    pub progress: bool,
    /// Move records made with other settings aside instead of refusing (as `generate --force`).
    pub force: bool,
    /// Run the canary test with this many canaries during the audit.
    pub canaries: usize,
}

/// The stages, in order.
pub const STAGES: [&str; 6] = ["generate", "verify", "dedup", "audit", "blend", "report"];

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
        match std::fs::read(f) {
            Ok(b) => h.update(sha256_bytes(&b).as_bytes()),
            Err(_) => h.update(b"<absent>"),
        }
    }
    format!("{:x}", h.finalize())
}

/// The fingerprint of a stage's inputs for this spec.
fn stage_fingerprint(stage: &str, spec: &Spec, dir: &Path) -> String {
    let f = |n: &str| dir.join(n);
    match stage {
        "generate" => fingerprint(
            &[],
            &format!(
                "{:?}{:?}{:?}{:?}",
                spec.teacher, spec.seeds, spec.tasks, spec.run.seed
            ),
        ),
        "verify" => fingerprint(
            &[f("generated.jsonl")],
            &format!("{:?}{:?}{:?}", spec.judges, spec.verifiers, spec.verify),
        ),
        "dedup" => fingerprint(
            &[
                &[f("verified.jsonl")][..],
                &spec
                    .dedup
                    .against
                    .iter()
                    .map(|p| spec.resolve(p))
                    .collect::<Vec<_>>(),
            ]
            .concat(),
            &format!("{:?}{:?}", spec.filter, spec.dedup),
        ),
        "audit" => fingerprint(
            &[&[f("kept.jsonl")][..], &spec.sensitive_files()].concat(),
            &format!("{:?}{}", spec.privacy, spec.run.seed),
        ),
        "blend" => fingerprint(
            &[
                &[f("audited.jsonl")][..],
                &spec
                    .blend
                    .real
                    .iter()
                    .map(|p| spec.resolve(p))
                    .collect::<Vec<_>>(),
            ]
            .concat(),
            &format!("{:?}{}", spec.blend, spec.run.seed),
        ),
        _ => fingerprint(
            &[
                f("verified.jsonl"),
                f("rejected.jsonl"),
                f("dataset.jsonl"),
                f("privacy.json"),
            ],
            "report",
        ),
    }
}

/// Whether `stage` finished with these same inputs (and its output is still there).
fn up_to_date(dir: &Path, stage: &str, fp: &str) -> Result<bool> {
    let out = match stage {
        "generate" => "generated.jsonl",
        "verify" => "verified.jsonl",
        "dedup" => "kept.jsonl",
        "audit" => "privacy.json",
        "blend" => "dataset.jsonl",
        _ => "report.html",
    };
    let Some(m) = Manifest::load(dir)? else {
        return Ok(false);
    };
    Ok(dir.join(out).exists()
        && m.stages.get(stage).is_some_and(|s| {
            s.status == "done"
                && s.extra.get("input_fingerprint").and_then(|v| v.as_str()) == Some(fp)
        }))
}

fn mark(dir: &Path, stage: &str, fp: &str) -> Result<()> {
    let mut m = Manifest::load(dir)?.unwrap_or_default();
    if let Some(s) = m.stages.get_mut(stage) {
        s.extra.insert("input_fingerprint".into(), fp.into());
    }
    m.save(dir)
}

/// Runs every stage; `on_stage` sees each outcome as it happens. A blend shortfall still
/// writes the dataset and the report, then returns [`Error::Shortfall`].
pub fn run(
    spec: &Spec,
    opts: &RunOptions,
    mut on_stage: impl FnMut(&StageOutcome),
) -> Result<Vec<StageOutcome>> {
    let dir = spec.run_dir();
    crate::store::create_run_dir(&dir)?;
    if let Some(m) = Manifest::load(&dir)? {
        // By file name: the same spec reached through another relative path is no conflict.
        let same_file =
            m.spec_path.is_empty() || Path::new(&m.spec_path).file_name() == spec.path.file_name();
        if !same_file && !opts.force && m.generation_fingerprint.is_some() {
            return Err(Error::RunConflict(format!(
                "{} was made by another spec ({}); this one is {}. Use another [run].name, or --force to reuse the directory",
                dir.display(),
                m.spec_path,
                spec.path.display()
            )));
        }
    }
    let mut outcomes = Vec::new();
    let mut shortfall = None;
    for stage in STAGES {
        if crate::engine::INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let fp = stage_fingerprint(stage, spec, &dir);
        if up_to_date(&dir, stage, &fp)? {
            let o = StageOutcome {
                stage,
                skipped: true,
                line: "up to date (inputs unchanged), skipped".into(),
            };
            on_stage(&o);
            outcomes.push(o);
            continue;
        }
        let line = match stage {
            "generate" => {
                let s = crate::generate::stage::run(
                    spec,
                    &GenerateOptions {
                        device: opts.device.clone(),
                        dtype: opts.dtype.clone(),
                        batch_size: None,
                        limit: None,
                        out: None,
                        force: opts.force,
                        progress: opts.progress,
                        fetch: opts.fetch,
                    },
                )?;
                format!(
                    "{} planned, {} already done, {} written ({} tokens) in {:.1}s",
                    s.planned, s.already_done, s.written, s.generated_tokens, s.wall_seconds
                )
            }
            "verify" => {
                if spec.judges.is_empty() && spec.verifiers.is_empty() {
                    std::fs::copy(dir.join("generated.jsonl"), dir.join("verified.jsonl"))
                        .map_err(|e| Error::io("cannot copy", dir.join("generated.jsonl"), e))?;
                    let mut m = Manifest::load(&dir)?.unwrap_or_default();
                    m.stages.insert(
                        "verify".into(),
                        crate::store::manifest::StageStatus {
                            status: "done".into(),
                            ..Default::default()
                        },
                    );
                    m.save(&dir)?;
                    "no judges or verifiers in the spec: records passed through unscored".into()
                } else {
                    let s = crate::verify::stage::run_spec(
                        spec,
                        None,
                        None,
                        &VerifyOptions {
                            device: opts.device.clone(),
                            dtype: opts.dtype.clone(),
                            batch_size: None,
                            limit: None,
                            progress: opts.progress,
                            fetch: opts.fetch,
                        },
                    )?;
                    format!(
                        "{} records, {} already done, {} scored in {:.1}s",
                        s.records, s.already_done, s.written, s.wall_seconds
                    )
                }
            }
            "dedup" => {
                let mut o = DedupOptions::from_spec(
                    &spec.filter,
                    &spec.dedup,
                    spec.path.parent().unwrap_or(Path::new(".")),
                );
                o.device = opts.device.clone();
                o.fetch = opts.fetch;
                o.progress = opts.progress;
                let s = crate::dedup::stage::run_spec(spec, None, &o)?;
                let by: Vec<String> = s
                    .by_method
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                format!(
                    "{} → {} kept ({}) in {:.1}s",
                    s.records,
                    s.kept,
                    if by.is_empty() {
                        "none rejected".into()
                    } else {
                        by.join(", ")
                    },
                    s.wall_seconds
                )
            }
            "audit" => {
                let s = crate::privacy::run_spec(
                    spec,
                    None,
                    &AuditOptions {
                        device: opts.device.clone(),
                        dtype: opts.dtype.clone(),
                        fetch: opts.fetch,
                        progress: opts.progress,
                        canaries: opts.canaries,
                    },
                )?;
                format!(
                    "{} records → {} passed ({} dropped, {} redacted, {} flagged) in {:.1}s",
                    s.records, s.passed, s.dropped, s.redacted, s.flagged, s.wall_seconds
                )
            }
            "blend" => {
                let s = crate::blend::run_spec(spec, None)?;
                let line = format!(
                    "{} synthetic + {} real = {} records → {}",
                    s.synthetic,
                    s.real,
                    s.total,
                    s.dataset.display()
                );
                shortfall = crate::blend::shortfall(&s, spec);
                line
            }
            _ => {
                let s = crate::report::write(
                    &dir,
                    &ReportOptions {
                        embedder: None,
                        device: opts.device.clone(),

                        fetch: opts.fetch,
                        progress: opts.progress,
                    },
                )?;
                let mut line = format!("{}", s.html.display());
                for w in &s.warnings {
                    line.push_str(&format!("\n  warning: {w}"));
                }
                line
            }
        };
        // A shortfall is a finished stage that fell short: not up to date, so it reruns.
        if !(stage == "blend" && shortfall.is_some()) {
            // Fingerprint taken before the stage ran: its inputs are what it saw.
            mark(&dir, stage, &fp)?;
        }
        let o = StageOutcome {
            stage,
            skipped: false,
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
