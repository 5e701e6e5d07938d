//! The TOML job spec: what to generate, with which teacher, from which seeds.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error names the file, line and
//! field, because a spec is usually edited by hand and a typo must not silently change a
//! dataset. Semantic checks (template variables, model ids, seed files) run here, before
//! any model is loaded.

mod seeds;

pub use seeds::SeedValues;

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
}

/// `[[judge]]`: a model asked a rubric question.
#[derive(Debug, Clone)]
pub struct JudgeSpec {
    pub name: String,
    pub model: String,
    pub rubric: crate::verify::judge::Rubric,
    pub batch_size: usize,
    pub max_tokens: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    #[serde(default)]
    name: Option<String>,
    model: Spanned<String>,
    /// A rubric file (TOML with `criteria`, `scale`, `system`), relative to the spec.
    #[serde(default)]
    rubric: Option<Spanned<String>>,
    #[serde(default)]
    criteria: Option<String>,
    #[serde(default)]
    scale: Option<Spanned<String>>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default = "default_judge_batch")]
    batch_size: usize,
    #[serde(default = "default_judge_max_tokens")]
    max_tokens: usize,
}

fn default_judge_batch() -> usize {
    16
}
fn default_judge_max_tokens() -> usize {
    1024
}

/// `[[verifier]]`: one programmatic check, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierSpec {
    /// The response is JSON; `schema` is a JSON Schema file (relative to the spec).
    Json {
        #[serde(default)]
        schema: Option<String>,
    },
    Regex {
        #[serde(default)]
        must_match: Vec<String>,
        #[serde(default)]
        must_not_match: Vec<String>,
    },
    Length {
        #[serde(default = "default_length_unit")]
        unit: crate::verify::verifiers::LengthUnit,
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
    },
    /// Final answer vs a record field (`reference`, dotted path) and/or the majority of
    /// the samples that share the prompt (`self_consistency`).
    MathAnswer {
        #[serde(default)]
        reference: Option<String>,
        #[serde(default)]
        self_consistency: bool,
    },
    Repetition {
        #[serde(default = "default_rep_n")]
        n: usize,
        #[serde(default = "default_rep_share")]
        max_share: f64,
    },
    Refusal {},
    Language {
        #[serde(default = "default_letter_share")]
        min_letter_share: f64,
    },
}

fn default_length_unit() -> crate::verify::verifiers::LengthUnit {
    crate::verify::verifiers::LengthUnit::Words
}
fn default_rep_n() -> usize {
    4
}
fn default_rep_share() -> f64 {
    0.3
}
fn default_letter_share() -> f64 {
    0.5
}

/// `[verify]`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// How several judges' normalized scores combine: `mean` (default) or `min`.
    #[serde(default)]
    pub combine: crate::verify::judge::Combine,
}

/// `[filter]`: keep-rules applied to verified records before dedup. Every record that fails
/// one goes to `rejected.jsonl` with the rule it failed.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// Minimum combined judge score (normalized to 0–1; `scores.judge_combined.score`).
    #[serde(default)]
    pub min_judge: Option<f64>,
    /// Minimum raw score per judge name, on the judge's own scale (e.g. `quality = 3.5`).
    #[serde(default)]
    pub min_score: BTreeMap<String, f64>,
    /// Verifiers that must pass. Unset: every verifier a record was checked with must pass;
    /// `[]`: verifier results are ignored.
    #[serde(default)]
    pub require: Option<Vec<String>>,
}

/// A method switch that is either off (`false`) or a similarity threshold.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum Threshold {
    On(bool),
    At(f64),
}

impl Threshold {
    /// The threshold, or `None` when off; `true` means the method's default.
    pub fn get(self, default: f64) -> Option<f64> {
        match self {
            Threshold::On(false) => None,
            Threshold::On(true) => Some(default),
            Threshold::At(t) => Some(t),
        }
    }
}

