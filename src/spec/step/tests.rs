use super::super::{Sampling, Spec};
use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<Spec> {
    Spec::parse(Path::new("t/spec.toml"), text.to_string())
}

/// The spec from configs/README.md's steps section.
const FULL: &str = r#"[run]
name = "t"

[teacher]
model = "smollm2-135m-instruct"

[seeds]
topic = ["tides", "volcanoes", "glaciers"]
level = ["easy", "hard"]

[[task]]
name = "qa"
sample = 20
samples_per_prompt = 2

  [[task.step]]
  name = "persona"
  sampler = { choice = ["angry", "calm", "confused"], weights = [1, 2, 1] }

  [[task.step]]
  name = "n"
  sampler = { int = [1, 5] }

  [[task.step]]
  name = "heat"
  sampler = { float = [0.0, 1.0] }

  [[task.step]]
  name = "topics"
  sampler = { pick = "topic", k = 2 }

  [[task.step]]
  name = "question"
  template = "Write one {{level}} question a {{persona}} user might ask about {{topic}}."
  system = "You write questions."
  model = "smollm2-135m-instruct"
  max_new_tokens = 64
  sampling = { temperature = 0.9 }
  stop = ["\n\n"]

  [[task.step]]
  name = "answer"
  template = "{{question}}"
  system = "Answer briefly."

  [[task.step]]
  name = "title"
  expression = "Q: {{question}}"

  [[task.step]]
  name = "topic_json"
  json = { from = "question", path = "items.0.name" }

  [task.messages]
  user = "question"
  assistant = "answer"
  system = "persona"
