//! `[[judge]]` and `[verify]`: LLM judges, their rubrics and how their scores combine.

use super::teacher::{MAX_BATCH, MAX_NEW_TOKENS};
use super::{check_model, Locator};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use toml::Spanned;

/// What the judge is asked and how it answers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    /// What a good answer is, in plain words.
    pub criteria: String,
    /// `yes-no` (default) or `1-N` with N from 2 to 9.
    #[serde(default = "default_scale")]
    pub scale: String,
    /// Optional system prompt for the judge.
    #[serde(default)]
    pub system: Option<String>,
    /// The judge first writes a one-sentence rationale, then its verdict, the label held
    /// to the scale by a grammar; the score is still read from the logits at the label.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rationale: bool,
}

fn default_scale() -> String {
    "yes-no".into()
}

/// A rubric's scale as written: `yes-no`, or `1-N` with one digit per label (one token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    YesNo,
    /// Labels `1` to this (2–9).
    OneTo(u32),
}

impl ScaleKind {
    /// Parses a scale; the `Err` is the reason, placed by the caller (spec line, rubric
    /// file or judge name).
    pub fn parse(s: &str) -> std::result::Result<ScaleKind, String> {
        match s {
            "yes-no" | "yes/no" => Ok(ScaleKind::YesNo),
            _ => {
                let (lo, hi) = s.split_once('-').ok_or_else(|| {
                    format!("unknown scale {s:?}: use \"yes-no\" or \"1-5\" (1-N, N ≤ 9)")
                })?;
                let (lo, hi): (u32, u32) = (
                    lo.trim().parse().map_err(|_| format!("bad scale {s:?}"))?,
                    hi.trim().parse().map_err(|_| format!("bad scale {s:?}"))?,
                );
                if lo != 1 || !(2..=9).contains(&hi) {
                    return Err(format!(
                        "scale {s:?} is not supported: numeric scales are 1-N with N from 2 to 9, so that every label is one digit (one token)"
                    ));
                }
                Ok(ScaleKind::OneTo(hi))
            }
        }
    }
}

/// Reads a rubric file (`criteria`, `scale`, `system`); errors name the file and line.
pub fn load_rubric(path: &std::path::Path) -> std::result::Result<Rubric, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read rubric {}: {e}", path.display()))?;
    let r: Rubric = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        format!("{}:{line}: {}", path.display(), e.message().trim_end())
    })?;
    ScaleKind::parse(&r.scale).map_err(|e| format!("{}: scale: {e}", path.display()))?;
    Ok(r)
}

/// How several judges' normalized scores combine into the one the keep-rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    #[default]
    Mean,
    Min,
}

/// What of a multi-turn record the judges and verifiers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The last assistant turn, as the answer to the user turn before it.
    #[default]
    LastTurn,
    /// The whole dialogue after the first user turn, as the answer to that turn: a
    /// rubric about the conversation (was the customer helped?) sees all of it.
    Transcript,
}

/// `[verify]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// How several judges' normalized scores combine: `mean` (default) or `min`.
    #[serde(default)]
    pub combine: Combine,
    /// `last_turn` (default) or `transcript`: what of a conversation is scored.
    #[serde(default)]
    pub scope: Scope,
}

/// `[[judge]]`: a model asked a rubric question.
#[derive(Debug, Clone)]
pub struct JudgeSpec {
    pub name: String,
    pub model: String,
    pub rubric: Rubric,
    pub batch_size: usize,
    pub max_tokens: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudge {
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
    #[serde(default)]
    rationale: Option<bool>,
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

/// Checks every judge; unnamed judges are `judge` (one) or `judge<i>`, and names are
/// unique since they key the scores.
pub(super) fn validate(raw: &[RawJudge], loc: &Locator<'_>) -> Result<Vec<JudgeSpec>> {
    let mut judges = Vec::new();
    let mut names = HashSet::new();
    for (i, j) in raw.iter().enumerate() {
        let field = |f: &str| format!("judge[{i}].{f}");
        check_model(&j.model, &field("model"), "", loc)?;
        let rubric = rubric_of(j, &field, loc)?;
        let name = j.name.clone().unwrap_or_else(|| {
            if raw.len() == 1 {
                "judge".into()
            } else {
                format!("judge{i}")
            }
        });
        if !names.insert(name.clone()) {
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
                format!(
                    "batch_size must be in 1..={MAX_BATCH} and max_tokens in 64..={MAX_NEW_TOKENS}"
                ),
            ));
        }
        judges.push(JudgeSpec {
            name,
            model: super::model_ref(j.model.get_ref(), loc),
            rubric,
            batch_size: j.batch_size,
            max_tokens: j.max_tokens,
        });
    }
    Ok(judges)
}

/// The judge's rubric: a file or inline criteria, with `scale` and `system` overriding it.
fn rubric_of(j: &RawJudge, field: &dyn Fn(&str) -> String, loc: &Locator<'_>) -> Result<Rubric> {
    let mut rubric = match (&j.rubric, &j.criteria) {
        (Some(file), None) => load_rubric(&loc.base_dir().join(file.get_ref()))
            .map_err(|e| loc.err(file.span(), &field("rubric"), e))?,
        (None, Some(c)) => Rubric {
            criteria: c.clone(),
            scale: "yes-no".into(),
            system: None,
            rationale: false,
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
    if let Some(r) = j.rationale {
        rubric.rationale = r;
    }
    if let Err(e) = ScaleKind::parse(&rubric.scale) {
        let span = j.scale.as_ref().map_or(j.model.span(), |s| s.span());
        return Err(loc.err(span, &field("scale"), e));
    }
    Ok(rubric)
}
