//! Structured output with the real SmolLM2: every answer made under a constraint matches
//! it, checked independently of the constraint (the `jsonschema` crate, the `regex`
//! crate, set membership); an answer cut off mid-grammar is rejected, never kept; records
//! are the same at batch 1 and 8; bad constraints fail the spec before a model loads.

mod common;

use common::{flywheel, model_file, run, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn answer(r: &Value) -> &str {
    r["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
}

const SCHEMA: &str = include_str!("../configs/schemas/ticket.json");
const SQL: &str = include_str!("../configs/grammars/sql.lark");

/// Writes a spec with the four kinds of constraint: `tickets` records under the nested
/// ticket schema (× 3 moods), 6 dates, 6 labels, 4 SQL queries.
fn spec(dir: &Path, tickets: usize, max_new: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::create_dir_all(dir.join("grammars")).unwrap();
    std::fs::write(dir.join("schemas/ticket.json"), SCHEMA).unwrap();
    std::fs::write(dir.join("grammars/sql.lark"), SQL).unwrap();
    let products: Vec<String> = (0..tickets.div_ceil(3))
        .map(|i| format!("\"product line {i}\""))
        .collect();
    let text = format!(
        r#"[run]
name = "s"
seed = 3
out_dir = "runs"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = {max_new}
batch_size = 16

[teacher.sampling]
temperature = 0.7
top_p = 0.95

[seeds]
product = [{products}]
mood = ["angry", "confused", "polite"]
short = ["a router", "an app"]

[[task]]
name = "ticket"
system = "You turn customer messages into support tickets, as JSON."
template = "Write the support ticket for an {{{{mood}}}} customer with a problem about {{{{product}}}}."
output = {{ json_schema = "schemas/ticket.json" }}

[[task]]
name = "due_date"
template = "When should the {{{{mood}}}} customer's issue with {{{{short}}}} be solved? Answer with a date as YYYY-MM-DD."
output = {{ regex = "20[2-3][0-9]-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])" }}

[[task]]
name = "sentiment"
template = "A {{{{mood}}}} customer writes about {{{{short}}}}. Is the message positive, neutral or negative?"
output = {{ choice = ["positive", "neutral", "negative"] }}

[[task]]
name = "sql"
sample = 4
template = "Write one SQL query over the table products(id, name, price, stock, category) about {{{{short}}}} for an {{{{mood}}}} customer."
output = {{ grammar = "grammars/sql.lark" }}

[dedup]
exact = false
minhash = false
semantic = false

[privacy]
embedder = "none"

[blend]
real = []
"#,
        products = products[..tickets.div_ceil(3)].join(", ")
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn check(r: &Value, schema: &jsonschema::Validator) {
    let out = &r["meta"]["output"];
    let text = answer(r);
    if out["valid"] == false {
        // Cut off mid-grammar: only at the length limit.
        assert_eq!(r["provenance"]["finish_reason"], "length", "{r}");
        return;
    }
    assert_eq!(out["valid"], true, "{r}");
    match r["meta"]["task"].as_str().unwrap() {
        "ticket" => {
            let v: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{errors:?}: {text}");
        }
        "due_date" => {
            let re = regex::Regex::new(r"^20[2-3][0-9]-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
                .unwrap();
            assert!(re.is_match(text), "{text:?}");
        }
        "sentiment" => assert!(
            ["positive", "neutral", "negative"].contains(&text),
            "{text:?}"
        ),
        "sql" => {
            let col = "(id|name|price|stock|category)";
            let re = regex::Regex::new(&format!(
                r"^SELECT (\*|{col}(, {col})*) FROM (products|orders)( WHERE {col} (=|<|>|<=|>=) ([0-9]{{1,6}}|'[a-z ]{{1,20}}'))?( ORDER BY {col}( ASC| DESC)?)?;$"
            ))
            .unwrap();
            assert!(re.is_match(text), "{text:?}");
        }
        t => panic!("unexpected task {t}"),
    }
}

#[test]
fn every_constrained_answer_matches_and_cut_off_ones_are_rejected() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let p = spec(dir.path(), 51, 200);
    let o =
        run(flywheel()
            .current_dir(dir.path())
            .args(["run", "-q", "--device", "cpu", "spec.toml"]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let _ = p;
    let rd = dir.path().join("runs/s");
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let generated = lines(&rd.join("generated.jsonl"));
    let tickets = generated
        .iter()
        .filter(|r| r["meta"]["task"] == "ticket")
        .count();
    assert_eq!(tickets, 51);
    let mut valid_tickets = 0;
    for r in &generated {
        check(r, &validator);
        valid_tickets +=
            usize::from(r["meta"]["task"] == "ticket" && r["meta"]["output"]["valid"] == true);
    }
    assert!(
        valid_tickets >= 45,
        "only {valid_tickets} of 51 tickets finished"
    );
    for t in ["due_date", "sentiment", "sql"] {
        assert!(generated.iter().any(|r| r["meta"]["task"] == t), "{t}");
    }
    // What was cut off is rejected with its reason; the dataset holds only matches.
    let rejected = lines(&rd.join("rejected.jsonl"));
    for r in &generated {
        if r["meta"]["output"]["valid"] == false {
            let rj = rejected
                .iter()
                .find(|x| x["id"] == r["id"])
                .unwrap_or_else(|| panic!("not rejected: {r}"));
            assert_eq!(rj["decision"]["reason"], "truncated_in_grammar", "{rj}");
        }
    }
    let dataset = lines(&rd.join("dataset.jsonl"));
    let valid = generated
        .iter()
        .filter(|r| r["meta"]["output"]["valid"] == true)
        .count();
    assert_eq!(dataset.len(), valid, "every match is kept (no dedup here)");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("report.json")).unwrap()).unwrap();
    let rows = report["structured"].as_array().unwrap();
    let row = rows.iter().find(|r| r["task"] == "ticket").unwrap();
    assert_eq!(row["records"], 51);
    assert_eq!(row["valid"].as_u64().unwrap() as usize, valid_tickets);
    assert_eq!(row["constraint"], "json_schema");
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(html.contains("Structured output"));
    for r in &dataset {
        assert_eq!(r["meta"]["output"]["valid"], true, "{r}");
        check(r, &validator);
    }
}

#[test]
fn constrained_records_are_the_same_at_batch_1_and_8() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    spec(dir.path(), 3, 96);
    let gen = |batch: &str, out: &str| {
        let o = run(flywheel().current_dir(dir.path()).args([
            "generate",
            "-q",
            "--device",
            "cpu",
            "spec.toml",
            "--batch-size",
            batch,
            "--out",
            out,
        ]));
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        let mut v: Vec<String> =
            std::fs::read_to_string(dir.path().join(out).join("generated.jsonl"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
        v.sort();
        v
    };
    let a = gen("1", "b1");
    let b = gen("8", "b8");
    assert_eq!(a.len(), 3 + 6 + 6 + 4);
    assert_eq!(a, b);
}

#[test]
fn bad_constraints_fail_the_spec_before_a_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let base = spec(dir.path(), 3, 32);
    let text = std::fs::read_to_string(&base).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            text.replace("schemas/ticket.json", "schemas/missing.json"),
            "cannot read the JSON Schema",
        ),
        (
            text.replace(
                r#"output = { regex = "20[2-3][0-9]-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])" }"#,
                r#"output = { regex = "(unclosed" }"#,
            ),
            "regex",
        ),
        (
            text.replace(
                r#"output = { choice = ["positive", "neutral", "negative"] }"#,
                r#"output = { choice = [] }"#,
            ),
            "choice",
        ),
        (
            text.replace(
                r#"output = { choice = ["positive", "neutral", "negative"] }"#,
                r#"output = { choice = ["a"], regex = "b" }"#,
            ),
            "exactly one",
        ),
    ];
    for (i, (t, want)) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, t).unwrap();
        let o = run(flywheel()
            .args(["generate", "--offline", "--device", "cpu"])
            .arg(&p));
        assert_eq!(o.status.code(), Some(1), "{i}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("bad{i}.toml:")),
            "{i}: no file:line: {e}"
        );
        assert!(e.contains("output"), "{i}: {e}");
        assert!(e.contains(want), "{i}: want {want:?}: {e}");
    }
    // An unsupported schema keyword is named.
    std::fs::write(
        dir.path().join("schemas/ticket.json"),
        r#"{"type": "array", "unevaluatedItems": false}"#,
    )
    .unwrap();
    let o = run(flywheel()
        .args(["generate", "--offline", "--device", "cpu"])
        .arg(&base));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unevaluatedItems"), "{}", stderr(&o));
    // A broken grammar names its file.
    std::fs::write(
        dir.path().join("grammars/sql.lark"),
        "start: undefined_rule\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("schemas/ticket.json"), SCHEMA).unwrap();
    let o = run(flywheel()
        .args(["generate", "--offline", "--device", "cpu"])
        .arg(&base));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("grammars/sql.lark") && e.contains("undefined_rule"),
        "{e}"
    );
}

