//! `tools = "tools.json"` on a task: the tools an assistant may call, in the OpenAI
//! function format, and `tool_results` fixtures that answer those calls without a model.
//!
//! The files are read and every tool's parameter schema compiled here, so a bad tools
//! file fails the spec naming the file and the tool, before any model loads. A tool call
//! is generated under one grammar: `{"name": "<tool>", "arguments": <that tool's
//! parameters>}`, written name first, so the arguments are constrained to the schema of
//! the tool the model chose.

use super::Output;
use crate::constrain::Constraint;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most tools one file may declare (each adds an alternative to the call grammar).
pub const MAX_TOOLS: usize = 128;

/// A task's tools.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    /// The file as written (relative to the spec), for messages.
    pub file: PathBuf,
    /// Each tool as the file gives it (`{"type": "function", "function": {...}}`): what
    /// records carry under `tools`, so a trainer sees the same declarations.
    pub list: Vec<Value>,
    /// Tool names, in file order.
    pub names: Vec<String>,
    /// The grammar of one call: `{"name": …, "arguments": …}` for any of the tools.
    pub call: Output,
}

impl Tools {
    /// The block a tool-calling step's system prompt ends with: the declarations and the
    /// shape of the answer (the grammar holds the shape; the words help the model choose).
    pub fn prompt_block(&self) -> String {
        let decl: Vec<String> = self.list.iter().map(Value::to_string).collect();
        format!(
            "You can call these tools (OpenAI function format):\n{}\nCall exactly one tool that serves the request: answer with one JSON object {{\"name\": <tool name>, \"arguments\": <its arguments>}} and nothing else.",
            decl.join("\n")
        )
    }
}

/// Reads and checks a tools file; `err` places a message at the spec's `tools` key.
pub(super) fn load(base: &Path, file: &str, err: &dyn Fn(String) -> Error) -> Result<Tools> {
    let written = PathBuf::from(file);
    let path = base.join(&written);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        err(format!(
            "cannot read the tools file {}: {e}",
            path.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let p = path.display();
    let list = v.as_array().ok_or_else(|| {
        err(format!(
            "{p}: a tools file is a JSON list of tools in the OpenAI function format ([{{\"type\": \"function\", \"function\": {{\"name\": …, \"description\": …, \"parameters\": {{…}}}}}}])"
        ))
    })?;
    if list.is_empty() || list.len() > MAX_TOOLS {
        return Err(err(format!(
            "{p}: declares {} tools; give between 1 and {MAX_TOOLS}",
            list.len()
        )));
    }
    let mut names: Vec<String> = Vec::new();
    let mut alts = Vec::new();
    for (k, t) in list.iter().enumerate() {
        let at = |m: String| err(format!("{p}: tool {} : {m}", k + 1).replace(" : ", ": "));
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(at(
                "`type` must be \"function\" (the OpenAI function format)".into(),
            ));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| at("has no `function` object".into()))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| at("`function.name` is missing or not a string".into()))?;
        let named = |m: String| err(format!("{p}: tool `{name}`: {m}"));
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(named(
                "a tool name is 1 to 64 letters, digits, '_' or '-' (as OpenAI requires)".into(),
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(named(format!(
                "declared twice (tool {} has the same name); tool names are unique",
                names.iter().position(|n| n == name).map_or(0, |i| i + 1)
            )));
        }
        if let Some(d) = f.get("description") {
            if !d.is_string() {
                return Err(named("`description` must be a string".into()));
            }
        }
        let params = match f.get("parameters") {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(s) if s.is_object() => s.clone(),
            Some(_) => return Err(named("`parameters` must be a JSON Schema object".into())),
        };
        if params.get("type").and_then(Value::as_str) != Some("object") {
            return Err(named(
                "`parameters` must be a schema of `\"type\": \"object\"` (arguments are an object)"
                    .into(),
            ));
        }
        if let Err(why) = Constraint::JsonSchema(params.clone()).check() {
            return Err(named(format!("`parameters` cannot be used: {why}")));
        }
        // A rule per tool: its name fixed, then its arguments under its own schema.
        alts.push(format!(
            "\"{{\\\"name\\\": \\\"{name}\\\", \\\"arguments\\\": \" args_{k} \"}}\""
        ));
        names.push(name.to_string());
    }
    let mut lark = format!("start: {}\n", alts.join(" | "));
    for (k, t) in list.iter().enumerate() {
        let mut params = t["function"]
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        if let Some(o) = params.as_object_mut() {
            // Compact arguments: a small model should spend its tokens on values.
            o.entry("x-guidance")
                .or_insert_with(|| serde_json::json!({"whitespace_pattern": "[ ]{0,1}"}));
        }
        lark.push_str(&format!("args_{k}: %json {params}\n"));
    }
    let call = Constraint::Lark(lark);
    call.check().map_err(|why| {
        err(format!(
            "{p}: the tools' call grammar cannot be used: {why}"
        ))
    })?;
    Ok(Tools {
        file: written,
        list: list.clone(),
        names,
        call: Output {
            constraint: call,
            file: None,
        },
    })
}

/// `tool_results = "results.json"`: a result for each tool, answering every call of it
/// without a model. Strings in a result may use `{{argument}}` placeholders, filled from
/// the call's top-level arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    pub file: PathBuf,
    /// Tool name → result.
    pub results: BTreeMap<String, Value>,
    /// sha256 of the file: part of the record ids, so editing it makes new records.
    pub sha256: String,
}

