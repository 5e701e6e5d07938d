//! The TOML job spec: what to generate, with which teacher, from which seeds.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error names the file, line and
//! field, because a spec is usually edited by hand and a typo must not silently change a
//! dataset. Semantic checks (template variables, model ids, seed files) run here, before
//! any model is loaded.
//!
//! The spec holds configuration types only and uses no stage: stages depend on it, never
//! the reverse (`tests/imports.rs` checks). Each section has its file and one `validate`
//! function; [`Spec::parse`] calls them in file order.

mod blend;
mod dedup;
mod judge;
mod locate;
mod output;
mod privacy;
mod review;
mod run;
mod seeds;
mod shard;
mod step;
mod task;
mod teacher;
pub mod tools;
mod verifier;

pub use blend::{BlendOrder, BlendSection};
pub use dedup::{
    is_threshold, DedupSection, FilterSection, PerPrompt, Shingle, Threshold, DEFAULT_EMBEDDER,
};
pub use judge::{load_rubric, Combine, JudgeSpec, Rubric, ScaleKind, Scope, VerifySection};
pub(crate) use locate::Locator;
pub use output::Output;
pub use privacy::{Policy, PrivacySection};
pub use review::{ReviewSection, DEFAULT_REASONS};
pub use run::RunSection;
pub use seeds::SeedValues;
pub use shard::{Shard, MAX_SHARDS};
pub use step::{
    Call, Conversation, Evolve, EvolveOp, FewShot, MessageMap, Sampler, SamplingOverride, Step,
    StepKind,
};
pub use task::{collect_vars, render, Task, MAX_PLAN_RECORDS, MAX_SAMPLE, MAX_SAMPLES_PER_PROMPT};
pub use teacher::{Sampling, TeacherSection, MAX_BATCH, MAX_NEW_TOKENS};
pub use verifier::{compile_regex, load_schema, ExecLimits, LengthUnit, VerifierSpec};

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed and validated spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where the spec was read from (for messages and relative seed files).
    pub path: PathBuf,
    /// The exact text, hashed into provenance.
    pub text: String,
    pub run: RunSection,
    /// The generating model; only `generate` needs it.
    pub teacher: Option<TeacherSection>,
    /// Seed lists by variable name, loaded and ready to expand.
    pub seeds: BTreeMap<String, SeedValues>,
    pub tasks: Vec<Task>,
    /// LLM judges (`[[judge]]`), in spec order.
    pub judges: Vec<JudgeSpec>,
    /// Programmatic verifiers (`[[verifier]]`), in spec order.
    pub verifiers: Vec<VerifierSpec>,
    /// `[verify]`: how judge scores combine.
    pub verify: VerifySection,
    /// `[filter]`: which verified records may go on to dedup.
    pub filter: FilterSection,
    /// `[dedup]`: duplicate removal and decontamination settings.
    pub dedup: DedupSection,
    /// `[privacy]`: the audit of synthetic records against sensitive real data.
    pub privacy: PrivacySection,
    /// `[blend]`: real data to mix in, and at what ratio.
    pub blend: BlendSection,
    /// `[review]`: reject reasons, and whether blend needs a person's acceptance.
    pub review: ReviewSection,
    /// Set by `--shard` (not in the file): this process makes only the plan's records this
    /// shard owns, in `runs/<name>/shards/<i>-of-<N>/` ([`Spec::for_shard`]).
    pub shard: Option<Shard>,
}

/// The spec as written, before the sections are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    run: RunSection,
    #[serde(default)]
    teacher: Option<teacher::RawTeacher>,
    #[serde(default)]
    seeds: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(rename = "task", default)]
    tasks: Vec<task::RawTask>,
    #[serde(rename = "judge", default)]
    judges: Vec<judge::RawJudge>,
    #[serde(rename = "verifier", default)]
    verifiers: Vec<Spanned<VerifierSpec>>,
    #[serde(default)]
    verify: VerifySection,
    #[serde(default)]
    filter: FilterSection,
    #[serde(default)]
    dedup: Option<Spanned<DedupSection>>,
    #[serde(default)]
    privacy: Option<Spanned<PrivacySection>>,
    #[serde(default)]
    blend: Option<Spanned<BlendSection>>,
    #[serde(default)]
    review: Option<Spanned<ReviewSection>>,
}

