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
