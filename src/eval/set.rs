//! The held-out test set: one JSON object per line.
//!
//! ```json
//! {"id": "a1", "prompt": "What is 17 + 25?", "answer": "42", "category": "arithmetic"}
//! {"messages": [{"role": "system", "content": "…"}, {"role": "user", "content": "…"}]}
//! ```
//!
//! `prompt` or `messages` (ending with a user turn) is required; `id` defaults to a hash
//! of the line's content, so ids are stable when lines move. Any other field stays on the
//! item, where a spec's verifiers find their references (`tests`, `sql`, …).

use crate::error::{Error, Result};
use crate::models::chat::Message;
use std::collections::HashSet;
use std::path::Path;

/// One test item.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// `id#<sha of the messages>`: what the journals key answers by, so an item whose
    /// prompt is edited (same id) is answered again instead of reusing a stale answer.
    pub key: String,
    /// What the model under test is sent.
    pub messages: Vec<Message>,
    /// The last user turn: what judges and decontamination read.
    pub prompt: String,
    /// A reference answer: checked with the math/exact answer verifier when present.
    pub answer: Option<String>,
    pub category: Option<String>,
    /// The whole line, for verifiers that read other reference fields.
    pub raw: serde_json::Value,
}

/// Reads `path`; every problem names the file and line, and nothing is skipped silently.
pub fn load(path: &Path) -> Result<(Vec<Item>, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let sha = crate::models::checksum::sha256_bytes(text.as_bytes());
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let at = |n: usize, why: String| Error::Spec(format!("{}:{n}: {why}", path.display()));
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let raw: serde_json::Value =
            serde_json::from_str(line).map_err(|e| at(n, format!("not a JSON object: {e}")))?;
        let obj = raw
            .as_object()
            .ok_or_else(|| at(n, "not a JSON object".into()))?;
        let text_field = |k: &str| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                // A numeric answer is common in arithmetic sets.
                Some(v @ serde_json::Value::Number(_)) => Ok(Some(v.to_string())),
                Some(_) => Err(at(n, format!("`{k}` must be a string"))),
            }
        };
        let messages: Vec<Message> = match (obj.get("messages"), text_field("prompt")?) {
            (Some(m), None) => serde_json::from_value(m.clone()).map_err(|e| {
                at(
                    n,
                    format!("`messages` must be a list of {{role, content}}: {e}"),
                )
            })?,
            (None, Some(p)) => vec![Message::new("user", p)],
            (Some(_), Some(_)) => {
                return Err(at(n, "give `prompt` or `messages`, not both".into()))
            }
            (None, None) => {
                return Err(at(n, "no `prompt` (or `messages`): nothing to ask".into()))
            }
        };
        let prompt = match messages.last() {
            Some(m) if m.role == "user" && !m.content.trim().is_empty() => m.content.clone(),
            _ => {
                return Err(at(
                    n,
                    "the last message must be a non-empty `user` turn".into(),
                ))
            }
        };
        let id = match text_field("id")? {
            Some(id) if !id.is_empty() => id,
            _ => crate::models::checksum::sha256_bytes(line.trim().as_bytes())[..16].to_string(),
        };
        if !seen.insert(id.clone()) {
            return Err(at(n, format!("id {id:?} repeats an earlier line")));
        }
        let content = serde_json::to_string(&messages).unwrap_or_default();
        let key = format!(
            "{id}#{}",
            &crate::models::checksum::sha256_bytes(content.as_bytes())[..12]
        );
        items.push(Item {
            key,
            id,
            messages,
            prompt,
            answer: text_field("answer")?,
            category: text_field("category")?,
            raw,
        });
    }
    if items.is_empty() {
        return Err(Error::Spec(format!(
            "{}: no test items (one JSON object per line, each with `prompt` or `messages`)",
            path.display()
        )));
    }
    Ok((items, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(t: &str) -> Result<Vec<Item>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set.jsonl");
        std::fs::write(&p, t).unwrap();
        load(&p).map(|r| r.0)
    }

    #[test]
    fn items_parse_and_bad_lines_name_their_line() {
        let items = load_text(
            "{\"prompt\": \"2+2?\", \"answer\": 4, \"category\": \"math\"}\n\n{\"id\": \"x\", \"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"hi\"}]}\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].answer.as_deref(), Some("4"));
        assert_eq!(items[0].category.as_deref(), Some("math"));
        assert_eq!(items[0].id.len(), 16);
        assert_eq!(items[1].id, "x");
        assert_eq!(items[1].prompt, "hi");
        for (text, want) in [
            ("{\"prompt\": \"a\"}\nnot json\n", ":2: not a JSON object"),
            ("{\"answer\": \"1\"}\n", ":1: no `prompt`"),
            (
                "{\"prompt\": \"a\", \"messages\": []}\n",
                ":1: give `prompt` or `messages`",
            ),
            (
                "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}\n",
                ":1: the last message must be a non-empty `user` turn",
            ),
            (
                "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n",
                ":2: id \"a\" repeats",
            ),
            ("\n\n", "no test items"),
            ("{\"prompt\": [1]}\n", ":1: `prompt` must be a string"),
        ] {
            let e = load_text(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