impl Spec {
    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Spec(format!(
                "cannot read spec {}: {e} (pass the path of a .toml spec; see configs/demo.toml)",
                path.display()
            ))
        })?;
        Spec::parse(path, text)
    }

    /// Parses and validates spec text; `path` is used for messages and relative files.
    /// Sections are checked in file order, so the first error reported is the first one
    /// a reader meets.
    pub fn parse(path: &Path, text: String) -> Result<Spec> {
        let loc = Locator { path, text: &text };
        let raw: RawSpec = toml::from_str(&text).map_err(|e| {
            let msg = e.message().trim_end().to_string();
            let (line, col) = e.span().map_or((0, 0), |s| loc.line_col(s.start));
            Error::Spec(format!("{}:{line}:{col}: {msg}", path.display()))
        })?;
        run::validate(&raw.run, &loc)?;
        let teacher = match &raw.teacher {
            Some(t) => Some(teacher::validate(t, &loc)?),
            None => None,
        };
        let seeds = seeds::validate(&raw.seeds, &loc)?;
        let tasks = task::validate(&raw.tasks, &seeds, teacher.is_some(), &loc)?;
        let judges = judge::validate(&raw.judges, &loc)?;
        let verifiers = verifier::validate(&raw.verifiers, &loc)?;
        let dedup = dedup::validate(raw.dedup, &loc)?;
        let privacy = privacy::validate(raw.privacy, &loc)?;
        let blend = blend::validate(raw.blend, &loc)?;
        let review = review::validate(raw.review, &loc)?;
        Ok(Spec {
            path: path.to_path_buf(),
            run: raw.run,
            teacher,
            seeds,
            tasks,
            judges,
            verifiers,
            verify: raw.verify,
            filter: raw.filter,
            dedup,
            privacy,
            blend,
            review,
            shard: None,
            text,
        })
    }

    /// A path from the spec, relative to the spec's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(p)
    }

    /// The sensitive real data the audit checks against (`[privacy].sensitive`, else the
    /// `[blend]` real files), resolved.
    pub fn sensitive_files(&self) -> Vec<PathBuf> {
        self.privacy
            .sensitive
            .as_ref()
            .unwrap_or(&self.blend.real)
            .iter()
            .map(|p| self.resolve(p))
            .collect()
    }

    /// This spec as shard `shard` runs it: the plan restricted to the shard's records, and
    /// the run directory `runs/<name>/shards/<i>-of-<N>/` (its own manifest, lock and
    /// resume). `flywheel merge` puts the shards back together in `runs/<name>/`.
    pub fn for_shard(&self, shard: Shard) -> Spec {
        let mut s = self.clone();
        s.run.out_dir = self.run_dir().join("shards");
        s.run.name = Spanned::new(0..0, shard.dir_name());
        s.shard = Some(shard);
        s
    }

    /// The run directory: `<out_dir>/<name>`.
    pub fn run_dir(&self) -> PathBuf {
        self.run.out_dir.join(self.run.name.get_ref())
    }

    /// The run name.
    pub fn name(&self) -> &str {
        self.run.name.get_ref()
    }

    /// sha256 of the spec text, recorded in provenance.
    pub fn sha256(&self) -> String {
        crate::models::checksum::sha256_bytes(self.text.as_bytes())
    }
}

/// A model is a registry id or a path to a GGUF file; anything else is a typo worth
/// catching before a model loads. `hint` ends the message (the teacher also takes paths).
fn check_model(model: &Spanned<String>, field: &str, hint: &str, loc: &Locator<'_>) -> Result<()> {
    let m = model.get_ref();
    let exists = Path::new(m).exists() || loc.base_dir().join(m).exists();
    if crate::models::registry::find(m).is_none() && !looks_like_path(m) && !exists {
        return Err(loc.err(
            model.span(),
            field,
            format!(
                "unknown model id {m:?}; known ids: {}{hint}",
                crate::models::registry::ids().join(", ")
            ),
        ));
    }
    Ok(())
}

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.contains('\\') || s.ends_with(".gguf")
}

/// A model as the spec names it, made usable from any working directory: a built-in id
/// stays; a relative path that exists beside the spec (a `.gguf` file or a model folder)
/// becomes that path, as every other file a spec names is read; anything else is kept
/// (a path relative to the working directory, or a Hugging Face repo id).
fn model_ref(m: &str, loc: &Locator<'_>) -> String {
    if crate::models::registry::find(m).is_some() || Path::new(m).is_absolute() {
        return m.to_string();
    }
    let beside = loc.base_dir().join(m);
    if beside.exists() {
        beside.display().to_string()
    } else {
        m.to_string()
    }
}

#[cfg(test)]
mod tests;