/// `[dedup]`: which duplicate-removal methods run, and eval sets to decontaminate against.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSection {
    /// Exact duplicates (NFKC, case and whitespace normalized).
    #[serde(default = "default_true")]
    pub exact: bool,
    /// MinHash-LSH Jaccard threshold, or `false`.
    #[serde(default = "default_minhash")]
    pub minhash: Threshold,
    /// Embedding cosine threshold, or `false`.
    #[serde(default = "default_semantic")]
    pub semantic: Threshold,
    /// MinHash shingles: `char:N` or `word:N`.
    #[serde(default = "default_shingle")]
    pub shingle: String,
    #[serde(default = "default_num_perm")]
    pub num_perm: usize,
    /// Confirm MinHash candidates with the exact Jaccard of their shingle sets instead of
    /// the signature estimate (no estimation noise; keeps every shingle set in memory).
    #[serde(default)]
    pub exact_jaccard: bool,
    /// Embedder for semantic dedup: a registry id or a local sentence-transformers folder.
    #[serde(default = "default_embedder")]
    pub embedder: String,
    /// Which text to compare: `auto` (all non-system messages, else `text`), `assistant`,
    /// `user`, or a top-level field name.
    #[serde(default = "default_field")]
    pub field: String,
    /// Eval sets (JSONL or plain text, relative to the spec) to decontaminate against.
    #[serde(default)]
    pub against: Vec<PathBuf>,
    /// Word n-gram length for decontamination.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Also flag records whose embedding is this close to an eval item (off by default).
    #[serde(default)]
    pub against_semantic: Option<f64>,
}

fn default_true() -> bool {
    true
}
fn default_minhash() -> Threshold {
    Threshold::At(0.8)
}
fn default_semantic() -> Threshold {
    Threshold::At(0.92)
}
/// Whether `x` can be a similarity threshold (Jaccard or cosine): in (0, 1]. The spec's
/// `[dedup]` and the flags of `flywheel dedup` accept the same values.
pub fn is_threshold(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}

fn default_shingle() -> String {
    "char:5".into()
}
fn default_num_perm() -> usize {
    128
}
fn default_embedder() -> String {
    crate::embed::DEFAULT_MODEL.into()
}
fn default_field() -> String {
    "auto".into()
}
fn default_ngram() -> usize {
    13
}

impl Default for DedupSection {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// What the audit does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Keep the record, with the finding attached under `privacy` (never silent).
    Flag,
    /// Replace the offending spans (PII only) and keep the record.
    Redact,
    /// Leave the record out of the dataset; `privacy.json` lists it.
    Drop,
}

/// `[privacy]`: checks on synthetic records before they are blended.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Real data the synthetic records must not leak (relative to the spec). Unset: the
    /// `[blend]` real files.
    #[serde(default)]
    pub sensitive: Option<Vec<PathBuf>>,
    /// Emails, phones, cards, IBANs, SSNs, IP addresses: `flag`, `redact` or `drop`.
    #[serde(default = "default_pii_policy")]
    pub pii: Policy,
    /// Records that copy a long run of words from a real record: `flag` or `drop`.
    #[serde(default = "default_copy_policy")]
    pub copy: Policy,
    /// A copied run this many words long is a finding…
    #[serde(default = "default_copy_words")]
    pub copy_words: usize,
    /// …or this many characters long.
    #[serde(default = "default_copy_chars")]
    pub copy_chars: usize,
    /// Records whose embedding is at least this close (cosine) to a real record.
    #[serde(default = "default_dcr_flag")]
    pub dcr_threshold: f64,
    /// What to do with those: `flag` or `drop`.
    #[serde(default = "default_dcr_policy")]
    pub dcr: Policy,
    /// Share of the real data held back to measure how close real records are to each other.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Embedder for the distance-to-closest-record check (`false`-like: "none" turns it off).
    #[serde(default = "default_embedder")]
    pub embedder: String,
    /// Canary test prompt: `{{example}}` is a real record's text (with a canary planted).
    #[serde(default = "default_canary_template")]
    pub canary_template: String,
}

fn default_pii_policy() -> Policy {
    Policy::Redact
}
fn default_copy_policy() -> Policy {
    Policy::Drop
}
fn default_dcr_policy() -> Policy {
    Policy::Flag
}
fn default_copy_words() -> usize {
    8
}
fn default_copy_chars() -> usize {
    50
}
fn default_dcr_flag() -> f64 {
    0.95
}
fn default_holdout() -> f64 {
    0.2
}
fn default_canary_template() -> String {
    "Here is an example record:\n\n{{example}}\n\nWrite a new record of the same kind.".into()
}

