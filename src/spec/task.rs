//! `[[task]]`: prompt templates with `{{var}}` placeholders, expanded over seed lists, or
//! named steps (`[[task.step]]`, checked in `step.rs`).

use super::step::{self, MessageMap, RawMessages, RawStep, Step};
use super::{Locator, SeedValues};
use crate::error::Result;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use toml::Spanned;

/// The most records one spec may plan (all tasks together). Larger jobs are several specs
/// or, later, shards.
pub const MAX_PLAN_RECORDS: u128 = 100_000_000;
/// The most seed combinations `sample = N` may draw (drawing keeps them all in memory).
pub const MAX_SAMPLE: usize = 10_000_000;
/// The most `samples_per_prompt`.
pub const MAX_SAMPLES_PER_PROMPT: usize = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    name: Spanned<String>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    system: Option<Spanned<String>>,
    #[serde(rename = "step", default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    messages: Option<Spanned<RawMessages>>,
    #[serde(default = "default_samples")]
    samples_per_prompt: Spanned<usize>,
    #[serde(default)]
    sample: Option<Spanned<usize>>,
    #[serde(default)]
    output: Option<Spanned<toml::Value>>,
    #[serde(default)]
    tools: Option<Spanned<String>>,
    #[serde(default)]
    tool_results: Option<Spanned<String>>,
}

fn default_samples() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

/// `[[task]]`: one prompt template, or a list of steps, expanded over the seed lists it
/// names.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    /// User prompt with `{{var}}` placeholders (empty for a task with steps).
    pub template: String,
    /// Optional system prompt, may use placeholders too (`None` for a task with steps).
    pub system: Option<String>,
    /// The task's steps in the order they run; empty for a plain `template` task.
    pub steps: Vec<Step>,
    /// `[task.messages]`; `None` means the last LLM step's prompt and answer (steps only).
    pub messages: Option<MessageMap>,
    /// How many responses to sample for each expanded prompt.
    pub samples_per_prompt: usize,
    /// `None`: the full cartesian product of the seed lists; `Some(n)`: n combinations
    /// drawn from it with the run seed.
    pub sample: Option<usize>,
    /// The seed variables the task uses (the template's, or those any step or turn
    /// reads), in order of first appearance: the plan expands over these.
    pub vars: Vec<String>,
    /// `output = { … }`: the structure every answer must have (plain tasks).
    pub output: Option<super::Output>,
    /// `tools = "tools.json"`: the tools its assistant may call (a plain task with tools
    /// runs as steps: see [`tool_program`]).
    pub tools: Option<super::tools::Tools>,
}

impl Task {
    /// Whether the task is written as `[[task.step]]` rather than one template.
    pub fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Checks every task against the seed lists and bounds the whole plan: the plan is built
/// lazily, but a plan no machine could finish is a mistake better caught here than after
/// a model loads.
pub(super) fn validate(
    raw: &[RawTask],
    seeds: &BTreeMap<String, SeedValues>,
    has_teacher: bool,
    loc: &Locator<'_>,
) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut planned: u128 = 0;
    let mut names = HashSet::new();
    for (i, rt) in raw.iter().enumerate() {
        let task = validate_task(i, rt, seeds, has_teacher, &mut names, loc)?;
        let combos: u128 = task
            .vars
            .iter()
            .map(|v| seeds[v].values.len() as u128)
            .fold(1u128, |a, b| a.saturating_mul(b));
        let combos = task.sample.map_or(combos, |n| combos.min(n as u128));
        let records = combos.saturating_mul(task.samples_per_prompt as u128);
        planned = planned.saturating_add(records);
        if planned > MAX_PLAN_RECORDS {
            let (span, field) = match &rt.template {
                Some(t) => (t.span(), format!("task[{i}].template")),
                None => (rt.name.span(), format!("task[{i}]")),
            };
            return Err(loc.err(
                span,
                &field,
                format!(
                    "the spec plans {planned} records up to this task ({combos} seed combinations × samples_per_prompt {}), more than the {MAX_PLAN_RECORDS} one spec may plan; add `sample = N` to draw N combinations, or shorten the seed lists",
                    task.samples_per_prompt
                ),
            ));
        }
        tasks.push(task);
    }
    Ok(tasks)
}

