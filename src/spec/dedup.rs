//! `[filter]` and `[dedup]`: which verified records go on, and how duplicates and eval
//! overlap are found.

use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// The embedder semantic dedup, the audit and the report use unless the spec names one.
pub const DEFAULT_EMBEDDER: &str = "all-minilm-l6-v2";

/// `[filter]`: keep-rules applied to verified records before dedup. Every record that fails
/// one goes to `rejected.jsonl` with the rule it failed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// Keep records whose answer hit `max_new_tokens` (`finish_reason = "length"`). Off by
    /// default: an answer cut off mid-sentence is rejected as `truncated`.
    #[serde(default)]
    pub allow_truncated: bool,
    /// Among the samples of one prompt (`samples_per_prompt = n`), which passing ones to
    /// keep: all of them, the best, or the first.
    #[serde(default)]
    pub per_prompt: PerPrompt,
}

/// `[filter] per_prompt`: rejection sampling over the samples of one prompt (same task and
/// seed values). "Passing" is the keep-rules above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerPrompt {
    /// Every passing sample (no selection); `all_passing` says the same.
    #[default]
    All,
    AllPassing,
    /// The passing sample with the highest combined judge score (ties: the lowest
    /// sample index).
    Best,
    /// The passing sample with the lowest sample index.
    FirstPassing,
}

/// Whether `x` can be a similarity threshold (Jaccard or cosine): in (0, 1]. The spec's
/// `[dedup]` and the flags of `flywheel dedup` accept the same values.
pub fn is_threshold(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}

/// A method switch that is either off (`false`) or a similarity threshold.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
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

/// How a text is cut into shingles for MinHash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "unit", content = "n")]
pub enum Shingle {
    /// n consecutive words.
    Word(usize),
    /// n consecutive characters of the word-normalized text (words joined by one space).
    Char(usize),
}

impl Shingle {
    /// Parses `word:5` / `char:5`.
    pub fn parse(s: &str) -> Option<Shingle> {
        let (unit, n) = s.split_once(':')?;
        let n: usize = n.parse().ok().filter(|&n| n > 0)?;
        match unit {
            "word" => Some(Shingle::Word(n)),
            "char" => Some(Shingle::Char(n)),
            _ => None,
        }
    }

    pub fn name(self) -> String {
        match self {
            Shingle::Word(n) => format!("word:{n}"),
            Shingle::Char(n) => format!("char:{n}"),
        }
    }
}

/// `[dedup]`: which duplicate-removal methods run, and eval sets to decontaminate against.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
fn default_shingle() -> String {
    "char:5".into()
}
fn default_num_perm() -> usize {
    128
}
pub(super) fn default_embedder() -> String {
    DEFAULT_EMBEDDER.into()
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

/// Checks `[dedup]` (errors at the section's line, since its fields have no spans).
pub(super) fn validate(
    raw: Option<Spanned<DedupSection>>,
    loc: &Locator<'_>,
) -> Result<DedupSection> {
    let Some(d) = raw else {
        return Ok(DedupSection::default());
    };
    let span = d.span();
    let d = d.into_inner();
    let bad = |field: &str, msg: &str| Err(loc.err(span.clone(), &format!("dedup.{field}"), msg));
    for (name, t) in [("minhash", d.minhash), ("semantic", d.semantic)] {
        if let Threshold::At(x) = t {
            if !is_threshold(x) {
                return bad(
                    name,
                    "a threshold must be in (0, 1], or false to turn it off",
                );
            }
        }
    }
    if Shingle::parse(&d.shingle).is_none() {
        return bad("shingle", "use char:N or word:N (e.g. char:5, word:5)");
    }
    if !(16..=1024).contains(&d.num_perm) {
        return bad("num_perm", "use 16–1024 permutations (128 is the usual)");
    }
    if d.ngram == 0 {
        return bad("ngram", "must be ≥ 1 (13 is the usual)");
    }
    if let Some(x) = d.against_semantic.filter(|x| !is_threshold(*x)) {
        return bad(
            "against_semantic",
            &format!("{x} is not a threshold in (0, 1]"),
        );
    }
    Ok(d)
}