/// Gemma's SentencePiece vocabulary (a different token-bytes path from SmolLM2's byte-level
/// BPE) is held to a regex and to choices too.
#[test]
fn gemma_is_held_to_a_regex_and_choices() {
    model_file("gemma3-270m");
    let dir = tempfile::tempdir().unwrap();
    let p = spec(dir.path(), 3, 48);
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("smollm2-135m-instruct", "gemma3-270m");
    std::fs::write(&p, t).unwrap();
    let o = run(flywheel().current_dir(dir.path()).args([
        "generate",
        "-q",
        "--device",
        "cpu",
        "spec.toml",
    ]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let generated = lines(&dir.path().join("runs/s/generated.jsonl"));
    let mut complete = 0;
    for r in &generated {
        check(r, &validator);
        if r["meta"]["task"] != "ticket" {
            assert_eq!(r["meta"]["output"]["valid"], true, "{r}");
            complete += 1;
        }
    }
    assert_eq!(complete, 16);
}

/// The shipped tool-calling spec, run end to end in a scratch copy of `configs/`.
#[test]
fn tool_call_records_validate_against_their_tools_schema_and_export_as_openai() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    std::fs::create_dir_all(dir.path().join("tools")).unwrap();
    for f in [
        "tool-calls.toml",
        "tools/assistant.json",
        "tools/results.json",
    ] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let o = run(flywheel().current_dir(dir.path()).args([
        "run",
        "-q",
        "--device",
        "cpu",
        "tool-calls.toml",
    ]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let rd = dir.path().join("runs/tool-calls");
    let tools: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tools/assistant.json")).unwrap())
            .unwrap();
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tools/results.json")).unwrap())
            .unwrap();
    let generated = lines(&rd.join("generated.jsonl"));
    let rejected = std::fs::read_to_string(rd.join("steps_rejected.jsonl")).unwrap_or_default();
    let plain = generated
        .iter()
        .filter(|r| r["meta"]["task"] == "assistant")
        .count();
    let steps = generated.len() - plain;
    // 6 needs × 3 styles, and 6 sampled; a record may fail a step, never silently.
    assert_eq!(
        plain + steps + rejected.lines().count(),
        18 + 6,
        "records {} + rejected {}",
        generated.len(),
        rejected
    );
    assert!(plain >= 15 && steps >= 4, "{plain} {steps}\n{rejected}");
    let mut names = std::collections::BTreeSet::new();
    for r in &generated {
        assert_eq!(r["tools"], tools, "records carry the declarations");
        let m = r["messages"].as_array().unwrap();
        let k = m.iter().position(|x| x["role"] == "user").unwrap();
        let (call, tool, answer) = (&m[k + 1], &m[k + 2], &m[k + 3]);
        assert_eq!(m.len(), k + 4, "{r}");
        assert_eq!(call["role"], "assistant");
        let tc = &call["tool_calls"][0];
        assert_eq!(tc["type"], "function");
        let name = tc["function"]["name"].as_str().unwrap();
        names.insert(name.to_string());
        let decl = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .unwrap_or_else(|| panic!("undeclared tool {name}"));
        // Arguments are a JSON string (OpenAI format) valid under the tool's schema,
        // checked by the jsonschema crate, not by the grammar that made them.
        let args: Value =
            serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
        let v = jsonschema::validator_for(&decl["function"]["parameters"]).unwrap();
        assert!(v.is_valid(&args), "{name} {args}");
        assert_eq!(tool["role"], "tool");
        assert_eq!(tool["tool_call_id"], tc["id"]);
        let result: Value = serde_json::from_str(tool["content"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("tool result is JSON: {e}: {tool}"));
        assert!(result.is_object());
        if r["meta"]["task"] == "assistant" {
            // The fixture's result with the call's arguments filled in.
            let want = &fixture[name];
            for (key, val) in want.as_object().unwrap() {
                match val.as_str() {
                    Some(s) if s.starts_with("{{") && !s.contains(' ') => {
                        let arg = &s[2..s.len() - 2];
                        let a = match &args[arg] {
                            Value::String(x) => x.clone(),
                            other => other.to_string(),
                        };
                        assert_eq!(result[key], Value::String(a), "{key} of {result}");
                    }
                    _ if !val.is_string() => assert_eq!(&result[key], val),
                    _ => {}
                }
            }
        }
        assert_eq!(answer["role"], "assistant");
        assert!(!answer["content"].as_str().unwrap().trim().is_empty());
    }
    assert!(
        names.len() >= 2,
        "the model chose among the tools: {names:?}"
    );
    // The exports keep the calls: OpenAI/TRL format, and LLaMA-Factory's sharegpt.
    let openai = dir.path().join("openai.jsonl");
    let o = run(flywheel()
        .arg("export")
        .arg(rd.join("dataset.jsonl"))
        .args(["--format", "openai", "--output"])
        .arg(&openai));
    assert!(o.status.success(), "{}", stderr(&o));
    let exported = lines(&openai);
    assert!(!exported.is_empty());
    for e in &exported {
        assert_eq!(e["tools"], tools);
        let m = e["messages"].as_array().unwrap();
        assert!(m.iter().any(|x| x["tool_calls"].is_array()), "{e}");
        assert!(m
            .iter()
            .any(|x| x["role"] == "tool" && x["tool_call_id"].is_string()));
    }
    let sg = dir.path().join("sharegpt.jsonl");
    let o = run(flywheel()
        .arg("export")
        .arg(rd.join("dataset.jsonl"))
        .args(["--format", "sharegpt", "--output"])
        .arg(&sg));
    assert!(o.status.success(), "{}", stderr(&o));
    let first = &lines(&sg)[0];
    let froms: Vec<&str> = first["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["from"].as_str().unwrap())
        .collect();
    assert!(
        froms.contains(&"function_call") && froms.contains(&"observation"),
        "{froms:?}"
    );
    assert!(first["tools"].is_string());
    let o = run(flywheel()
        .arg("export")
        .arg(rd.join("dataset.jsonl"))
        .args(["--format", "chatml", "--output"])
        .arg(dir.path().join("c.jsonl")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tool-calling record"), "{}", stderr(&o));
}
