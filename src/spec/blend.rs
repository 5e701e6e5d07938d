//! `[blend]`: real data to mix with the synthetic survivors, and at what ratio.

use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::Spanned;

/// `[blend]`: real data to mix with the synthetic survivors.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// The order records are written in: shuffled, or synthetic ones from easy to hard.
    #[serde(default)]
    pub order: BlendOrder,
}

/// `[blend] order`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlendOrder {
    /// A seeded shuffle of the whole set, so training order mixes the sources.
    #[default]
    Shuffled,
    /// The shuffle, then the synthetic records' places refilled with them sorted by
    /// `meta.difficulty` (easy first): a curriculum, with real records still spread
    /// through it.
    Curriculum,
}

/// By hand rather than derived, so an unknown order names its field like the other
/// `[blend]` errors do (the parser adds file:line:col).
impl<'de> Deserialize<'de> for BlendOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "shuffled" => Ok(BlendOrder::Shuffled),
            "curriculum" => Ok(BlendOrder::Curriculum),
            other => Err(serde::de::Error::custom(format!(
                "blend.order: {other:?} is not an order; use \"shuffled\" (the default) or \"curriculum\" (synthetic records from easy to hard by meta.difficulty)"
            ))),
        }
    }
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

/// An ISO 639 code as the Hugging Face hub takes it: `en`, `fra`, `pt-BR`.
fn is_language_code(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks `[blend]`: one way to size the dataset, language codes, real files that exist.
pub(super) fn validate(
    raw: Option<Spanned<BlendSection>>,
    loc: &Locator<'_>,
) -> Result<BlendSection> {
    let Some(b) = raw else {
        return Ok(BlendSection::default());
    };
    let span = b.span();
    let b = b.into_inner();
    let bad = |field: &str, msg: String| Err(loc.err(span.clone(), &format!("blend.{field}"), msg));
    match (b.real_share, b.max_synthetic) {
        (Some(_), Some(_)) => {
            return bad(
                "real_share",
                "give either real_share (a ratio) or max_synthetic (all real + up to N synthetic), not both".into(),
            )
        }
        (Some(r), None) if !(0.0..=1.0).contains(&r) => {
            return bad("real_share", format!("{r} is not a share in [0, 1]"))
        }
        _ => {}
    }
    if b.total.is_some() && b.real_share.is_none() {
        return bad("total", "total needs real_share (the ratio to meet)".into());
    }
    if b.total == Some(0) {
        return bad("total", "must be at least 1".into());
    }
    if let Some(code) = b.language.iter().find(|c| !is_language_code(c)) {
        return Err(loc.err(
            loc.value_span(&["blend", "language"]).unwrap_or(span.clone()),
            "blend.language",
            format!("{code:?} is not a language code: use ISO 639 codes as the Hugging Face hub does, e.g. \"en\" or [\"en\", \"fr\"]"),
        ));
    }
    if b.real.is_empty() && b.real_share.is_some_and(|r| r > 0.0) {
        return bad(
            "real",
            "real_share > 0 needs real data: real = [\"real.jsonl\"]".into(),
        );
    }
    for f in &b.real {
        let file = loc.base_dir().join(f);
        if !file.exists() {
            return bad("real", format!("{} does not exist", file.display()));
        }
    }
    Ok(b)
}
