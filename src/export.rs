//! `flywheel export`: the dataset in the shapes fine-tuning tools read. `openai` (chat
//! `messages` only: the OpenAI fine-tuning format, also TRL's SFTTrainer conversational
//! format), `alpaca` (instruction/input/output), `sharegpt` (conversations with from/value,
//! as Axolotl and LLaMA-Factory read it), `chatml` (one `text` with ChatML markers).

use crate::error::{Error, Result};
use crate::store::write_jsonl;
use serde_json::{json, Value};
use std::path::Path;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Openai,
    Alpaca,
    Sharegpt,
    Chatml,
}

fn messages(r: &Value) -> std::result::Result<Vec<(String, String)>, String> {
    let m = r
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or("no `messages`")?;
    m.iter()
        .map(|x| match (x["role"].as_str(), x["content"].as_str()) {
            (Some(r), Some(c)) => Ok((r.to_string(), c.to_string())),
            _ => Err("a message lacks a string role or content".to_string()),
        })
        .collect()
}

/// One record in `format`.
pub fn convert(r: &Value, format: Format) -> std::result::Result<Value, String> {
    let msgs = messages(r)?;
    Ok(match format {
        Format::Openai => {
            json!({"messages": msgs.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>()})
        }
        Format::Sharegpt => json!({"conversations": msgs.iter().map(|(r, c)| {
            let from = match r.as_str() { "user" => "human", "assistant" => "gpt", other => other };
            json!({"from": from, "value": c})
        }).collect::<Vec<_>>()}),
        Format::Chatml => {
            let text: String = msgs
                .iter()
                .map(|(r, c)| format!("<|im_start|>{r}\n{c}<|im_end|>\n"))
                .collect();
            json!({"text": text})
        }
        Format::Alpaca => {
            let sys = msgs.iter().find(|m| m.0 == "system").map(|m| m.1.clone());
            let a = msgs
                .iter()
                .rposition(|m| m.0 == "assistant")
                .ok_or("no assistant message")?;
            let u = msgs[..a]
                .iter()
                .rposition(|m| m.0 == "user")
                .ok_or("no user message before the assistant's")?;
            if msgs.iter().filter(|m| m.0 == "user").count() > 1 {
                return Err(
                    "multi-turn conversation: alpaca holds one turn (use sharegpt or openai)"
                        .into(),
                );
            }
            let mut o = json!({"instruction": msgs[u].1, "input": "", "output": msgs[a].1});
            if let Some(s) = sys {
                o["system"] = json!(s);
            }
            o
        }
    })
}

/// What an export wrote and which input lines it skipped.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub written: usize,
    /// Input lines that are not JSON records: skipped, to be named on stderr.
    pub skipped: Vec<crate::store::lines::BadLine>,
}

/// Converts a JSONL file; a record that cannot be expressed in the format is an error
/// naming it. A line that is not a JSON record is skipped and listed in the summary (with
/// `strict`, it is an error naming `file:line`).
pub fn export(input: &Path, output: &Path, format: Format, strict: bool) -> Result<ExportSummary> {
    let (recs, skipped) = crate::store::lines::read_split(input, strict)?;
    let out = recs
        .iter()
        .map(|(line, r)| {
            convert(r, format).map_err(|why| {
                // The line is what a user can find; the record's own id, if it has one.
                let named = match r.get("id").and_then(Value::as_str) {
                    Some(id) => format!(" (record {id})"),
                    None => String::new(),
                };
                Error::Spec(format!("{}:{line}{named}: {why}", input.display()))
            })
        })
        .collect::<Result<Vec<Value>>>()?;
    write_jsonl(output, &out)?;
    Ok(ExportSummary {
        written: out.len(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let r = json!({"id":"x","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"},{"role":"assistant","content":"A"}],"provenance":{}});
        assert_eq!(
            convert(&r, Format::Openai).unwrap(),
            json!({"messages": r["messages"]})
        );
        assert_eq!(
            convert(&r, Format::Alpaca).unwrap(),
            json!({"instruction":"Q","input":"","output":"A","system":"S"})
        );
        assert_eq!(
            convert(&r, Format::Sharegpt).unwrap()["conversations"][1],
            json!({"from":"human","value":"Q"})
        );
        assert_eq!(convert(&r, Format::Chatml).unwrap()["text"], "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n");
        let multi = json!({"messages":[{"role":"user","content":"1"},{"role":"assistant","content":"2"},{"role":"user","content":"3"},{"role":"assistant","content":"4"}]});
        assert!(convert(&multi, Format::Alpaca)
            .unwrap_err()
            .contains("multi-turn"));
    }

    #[test]
    fn errors_name_the_line_and_the_records_own_id() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let ok =
            r#"{"messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"}]}"#;
        std::fs::write(&input, format!("{ok}\n\n{{\"text\": \"no messages\"}}\n")).unwrap();
        let e = export(&input, &dir.path().join("o.jsonl"), Format::Openai, false)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("in.jsonl:3: no `messages`"), "{e}");
        std::fs::write(
            &input,
            format!("{ok}\n{{\"id\": \"r7\", \"text\": \"x\"}}\n"),
        )
        .unwrap();
        let e = export(&input, &dir.path().join("o.jsonl"), Format::Openai, false)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("in.jsonl:2 (record r7): no `messages`"), "{e}");
    }
}
