//! Where a model's chat template comes from, in order: the spec's
//! `teacher.chat_template` (a built-in name or a `.jinja` file); the model's own Jinja
//! template (GGUF `tokenizer.chat_template`, or a Hugging Face folder's
//! `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`); then a
//! built-in one guessed from the model ([`ChatTemplate::detect`]).

use super::{ChatTemplate, JinjaTemplate};
use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use crate::models::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

/// The template for a GGUF model: `over` (the spec's) when given, else the file's own
/// Jinja template with the tokenizer's BOS/EOS texts, else `declared` (a built-in name
/// from the model's manifest), else a guess from the architecture. A file template
/// minijinja cannot compile falls back to the built-in guess, with a warning.
pub fn for_gguf(
    g: &GgufFile,
    tokenizer: &Tokenizer,
    over: Option<ChatTemplate>,
    declared: Option<&str>,
    arch: &str,
) -> ChatTemplate {
    let (bos, eos) = token_texts(tokenizer);
    if let Some(t) = over {
        return with_tokens(t, bos, eos);
    }
    let jinja = g.str("tokenizer.chat_template");
    if let Some(src) = jinja {
        let origin = format!("{} (tokenizer.chat_template)", g.path.display());
        match JinjaTemplate::new(src.to_string(), origin, bos, eos) {
            Ok(j) => return ChatTemplate::Jinja(Arc::new(j)),
            Err(e) => tracing::warn!("{e}; using a built-in template instead"),
        }
    }
    declared
        .and_then(ChatTemplate::from_name)
        .unwrap_or_else(|| ChatTemplate::detect(jinja, arch))
}

/// A template given without BOS/EOS texts (a spec's `.jinja` file) gets the tokenizer's.
pub fn with_tokens(t: ChatTemplate, bos: Option<String>, eos: Option<String>) -> ChatTemplate {
    match t {
        ChatTemplate::Jinja(j) => {
            ChatTemplate::Jinja(Arc::new((*j).clone().with_default_tokens(bos, eos)))
        }
        t => t,
    }
}

/// The tokenizer's BOS and EOS token texts.
pub fn token_texts(tk: &Tokenizer) -> (Option<String>, Option<String>) {
    let text = |id: Option<u32>| id.and_then(|i| tk.token_text(i)).map(str::to_string);
    (text(tk.bos_id), text(tk.eos_id))
}

/// A Hugging Face folder's own template: `chat_template.jinja` when present, else
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`
/// of which `default` is taken), with the config's `bos_token`/`eos_token`. `None` when
/// the folder declares no template.
pub fn from_hf_folder(dir: &Path) -> Result<Option<ChatTemplate>> {
    let config_path = dir.join("tokenizer_config.json");
    let config = read_json_if_exists(&config_path)?;
    let (bos, eos) = match &config {
        Some(c) => (
            special_token_text(c.get("bos_token")),
            special_token_text(c.get("eos_token")),
        ),
        None => (None, None),
    };
    let file = dir.join("chat_template.jinja");
    if file.is_file() {
        let src = std::fs::read_to_string(&file)
            .map_err(|e| Error::io("reading chat template", &file, e))?;
        let j = JinjaTemplate::new(src, file.display().to_string(), bos, eos)?;
        return Ok(Some(ChatTemplate::Jinja(Arc::new(j))));
    }
    let Some(config) = config else {
        return Ok(None);
    };
    let src = match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Template(format!(
                    "{}: chat_template is a list without a `default` entry",
                    config_path.display()
                ))
            })?,
        Some(_) => {
            return Err(Error::Template(format!(
                "{}: chat_template must be a string or a list of {{name, template}}",
                config_path.display()
            )))
        }
    };
    let origin = format!("{} (chat_template)", config_path.display());
    let j = JinjaTemplate::new(src, origin, bos, eos)?;
    Ok(Some(ChatTemplate::Jinja(Arc::new(j))))
}

/// A JSON file, or `None` when it does not exist; errors name the file.
pub(crate) fn read_json_if_exists(path: &Path) -> Result<Option<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Model(format!("{}: not valid JSON: {e}", path.display())))
}

/// A `tokenizer_config.json` special token: a string, or an object with `content`.
pub(crate) fn special_token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_folder_template_sources() {
        let d = tempfile::tempdir().unwrap();
        assert!(from_hf_folder(d.path()).unwrap().is_none());
        std::fs::write(
            d.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "T"},
                                  {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}"#,
        )
        .unwrap();
        let t = from_hf_folder(d.path()).unwrap().unwrap();
        let msgs = [super::super::Message::new("user", "hi")];
        assert_eq!(t.render(&msgs, false).unwrap().to_string(), "<s>hi</s>");
        std::fs::write(d.path().join("chat_template.jinja"), "[{{ eos_token }}]").unwrap();
        let t = from_hf_folder(d.path()).unwrap().unwrap();
        assert_eq!(t.render(&msgs, false).unwrap().to_string(), "[</s>]");
        std::fs::write(d.path().join("chat_template.jinja"), "{% if %}").unwrap();
        let e = from_hf_folder(d.path()).unwrap_err().to_string();
        assert!(e.contains("chat_template.jinja"), "{e}");
    }
}
