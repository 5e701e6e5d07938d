//! A typed view of one record: the one place that knows the record shapes flywheel reads
//! (chat `messages`, `prompt` + `response`, alpaca, `text`/`content`).
//!
//! Reasons a record cannot be read are plain strings on purpose: they are data, written into
//! the record (`scores.errors`) or a rejection line, not errors for the caller to match on.

use crate::models::chat::Message;
use crate::spec::Scope;
use serde_json::Value;

/// A borrowed record with typed accessors.
#[derive(Debug, Clone, Copy)]
pub struct View<'a>(&'a Value);

impl<'a> View<'a> {
    pub fn new(record: &'a Value) -> View<'a> {
        View(record)
    }

    /// The raw record.
    pub fn value(&self) -> &'a Value {
        self.0
    }

    /// The record's string `id`, if it has one.
    pub fn id(&self) -> Option<&'a str> {
        self.0.get("id").and_then(Value::as_str)
    }

    fn str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The contents of the `messages` whose role passes `keep`, one per line.
    fn turns(&self, keep: impl Fn(&str) -> bool) -> Option<String> {
        let m = self.0.get("messages")?.as_array()?;
        let parts: Vec<&str> = m
            .iter()
            .filter(|m| keep(m.get("role").and_then(Value::as_str).unwrap_or("")))
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect();
        Some(parts.join("\n"))
    }

    /// The text to compare. `auto`: the contents of all non-system `messages`, else `text`,
    /// `content`, `prompt` + `response`, or `instruction` + `input` + `output`. `assistant` /
    /// `user`: those messages only. Anything else: that top-level string field.
    pub fn text(&self, field: &str) -> Option<String> {
        match field {
            "auto" => self
                .turns(|r| r != "system")
                .or_else(|| self.str("text").map(str::to_string))
                .or_else(|| self.str("content").map(str::to_string))
                .or_else(|| {
                    Some(format!(
                        "{}\n{}",
                        self.str("prompt")?,
                        self.str("response")?
                    ))
                })
                .or_else(|| {
                    Some(format!(
                        "{}\n{}\n{}",
                        self.str("instruction")?,
                        self.str("input").unwrap_or(""),
                        self.str("output")?
                    ))
                }),
            "assistant" | "user" => self.turns(|r| r == field),
            k => self.str(k).map(str::to_string),
        }
    }

    /// What the model wrote: every assistant turn, else (for records without one) the
    /// whole text. Prompts come from the spec's templates, so comparing them would flag
    /// every record that shares a template.
    pub fn response_text(&self) -> String {
        self.text("assistant")
            .filter(|t| !t.is_empty())
            .or_else(|| self.text("auto"))
            .unwrap_or_default()
    }

    /// The last assistant turn, else the whole text (lengths in the report).
    pub fn last_assistant(&self) -> String {
        self.0
            .get("messages")
            .and_then(|m| m.as_array())
            .and_then(|m| m.iter().rev().find(|x| x["role"] == "assistant"))
            .and_then(|m| m["content"].as_str())
            .map(str::to_string)
            .or_else(|| self.text("auto"))
            .unwrap_or_default()
    }

    /// The chat `messages`, each with a string role and content.
    pub fn messages(&self) -> Result<Vec<Message>, String> {
        let m = self
            .0
            .get("messages")
            .and_then(|m| m.as_array())
            .ok_or("no `messages`")?;
        m.iter()
            .map(|x| {
                let calls = x.get("tool_calls").and_then(Value::as_array);
                // An assistant turn that only calls tools may have `content: null`.
                let content = match (x["content"].as_str(), calls) {
                    (Some(c), _) => Some(c),
                    (None, Some(_)) if x["content"].is_null() => Some(""),
                    _ => None,
                };
                match (x["role"].as_str(), content) {
                    (Some(r), Some(c)) => {
                        let mut msg = Message::new(r, c);
                        msg.tool_calls = calls.cloned();
                        msg.tool_call_id = x
                            .get("tool_call_id")
                            .and_then(Value::as_str)
                            .map(String::from);
                        Ok(msg)
                    }
                    _ => Err("a message lacks a string role or content".to_string()),
                }
            })
            .collect()
    }

    /// (prompt, response) from a chat record (`messages`: the last assistant turn and the
    /// user turn before it), a `prompt`/`response` record, or an alpaca record. A blank
    /// response is an error: a judge would still score it, a number that reads like a
    /// verdict.
    pub fn prompt_response(&self) -> Result<(String, String), String> {
        self.prompt_response_in(Scope::LastTurn)
    }

    /// As [`Self::prompt_response`], with `Scope::Transcript` reading a chat record as
    /// its first user turn (the prompt) and every turn after it, as `User:`/`Assistant:`
    /// text, ending on the last assistant turn (the response).
    pub fn prompt_response_in(&self, scope: Scope) -> Result<(String, String), String> {
        let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let rec = self.0;
        // A line that was not a record (see `read_input`) stays unreadable in every rerun.
        if let Some(b) = rec.get("bad_input") {
            return Err(format!(
                "{} (input line {})",
                b["reason"].as_str().unwrap_or("bad_input"),
                b["line"]
            ));
        }
        if let Some(msgs) = rec.get("messages").and_then(|m| m.as_array()) {
            let a = msgs
                .iter()
                .rposition(|m| m.get("role").and_then(|r| r.as_str()) == Some("assistant"))
                .ok_or("record has `messages` but no assistant message to judge")?;
            let response =
                s(&msgs[a], "content").ok_or("the assistant message has no text `content`")?;
            let prompt = msgs[..a]
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
                .and_then(|m| s(m, "content"))
                .ok_or("no user message before the assistant's")?;
            if scope == Scope::Transcript {
                let first = msgs[..a]
                    .iter()
                    .position(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
                    .ok_or("no user message before the assistant's")?;
                let prompt = s(&msgs[first], "content").unwrap_or_default();
                let rest: Vec<String> = msgs[first + 1..=a]
                    .iter()
                    .filter_map(|m| {
                        let who = match m.get("role").and_then(|r| r.as_str())? {
                            "user" => "User",
                            "assistant" => "Assistant",
                            _ => return None,
                        };
                        Some(format!("{who}: {}", s(m, "content").unwrap_or_default()))
                    })
                    .collect();
                // One exchange: the transcript is just the answer.
                if rest.len() == 1 {
                    return non_empty(prompt, response);
                }
                return non_empty(prompt, rest.join("\n\n"));
            }
            return non_empty(prompt, response);
        }
        if let (Some(p), Some(r)) = (s(rec, "prompt"), s(rec, "response")) {
            return non_empty(p, r);
        }
        if let (Some(p), Some(r)) = (s(rec, "instruction"), s(rec, "output")) {
            let input = s(rec, "input").filter(|x| !x.is_empty());
            return non_empty(input.map_or(p.clone(), |i| format!("{p}\n\n{i}")), r);
        }
        Err(
            "record has neither `messages`, nor `prompt` + `response`, nor `instruction` + `output`"
                .into(),
        )
    }
}

