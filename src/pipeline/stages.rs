//! The six stages of `flywheel run`, each behind the [`Stage`] contract: what it reads,
//! what settings it uses, what it writes, and the call that does the work.

use super::{Ctx, Stage, StageReport};
use crate::dedup::stage::DedupOptions;
use crate::error::{Error, Result};
use crate::generate::stage::GenerateOptions;
use crate::privacy::AuditOptions;
use crate::report::ReportOptions;
use crate::store::manifest::StageStatus;
use crate::store::Manifest;
use crate::verify::stage::VerifyOptions;
use std::path::{Path, PathBuf};

/// The stages of `flywheel run`, in order.
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Generate),
        Box::new(Verify),
        Box::new(Dedup),
        Box::new(Audit),
        Box::new(Blend),
        Box::new(Report),
    ]
}

/// How the models run: part of every model stage's settings, since another device or
/// precision gives other numbers (scores, embeddings) and other text.
fn runtime_key(cx: &Ctx<'_>) -> Result<String> {
    Ok(cx.opts.runtime.to_string())
}

fn resolved(cx: &Ctx<'_>, files: &[PathBuf]) -> Vec<PathBuf> {
    files.iter().map(|p| cx.spec.resolve(p)).collect()
}

struct Generate;

impl Stage for Generate {
    fn name(&self) -> &'static str {
        "generate"
    }
    fn inputs(&self, _: &Ctx<'_>) -> Vec<PathBuf> {
        // Seed files are read into the spec: their values are in `settings`.
        Vec::new()
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        let s = cx.spec;
        Ok(format!(
            "{}{:?}{:?}{:?}{:?}",
            runtime_key(cx)?,
            s.teacher,
            s.seeds,
            s.tasks,
            s.run.seed
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        // Records that failed a step are an output too: the report counts them.
        let mut v = vec![cx.dir.generated()];
        if cx.spec.tasks.iter().any(|t| t.has_steps()) {
            v.push(cx.dir.steps_rejected());
        }
        v
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let o = cx.opts;
        let s = crate::generate::stage::run(
            cx.spec,
            &GenerateOptions {
                runtime: o.runtime.clone(),
                batch_size: None,
                limit: None,
                out: None,
                force: o.force,
                progress: o.progress,
                fetch: o.fetch,
            },
        )?;
        Ok(StageReport::done(s.run_line()))
    }
}

struct Verify;

impl Stage for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        let mut v = vec![cx.dir.generated()];
        v.extend(
            crate::verify::stage::verifier_files(&cx.spec.verifiers)
                .into_iter()
                .map(|f| cx.spec.resolve(Path::new(f))),
        );
        v
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        let s = cx.spec;
        Ok(format!(
            "{}{:?}{:?}{:?}",
            runtime_key(cx)?,
            s.judges,
            s.verifiers,
            s.verify
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.verified()]
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let (spec, o) = (cx.spec, cx.opts);
        if spec.judges.is_empty() && spec.verifiers.is_empty() {
            let g = cx.dir.generated();
            let bytes = std::fs::read(&g).map_err(|e| Error::io("cannot read", &g, e))?;
            crate::store::write_atomic(&cx.dir.verified(), &bytes)?;
            let mut m = Manifest::load(cx.dir.path())?.unwrap_or_default();
            m.stages.insert(
                "verify".into(),
                StageStatus {
                    status: "done".into(),
                    ..Default::default()
                },
            );
            m.save(cx.dir.path())?;
            return Ok(StageReport::done(
                "no judges or verifiers in the spec: records passed through unscored",
            ));
        }
        let s = crate::verify::stage::run_spec(
            spec,
            None,
            None,
            &VerifyOptions {
                runtime: o.runtime.clone(),
                batch_size: None,
                limit: None,
                progress: o.progress,
                fetch: o.fetch,
            },
        )?;
        Ok(StageReport::done(s.run_line()))
    }
}

struct Dedup;

impl Stage for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        let mut v = vec![cx.dir.verified()];
        v.extend(resolved(cx, &cx.spec.dedup.against));
        v
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        Ok(format!(
            "{}{:?}{:?}",
            runtime_key(cx)?,
            cx.spec.filter,
            cx.spec.dedup
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.kept(), cx.dir.rejected()]
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let spec = cx.spec;
        let mut o = DedupOptions::from_spec(
            &spec.filter,
            &spec.dedup,
            spec.path.parent().unwrap_or(Path::new(".")),
        );
        o.device = cx.opts.runtime.device.clone();
        o.fetch = cx.opts.fetch;
        o.progress = cx.opts.progress;
        let s = crate::dedup::stage::run_spec(spec, None, &o)?;
        Ok(StageReport::done(s.run_line()))
    }
}

