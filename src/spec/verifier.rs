//! `[[verifier]]`: programmatic checks, chosen by `kind`. Validation compiles what the
//! verify stage will compile (regexes, JSON Schemas), so a bad one fails at its spec line.

use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::Spanned;

/// `[[verifier]]`: one programmatic check, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
        unit: LengthUnit,
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

/// What a length verifier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Chars,
    Words,
}

fn default_length_unit() -> LengthUnit {
    LengthUnit::Words
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

impl VerifierSpec {
    /// Whether the verify stage can build this verifier: the `Err` is the reason (the
    /// caller places it at the spec line, or names the verifier). Files are relative to
    /// `base_dir`.
    pub fn check(&self, base_dir: &Path) -> std::result::Result<(), String> {
        match self {
            VerifierSpec::Json { schema: Some(f) } => {
                load_schema(&base_dir.join(f))?;
            }
            VerifierSpec::Json { schema: None }
            | VerifierSpec::Refusal {}
            | VerifierSpec::Language { .. } => {}
            VerifierSpec::Regex {
                must_match,
                must_not_match,
            } => {
                if must_match.is_empty() && must_not_match.is_empty() {
                    return Err("regex verifier needs must_match or must_not_match".into());
                }
                for p in must_match.iter().chain(must_not_match) {
                    compile_regex(p)?;
                }
            }
            VerifierSpec::Length { min, max, .. } => {
                if let (Some(a), Some(b)) = (min, max) {
                    if a > b {
                        return Err(format!("length: min {a} > max {b}"));
                    }
                }
            }
            VerifierSpec::MathAnswer {
                reference,
                self_consistency,
            } => {
                if reference.is_none() && !self_consistency {
                    return Err(
                        "math_answer needs `reference = \"field.path\"` or `self_consistency = true`"
                            .into(),
                    );
                }
            }
            VerifierSpec::Repetition { n, max_share } => {
                if *n == 0 || !(0.0..=1.0).contains(max_share) {
                    return Err("repetition: n ≥ 1 and 0 ≤ max_share ≤ 1".into());
                }
            }
        }
        Ok(())
    }
}

/// A verifier's regex, or why it does not compile.
pub fn compile_regex(p: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(p).map_err(|e| format!("regex {p:?} does not compile: {e}"))
}

/// A JSON Schema file, compiled, or why it cannot be.
pub fn load_schema(path: &Path) -> std::result::Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JSON Schema {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&v)
        .map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// Checks every verifier at its spec line.
pub(super) fn validate(
    raw: &[Spanned<VerifierSpec>],
    loc: &Locator<'_>,
) -> Result<Vec<VerifierSpec>> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            v.get_ref()
                .check(loc.base_dir())
                .map_err(|e| loc.err(v.span(), &format!("verifier[{i}]"), e))?;
            Ok(v.get_ref().clone())
        })
        .collect()
}