/// The prompt a synthetic sample answers: its task and seed values, shared by the
/// `samples_per_prompt` samples of one prompt (`None` for a record without them).
pub fn prompt_key(v: &Value) -> Option<String> {
    let task = v.pointer("/meta/task")?.as_str()?;
    let vars = v
        .pointer("/meta/vars")
        .map(Value::to_string)
        .unwrap_or_default();
    Some(format!("{task}\u{1f}{vars}"))
}

fn non_empty(prompt: String, response: String) -> Result<(String, String), String> {
    if response.trim().is_empty() {
        return Err("the response is empty: nothing to judge".into());
    }
    Ok((prompt, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_meaning_of_text_for_every_shape() {
        let chat = json!({"messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"}]});
        let v = View::new(&chat);
        assert_eq!(v.text("auto").unwrap(), "Q\nA1\nQ2\nA2");
        assert_eq!(v.text("assistant").unwrap(), "A1\nA2");
        assert_eq!(v.response_text(), "A1\nA2");
        assert_eq!(v.last_assistant(), "A2");
        assert_eq!(v.prompt_response().unwrap(), ("Q2".into(), "A2".into()));
        assert_eq!(
            v.prompt_response_in(Scope::Transcript).unwrap(),
            (
                "Q".into(),
                "Assistant: A1\n\nUser: Q2\n\nAssistant: A2".into()
            )
        );
        assert_eq!(v.messages().unwrap().len(), 5);
        let one = json!({"messages": [
            {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]});
        assert_eq!(
            View::new(&one)
                .prompt_response_in(Scope::Transcript)
                .unwrap(),
            ("Q".into(), "A".into()),
            "a single exchange reads the same in both scopes"
        );

        let pr = json!({"prompt": "P", "response": "R", "id": "i"});
        let v = View::new(&pr);
        assert_eq!(v.text("auto").unwrap(), "P\nR");
        assert_eq!(v.response_text(), "P\nR");
        assert_eq!(v.id(), Some("i"));
        assert!(v.messages().unwrap_err().contains("messages"));

        let alpaca = json!({"instruction": "I", "input": "x", "output": "O"});
        assert_eq!(View::new(&alpaca).text("auto").unwrap(), "I\nx\nO");
        assert_eq!(
            View::new(&alpaca).prompt_response().unwrap(),
            ("I\n\nx".into(), "O".into())
        );
        assert_eq!(View::new(&json!({"text": "T"})).text("text").unwrap(), "T");
        assert!(View::new(&json!({"prompt": "P", "response": " "}))
            .prompt_response()
            .is_err());
    }
}