/// Reads a results fixture and checks its keys against the tools.
pub(super) fn load_fixture(
    base: &Path,
    file: &str,
    tools: &Tools,
    err: &dyn Fn(String) -> Error,
) -> Result<Fixture> {
    let written = PathBuf::from(file);
    let path = base.join(&written);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        err(format!(
            "cannot read the tool results file {}: {e}",
            path.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let p = path.display();
    let obj = v.as_object().ok_or_else(|| {
        err(format!(
            "{p}: a tool results file is a JSON object from tool name to its result"
        ))
    })?;
    if let Some(k) = obj.keys().find(|k| !tools.names.contains(k)) {
        return Err(err(format!(
            "{p}: has a result for `{k}`, which {} does not declare (tools: {})",
            tools.file.display(),
            tools.names.join(", ")
        )));
    }
    Ok(Fixture {
        file: written,
        results: obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        sha256: crate::models::checksum::sha256_bytes(text.as_bytes()),
    })
}

/// A generated call's tool name and arguments. The `Err` is a record's failure reason.
pub fn parse_call(text: &str) -> std::result::Result<(String, Value), String> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|_| "tool_call_not_json")?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("tool_call_without_name")?;
    let args = v
        .get("arguments")
        .filter(|a| a.is_object())
        .ok_or("tool_call_without_arguments")?;
    Ok((name.to_string(), args.clone()))
}

impl Fixture {
    /// The result of one call, as the JSON text a `tool` message carries; `Err`: a
    /// record's failure reason (the fixture has no result for that tool).
    pub fn answer(&self, call: &str) -> std::result::Result<String, String> {
        let (name, args) = parse_call(call)?;
        let result = self
            .results
            .get(&name)
            .ok_or_else(|| format!("no_tool_result:{name}"))?;
        let values: BTreeMap<String, String> = args
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let s = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(fill(result, &values).to_string())
    }
}

/// `{{argument}}` placeholders in every string of a result.
fn fill(v: &Value, values: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(super::render(s, values)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, values)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill(x, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn e(m: String) -> Error {
        Error::Spec(m)
    }

    const TOOLS: &str = r#"[
      {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}},
      {"type": "function", "function": {"name": "convert", "parameters": {"type": "object",
        "properties": {"value": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"}},
        "required": ["value", "from", "to"]}}}
    ]"#;

    #[test]
    fn tools_compile_to_a_call_grammar_and_fixtures_fill_arguments() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.json", TOOLS);
        let t = load(d.path(), "t.json", &e).unwrap();
        assert_eq!(t.names, ["get_weather", "convert"]);
        assert!(t.prompt_block().contains("get_weather"));
        write(
            d.path(),
            "r.json",
            r#"{"get_weather": {"city": "{{city}}", "temperature": 21, "unit": "{{unit}}"}}"#,
        );
        let f = load_fixture(d.path(), "r.json", &t, &e).unwrap();
        let got = f
            .answer(r#"{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}"#)
            .unwrap();
        let got: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got["city"], "Oslo");
        assert_eq!(got["temperature"], 21);
        assert_eq!(
            f.answer(r#"{"name": "convert", "arguments": {"value": 1, "from": "m", "to": "ft"}}"#),
            Err("no_tool_result:convert".into())
        );
        assert_eq!(f.answer("nope"), Err("tool_call_not_json".into()));
    }

    #[test]
    fn bad_tools_files_name_the_file_and_the_tool() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("{}", "JSON list"),
            ("[]", "between 1 and"),
            (
                r#"[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}]"#,
                "tool `a`: declared twice",
            ),
            (
                r#"[{"type": "function", "function": {"name": "bad name"}}]"#,
                "tool `bad name`",
            ),
            (
                r#"[{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=a)b"}}}}}]"#,
                "tool `a`: `parameters` cannot be used",
            ),
            (
                r#"[{"type": "function", "function": {"name": "a", "parameters": {"type": "string"}}}]"#,
                "tool `a`",
            ),
            (
                r#"[{"type": "tool", "function": {"name": "a"}}]"#,
                "tool 1: `type`",
            ),
            ("[1,", "t.json:1:"),
        ];
        for (text, want) in cases {
            write(d.path(), "t.json", text);
            let m = load(d.path(), "t.json", &e).unwrap_err().to_string();
            assert!(m.contains(want) && m.contains("t.json"), "{text}: {m}");
        }
        write(d.path(), "t.json", TOOLS);
        let t = load(d.path(), "t.json", &e).unwrap();
        write(d.path(), "r.json", r#"{"get_wether": {}}"#);
        let m = load_fixture(d.path(), "r.json", &t, &e)
            .unwrap_err()
            .to_string();
        assert!(m.contains("`get_wether`"), "{m}");
    }
}