/// One task: a unique name, placeholders that all have seed lists, counts in bounds.
fn validate_task(
    i: usize,
    rt: &RawTask,
    seeds: &BTreeMap<String, SeedValues>,
    has_teacher: bool,
    names: &mut HashSet<String>,
    loc: &Locator<'_>,
) -> Result<Task> {
    let field = |f: &str| format!("task[{i}].{f}");
    let tname = rt.name.get_ref().clone();
    if tname.is_empty() || !names.insert(tname.clone()) {
        return Err(loc.err(
            rt.name.span(),
            &field("name"),
            format!("task names must be non-empty and unique, got {tname:?}"),
        ));
    }
    let tools = match &rt.tools {
        Some(t) => Some(super::tools::load(loc.base_dir(), t.get_ref(), &|m| {
            loc.err(t.span(), &field("tools"), m)
        })?),
        None => None,
    };
    if let (Some(r), None) = (&rt.tool_results, &tools) {
        return Err(loc.err(
            r.span(),
            &field("tool_results"),
            "`tool_results` answers the calls of the task's `tools`; add `tools = \"tools.json\"`",
        ));
    }
    if let (Some(r), false) = (&rt.tool_results, rt.steps.is_empty()) {
        return Err(loc.err(
            r.span(),
            &field("tool_results"),
            "a task with steps answers tool calls with a step: `tool_result = { from = \"call\", fixture = \"results.json\" }`",
        ));
    }
    if let (Some(t), Some(o)) = (&tools, &rt.output) {
        return Err(loc.err(
            o.span(),
            &field("output"),
            format!(
                "the task's `tools` ({}) give its calls their structure; leave `output` out",
                t.file.display()
            ),
        ));
    }
    let (template, system, steps, messages, vars) = match &rt.template {
        Some(t) if tools.is_some() => {
            let vars = template_vars(i, t, rt.system.as_ref(), seeds, loc)?;
            let tools = tools.as_ref().expect("checked");
            let fixture = match &rt.tool_results {
                Some(r) => Some(super::tools::load_fixture(
                    loc.base_dir(),
                    r.get_ref(),
                    tools,
                    &|m| loc.err(r.span(), &field("tool_results"), m),
                )?),
                None => None,
            };
            let system = rt.system.as_ref().map(|s| s.get_ref().clone());
            let (steps, messages) =
                tool_program(t.get_ref(), system.as_deref(), tools, fixture, &vars);
            if let Some(clash) = steps.iter().find(|s| seeds.contains_key(&s.name)) {
                return Err(loc.err(
                    rt.tools.as_ref().map_or(t.span(), |x| x.span()),
                    &field("tools"),
                    format!("a plain task with `tools` runs as the steps {}; the seed variable `{}` has the same name as one of them: rename it (or write the steps yourself)", steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "), clash.name),
                ));
            }
            (String::new(), None, steps, Some(messages), vars)
        }
        Some(t) if !rt.steps.is_empty() => {
            return Err(loc.err(
                t.span(),
                &field("template"),
                format!("task `{tname}` has both `template` and [[task.step]]; a task is one template or a list of steps, not both"),
            ))
        }
        Some(t) => {
            if let Some(m) = &rt.messages {
                return Err(loc.err(
                    m.span(),
                    &field("messages"),
                    "[task.messages] picks turns from steps, and this task has no [[task.step]]",
                ));
            }
            let vars = template_vars(i, t, rt.system.as_ref(), seeds, loc)?;
            let system = rt.system.as_ref().map(|s| s.get_ref().clone());
            (t.get_ref().clone(), system, Vec::new(), None, vars)
        }
        None if rt.steps.is_empty() => {
            return Err(loc.err(
                rt.name.span(),
                &field("template"),
                format!("task `{tname}` has neither `template` nor [[task.step]]; give one"),
            ))
        }
        None => {
            if let Some(s) = &rt.system {
                return Err(loc.err(
                    s.span(),
                    &field("system"),
                    "a task with steps sets `system` on each LLM step, not on the task",
                ));
            }
            let v = step::validate(
                i,
                &rt.steps,
                rt.messages.as_ref(),
                seeds,
                has_teacher,
                tools.as_ref(),
                loc,
            )?;
            (String::new(), None, v.steps, v.messages, v.seed_vars)
        }
    };
    let spp = &rt.samples_per_prompt;
    if *spp.get_ref() == 0 {
        return Err(loc.err(
            spp.span(),
            &field("samples_per_prompt"),
            "must be at least 1",
        ));
    }
    if *spp.get_ref() > MAX_SAMPLES_PER_PROMPT {
        return Err(loc.err(
            spp.span(),
            &field("samples_per_prompt"),
            format!(
                "{} is more than the {MAX_SAMPLES_PER_PROMPT} allowed",
                spp.get_ref()
            ),
        ));
    }
    if let Some(n) = &rt.sample {
        if *n.get_ref() == 0 {
            return Err(loc.err(
                n.span(),
                &field("sample"),
                "must be at least 1 (leave it out for the full cartesian product)",
            ));
        }
        if *n.get_ref() > MAX_SAMPLE {
            return Err(loc.err(
                n.span(),
                &field("sample"),
                format!("{} is more than the {MAX_SAMPLE} allowed", n.get_ref()),
            ));
        }
    }
    let output = match &rt.output {
        Some(o) if !rt.steps.is_empty() => {
            return Err(loc.err(
                o.span(),
                &field("output"),
                "a task with steps constrains its answers on the LLM steps that make them: set `output = { … }` on that [[task.step]]",
            ))
        }
        Some(o) => Some(super::output::validate(
            o.get_ref(),
            o.span(),
            &field("output"),
            loc,
        )?),
        None => None,
    };
    Ok(Task {
        output,
        tools,
        name: tname,
        template,
        system,
        steps,
        messages,
        samples_per_prompt: *spp.get_ref(),
        sample: rt.sample.as_ref().map(|s| *s.get_ref()),
        vars,
    })
}

/// What the model that simulates a tool is told (a plain task with `tools` and no
/// `tool_results`).
const TOOL_SIMULATOR: &str = "You are the backend of a software tool. Given a call to the tool, reply with the result the tool would return, as one JSON object with realistic values. Reply with the JSON object only.";

/// A plain task with `tools`, as the steps it runs: the user's request (the task's
/// template), the assistant's call of a tool, the tool's result (from `tool_results` or
/// simulated by the teacher), and the assistant's answer that uses it.
fn tool_program(
    template: &str,
    system: Option<&str>,
    tools: &super::tools::Tools,
    fixture: Option<super::tools::Fixture>,
    template_vars: &[String],
) -> (Vec<Step>, MessageMap) {
    use super::step::StepKind;
    let llm = |template: &str, system: Option<&str>, output, tool_call| StepKind::Llm {
        template: template.to_string(),
        system: system.map(str::to_string),
        model: None,
        max_new_tokens: None,
        sampling: None,
        stop: Vec::new(),
        few_shot: None,
        output,
        tool_call,
        continues: None,
    };
    let sys_vars = system
        .map(|s| collect_vars(s).unwrap_or_default())
        .unwrap_or_default();
    let with_sys = |mut v: Vec<String>| {
        for x in &sys_vars {
            push_unique(&mut v, x.clone());
        }
        v
    };
    let mut steps = Vec::new();
    if let Some(s) = system {
        steps.push(Step {
            name: "system".into(),
            kind: StepKind::Expression(s.to_string()),
            vars: sys_vars.clone(),
        });
    }
    steps.push(Step {
        name: "request".into(),
        kind: StepKind::Expression(template.to_string()),
        vars: template_vars.to_vec(),
    });
    steps.push(Step {
        name: "call".into(),
        kind: llm("{{request}}", system, Some(tools.call.clone()), true),
        vars: with_sys(vec!["request".into()]),
    });
    // The declarations go into the simulator's instructions as text; `{{` in them is
    // not a placeholder.
    let decl: Vec<String> = tools.list.iter().map(|t| t.to_string()).collect();
    let simulator = format!(
        "{TOOL_SIMULATOR}\n\nThe tools, as declared:\n{}",
        decl.join("\n").replace("{{", "{ {")
    );
    let (result, result_vars) = match fixture {
        Some(f) => (
            StepKind::ToolResult {
                from: "call".into(),
                fixture: f,
            },
            vec!["call".to_string()],
        ),
        None => (
            llm(
                "The tool call: {{call}}",
                Some(&simulator),
                Some(super::Output {
                    constraint: crate::constrain::Constraint::JsonSchema(
                        serde_json::json!({"type": "object"}),
                    ),
                    file: None,
                }),
                false,
            ),
            vec!["call".to_string()],
        ),
    };
    steps.push(Step {
        name: "result".into(),
        kind: result,
        vars: result_vars,
    });
    steps.push(Step {
        name: "answer".into(),
        kind: llm(
            "{{request}}\n\nYou called a tool: {{call}}\nIt returned: {{result}}\n\nUsing that result, answer the request above in one or two sentences.",
            system,
            None,
            false,
        ),
        vars: with_sys(vec!["request".into(), "call".into(), "result".into()]),
    });
    let messages = MessageMap {
        system: system.map(|_| "system".to_string()),
        user: "request".into(),
        assistant: "answer".into(),
        conversation: None,
        tool_call: Some("call".into()),
        tool_result: Some("result".into()),
    };
    (steps, messages)
}

/// A plain task's placeholders, each with a seed list.
fn template_vars(
    i: usize,
    template: &Spanned<String>,
    system: Option<&Spanned<String>>,
    seeds: &BTreeMap<String, SeedValues>,
    loc: &Locator<'_>,
) -> Result<Vec<String>> {
    let field = |f: &str| format!("task[{i}].{f}");
    let mut vars = Vec::new();
    collect_vars(template.get_ref())
        .map_err(|m| loc.err(template.span(), &field("template"), m))?
        .into_iter()
        .for_each(|v| push_unique(&mut vars, v));
    if let Some(sys) = system {
        collect_vars(sys.get_ref())
            .map_err(|m| loc.err(sys.span(), &field("system"), m))?
            .into_iter()
            .for_each(|v| push_unique(&mut vars, v));
    }
    if let Some(v) = vars.iter().find(|v| !seeds.contains_key(*v)) {
        let known: Vec<_> = seeds.keys().cloned().collect();
        return Err(loc.err(
            template.span(),
            &field("template"),
            format!(
                "template variable {{{{{v}}}}} has no seed list; add `{v} = [\"...\"]` under [seeds] (defined: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        ));
    }
    Ok(vars)
}

fn push_unique(v: &mut Vec<String>, x: String) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// The `{{var}}` names in a template, in order. Unbalanced braces are an error; the `Err`
/// is the reason alone, which the caller places at the template's `file:line`.
pub fn collect_vars(template: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "unclosed `{{{{` in template near {:?}",
                truncate(&rest[start..], 30)
            )
        })?;
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "bad placeholder {{{{{}}}}}: names use letters, digits and '_'",
                &after[..end]
            ));
        }
        out.push(name.to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Replaces `{{var}}` placeholders with values.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
