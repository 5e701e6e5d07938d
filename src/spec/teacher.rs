//! `[teacher]`: the generating model and how it samples.

use super::{check_model, Locator};
use crate::error::Result;
use serde::Deserialize;
use toml::Spanned;

/// The most new tokens per answer (and judge window); no open model has a longer context.
pub const MAX_NEW_TOKENS: usize = 1 << 20;
/// The largest batch size.
pub const MAX_BATCH: usize = 65_536;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeacher {
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
    /// Overrides the chat template the model declares: `chatml`, `gemma`, `raw`, or a
    /// path to a `.jinja` file.
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

/// Checks `[teacher]` in field order: sampling, sizes, chat template, then the model id.
pub(super) fn validate(t: &RawTeacher, loc: &Locator<'_>) -> Result<TeacherSection> {
    validate_sampling(t, loc)?;
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
    // A built-in name, or a .jinja file (beside the spec, like every file a spec names)
    // that must read and compile.
    let chat_template = match &t.chat_template {
        Some(ct) => {
            let name = ct.get_ref();
            let is_path = name.ends_with(".jinja") || name.contains('/') || name.contains('\\');
            let value = if !is_path {
                name.clone()
            } else {
                loc.base_dir().join(name).display().to_string()
            };
            if let Err(e) = crate::models::chat::ChatTemplate::from_override(&value) {
                return Err(loc.err(ct.span(), "teacher.chat_template", e));
            }
            Some(value)
        }
        None => None,
    };
    check_model(
        &t.model,
        "teacher.model",
        " (or give a path to a .gguf file or a Hugging Face model folder, or a repo id in the Hugging Face cache)",
        loc,
    )?;
    Ok(TeacherSection {
        model: super::model_ref(t.model.get_ref(), loc),
        sampling: t.sampling.clone(),
        max_new_tokens: *t.max_new_tokens.get_ref(),
        batch_size: *t.batch_size.get_ref(),
        chat_template,
    })
}

/// `[teacher.sampling]` is deserialized without spans, so errors look its fields up in
/// the text: at the offending field's line when it is in the file, else the section's.
fn validate_sampling(t: &RawTeacher, loc: &Locator<'_>) -> Result<()> {
    match sampling_problem(&t.sampling) {
        None => Ok(()),
        Some((field, m)) => {
            let span = loc
                .value_span(&["teacher", "sampling", field])
                .or_else(|| loc.value_span(&["teacher", "sampling"]))
                .unwrap_or(t.model.span());
            Err(loc.err(span, &format!("teacher.sampling.{field}"), m))
        }
    }
}

/// The first out-of-bounds sampling field and why, shared with per-step overrides so a
/// step accepts exactly the values `[teacher.sampling]` does.
pub(super) fn sampling_problem(s: &Sampling) -> Option<(&'static str, String)> {
    if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
        return Some((
            "temperature",
            format!(
                "temperature must be >= 0 (0 = greedy), got {}",
                s.temperature
            ),
        ));
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return Some(("top_p", format!("top_p must be in (0, 1], got {}", s.top_p)));
    }
    if !(s.repetition_penalty > 0.0 && s.repetition_penalty.is_finite()) {
        return Some((
            "repetition_penalty",
            format!(
                "repetition_penalty must be > 0, got {}",
                s.repetition_penalty
            ),
        ));
    }
    if s.stop.iter().any(|x| x.is_empty()) {
        return Some(("stop", "stop strings must not be empty".into()));
    }
    None
}