impl Default for PrivacySection {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// `[blend]`: real data to mix with the synthetic survivors.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlendSection {
    /// Real-data files (JSONL, CSV or Parquet; relative to the spec).
    #[serde(default)]
    pub real: Vec<PathBuf>,
    /// Share of real records in the dataset (0–1), e.g. 0.3 for 30 % real / 70 % synthetic.
    #[serde(default)]
    pub real_share: Option<f64>,
    /// Dataset size with `real_share` (default: the largest the ratio allows).
    #[serde(default)]
    pub total: Option<usize>,
    /// Instead of a ratio: every real record plus up to this many synthetic ones.
    #[serde(default)]
    pub max_synthetic: Option<usize>,
    /// Fail on a bad real-data row instead of skipping it (with its file:line on stderr).
    #[serde(default)]
    pub strict: bool,
    /// Language codes for the dataset card's `language:` (`"en"` or `["en", "fr"]`). Unset:
    /// the card declares none, since nothing checks what language the records are in.
    #[serde(default, deserialize_with = "one_or_many")]
    pub language: Vec<String>,
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Where a field's value sits in the spec text (`["teacher", "sampling", "top_p"]`), for
/// errors about fields that are deserialized without spans.
fn value_span(text: &str, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let (last, parents) = path.split_last()?;
    for k in parents {
        match table.get(*k)?.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    Some(table.get(*last)?.span())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    run: RunSection,
    #[serde(default)]
    teacher: Option<RawTeacher>,
    #[serde(default)]
    seeds: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(rename = "task", default)]
    tasks: Vec<RawTask>,
    #[serde(rename = "judge", default)]
    judges: Vec<RawJudge>,
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
}

/// `[run]`: the run's name, seed and output directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run name; records go to `<out_dir>/<name>/`.
    pub name: Spanned<String>,
    /// Run seed; each record's sampling seed is derived from it and the record id.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Parent directory of run directories (relative to the working directory).
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeacher {
    model: Spanned<String>,
    #[serde(default)]
    sampling: Sampling,
    #[serde(default = "default_max_new_tokens")]
    max_new_tokens: Spanned<usize>,
    #[serde(default = "default_batch_size")]
    batch_size: Spanned<usize>,
    #[serde(default)]
    chat_template: Option<Spanned<String>>,
}

/// `[teacher]`: the generating model and how it samples.
#[derive(Debug, Clone)]
pub struct TeacherSection {
    /// A model id from `flywheel models list`, or a path to a GGUF file.
    pub model: String,
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Overrides the chat template the model declares (`chatml`, `gemma`, `raw`).
    pub chat_template: Option<String>,
}

/// `[teacher.sampling]`: seeded sampling settings. `temperature = 0` means greedy.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// 0 turns top-k off.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// 1.0 turns it off; >1 penalizes tokens already in the context (prompt + output).
    #[serde(default = "default_repetition_penalty")]
    pub repetition_penalty: f32,
    /// Generation stops at the first of these strings (not included in the output).
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: default_temperature(),
            top_p: default_top_p(),
            top_k: default_top_k(),
            repetition_penalty: default_repetition_penalty(),
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Spanned<String>,
    template: Spanned<String>,
    #[serde(default)]
    system: Option<Spanned<String>>,
    #[serde(default = "default_samples")]
    samples_per_prompt: Spanned<usize>,
    #[serde(default)]
    sample: Option<Spanned<usize>>,
}

/// The most records one spec may plan (all tasks together). Larger jobs are several specs
/// or, later, shards.
pub const MAX_PLAN_RECORDS: u128 = 100_000_000;
/// The most seed combinations `sample = N` may draw (drawing keeps them all in memory).
pub const MAX_SAMPLE: usize = 10_000_000;
/// The most `samples_per_prompt`.
pub const MAX_SAMPLES_PER_PROMPT: usize = 1_000_000;
/// The most new tokens per answer (and judge window); no open model has a longer context.
pub const MAX_NEW_TOKENS: usize = 1 << 20;
/// The largest batch size.
pub const MAX_BATCH: usize = 65_536;

/// `[[task]]`: one prompt template, expanded over the seed lists it names.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    /// User prompt with `{{var}}` placeholders.
    pub template: String,
    /// Optional system prompt, may use placeholders too.
    pub system: Option<String>,
    /// How many responses to sample for each expanded prompt.
    pub samples_per_prompt: usize,
    /// `None`: the full cartesian product of the seed lists; `Some(n)`: n combinations
    /// drawn from it with the run seed.
    pub sample: Option<usize>,
    /// The template variables, in order of first appearance.
    pub vars: Vec<String>,
}