/// A shard's share of dedup (`run --shard`): the dedup index of its records (exact keys,
/// MinHash signatures, embeddings), so the merge's global dedup starts from them. Not a
/// stage of a single run: there, dedup makes its index itself.
pub struct Index;

impl Index {
    pub(super) fn options(cx: &Ctx<'_>) -> DedupOptions {
        let spec = cx.spec;
        let mut o = DedupOptions::from_spec(
            &spec.filter,
            &spec.dedup,
            spec.path.parent().unwrap_or(Path::new(".")),
        );
        o.device = cx.opts.runtime.device.clone();
        o.fetch = cx.opts.fetch;
        o.progress = cx.opts.progress;
        o
    }
}

impl Stage for Index {
    fn name(&self) -> &'static str {
        "index"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.verified()]
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        let o = Index::options(cx);
        Ok(format!(
            "{:?}{:?}",
            crate::dedup::stage::sig_settings(&o),
            crate::dedup::stage::emb_settings(&o)
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        use crate::dedup::index::Part;
        let d = cx.dir.index();
        let mut v = vec![Part::Signatures.meta(&d), Part::Signatures.bin(&d)];
        if Index::options(cx).needs_embedder() {
            v.extend([Part::Embeddings.meta(&d), Part::Embeddings.bin(&d)]);
        }
        v
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let o = Index::options(cx);
        let secs =
            crate::dedup::stage::build_index(&cx.dir.verified(), &cx.dir.index(), &o, false)?;
        Ok(StageReport::done(format!(
            "signatures{} of the shard's records in {secs:.1}s (the merge's dedup starts from them)",
            if o.needs_embedder() { " and embeddings" } else { "" }
        )))
    }
}

struct Audit;

impl Stage for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        let mut v = vec![cx.dir.kept()];
        v.extend(cx.spec.sensitive_files());
        v
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        let (spec, o) = (cx.spec, cx.opts);
        // Canaries run the teacher: its settings are inputs too when they are on.
        Ok(format!(
            "{}{:?}{} canaries={} {:?}",
            runtime_key(cx)?,
            spec.privacy,
            spec.run.seed,
            o.canaries,
            if o.canaries > 0 {
                Some(&spec.teacher)
            } else {
                None
            }
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.audited(), cx.dir.privacy()]
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let o = cx.opts;
        let s = crate::privacy::run_spec(
            cx.spec,
            None,
            &AuditOptions {
                runtime: o.runtime.clone(),
                fetch: o.fetch,
                progress: o.progress,
                canaries: o.canaries,
            },
        )?;
        Ok(StageReport::done(s.run_line()))
    }
}

struct Blend;

impl Stage for Blend {
    fn name(&self) -> &'static str {
        "blend"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        // People's decisions are an input: a new one blends again.
        let mut v = vec![cx.dir.audited(), cx.dir.review()];
        v.extend(resolved(cx, &cx.spec.blend.real));
        v
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        Ok(format!(
            "{:?}{}{:?}",
            cx.spec.blend, cx.spec.run.seed, cx.spec.review
        ))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        let mut v = vec![cx.dir.dataset(), cx.dir.dataset_parquet(), cx.dir.card()];
        if cx.dir.review().exists() || cx.spec.review.required {
            v.push(cx.dir.review_rejected());
        }
        v
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let s = crate::blend::run_spec(cx.spec, None)?;
        Ok(StageReport {
            line: s.run_line(),
            shortfall: crate::blend::shortfall(&s, cx.spec),
        })
    }
}

struct Report;

impl Stage for Report {
    fn name(&self) -> &'static str {
        "report"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        let d = cx.dir;
        vec![
            d.generated(),
            d.verified(),
            d.kept(),
            d.rejected(),
            d.audited(),
            d.dataset(),
            d.privacy(),
            // The per-step funnel reads the step journal and the step rejections.
            d.steps(),
            d.steps_rejected(),
            // The review section: people's decisions.
            d.review(),
        ]
    }
    fn settings(&self, cx: &Ctx<'_>) -> Result<String> {
        Ok(format!("report {}", runtime_key(cx)?))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.report_json(), cx.dir.report_html()]
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        let s = crate::report::write(
            cx.dir.path(),
            &ReportOptions {
                embedder: None,
                device: cx.opts.runtime.device.clone(),
                fetch: cx.opts.fetch,
                progress: cx.opts.progress,
            },
        )?;
        Ok(StageReport::done(s.run_line()))
    }
}
