//! `[review]`: how people review candidates (`flywheel review`) and what their decisions
//! do to the dataset.

use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The reasons offered when no `[review]` section names its own.
pub const DEFAULT_REASONS: [&str; 5] = ["wrong", "unhelpful", "unsafe", "off-topic", "formatting"];

/// `[review]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReviewSection {
    /// Reject reasons, chosen with the digit keys 1–9 after `r`.
    #[serde(default = "default_reasons")]
    pub reasons: Vec<String>,
    /// Only records a reviewer accepted (or edited) enter the dataset; blend exits with
    /// code 3 while any record in the queue still awaits review.
    #[serde(default)]
    pub required: bool,
    /// Review a seeded random sample of this many records (an audit: the report estimates
    /// the error rate of the whole set from it, with a confidence interval).
    #[serde(default)]
    pub sample: Option<usize>,
}

fn default_reasons() -> Vec<String> {
    DEFAULT_REASONS.iter().map(|s| s.to_string()).collect()
}

impl Default for ReviewSection {
    fn default() -> Self {
        ReviewSection {
            reasons: default_reasons(),
            required: false,
            sample: None,
        }
    }
}

pub(super) fn validate(
    raw: Option<Spanned<ReviewSection>>,
    loc: &Locator<'_>,
) -> Result<ReviewSection> {
    let Some(r) = raw else {
        return Ok(ReviewSection::default());
    };
    let span = r.span();
    let r = r.into_inner();
    let at = |field: &str| {
        loc.value_span(&["review", field])
            .unwrap_or_else(|| span.clone())
    };
    if r.reasons.is_empty() || r.reasons.len() > 9 {
        return Err(loc.err(
            at("reasons"),
            "review.reasons",
            format!(
                "{} reasons: give 1 to 9 (they are picked with the digit keys 1–9)",
                r.reasons.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for reason in &r.reasons {
        let ok = !reason.trim().is_empty()
            && reason.len() <= 40
            && reason
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '.'));
        if !ok {
            return Err(loc.err(
                at("reasons"),
                "review.reasons",
                format!("{reason:?}: a reason is 1–40 letters, digits, spaces, '-', '_' or '.' (it becomes part of `review:rejected:<reason>`)"),
            ));
        }
        if !seen.insert(reason.as_str()) {
            return Err(loc.err(
                at("reasons"),
                "review.reasons",
                format!("{reason:?} is listed twice"),
            ));
        }
    }
    if r.sample == Some(0) {
        return Err(loc.err(
            at("sample"),
            "review.sample",
            "must be at least 1 (leave it out to review every record)",
        ));
    }
    Ok(r)
}