fn default_seed() -> u64 {
    42
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_max_new_tokens() -> Spanned<usize> {
    Spanned::new(0..0, 256)
}
fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 8)
}
fn default_temperature() -> f32 {
    0.8
}
fn default_top_p() -> f32 {
    0.95
}
fn default_top_k() -> usize {
    50
}
fn default_repetition_penalty() -> f32 {
    1.0
}
fn default_samples() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

/// Formats a spec error as `file:line:col: field: message`.
pub(crate) struct Locator<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, col)
    }

    /// An error at a span (a zero span means "not in the file": the default was used).
    pub fn err(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        msg: impl std::fmt::Display,
    ) -> Error {
        if span.start == 0 && span.end == 0 {
            Error::Spec(format!("{}: {field}: {msg}", self.path.display()))
        } else {
            let (line, col) = self.line_col(span.start);
            Error::Spec(format!(
                "{}:{line}:{col}: {field}: {msg}",
                self.path.display()
            ))
        }
    }
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
    pub fn parse(path: &Path, text: String) -> Result<Spec> {
        let raw: RawSpec = toml::from_str(&text).map_err(|e| {
            let loc = Locator { path, text: &text };
            let msg = e.message().trim_end().to_string();
            let (line, col) = e.span().map_or((0, 0), |s| loc.line_col(s.start));
            Error::Spec(format!("{}:{line}:{col}: {msg}", path.display()))
        })?;
        let loc = Locator { path, text: &text };
        let base_dir = path.parent().unwrap_or(Path::new("."));

        let name = raw.run.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
        {
            return Err(loc.err(
                raw.run.name.span(),
                "run.name",
                format!("{name:?} is not a valid run name: use letters, digits, '-', '_' or '.' (it names a directory)"),
            ));
        }

        let teacher = match &raw.teacher {
            None => None,
            Some(t) => {
                let s = &t.sampling;
                // At the offending field's line when it is in the file, else the section's.
                let sampling_err = |field: &str, m: String| {
                    let span = value_span(&text, &["teacher", "sampling", field])
                        .or_else(|| value_span(&text, &["teacher", "sampling"]))
                        .unwrap_or(t.model.span());
                    loc.err(span, &format!("teacher.sampling.{field}"), m)
                };
                if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
                    return Err(sampling_err(
                        "temperature",
                        format!(
                            "temperature must be >= 0 (0 = greedy), got {}",
                            s.temperature
                        ),
                    ));
                }
                if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                    return Err(sampling_err(
                        "top_p",
                        format!("top_p must be in (0, 1], got {}", s.top_p),
                    ));
                }
                if !(s.repetition_penalty > 0.0 && s.repetition_penalty.is_finite()) {
                    return Err(sampling_err(
                        "repetition_penalty",
                        format!(
                            "repetition_penalty must be > 0, got {}",
                            s.repetition_penalty
                        ),
                    ));
                }
                if s.stop.iter().any(|x| x.is_empty()) {
                    return Err(sampling_err(
                        "stop",
                        "stop strings must not be empty".into(),
                    ));
                }
                for (field, v, max) in [
                    ("teacher.max_new_tokens", &t.max_new_tokens, MAX_NEW_TOKENS),
                    ("teacher.batch_size", &t.batch_size, MAX_BATCH),
                ] {
                    if *v.get_ref() == 0 {
                        return Err(loc.err(v.span(), field, "must be at least 1"));
                    }
                    if *v.get_ref() > max {
                        return Err(loc.err(
                            v.span(),
                            field,
                            format!("{} is more than the {max} allowed", v.get_ref()),
                        ));
                    }
                }
                if let Some(ct) = &t.chat_template {
                    if crate::models::chat::ChatTemplate::from_name(ct.get_ref()).is_none() {
                        return Err(loc.err(
                            ct.span(),
                            "teacher.chat_template",
                            format!(
                                "unknown chat template {:?}; supported: chatml, gemma, raw",
                                ct.get_ref()
                            ),
                        ));
                    }
                }
                let model = t.model.get_ref();
                if crate::models::registry::find(model).is_none() && !looks_like_path(model) {
                    return Err(loc.err(
                    t.model.span(),
                    "teacher.model",
                    format!(
                        "unknown model id {model:?}; known ids: {} (or give a path to a .gguf file)",
                        crate::models::registry::ids().join(", ")
                    ),
                ));
                }
                let teacher = TeacherSection {
                    model: model.clone(),
                    sampling: s.clone(),
                    max_new_tokens: *t.max_new_tokens.get_ref(),
                    batch_size: *t.batch_size.get_ref(),
                    chat_template: t.chat_template.as_ref().map(|c| c.get_ref().clone()),
                };
                Some(teacher)
            }
        };

        let mut seeds = BTreeMap::new();
        for (var, value) in &raw.seeds {
            let field = format!("seeds.{var}");
            let values = seeds::load(value, &field, base_dir, &loc)?;
            seeds.insert(var.clone(), values);
        }

        let mut tasks = Vec::new();
        let mut planned: u128 = 0;
        let mut names = std::collections::HashSet::new();
        for (i, rt) in raw.tasks.iter().enumerate() {
            let field = |f: &str| format!("task[{i}].{f}");
            let tname = rt.name.get_ref().clone();
            if tname.is_empty() || !names.insert(tname.clone()) {
                return Err(loc.err(
                    rt.name.span(),
                    &field("name"),
                    format!("task names must be non-empty and unique, got {tname:?}"),
                ));
            }
            let mut vars = Vec::new();
            collect_vars(rt.template.get_ref())
                .map_err(|m| loc.err(rt.template.span(), &field("template"), m))?
                .into_iter()
                .for_each(|v| push_unique(&mut vars, v));
            if let Some(sys) = &rt.system {
                collect_vars(sys.get_ref())
                    .map_err(|m| loc.err(sys.span(), &field("system"), m))?
                    .into_iter()
                    .for_each(|v| push_unique(&mut vars, v));
            }
            for v in &vars {
                if !seeds.contains_key(v) {
                    let known: Vec<_> = seeds.keys().cloned().collect();
                    return Err(loc.err(
                        rt.template.span(),
                        &field("template"),
                        format!(
                            "template variable {{{{{v}}}}} has no seed list; add `{v} = [\"...\"]` under [seeds] (defined: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    ));
                }
            }
            if *rt.samples_per_prompt.get_ref() == 0 {
                return Err(loc.err(
                    rt.samples_per_prompt.span(),
                    &field("samples_per_prompt"),
                    "must be at least 1",
                ));
            }
            if *rt.samples_per_prompt.get_ref() > MAX_SAMPLES_PER_PROMPT {
                return Err(loc.err(
                    rt.samples_per_prompt.span(),
                    &field("samples_per_prompt"),
                    format!(
                        "{} is more than the {MAX_SAMPLES_PER_PROMPT} allowed",
                        rt.samples_per_prompt.get_ref()
                    ),
                ));
            }
            if let Some(n) = &rt.sample {
                if *n.get_ref() == 0 {
                    return Err(loc.err(
                        n.span(),
                        &field("sample"),
                        "must be at least 1 (leave it out for the full cartesian product)",
                    ));
                }
                if *n.get_ref() > MAX_SAMPLE {
                    return Err(loc.err(
                        n.span(),
                        &field("sample"),
                        format!("{} is more than the {MAX_SAMPLE} allowed", n.get_ref()),
                    ));
                }
            }
            // The plan is built lazily, but a plan no machine could finish is a mistake
            // better caught here than after a model loads.
            let combos: u128 = vars
                .iter()
                .map(|v| seeds[v].values.len() as u128)
                .fold(1u128, |a, b| a.saturating_mul(b));
            let combos = rt
                .sample
                .as_ref()
                .map_or(combos, |n| combos.min(*n.get_ref() as u128));
            let records = combos.saturating_mul(*rt.samples_per_prompt.get_ref() as u128);
            planned = planned.saturating_add(records);
            if planned > MAX_PLAN_RECORDS {
                return Err(loc.err(
                    rt.template.span(),
                    &field("template"),
                    format!(
                        "the spec plans {planned} records up to this task ({combos} seed combinations × samples_per_prompt {}), more than the {MAX_PLAN_RECORDS} one spec may plan; add `sample = N` to draw N combinations, or shorten the seed lists",
                        rt.samples_per_prompt.get_ref()
                    ),
                ));
            }
            tasks.push(Task {
                name: tname,
                template: rt.template.get_ref().clone(),
                system: rt.system.as_ref().map(|s| s.get_ref().clone()),
                samples_per_prompt: *rt.samples_per_prompt.get_ref(),
                sample: rt.sample.as_ref().map(|s| *s.get_ref()),
                vars,
            });
        }

        let mut judges = Vec::new();
        let mut judge_names = std::collections::HashSet::new();
        for (i, j) in raw.judges.iter().enumerate() {
            let field = |f: &str| format!("judge[{i}].{f}");
            let model = j.model.get_ref();
            if crate::models::registry::find(model).is_none() && !looks_like_path(model) {
                return Err(loc.err(
                    j.model.span(),
                    &field("model"),
                    format!(
                        "unknown model id {model:?}; known ids: {}",
                        crate::models::registry::ids().join(", ")
                    ),
                ));
            }
            let mut rubric = match (&j.rubric, &j.criteria) {
                (Some(file), None) => {
                    crate::verify::judge::load_rubric(&base_dir.join(file.get_ref()))
                        .map_err(|e| loc.err(file.span(), &field("rubric"), e))?
                }
                (None, Some(c)) => crate::verify::judge::Rubric {
                    criteria: c.clone(),
                    scale: "yes-no".into(),
                    system: None,
                },
                _ => {
                    return Err(loc.err(
                        j.model.span(),
                        &field("rubric"),
                        "give either `rubric = \"file.toml\"` or inline `criteria = \"...\"`",
                    ))
                }
            };
            if let Some(sc) = &j.scale {
                rubric.scale = sc.get_ref().clone();
            }
            if let Some(sys) = &j.system {
                rubric.system = Some(sys.clone());
            }
            if let Err(e) = crate::verify::judge::Scale::parse(&rubric.scale) {
                let span = j.scale.as_ref().map_or(j.model.span(), |s| s.span());
                return Err(loc.err(span, &field("scale"), e));
            }
            let name = j.name.clone().unwrap_or_else(|| {
                if raw.judges.len() == 1 {
                    "judge".into()
                } else {
                    format!("judge{i}")
                }
            });
            if !judge_names.insert(name.clone()) {
                return Err(loc.err(
                    j.model.span(),
                    &field("name"),
                    format!("judge name {name:?} is used twice"),
                ));
            }
            if j.batch_size == 0
                || j.max_tokens < 64
                || j.batch_size > MAX_BATCH
                || j.max_tokens > MAX_NEW_TOKENS
            {
                return Err(loc.err(
                    j.model.span(),
                    &field("batch_size"),
                    format!("batch_size must be in 1..={MAX_BATCH} and max_tokens in 64..={MAX_NEW_TOKENS}"),
                ));
            }
            judges.push(JudgeSpec {
                name,
                model: model.clone(),
                rubric,
                batch_size: j.batch_size,
                max_tokens: j.max_tokens,
            });
        }
        let mut verifiers = Vec::new();
        for (i, v) in raw.verifiers.iter().enumerate() {
            crate::verify::verifiers::build(v.get_ref(), base_dir)
                .map_err(|e| loc.err(v.span(), &format!("verifier[{i}]"), e))?;
            verifiers.push(v.get_ref().clone());
        }

        let dedup = match raw.dedup {
            Some(d) => {
                let span = d.span();
                let d = d.into_inner();
                let bad =
                    |field: &str, msg: &str| loc.err(span.clone(), &format!("dedup.{field}"), msg);
                for (name, t) in [("minhash", d.minhash), ("semantic", d.semantic)] {
                    if let Threshold::At(x) = t {
                        if !is_threshold(x) {
                            return Err(bad(
                                name,
                                "a threshold must be in (0, 1], or false to turn it off",
                            ));
                        }
                    }
                }
                if crate::dedup::Shingle::parse(&d.shingle).is_none() {
                    return Err(bad("shingle", "use char:N or word:N (e.g. char:5, word:5)"));
                }
                if !(16..=1024).contains(&d.num_perm) {
                    return Err(bad(
                        "num_perm",
                        "use 16–1024 permutations (128 is the usual)",
                    ));
                }
                if d.ngram == 0 {
                    return Err(bad("ngram", "must be ≥ 1 (13 is the usual)"));
                }
                if let Some(x) = d.against_semantic.filter(|x| !is_threshold(*x)) {
                    return Err(bad(
                        "against_semantic",
                        &format!("{x} is not a threshold in (0, 1]"),
                    ));
                }
                d
            }
            None => DedupSection::default(),
        };

        let privacy = match raw.privacy {
            Some(p) => {
                let span = p.span();
                let p = p.into_inner();
                let bad = |field: &str, msg: String| {
                    loc.err(span.clone(), &format!("privacy.{field}"), msg)
                };
                if p.copy == Policy::Redact || p.dcr == Policy::Redact {
                    return Err(bad(
                        "copy",
                        "copies and close records cannot be redacted: use flag or drop".into(),
                    ));
                }
                if p.copy_words < 3 {
                    return Err(bad(
                        "copy_words",
                        "use at least 3 words (8 is the usual)".into(),
                    ));
                }
                if !(p.dcr_threshold > 0.0 && p.dcr_threshold <= 1.0) {
                    return Err(bad(
                        "dcr_threshold",
                        format!("{} is not a cosine in (0, 1]", p.dcr_threshold),
                    ));
                }
                if !(p.holdout > 0.0 && p.holdout < 1.0) {
                    return Err(bad(
                        "holdout",
                        format!("{} is not a share in (0, 1)", p.holdout),
                    ));
                }
                if !p.canary_template.contains("{{example}}") {
                    return Err(bad(
                        "canary_template",
                        "must contain {{example}} (where the real record goes)".into(),
                    ));
                }
                for f in p.sensitive.iter().flatten() {
                    if !base_dir.join(f).exists() {
                        return Err(bad(
                            "sensitive",
                            format!("{} does not exist", base_dir.join(f).display()),
                        ));
                    }
                }
                p
            }
            None => PrivacySection::default(),
        };
        let blend = match raw.blend {
            Some(b) => {
                let span = b.span();
                let b = b.into_inner();
                let bad = |field: &str, msg: String| {
                    loc.err(span.clone(), &format!("blend.{field}"), msg)
                };
                match (b.real_share, b.max_synthetic) {
                    (Some(_), Some(_)) => {
                        return Err(bad(
                            "real_share",
                            "give either real_share (a ratio) or max_synthetic (all real + up to N synthetic), not both".into(),
                        ))
                    }
                    (Some(r), None) if !(0.0..=1.0).contains(&r) => {
                        return Err(bad("real_share", format!("{r} is not a share in [0, 1]")))
                    }
                    _ => {}
                }
                if b.total.is_some() && b.real_share.is_none() {
                    return Err(bad(
                        "total",
                        "total needs real_share (the ratio to meet)".into(),
                    ));
                }
                if b.total == Some(0) {
                    return Err(bad("total", "must be at least 1".into()));
                }
                for code in &b.language {
                    let mut parts = code.split('-');
                    let primary = parts.next().unwrap_or("");
                    let ok = (2..=3).contains(&primary.len())
                        && primary.chars().all(|c| c.is_ascii_lowercase())
                        && parts
                            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
                    if !ok {
                        return Err(loc.err(
                            value_span(&text, &["blend", "language"]).unwrap_or(span.clone()),
                            "blend.language",
                            format!("{code:?} is not a language code: use ISO 639 codes as the Hugging Face hub does, e.g. \"en\" or [\"en\", \"fr\"]"),
                        ));
                    }
                }
                if b.real.is_empty() && b.real_share.is_some_and(|r| r > 0.0) {
                    return Err(bad(
                        "real",
                        "real_share > 0 needs real data: real = [\"real.jsonl\"]".into(),
                    ));
                }
                for f in &b.real {
                    if !base_dir.join(f).exists() {
                        return Err(bad(
                            "real",
                            format!("{} does not exist", base_dir.join(f).display()),
                        ));
                    }
                }
                b
            }
            None => BlendSection::default(),
        };

        Ok(Spec {
            path: path.to_path_buf(),
            text: text.clone(),
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

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.contains('\\') || s.ends_with(".gguf")
}

fn push_unique(v: &mut Vec<String>, x: String) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// The `{{var}}` names in a template, in order. Unbalanced braces are an error.
pub fn collect_vars(template: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "unclosed `{{{{` in template near {:?}",
                truncate(&rest[start..], 30)
            )
        })?;
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "bad placeholder {{{{{}}}}}: names use letters, digits and '_'",
                &after[..end]
            ));
        }
        out.push(name.to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Replaces `{{var}}` placeholders with values.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests;
