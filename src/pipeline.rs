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
use crate::store::{Manifest, RunDir};
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

/// How the models run: part of every stage's inputs, since another device or precision
/// gives other numbers (scores, embeddings) and other text.
fn runtime_key(opts: &RunOptions) -> Result<String> {
    let dev = crate::engine::device::parse(&opts.device)?;
    let precision = crate::engine::Precision::resolve(&opts.dtype, &dev)?;
    Ok(format!(
        "device={} dtype={}",
        crate::engine::device::name(&dev),
        precision.name()
    ))
}

/// The fingerprint of a stage's inputs for this spec.
fn stage_fingerprint(stage: &str, spec: &Spec, dir: &RunDir, opts: &RunOptions) -> Result<String> {
    let rt = runtime_key(opts)?;
    Ok(match stage {
        "generate" => fingerprint(
            &[],
            &format!(
                "{rt}{:?}{:?}{:?}{:?}",
                spec.teacher, spec.seeds, spec.tasks, spec.run.seed
            ),
        ),
        "verify" => fingerprint(
            &[dir.generated()],
            &format!("{rt}{:?}{:?}{:?}", spec.judges, spec.verifiers, spec.verify),
        ),
        "dedup" => fingerprint(
            &[
                &[dir.verified()][..],
                &spec
                    .dedup
                    .against
                    .iter()
                    .map(|p| spec.resolve(p))
                    .collect::<Vec<_>>(),
            ]
            .concat(),
            &format!("{rt}{:?}{:?}", spec.filter, spec.dedup),
        ),
        "audit" => fingerprint(
            &[&[dir.kept()][..], &spec.sensitive_files()].concat(),
            // Canaries run the teacher: its settings are inputs too when they are on.
            &format!(
                "{rt}{:?}{} canaries={} {:?}",
                spec.privacy,
                spec.run.seed,
                opts.canaries,
                if opts.canaries > 0 {
                    Some(&spec.teacher)
                } else {
                    None
                }
            ),
        ),
        "blend" => fingerprint(
            &[
                &[dir.audited()][..],
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
                dir.generated(),
                dir.verified(),
                dir.kept(),
                dir.rejected(),
                dir.audited(),
                dir.dataset(),
                dir.privacy(),
            ],
            &format!("report {rt}"),
        ),
    })
}

/// Every file a stage writes: it is up to date only while all of them are there, as it
/// left them.
pub fn stage_outputs(stage: &str, dir: &RunDir) -> Vec<PathBuf> {
    match stage {
        "generate" => vec![dir.generated()],
        "verify" => vec![dir.verified()],
        "dedup" => vec![dir.kept(), dir.rejected()],
        "audit" => vec![dir.audited(), dir.privacy()],
        "blend" => vec![dir.dataset(), dir.dataset_parquet(), dir.card()],
        _ => vec![dir.report_json(), dir.report_html()],
    }
}

/// sha256 of each output, by file name; `None` when one is missing.
fn output_hashes(stage: &str, dir: &RunDir) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut m = serde_json::Map::new();
    for p in stage_outputs(stage, dir) {
        let bytes = std::fs::read(&p).ok()?;
        let name = p.file_name()?.to_string_lossy().into_owned();
        m.insert(name, sha256_bytes(&bytes).into());
    }
    Some(m)
}

/// Whether `stage` finished with these same inputs, and every output it wrote is still
/// there, unchanged (a deleted or edited output makes it run again).
fn up_to_date(dir: &RunDir, stage: &str, fp: &str) -> Result<bool> {
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
    Ok(output_hashes(stage, dir).is_some_and(|now| &now == recorded))
}

fn mark(dir: &RunDir, stage: &str, fp: &str) -> Result<()> {
    let mut m = Manifest::load(dir.path())?.unwrap_or_default();
    let outputs = output_hashes(stage, dir);
    if let Some(s) = m.stages.get_mut(stage) {
        s.extra.insert("input_fingerprint".into(), fp.into());
        match outputs {
            Some(o) => s.extra.insert("outputs".into(), o.into()),
            None => s.extra.remove("outputs"),
        };
    }
    m.save(dir.path())
}

/// Runs every stage; `on_stage` sees each outcome as it happens. A blend shortfall still
/// writes the dataset and the report, then returns [`Error::Shortfall`].
pub fn run(
    spec: &Spec,
    opts: &RunOptions,
    mut on_stage: impl FnMut(&StageOutcome),
) -> Result<Vec<StageOutcome>> {
    let rd = RunDir::new(spec.run_dir());
    let dir = rd.path().to_path_buf();
    // One writer per run directory, for the whole run (stages take it again, re-entrantly).
    let _lock = crate::store::create_run_dir(&dir)?;
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
        let fp = stage_fingerprint(stage, spec, &rd, opts)?;
        if up_to_date(&rd, stage, &fp)? {
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
                    let g = rd.generated();
                    let bytes = std::fs::read(&g).map_err(|e| Error::io("cannot read", &g, e))?;
                    crate::store::write_atomic(&rd.verified(), &bytes)?;
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
            mark(&rd, stage, &fp)?;
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
