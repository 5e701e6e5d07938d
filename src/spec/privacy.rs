//! `[privacy]`: the audit of synthetic records against sensitive real data.

use super::dedup::default_embedder;
use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::Spanned;

/// What the audit does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// Checks `[privacy]` (errors at the section's line, since its fields have no spans).
pub(super) fn validate(
    raw: Option<Spanned<PrivacySection>>,
    loc: &Locator<'_>,
) -> Result<PrivacySection> {
    let Some(p) = raw else {
        return Ok(PrivacySection::default());
    };
    let span = p.span();
    let p = p.into_inner();
    let bad =
        |field: &str, msg: String| Err(loc.err(span.clone(), &format!("privacy.{field}"), msg));
    if p.copy == Policy::Redact || p.dcr == Policy::Redact {
        return bad(
            "copy",
            "copies and close records cannot be redacted: use flag or drop".into(),
        );
    }
    if p.copy_words < 3 {
        return bad("copy_words", "use at least 3 words (8 is the usual)".into());
    }
    if !(p.dcr_threshold > 0.0 && p.dcr_threshold <= 1.0) {
        return bad(
            "dcr_threshold",
            format!("{} is not a cosine in (0, 1]", p.dcr_threshold),
        );
    }
    if !(p.holdout > 0.0 && p.holdout < 1.0) {
        return bad("holdout", format!("{} is not a share in (0, 1)", p.holdout));
    }
    if !p.canary_template.contains("{{example}}") {
        return bad(
            "canary_template",
            "must contain {{example}} (where the real record goes)".into(),
        );
    }
    for f in p.sensitive.iter().flatten() {
        let file = loc.base_dir().join(f);
        if !file.exists() {
            return bad("sensitive", format!("{} does not exist", file.display()));
        }
    }
    Ok(p)
}