"#;

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The 1-based line of the first `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the spec"));
    text[..at].matches('\n').count() + 1
}

/// `FULL` with its first `from` replaced by `to` must fail at the line of `to`'s last
/// line, naming `field`, with every `needle` in the message.
fn fails_at(from: &str, to: &str, field: &str, needles: &[&str]) -> String {
    let pos = FULL
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in FULL"));
    let text = FULL.replacen(from, to, 1);
    let e = err(&text);
    let line = FULL[..pos].matches('\n').count() + 1 + to.matches('\n').count();
    let at = format!("t/spec.toml:{line}:");
    assert!(e.starts_with(&at), "expected the error at {at}, got: {e}");
    assert!(
        e.contains(&format!(" {field}: ")),
        "expected field {field}: {e}"
    );
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
    e
}

#[test]
fn full_example_parses_to_the_expected_steps() {
    let s = parse(FULL).unwrap();
    let t = &s.tasks[0];
    assert!(t.has_steps());
    assert_eq!(t.template, "");
    assert_eq!(t.system, None);
    assert_eq!(t.sample, Some(20));
    assert_eq!(t.samples_per_prompt, 2);
    let names: Vec<_> = t.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "persona",
            "n",
            "heat",
            "topics",
            "question",
            "answer",
            "title",
            "topic_json"
        ]
    );
    assert_eq!(
        t.steps[0].kind,
        StepKind::Sampler(Sampler::Choice {
            values: vec!["angry".into(), "calm".into(), "confused".into()],
            weights: Some(vec![1.0, 2.0, 1.0]),
        })
    );
    assert_eq!(
        t.steps[1].kind,
        StepKind::Sampler(Sampler::Int { min: 1, max: 5 })
    );
    assert_eq!(
        t.steps[2].kind,
        StepKind::Sampler(Sampler::Float { min: 0.0, max: 1.0 })
    );
    assert_eq!(
        t.steps[3].kind,
        StepKind::Sampler(Sampler::Pick {
            seed: "topic".into(),
            k: 2
        })
    );
    assert_eq!(t.steps[3].vars, ["topic"]);
    assert_eq!(
        t.steps[4].kind,
        StepKind::Llm {
            template: "Write one {{level}} question a {{persona}} user might ask about {{topic}}."
                .into(),
            system: Some("You write questions.".into()),
            model: Some("smollm2-135m-instruct".into()),
            max_new_tokens: Some(64),
            sampling: Some(SamplingOverride {
                temperature: Some(0.9),
                ..Default::default()
            }),
            stop: vec!["\n\n".into()],
            few_shot: None,
            output: None,
            tool_call: false,
            continues: None,
        }
    );
    assert_eq!(t.steps[4].vars, ["level", "persona", "topic"]);
    assert_eq!(
        t.steps[5].kind,
        StepKind::Llm {
            template: "{{question}}".into(),
            system: Some("Answer briefly.".into()),
            model: None,
            max_new_tokens: None,
            sampling: None,
            stop: vec![],
            few_shot: None,
            output: None,
            tool_call: false,
            continues: None,
        }
    );
    assert_eq!(t.steps[5].vars, ["question"]);
    assert_eq!(
        t.steps[6].kind,
        StepKind::Expression("Q: {{question}}".into())
    );
    assert_eq!(
        t.steps[7].kind,
        StepKind::Json {
            from: "question".into(),
            path: vec!["items".into(), "0".into(), "name".into()],
        }
    );
    assert_eq!(t.steps[7].vars, ["question"]);
    assert_eq!(
        t.messages,
        Some(MessageMap {
            system: Some("persona".into()),
            user: "question".into(),
            assistant: "answer".into(),
            conversation: None,
            tool_call: None,
            tool_result: None,
        })
    );
    // The plan expands over the seeds the steps write as `{{…}}`, in order of first use
    // (`pick` draws from `topic` per record; `topic` expands because `question` writes it).
    assert_eq!(t.vars, ["level", "topic"]);
}

#[test]
fn sampling_override_replaces_only_its_fields() {
    let base = Sampling {
        top_p: 0.5,
        stop: vec!["END".into()],
        ..Sampling::default()
    };
    let o = SamplingOverride {
        temperature: Some(0.1),
        ..Default::default()
    };
    let s = o.apply(&base);
    assert_eq!((s.temperature, s.top_p), (0.1, 0.5));
    assert_eq!(s.stop, ["END"]);
}

#[test]
fn a_step_using_itself_or_a_later_step_says_the_order() {
    fails_at(
        "expression = \"Q: {{question}}\"",
        "expression = \"Q: {{title}}\"",
        "task[0].step[6].expression",
        &["step `title` uses `{{title}}`, its own value"],
    );
    fails_at(
        "template = \"{{question}}\"",
        "template = \"{{title}}\"",
        "task[0].step[5].template",
        &["step `answer` uses `{{title}}`, which step 7 computes after it; steps run in the order written"],
    );
    fails_at(
        "system = \"Answer briefly.\"",
        "system = \"Answer like {{title}}.\"",
        "task[0].step[5].system",
        &["which step 7 computes after it"],
    );
}

#[test]
fn an_unknown_variable_lists_seeds_and_earlier_steps() {
    fails_at(
        "template = \"{{question}}\"",
        "template = \"{{questoin}}\"",
        "task[0].step[5].template",
        &[
            "`{{questoin}}`, which is neither a seed variable nor an earlier step",
            "seeds: level, topic",
            "earlier steps: persona, n, heat, topics, question)",
        ],
    );
}

#[test]
fn a_step_is_exactly_one_kind() {
    fails_at(
        "expression = \"Q: {{question}}\"",
        "expression = \"Q: {{question}}\"\n  sampler = { int = [1, 2] }",
        "task[0].step[6].sampler",
        &["step `title` has both `expression` and `sampler`"],
    );
    fails_at(
        "  name = \"title\"\n  expression = \"Q: {{question}}\"",
        "  name = \"title\"",
        "task[0].step[6]",
        &["step `title` has no kind; give exactly one of `template`"],
    );
    fails_at(
        "expression = \"Q: {{question}}\"",
        "expression = \"Q: {{question}}\"\n  model = \"smollm2-135m-instruct\"",
        "task[0].step[6].model",
        &["`model` belongs to LLM steps", "`expression` step"],
    );
    fails_at(
        "sampler = { int = [1, 5] }",
        "sampler = { int = [1, 5] }\n  stop = [\"x\"]",
        "task[0].step[1].stop",
        &["`stop` belongs to LLM steps"],
    );
}

#[test]
fn step_names_are_identifiers_unique_and_not_seeds() {
    fails_at(
        "name = \"title\"",
        "name = \"ti tle\"",
        "task[0].step[6].name",
        &["letters, digits and '_'"],
    );
    fails_at(
        "name = \"title\"",
        "name = \"n\"",
        "task[0].step[6].name",
        &["`n` is already step 2"],
    );
    fails_at(
        "name = \"title\"",
        "name = \"level\"",
        "task[0].step[6].name",
        &["also a seed variable", "ambiguous"],
    );
}

#[test]
fn sampler_bounds() {
    let w = "weights = [1, 2, 1]";
    fails_at(
        w,
        "weights = [1, 2]",
        "task[0].step[0].sampler.weights",
        &["2 weights for 3 choices"],
    );
    fails_at(
        w,
        "weights = [1, -2, 1]",
        "task[0].step[0].sampler.weights",
        &[">= 0, got -2"],
    );
    fails_at(
        w,
        "weights = [0, 0, 0]",
        "task[0].step[0].sampler.weights",
        &["sum to 0"],
    );
    fails_at(
        "choice = [\"angry\", \"calm\", \"confused\"], weights = [1, 2, 1]",
        "choice = []",
        "task[0].step[0].sampler.choice",
        &["empty"],
    );
    fails_at(
        "int = [1, 5]",
        "int = [5, 1]",
        "task[0].step[1].sampler.int",
        &["int = [5, 1]: the first bound must be <= the second"],
    );
    fails_at(
        "int = [1, 5]",
        "int = [1, 5, 7]",
        "task[0].step[1].sampler.int",
        &["got 3 numbers"],
    );
    fails_at(
        "float = [0.0, 1.0]",
        "float = [1.0, 1.0]",
        "task[0].step[2].sampler.float",
        &["the first < the second"],
    );
    fails_at(
        "float = [0.0, 1.0]",
        "float = [0.0, inf]",
        "task[0].step[2].sampler.float",
        &["finite"],
    );
    fails_at(
        "k = 2",
        "k = 4",
        "task[0].step[3].sampler.k",
        &["k = 4", "1 to 3 distinct values of seed list `topic`"],
    );
    fails_at("k = 2", "k = 0", "task[0].step[3].sampler.k", &["k = 0"]);
    fails_at(
        "pick = \"topic\"",
        "pick = \"topics\"",
        "task[0].step[3].sampler.pick",
        &["not a seed variable", "seeds: level, topic"],
    );
    fails_at(
        "int = [1, 5]",
        "int = [1, 5], float = [0.0, 1.0]",
        "task[0].step[1].sampler",
        &["exactly one of", "got int and float"],
    );
    fails_at(
        "int = [1, 5]",
        "int = [1, 5], weights = [1]",
        "task[0].step[1].sampler.weights",
        &["`weights` go with `choice`"],
    );
}

#[test]
fn json_comes_from_an_earlier_text_step() {
    fails_at(
        "json = { from = \"question\", path = \"items.0.name\" }",
        "json = { from = \"persona\", path = \"items.0.name\" }",
        "task[0].step[7].json.from",
        &["`persona`, a sampler step", "(question, answer, title)"],
    );
    // Moved above `question`: a later step.
    let text = FULL
        .replacen(
            "  [[task.step]]\n  name = \"topic_json\"\n  json = { from = \"question\", path = \"items.0.name\" }\n",
            "",
            1,
        )
        .replacen(
            "  [[task.step]]\n  name = \"n\"",
            "  [[task.step]]\n  name = \"topic_json\"\n  json = { from = \"question\", path = \"title\" }\n\n  [[task.step]]\n  name = \"n\"",
            1,
        );
    let e = err(&text);
    assert!(
        e.starts_with(&format!("t/spec.toml:{}:", line_of(&text, "json = { from")))
            && e.contains("task[0].step[1].json.from")
            && e.contains("`question`, which step 6 computes after it"),
        "{e}"
    );
    fails_at(
        "path = \"items.0.name\"",
        "path = \"items..name\"",
        "task[0].step[7].json.path",
        &["not a path"],
    );
    fails_at(
        "path = \"items.0.name\"",
        "path = \"\"",
        "task[0].step[7].json.path",
        &["not a path"],
    );
}

#[test]
fn messages_name_steps_or_seeds() {
    fails_at(
        "assistant = \"answer\"",
        "assistant = \"answr\"",
        "task[0].messages.assistant",
        &[
            "`answr` is neither a step nor a seed variable",
            "steps: persona, n",
        ],
    );
    // A seed variable is a valid turn, and the plan expands over it.
    let s = parse(&FULL.replace("system = \"persona\"", "system = \"level\"")).unwrap();
    assert_eq!(
        s.tasks[0].messages.as_ref().unwrap().system.as_deref(),
        Some("level")
    );
    // `user` and `assistant` are required.
    let e = err(&FULL.replace("  user = \"question\"\n", ""));
    assert!(e.contains("user"), "{e}");
    // Without [task.messages], a task needs an LLM step to make the turns.
    let text = "[run]\nname = \"t\"\n[seeds]\na = [\"x\"]\n[[task]]\nname = \"s\"\n[[task.step]]\nname = \"v\"\nexpression = \"{{a}}\"\n";
    let e = err(text);
    assert!(
        e.starts_with("t/spec.toml:8:")
            && e.contains("task[0].messages")
            && e.contains("no LLM step"),
        "{e}"
    );
    let ok = format!("{text}[task.messages]\nuser = \"a\"\nassistant = \"v\"\n");
    assert_eq!(parse(&ok).unwrap().tasks[0].vars, ["a"]);
}

#[test]
fn a_task_is_a_template_or_steps() {
    fails_at(
        "sample = 20",
        "sample = 20\ntemplate = \"{{topic}}\"",
        "task[0].template",
        &["has both `template` and [[task.step]]"],
    );
    fails_at(
        "sample = 20",
        "sample = 20\nsystem = \"x\"",
        "task[0].system",
        &["on each LLM step"],
    );
    let plain = "[run]\nname = \"t\"\n[[task]]\nname = \"q\"\n";
    let e = err(plain);
    assert!(
        e.starts_with("t/spec.toml:4:") && e.contains("task[0].template: task `q` has neither"),
        "{e}"
    );
    let e = err(&format!(
        "{plain}template = \"hi\"\n[task.messages]\nuser = \"a\"\nassistant = \"b\"\n"
    ));
    assert!(
        e.starts_with("t/spec.toml:6:") && e.contains("task[0].messages"),
        "{e}"
    );
}

#[test]
fn llm_step_settings_have_the_teachers_bounds() {
    fails_at(
        "max_new_tokens = 64",
        "max_new_tokens = 0",
        "task[0].step[4].max_new_tokens",
        &["at least 1"],
    );
    fails_at(
        "max_new_tokens = 64",
        "max_new_tokens = 2000000",
        "task[0].step[4].max_new_tokens",
        &["more than the 1048576 allowed"],
    );
    fails_at(
        "sampling = { temperature = 0.9 }",
        "sampling = { temperature = 0.9, top_p = 1.5 }",
        "task[0].step[4].sampling.top_p",
        &["top_p must be in (0, 1], got 1.5"],
    );
    fails_at(
        "stop = [\"\\n\\n\"]",
        "stop = [\"\"]",
        "task[0].step[4].stop",
        &["must not be empty"],
    );
    fails_at(
        "  model = \"smollm2-135m-instruct\"",
        "  model = \"gpt-9\"",
        "task[0].step[4].model",
        &["unknown model id \"gpt-9\""],
    );
}

#[test]
fn without_a_teacher_every_llm_step_names_its_model() {
    let no_teacher = FULL.replace("[teacher]\nmodel = \"smollm2-135m-instruct\"\n", "");
    let e = err(&no_teacher);
    assert!(
        e.starts_with(&format!(
            "t/spec.toml:{}:",
            line_of(&no_teacher, "name = \"answer\"")
        )) && e.contains("task[0].step[5].model")
            && e.contains("no [teacher] section; `generate` needs one"),
        "{e}"
    );
    let all_named = no_teacher.replace(
        "system = \"Answer briefly.\"",
        "system = \"Answer briefly.\"\n  model = \"smollm2-135m-instruct\"",
    );
    assert!(parse(&all_named).unwrap().teacher.is_none());
}

#[test]
fn the_plan_bound_counts_the_seeds_steps_use() {
    // 5000 × 5000 × 5 = 125M records > 100M, though no template names both lists.
    let big = |n: usize| {
        (0..n)
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[run]\nname = \"t\"\n[teacher]\nmodel = \"smollm2-135m-instruct\"\n[seeds]\na = [{}]\nb = [{}]\n[[task]]\nname = \"s\"\nsamples_per_prompt = 5\n[[task.step]]\nname = \"p\"\nexpression = \"{{{{a}}}}\"\n[[task.step]]\nname = \"q\"\ntemplate = \"{{{{b}}}}\"\n",
        big(5000),
        big(5000)
    );
    // `pick` draws from its list per record: it does not multiply the plan.
    let picked = text.replace("expression = \"{{a}}\"", "sampler = { pick = \"a\" }");
    let s = parse(&picked).unwrap();
    assert_eq!(s.tasks[0].vars, ["b"]);
    let e = err(&text);
    assert!(
        e.starts_with("t/spec.toml:9:") && e.contains("task[0]: the spec plans 125000000 records"),
        "{e}"
    );
}

/// A conversation, an evolve and a few-shot step (configs/README.md's examples). Parsed
/// from a temporary folder holding `examples.txt` and `examples.jsonl`.
const NEW: &str = r#"[run]
name = "t"

[teacher]
model = "smollm2-135m-instruct"

[seeds]
product = ["a phone", "a router"]
mood = ["angry", "confused"]
question = ["It will not turn on."]

[[task]]
name = "support"

  [[task.step]]
  name = "chat"
  system = "You are a patient support agent for {{product}}."
  max_new_tokens = 96
  sampling = { temperature = 0.5 }
  stop = ["</s>"]
    [task.step.conversation]
    turns = [3, 6]
    user_system = "You are a {{mood}} customer. Write [END] when done."
    user_max_new_tokens = 64
    opening = "{{question}}"
    stop_marker = "[END]"

  [[task.step]]
  name = "evolved"
  model = "smollm2-135m-instruct"
    [task.step.evolve]
    from = "question"
    rounds = [1, 3]
    operators = ["deepen", "breadth"]

  [[task.step]]
  name = "fresh"
  template = "Examples:\n{{examples}}\nWrite one new task about {{product}}."
    [task.step.few_shot]
    file = "examples.txt"
    k = 2
    max_similarity = 0.5

  [task.messages]
  system = "fresh"
  conversation = "chat"
"#;

const EXAMPLES_TXT: &str =
    "  Name three rivers.  \n\nSummarize a poem.\nName three rivers.\nTranslate a proverb.\n";

/// `text` parsed as `<tmp>/spec.toml`, beside the example files (and `extra` files).
fn parse_new(text: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, Result<Spec>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("examples.txt"), EXAMPLES_TXT).unwrap();
    std::fs::write(
        dir.path().join("examples.jsonl"),
        "{\"instruction\": \"Name three rivers.\", \"n\": 1}\n\n{\"instruction\": \" Summarize a poem. \"}\n",
    )
    .unwrap();
    for (name, body) in extra {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let r = Spec::parse(&dir.path().join("spec.toml"), text.to_string());
    (dir, r)
}

/// `NEW` with its first `from` replaced by `to` (and `extra` files beside it) must fail
/// at the line of `to`'s last line, naming `field`, with every `needle` in the message.
fn new_fails_at(
    from: &str,
    to: &str,
    extra: &[(&str, &str)],
    field: &str,
    needles: &[&str],
) -> String {
    let pos = NEW
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in NEW"));
    let text = NEW.replacen(from, to, 1);
    let line = NEW[..pos].matches('\n').count() + 1 + to.matches('\n').count();
    new_fails(&text, extra, line, field, needles)
}

/// `text` must fail at `line`, naming `field`, with every `needle` in the message.
fn new_fails(
    text: &str,
    extra: &[(&str, &str)],
    line: usize,
    field: &str,
    needles: &[&str],
) -> String {
    let (dir, r) = parse_new(text, extra);
    let e = match r {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    };
    let at = format!("{}:{line}:", dir.path().join("spec.toml").display());
    assert!(e.starts_with(&at), "expected the error at {at}, got: {e}");
    assert!(
        e.contains(&format!(" {field}: ")),
        "expected field {field}: {e}"
    );
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
    e
}

fn parse_ok(text: &str) -> Spec {
    let (_dir, r) = parse_new(text, &[]);
    r.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn conversation_evolve_and_few_shot_parse() {
    let s = parse_ok(NEW);
    let t = &s.tasks[0];
    let assistant = Call {
        system: Some("You are a patient support agent for {{product}}.".into()),
        model: None,
        max_new_tokens: Some(96),
        sampling: Some(SamplingOverride {
            temperature: Some(0.5),
            ..Default::default()
        }),
        stop: vec!["</s>".into()],
    };
    assert_eq!(
        t.steps[0].kind,
        StepKind::Conversation(Conversation {
            user: Call {
                system: Some("You are a {{mood}} customer. Write [END] when done.".into()),
                max_new_tokens: Some(64),
                ..assistant.clone()
            },
            assistant,
            turns: (3, 6),
            opening: Some("{{question}}".into()),
            stop_marker: Some("[END]".into()),
        })
    );
    assert_eq!(t.steps[0].vars, ["product", "mood", "question"]);
    assert_eq!(
        t.steps[1].kind,
        StepKind::Evolve(Evolve {
            call: Call {
                model: Some("smollm2-135m-instruct".into()),
                ..Default::default()
            },
            from: "question".into(),
            rounds: (1, 3),
            operators: vec![EvolveOp::Deepen, EvolveOp::Breadth],
        })
    );
    assert_eq!(t.steps[1].vars, ["question"]);
    let StepKind::Llm {
        few_shot: Some(f), ..
    } = &t.steps[2].kind
    else {
        panic!("{:?}", t.steps[2].kind)
    };
    // Trimmed, in file order, empty and repeated lines dropped.
    assert_eq!(
        f.examples,
        [
            "Name three rivers.",
            "Summarize a poem.",
            "Translate a proverb."
        ]
    );
    assert_eq!(f.file, Path::new("examples.txt"));
    assert_eq!(
        f.sha256,
        crate::models::checksum::sha256_bytes(
            b"Name three rivers.\nSummarize a poem.\nTranslate a proverb."
        )
    );
    assert_eq!((f.k, f.max_similarity), (2, 0.5));
    // `{{examples}}` is the step's own value, not a seed or a step.
    assert_eq!(t.steps[2].vars, ["product"]);
    assert_eq!(
        t.messages,
        Some(MessageMap {
            system: Some("fresh".into()),
            user: String::new(),
            assistant: String::new(),
            conversation: Some("chat".into()),
            tool_call: None,
            tool_result: None,
        })
    );
    assert_eq!(t.vars, ["product", "mood", "question"]);
}

#[test]
fn defaults_and_short_forms() {
    let text = NEW
        .replace("turns = [3, 6]", "turns = 4")
        .replace("    user_max_new_tokens = 64\n", "")
        .replace(
            "    user_system = \"",
            "    user_model = \"gemma3-270m\"\n    user_system = \"",
        )
        .replace("rounds = [1, 3]", "rounds = 3")
        .replace("    operators = [\"deepen\", \"breadth\"]\n", "")
        .replace(
            "file = \"examples.txt\"",
            "file = \"examples.jsonl\"\n    field = \"instruction\"",
        )
        .replace("    k = 2\n    max_similarity = 0.5\n", "");
    let (_d, r) = parse_new(&text, &[]);
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    // Two usable examples in the JSONL, fewer than the default k = 3.
    assert!(
        e.contains("task[0].step[2].few_shot.k: k is 3 by default")
            && e.contains("has only 2 usable examples"),
        "{e}"
    );
    let s = parse_ok(&text.replace(
        "field = \"instruction\"",
        "field = \"instruction\"\n    k = 2",
    ));
    let t = &s.tasks[0];
    let StepKind::Conversation(c) = &t.steps[0].kind else {
        panic!()
    };
    assert_eq!(c.turns, (4, 4));
    assert_eq!(c.user.model.as_deref(), Some("gemma3-270m"));
    assert_eq!(c.assistant.model, None);
    // The user's budget defaults to the step's.
    assert_eq!(c.user.max_new_tokens, Some(96));
    let StepKind::Evolve(e) = &t.steps[1].kind else {
        panic!()
    };
    assert_eq!(e.rounds, (3, 3));
    assert_eq!(e.operators, EvolveOp::ALL);
    let StepKind::Llm {
        few_shot: Some(f), ..
    } = &t.steps[2].kind
    else {
        panic!()
    };
    assert_eq!(f.examples, ["Name three rivers.", "Summarize a poem."]);
    assert_eq!((f.k, f.max_similarity), (2, 0.7));
}

#[test]
fn conversation_turns_and_keys() {
    new_fails_at(
        "turns = [3, 6]",
        "turns = [6, 3]",
        &[],
        "task[0].step[0].conversation.turns",
        &["turns = [6, 3]: min must be <= max"],
    );
    new_fails_at(
        "turns = [3, 6]",
        "turns = [0, 6]",
        &[],
        "task[0].step[0].conversation.turns",
        &["at least 1 turn"],
    );
    new_fails_at(
        "turns = [3, 6]",
        "turns = [3, 33]",
        &[],
        "task[0].step[0].conversation.turns",
        &["33 turns is more than the 32 allowed"],
    );
    new_fails_at(
        "turns = [3, 6]",
        "turns = \"3\"",
        &[],
        "task[0].step[0].conversation.turns",
        &["expected `turns = [min, max]` or `turns = n`, got string"],
    );
    new_fails_at(
        "turns = [3, 6]",
        "turns = [3, 4, 5]",
        &[],
        "task[0].step[0].conversation.turns",
        &["two integers"],
    );
    new_fails_at(
        "stop_marker = \"[END]\"",
        "stop_marker = \"\"",
        &[],
        "task[0].step[0].conversation.stop_marker",
        &["must not be empty"],
    );
    new_fails_at(
        "user_max_new_tokens = 64",
        "user_max_new_tokens = 0",
        &[],
        "task[0].step[0].conversation.user_max_new_tokens",
        &["at least 1"],
    );
    let text = NEW.replace(
        "    user_system = \"",
        "    user_model = \"gpt-9\"\n    user_system = \"",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "user_model"),
        "task[0].step[0].conversation.user_model",
        &["unknown model id \"gpt-9\""],
    );
    // Required keys are named, at the table.
    let text = NEW.replace("    turns = [3, 6]\n", "");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.conversation]"),
        "task[0].step[0].conversation.turns",
        &["a conversation needs `turns = [min, max]`"],
    );
    let text = NEW.replace(
        "    user_system = \"You are a {{mood}} customer. Write [END] when done.\"\n",
        "",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.conversation]"),
        "task[0].step[0].conversation.user_system",
        &["a conversation needs `user_system`"],
    );
}

#[test]
fn conversation_templates_use_only_seeds_and_earlier_steps() {
    new_fails_at(
        "opening = \"{{question}}\"",
        "opening = \"{{chat}}\"",
        &[],
        "task[0].step[0].conversation.opening",
        &["step `chat` uses `{{chat}}`, its own value"],
    );
    new_fails_at(
        "user_system = \"You are a {{mood}} customer.",
        "user_system = \"You are a {{fresh}} customer.",
        &[],
        "task[0].step[0].conversation.user_system",
        &["step `chat` uses `{{fresh}}`, which step 3 computes after it"],
    );
    new_fails_at(
        "system = \"You are a patient support agent for {{product}}.\"",
        "system = \"You are a patient support agent for {{prodcut}}.\"",
        &[],
        "task[0].step[0].system",
        &["`{{prodcut}}`, which is neither a seed variable nor an earlier step"],
    );
}

#[test]
fn a_step_has_one_kind_among_the_new_ones_too() {
    // "Both" points at the second kind key a reader meets: here the table.
    let text = NEW.replace(
        "  max_new_tokens = 96\n",
        "  max_new_tokens = 96\n  template = \"{{question}}\"\n",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.conversation]"),
        "task[0].step[0].conversation",
        &["step `chat` has both `template` and `conversation`"],
    );
    new_fails_at(
        "  model = \"smollm2-135m-instruct\"\n    [task.step.evolve]",
        "  model = \"smollm2-135m-instruct\"\n  expression = \"x\"\n    [task.step.evolve]",
        &[],
        "task[0].step[1].evolve",
        &["step `evolved` has both `expression` and `evolve`"],
    );
    // few_shot goes with `template` only.
    let text = NEW.replace(
        "    [task.step.evolve]",
        "    [task.step.few_shot]\n    file = \"examples.txt\"\n    [task.step.evolve]",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "    [task.step.few_shot]\n    file = \"examples.txt\"\n    [task"),
        "task[0].step[1].few_shot",
        &["`few_shot` draws examples into an LLM step's `template`; step `evolved` is a `evolve` step"],
    );
    // The LLM keys still belong to model steps only.
    let text =
        format!(
        "{}  [[task.step]]\n  name = \"tail\"\n  expression = \"{{{{chat}}}}\"\n  stop = [\"x\"]\n",
        NEW.replace("  [task.messages]\n  system = \"fresh\"\n  conversation = \"chat\"\n", "")
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "stop = [\"x\"]"),
        "task[0].step[3].stop",
        &["`stop` belongs to LLM steps (those with `template`, `conversation` or `evolve`)"],
    );
}

#[test]
fn evolve_rounds_from_and_operators() {
    new_fails_at(
        "rounds = [1, 3]",
        "rounds = 0",
        &[],
        "task[0].step[1].evolve.rounds",
        &["an evolve step needs at least 1 round"],
    );
    new_fails_at(
        "rounds = [1, 3]",
        "rounds = [0, 3]",
        &[],
        "task[0].step[1].evolve.rounds",
        &["an evolve step needs at least 1 round"],
    );
    new_fails_at(
        "rounds = [1, 3]",
        "rounds = [3, 1]",
        &[],
        "task[0].step[1].evolve.rounds",
        &["rounds = [3, 1]: min must be <= max"],
    );
    new_fails_at(
        "rounds = [1, 3]",
        "rounds = 11",
        &[],
        "task[0].step[1].evolve.rounds",
        &["11 rounds is more than the 10 allowed"],
    );
    new_fails_at(
        "from = \"question\"",
        "from = \"evolved\"",
        &[],
        "task[0].step[1].evolve.from",
        &["step `evolved` evolves `evolved`, its own value"],
    );
    new_fails_at(
        "from = \"question\"",
        "from = \"fresh\"",
        &[],
        "task[0].step[1].evolve.from",
        &["step `evolved` evolves `fresh`, which step 3 computes after it; steps run in the order written"],
    );
    new_fails_at(
        "from = \"question\"",
        "from = \"qestion\"",
        &[],
        "task[0].step[1].evolve.from",
        &[
            "`qestion`, which is neither a seed variable nor an earlier step",
            "seeds: mood, product, question; earlier steps: chat)",
        ],
    );
    // An earlier step is a valid source.
    let s = parse_ok(&NEW.replace("from = \"question\"", "from = \"chat\""));
    assert_eq!(s.tasks[0].steps[1].vars, ["chat"]);
    new_fails_at(
        "operators = [\"deepen\", \"breadth\"]",
        "operators = [\"deepen\", \"widen\"]",
        &[],
        "task[0].step[1].evolve.operators",
        &[
            "unknown operator \"widen\"",
            "add_constraints, deepen, concretize, reasoning, breadth",
        ],
    );
    new_fails_at(
        "operators = [\"deepen\", \"breadth\"]",
        "operators = []",
        &[],
        "task[0].step[1].evolve.operators",
        &["the list is empty"],
    );
    new_fails_at(
        "operators = [\"deepen\", \"breadth\"]",
        "operators = [\"deepen\", \"deepen\"]",
        &[],
        "task[0].step[1].evolve.operators",
        &["\"deepen\" is listed twice"],
    );
    let text = NEW.replace("    from = \"question\"\n", "");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.evolve]"),
        "task[0].step[1].evolve.from",
        &["an evolve step needs `from`"],
    );
    let text = NEW.replace("    rounds = [1, 3]\n", "");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.evolve]"),
        "task[0].step[1].evolve.rounds",
        &["an evolve step needs `rounds = n`"],
    );
}

#[test]
fn few_shot_files_and_bounds() {
    new_fails_at(
        "k = 2",
        "k = 0",
        &[],
        "task[0].step[2].few_shot.k",
        &["k = 0, but few_shot draws 1 to 3 examples"],
    );
    new_fails_at(
        "k = 2",
        "k = 4",
        &[],
        "task[0].step[2].few_shot.k",
        &["k = 4", "has 3 usable"],
    );
    new_fails_at(
        "max_similarity = 0.5",
        "max_similarity = 0.0",
        &[],
        "task[0].step[2].few_shot.max_similarity",
        &["must be in (0, 1], got 0"],
    );
    new_fails_at(
        "max_similarity = 0.5",
        "max_similarity = 1.5",
        &[],
        "task[0].step[2].few_shot.max_similarity",
        &["got 1.5"],
    );
    let e = new_fails_at(
        "file = \"examples.txt\"",
        "file = \"missing.txt\"",
        &[],
        "task[0].step[2].few_shot.file",
        &["cannot read the examples file", "missing.txt"],
    );
    assert!(!e.contains("examples.txt"), "{e}");
    new_fails_at(
        "file = \"examples.txt\"",
        "file = \"blank.txt\"",
        &[("blank.txt", "\n  \n\n")],
        "task[0].step[2].few_shot.file",
        &["blank.txt has no usable examples"],
    );
    let text = NEW.replace("file = \"examples.txt\"", "file = \"examples.jsonl\"");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.few_shot]"),
        "task[0].step[2].few_shot.field",
        &["examples.jsonl is JSONL: say which string field"],
    );
    new_fails_at(
        "file = \"examples.txt\"",
        "file = \"examples.txt\"\n    field = \"instruction\"",
        &[],
        "task[0].step[2].few_shot.field",
        &["`field` is for .jsonl files"],
    );
    // A bad line names the example file and its line.
    for (body, needle) in [
        ("{\"q\": \"a\"}\nnot json\n", "bad.jsonl:2: not valid JSON"),
        (
            "{\"q\": \"a\"}\n\n{\"p\": \"b\"}\n",
            "bad.jsonl:3: the object has no field `q`",
        ),
        (
            "{\"q\": 7}\n",
            "bad.jsonl:1: field `q` is a number, expected a string",
        ),
        (
            "\"a\"\n",
            "bad.jsonl:1: expected a JSON object with field `q`, got a string",
        ),
    ] {
        new_fails_at(
            "file = \"examples.txt\"",
            "field = \"q\"\n    file = \"bad.jsonl\"",
            &[("bad.jsonl", body)],
            "task[0].step[2].few_shot.file",
            &[needle],
        );
    }
    // Lines whose field is empty are dropped, not errors; none left is an error.
    new_fails_at(
        "file = \"examples.txt\"",
        "field = \"q\"\n    file = \"empty.jsonl\"",
        &[("empty.jsonl", "{\"q\": \"  \"}\n")],
        "task[0].step[2].few_shot.file",
        &["empty.jsonl has no usable examples"],
    );
    let text = NEW.replace("    file = \"examples.txt\"\n", "");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.few_shot]"),
        "task[0].step[2].few_shot.file",
        &["few_shot needs `file`"],
    );
}

#[test]
fn examples_placeholder_belongs_to_a_few_shot_template() {
    // Without few_shot, `{{examples}}` is an unknown variable.
    let text = NEW.replace(
        "    [task.step.few_shot]\n    file = \"examples.txt\"\n    k = 2\n    max_similarity = 0.5\n",
        "",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "template = \"Examples"),
        "task[0].step[2].template",
        &["`{{examples}}`, which is neither a seed variable nor an earlier step"],
    );
    // With few_shot, the template must write it.
    new_fails_at(
        "template = \"Examples:\\n{{examples}}\\n",
        "template = \"Examples:\\n",
        &[],
        "task[0].step[2].template",
        &["has few_shot but its template does not write `{{examples}}`"],
    );
    // Only the few-shot step's template: not its system prompt.
    let text = NEW.replace(
        "  template = \"Examples:",
        "  system = \"{{examples}}\"\n  template = \"Examples:",
    );
    new_fails(
        &text,
        &[],
        line_of(&text, "system = \"{{examples}}"),
        "task[0].step[2].system",
        &["`{{examples}}`, which is neither"],
    );
    // A seed called `examples` would make the placeholder ambiguous.
    let text = NEW.replace("[seeds]\n", "[seeds]\nexamples = [\"x\"]\n");
    new_fails(
        &text,
        &[],
        line_of(&text, "[task.step.few_shot]"),
        "task[0].step[2].few_shot",
        &["also a seed variable or an earlier step"],
    );
}

#[test]
fn messages_may_name_a_conversation() {
    new_fails_at(
        "conversation = \"chat\"",
        "conversation = \"fresh\"",
        &[],
        "task[0].messages.conversation",
        &["`fresh` is not a conversation step (those are: chat)"],
    );
    new_fails_at(
        "conversation = \"chat\"",
        "conversation = \"chat\"\n  user = \"fresh\"",
        &[],
        "task[0].messages.user",
        &["`conversation` gives every user and assistant turn, so leave `user` out"],
    );
    let text = NEW.replace("  conversation = \"chat\"\n", "  user = \"question\"\n");
    new_fails(
        &text,
        &[],
        line_of(&text, "  [task.messages]"),
        "task[0].messages.assistant",
        &["[task.messages] needs `assistant`"],
    );
    // user/assistant may name a conversation step: its value is the transcript.
    let s = parse_ok(&NEW.replace(
        "  conversation = \"chat\"\n",
        "  user = \"evolved\"\n  assistant = \"chat\"\n",
    ));
    let m = s.tasks[0].messages.as_ref().unwrap();
    assert_eq!((m.user.as_str(), m.assistant.as_str()), ("evolved", "chat"));
    assert_eq!(m.conversation, None);
    // Without [task.messages], a conversation step makes the turns; an evolve step alone
    // answers nothing, so it cannot.
    let only = "[run]\nname = \"t\"\n[teacher]\nmodel = \"smollm2-135m-instruct\"\n[seeds]\nq = [\"x\"]\n[[task]]\nname = \"s\"\n[[task.step]]\nname = \"e\"\n[task.step.evolve]\nfrom = \"q\"\nrounds = 2\n";
    new_fails(
        only,
        &[],
        line_of(only, "name = \"e\""),
        "task[0].messages",
        &["no LLM step that answers", "an `evolve` step only rewrites"],
    );
    let with_chat = format!(
        "{only}[[task.step]]\nname = \"c\"\n[task.step.conversation]\nturns = 2\nuser_system = \"Ask about {{{{e}}}}.\"\n"
    );
    assert!(parse_ok(&with_chat).tasks[0].messages.is_none());
}

const TOOLS_JSON: &str = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#;

const TOOL_STEPS: &str = r#"[run]
name = "t"

[teacher]
model = "smollm2-135m-instruct"

[seeds]
city = ["Oslo", "Lyon"]

[[task]]
name = "tools"
tools = "tools.json"

  [[task.step]]
  name = "call"
  template = "What is the weather in {{city}}?"
  tool_call = true

  [[task.step]]
  name = "result"
  tool_result = { from = "call", fixture = "results.json" }

  [[task.step]]
  name = "answer"
  template = "{{city}}: {{result}}"

  [task.messages]
  user = "city"
  tool_call = "call"
  tool_result = "result"
  assistant = "answer"
"#;

fn tool_fails(from: &str, to: &str, field: &str, needles: &[&str]) {
    let pos = TOOL_STEPS.find(from).unwrap();
    let text = TOOL_STEPS.replacen(from, to, 1);
    let line = TOOL_STEPS[..pos].matches('\n').count() + 1 + to.matches('\n').count();
    new_fails(
        &text,
        &[
            ("tools.json", TOOLS_JSON),
            ("results.json", r#"{"get_weather": {"t": 3}}"#),
        ],
        line,
        field,
        needles,
    );
}

#[test]
fn tool_calls_parse_and_bad_ones_fail_at_their_field() {
    let (_d, r) = parse_new(
        TOOL_STEPS,
        &[
            ("tools.json", TOOLS_JSON),
            ("results.json", r#"{"get_weather": {"t": 3}}"#),
        ],
    );
    let spec = r.unwrap();
    let t = &spec.tasks[0];
    assert_eq!(t.tools.as_ref().unwrap().names, ["get_weather"]);
    assert!(matches!(
        &t.steps[0].kind,
        StepKind::Llm { tool_call: true, output: Some(o), .. } if o.constraint.kind() == "grammar"
    ));
    assert!(matches!(&t.steps[1].kind, StepKind::ToolResult { from, .. } if from == "call"));
    let m = t.messages.as_ref().unwrap();
    assert_eq!(
        (m.tool_call.as_deref(), m.tool_result.as_deref()),
        (Some("call"), Some("result"))
    );

    tool_fails(
        "tools = \"tools.json\"",
        "tools = \"missing.json\"",
        "task[0].tools",
        &["missing.json"],
    );
    tool_fails(
        "tool_result = { from = \"call\", fixture = \"results.json\" }",
        "tool_result = { from = \"answer\", fixture = \"results.json\" }",
        "task[0].step[1].tool_result.from",
        &["`answer`"],
    );
    tool_fails(
        "tool_result = { from = \"call\", fixture = \"results.json\" }",
        "tool_result = { from = \"call\" }",
        "task[0].step[1].tool_result.fixture",
        &["fixture"],
    );
    tool_fails(
        "  tool_call = true",
        "  output = { regex = \"a\" }\n  tool_call = true",
        "task[0].step[0].tool_call",
        &["both `output` and `tool_call`"],
    );
    tool_fails(
        "  tool_call = \"call\"",
        "  tool_call = \"answer\"",
        "task[0].messages.tool_call",
        &["not a `tool_call = true` step"],
    );
    tool_fails(
        "  name = \"result\"\n  tool_result = { from = \"call\", fixture = \"results.json\" }",
        "  name = \"result\"\n  expression = \"x\"\n  tool_call = true",
        "task[0].step[1].tool_call",
        &["constrains an LLM step"],
    );
    // Without `tools`, a tool_call step says what to add.
    let text = TOOL_STEPS.replacen("tools = \"tools.json\"\n", "", 1);
    let (_d, r) = parse_new(&text, &[("results.json", "{}")]);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("task[0].step[0].tool_call") && e.contains("declares none"),
        "{e}"
    );
}

#[test]
fn a_plain_task_with_tools_runs_as_request_call_result_answer() {
    let text = r#"[run]
name = "t"

[teacher]
model = "smollm2-135m-instruct"

[seeds]
city = ["Oslo", "Lyon"]

[[task]]
name = "plain"
system = "Be brief."
template = "Weather in {{city}}?"
tools = "tools.json"
"#;
    let (_d, r) = parse_new(text, &[("tools.json", TOOLS_JSON)]);
    let spec = r.unwrap();
    let t = &spec.tasks[0];
    let names: Vec<&str> = t.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["system", "request", "call", "result", "answer"]);
    // Without tool_results the teacher simulates the tool under a JSON constraint.
    assert!(matches!(
        &t.steps[3].kind,
        StepKind::Llm {
            output: Some(_),
            tool_call: false,
            ..
        }
    ));
    assert_eq!(t.vars, ["city"]);
    let with_fixture = text.replace(
        "tools = \"tools.json\"\n",
        "tools = \"tools.json\"\ntool_results = \"r.json\"\n",
    );
    let (_d, r) = parse_new(
        &with_fixture,
        &[
            ("tools.json", TOOLS_JSON),
            ("r.json", r#"{"get_wether": {}}"#),
        ],
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("task[0].tool_results") && e.contains("`get_wether`"),
        "{e}"
    );
    // A seed named like one of the program's steps is ambiguous.
    let clash = text.replace("city = [", "request = [\"x\"]\ncity = [");
    let (_d, r) = parse_new(&clash, &[("tools.json", TOOLS_JSON)]);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("`request`") && e.contains("task[0].tools"),
        "{e}"
    );
    // `output` and `tools` on one task.
    let both = text.replace("tools = ", "output = { regex = \"a\" }\ntools = ");
    let (_d, r) = parse_new(&both, &[("tools.json", TOOLS_JSON)]);
    assert!(r.unwrap_err().to_string().contains("leave `output` out"));
}

#[test]
fn continues_takes_an_earlier_template_step_and_no_system() {
    // Valid: the answer continues the question's chat.
    let text = FULL.replace(
        "template = \"{{question}}\"\n  system = \"Answer briefly.\"",
        "template = \"Now answer it.\"\n  continues = \"question\"",
    );
    let spec = parse(&text).expect("continues parses");
    assert!(matches!(
        &spec.tasks[0].steps[5].kind,
        StepKind::Llm { continues: Some(c), system: None, .. } if c == "question"
    ));
    let e = err(&FULL.replacen(
        "template = \"{{question}}\"",
        "template = \"{{question}}\"\n  continues = \"question\"",
        1,
    ));
    assert!(
        e.starts_with("t/spec.toml:45:") && e.contains(" task[0].step[5].system: "),
        "{e}"
    );
    assert!(
        e.contains("continues `question`'s chat, which has its own system prompt; remove `system`"),
        "{e}"
    );
    fails_at(
        "system = \"Answer briefly.\"",
        "continues = \"title\"",
        "task[0].step[5].continues",
        &["step `answer` continues `title`, which step 7 computes after it"],
    );
    fails_at(
        "system = \"Answer briefly.\"",
        "continues = \"answer\"",
        "task[0].step[5].continues",
        &["its own value"],
    );
    fails_at(
        "system = \"Answer briefly.\"",
        "continues = \"persona\"",
        "task[0].step[5].continues",
        &["`persona` is not an LLM step with `template`"],
    );
    fails_at(
        "expression = \"Q: {{question}}\"",
        "expression = \"Q: {{question}}\"\n  continues = \"question\"",
        "task[0].step[6].continues",
        &["`continues` makes an LLM step (one with `template`) continue an earlier chat"],
    );
}
