//! `[[task.step]]`: a task written as named steps (LLM calls, possibly few-shot,
//! conversations, evolutions, samplers, text expressions, JSON extractions), each able to
//! use seed variables and earlier steps' values.
//!
//! The graph is checked here, before any model loads: steps run in the order written, so
//! a step may use only seeds and steps above it, and an error says which step comes later
//! rather than just "unknown". Few-shot example files are read here too, so a bad one
//! fails the spec, not the run.

use super::task::collect_vars;
use super::teacher::{sampling_problem, MAX_NEW_TOKENS};
use super::{check_model, model_ref, Locator, Sampling, SeedValues};
use crate::error::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// One step as written. Every key is optional here: which kind a step is depends on
/// which kind key is present, checked in [`validate`] so errors can say so.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    name: Spanned<String>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    sampler: Option<Spanned<RawSampler>>,
    #[serde(default)]
    expression: Option<Spanned<String>>,
    #[serde(default)]
    json: Option<Spanned<RawJson>>,
    #[serde(default)]
    system: Option<Spanned<String>>,
    #[serde(default)]
    model: Option<Spanned<String>>,
    #[serde(default)]
    max_new_tokens: Option<Spanned<usize>>,
    #[serde(default)]
    sampling: Option<Spanned<RawSamplingOverride>>,
    #[serde(default)]
    stop: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    conversation: Option<Spanned<RawConversation>>,
    #[serde(default)]
    evolve: Option<Spanned<RawEvolve>>,
    #[serde(default)]
    few_shot: Option<Spanned<RawFewShot>>,
    /// `output = { … }` on an LLM step: the structure its answer must have.
    #[serde(default)]
    output: Option<Spanned<toml::Value>>,
    /// `tool_call = true` on an LLM step: its answer is one call of the task's tools.
    #[serde(default)]
    tool_call: Option<Spanned<bool>>,
    #[serde(default)]
    tool_result: Option<Spanned<RawToolResult>>,
    /// `continues = "draft"` on an LLM step: its prompt is that step's chat, answer
    /// included, with this step's template as the next user message.
    #[serde(default)]
    continues: Option<Spanned<String>>,
}

/// `tool_result = { from = "call", fixture = "tools/results.json" }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolResult {
    #[serde(default)]
    from: Option<Spanned<String>>,
    #[serde(default)]
    fixture: Option<Spanned<String>>,
}

/// `[task.step.conversation]` as written. Required keys are `Option` so that a missing
/// one gets an error naming its field, not serde's bare "missing field".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConversation {
    /// An integer or `[min, max]`; read as a value so both forms get our messages.
    #[serde(default)]
    turns: Option<Spanned<toml::Value>>,
    #[serde(default)]
    user_system: Option<Spanned<String>>,
    #[serde(default)]
    user_model: Option<Spanned<String>>,
    #[serde(default)]
    user_max_new_tokens: Option<Spanned<usize>>,
    #[serde(default)]
    opening: Option<Spanned<String>>,
    #[serde(default)]
    stop_marker: Option<Spanned<String>>,
}

/// `[task.step.evolve]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvolve {
    #[serde(default)]
    from: Option<Spanned<String>>,
    /// An integer or `[min, max]`.
    #[serde(default)]
    rounds: Option<Spanned<toml::Value>>,
    #[serde(default)]
    operators: Option<Spanned<Vec<String>>>,
}

/// `[task.step.few_shot]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFewShot {
    #[serde(default)]
    file: Option<Spanned<String>>,
    #[serde(default)]
    field: Option<Spanned<String>>,
    #[serde(default)]
    k: Option<Spanned<usize>>,
    #[serde(default)]
    max_similarity: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    #[serde(default)]
    choice: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    weights: Option<Spanned<Vec<f64>>>,
    #[serde(default)]
    int: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    float: Option<Spanned<Vec<f64>>>,
    #[serde(default)]
    pick: Option<Spanned<String>>,
    #[serde(default)]
    k: Option<Spanned<usize>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJson {
    from: Spanned<String>,
    path: Spanned<String>,
}

/// `sampling = { ... }` on a step. Stop strings are the step's own `stop` key, so they
/// are not accepted here too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSamplingOverride {
    #[serde(default)]
    temperature: Option<Spanned<f32>>,
    #[serde(default)]
    top_p: Option<Spanned<f32>>,
    #[serde(default)]
    top_k: Option<Spanned<usize>>,
    #[serde(default)]
    repetition_penalty: Option<Spanned<f32>>,
}

/// The one kind key a step has, borrowed from it.
enum RawKind<'a> {
    Llm(&'a Spanned<String>),
    Sampler(&'a Spanned<RawSampler>),
    Expression(&'a Spanned<String>),
    Json(&'a Spanned<RawJson>),
    Conversation(&'a Spanned<RawConversation>),
    Evolve(&'a Spanned<RawEvolve>),
    ToolResult(&'a Spanned<RawToolResult>),
}

/// `[task.messages]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessages {
    #[serde(default)]
    system: Option<Spanned<String>>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    assistant: Option<Spanned<String>>,
    #[serde(default)]
    conversation: Option<Spanned<String>>,
    #[serde(default)]
    tool_call: Option<Spanned<String>>,
    #[serde(default)]
    tool_result: Option<Spanned<String>>,
}

/// One validated step of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the task; `{{name}}` in later steps is this step's value.
    pub name: String,
    pub kind: StepKind,
    /// The names this step reads (seed variables and earlier steps: placeholders, the
    /// `pick` list, `json.from`), in order of first appearance.
    pub vars: Vec<String>,
}

/// What a step computes.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A model call: `template` is the user prompt.
    Llm {
        template: String,
        system: Option<String>,
        /// `None`: `[teacher].model`. Otherwise resolved as `teacher.model` is.
        model: Option<String>,
        /// `None`: `[teacher].max_new_tokens`.
        max_new_tokens: Option<usize>,
        /// Fields that replace `[teacher.sampling]`'s for this step.
        sampling: Option<SamplingOverride>,
        /// Stop strings of this step, in addition to `[teacher.sampling].stop`.
        stop: Vec<String>,
        /// `[task.step.few_shot]`: real examples drawn per record into `{{examples}}`,
        /// and the output refused as `copies_example` when it nearly copies one.
        few_shot: Option<FewShot>,
        /// `output = { … }`: grammar-constrained answer (a tool call's grammar when
        /// `tool_call`). An answer cut off inside the grammar fails the record.
        output: Option<super::Output>,
        /// `tool_call = true`: the answer is one call of the task's tools, and the task's
        /// tool declarations end the system prompt.
        tool_call: bool,
        /// `continues`: an earlier LLM step whose chat (its messages and its answer) this
        /// step's user message follows (self-refine, critique-then-revise in one chat).
        /// The shared prefix is not prefilled again.
        continues: Option<String>,
    },
    /// `[task.step.conversation]`: a simulated user and the assistant, turn by turn.
    Conversation(Conversation),
    /// `[task.step.evolve]`: an instruction rewritten round by round (evol-instruct).
    Evolve(Evolve),
    /// A value drawn per record with the record's seed.
    Sampler(Sampler),
    /// A template over seeds and earlier steps; no model.
    Expression(String),
    /// `tool_result`: the fixture's result for an earlier step's tool call; no model.
    ToolResult {
        from: String,
        fixture: super::tools::Fixture,
    },
    /// A field of an earlier LLM or expression step's output, parsed as JSON.
    Json {
        from: String,
        /// Dotted path split into segments; a segment of digits indexes an array.
        path: Vec<String>,
    },
}

/// A sampler step's distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// One of `values`, with `weights` (same length, sum > 0) or uniformly.
    Choice {
        values: Vec<String>,
        weights: Option<Vec<f64>>,
    },
    /// A uniform integer in `[min, max]` (both included).
    Int { min: i64, max: i64 },
    /// A uniform float in `[min, max)`.
    Float { min: f64, max: f64 },
    /// `k` distinct values of seed list `seed`, joined by ", ".
    Pick { seed: String, k: usize },
}

/// The model side of an LLM call: what `[teacher]` gives when unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Call {
    /// Rendered per record (placeholders: seeds and earlier steps).
    pub system: Option<String>,
    /// `None`: `[teacher].model`. Otherwise resolved as `teacher.model` is.
    pub model: Option<String>,
    /// `None`: `[teacher].max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    pub sampling: Option<SamplingOverride>,
    /// In addition to `[teacher.sampling].stop`.
    pub stop: Vec<String>,
}

/// `[task.step.few_shot]` on an LLM step.
#[derive(Debug, Clone, PartialEq)]
pub struct FewShot {
    /// The examples file as written (relative to the spec), for messages.
    pub file: std::path::PathBuf,
    /// The usable examples, in file order (empty and repeated lines dropped).
    pub examples: Vec<String>,
    /// sha256 of `examples` joined by "\n": in the generation fingerprint.
    pub sha256: String,
    /// Examples drawn per record (at most the number of examples).
    pub k: usize,
    /// MinHash Jaccard estimate (word 3-shingles) at or above which a new instruction
    /// counts as a copy of an example. Default 0.7.
    pub max_similarity: f64,
}

/// `[task.step.conversation]`. The step's own `system`/`model`/sampling keys are the
/// assistant's; `user_*` are the simulated user's.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The assistant side.
    pub assistant: Call,
    /// The simulated user: `system` is `user_system` (required: persona and goal),
    /// `model` is `user_model` (default: the assistant's model).
    pub user: Call,
    /// Assistant turns, drawn per record in `[min, max]` (both included, min >= 1).
    pub turns: (usize, usize),
    /// The first user message (a template), instead of the simulated user writing it.
    pub opening: Option<String>,
    /// Text the simulated user writes to end the conversation early (after at least
    /// one assistant turn); cut from its message.
    pub stop_marker: Option<String>,
}

/// One way to rewrite an instruction (WizardLM's evol-instruct operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvolveOp {
    AddConstraints,
    Deepen,
    Concretize,
    Reasoning,
    Breadth,
}

impl EvolveOp {
    pub const ALL: [EvolveOp; 5] = [
        EvolveOp::AddConstraints,
        EvolveOp::Deepen,
        EvolveOp::Concretize,
        EvolveOp::Reasoning,
        EvolveOp::Breadth,
    ];

    /// The name used in specs and in `meta.lineage`.
    pub fn name(self) -> &'static str {
        match self {
            EvolveOp::AddConstraints => "add_constraints",
            EvolveOp::Deepen => "deepen",
            EvolveOp::Concretize => "concretize",
            EvolveOp::Reasoning => "reasoning",
            EvolveOp::Breadth => "breadth",
        }
    }

    pub fn parse(s: &str) -> Option<EvolveOp> {
        EvolveOp::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// `[task.step.evolve]`. The step's `system`/`model`/sampling keys are the rewriter's.
#[derive(Debug, Clone, PartialEq)]
pub struct Evolve {
    pub call: Call,
    /// The seed variable or earlier step holding the instruction to evolve.
    pub from: String,
    /// Rounds per record, drawn in `[min, max]` (both included, min >= 1). A round whose
    /// rewrite fails stops the evolution there: the record keeps its last good
    /// instruction (difficulty = rounds that succeeded), or fails when round 1 did.
    pub rounds: (usize, usize),
    /// Drawn per round, uniformly, from these (default: all).
    pub operators: Vec<EvolveOp>,
}

/// Per-step sampling: each `Some` field replaces `[teacher.sampling]`'s.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SamplingOverride {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
}

impl SamplingOverride {
    /// `base` with this override's fields in place.
    pub fn apply(&self, base: &Sampling) -> Sampling {
        Sampling {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_p: self.top_p.unwrap_or(base.top_p),
            top_k: self.top_k.unwrap_or(base.top_k),
            repetition_penalty: self.repetition_penalty.unwrap_or(base.repetition_penalty),
            stop: base.stop.clone(),
        }
    }
}

/// `[task.messages]`: which step (or seed variable) fills each turn of the record.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageMap {
    pub system: Option<String>,
    /// Empty when `conversation` is set.
    pub user: String,
    /// Empty when `conversation` is set.
    pub assistant: String,
    /// A conversation step whose transcript is the record's turns (after `system`).
    pub conversation: Option<String>,
    /// A `tool_call` step: the record's first assistant turn calls a tool (OpenAI
    /// `tool_calls`), then comes a `tool` message (`tool_result`), then `assistant`.
    pub tool_call: Option<String>,
    /// The step or seed variable whose value is the tool's answer.
    pub tool_result: Option<String>,
}

/// The validated steps of task `i`.
pub(super) struct Validated {
    pub steps: Vec<Step>,
    pub messages: Option<MessageMap>,
    /// Seed variables any step or turn uses, in order of first use: the plan expands
    /// over these.
    pub seed_vars: Vec<String>,
}

const KINDS: &str =
    "`template` (an LLM call), `conversation`, `evolve`, `sampler`, `expression`, `json` or `tool_result`";
/// The most assistant turns a conversation may have.
const MAX_TURNS: usize = 32;
/// The most rounds an evolve step may run.
const MAX_ROUNDS: usize = 10;
/// The placeholder a few-shot step's template writes for its drawn examples.
const EXAMPLES: &str = "examples";
/// Examples drawn per record when `few_shot.k` is unset.
const DEFAULT_K: usize = 3;
/// `few_shot.max_similarity` when unset.
const DEFAULT_MAX_SIMILARITY: f64 = 0.7;

/// Checks a task's steps and `[task.messages]` against its seeds, in the order written.
pub(super) fn validate(
    i: usize,
    raw: &[RawStep],
    messages: Option<&Spanned<RawMessages>>,
    seeds: &BTreeMap<String, SeedValues>,
    has_teacher: bool,
    tools: Option<&super::tools::Tools>,
    loc: &Locator<'_>,
) -> Result<Validated> {
    check_names(i, raw, seeds, loc)?;
    let names: Vec<&str> = raw.iter().map(|s| s.name.get_ref().as_str()).collect();
    let mut cx = Cx {
        i,
        names: &names,
        seeds,
        tools,
        loc,
        steps: Vec::new(),
        seed_vars: Vec::new(),
    };
    for (j, rs) in raw.iter().enumerate() {
        let step = cx.step(j, rs, has_teacher)?;
        cx.steps.push(step);
    }
    let messages = match messages {
        Some(m) => Some(cx.messages(m)?),
        None => {
            // The default turns are the last LLM or conversation step's; an evolve step
            // rewrites an instruction and answers nothing, so it cannot make them.
            if !cx
                .steps
                .iter()
                .any(|s| matches!(s.kind, StepKind::Llm { .. } | StepKind::Conversation(_)))
            {
                return Err(loc.err(
                    raw[0].name.span(),
                    &format!("task[{i}].messages"),
                    "this task has no LLM step that answers (one with `template` or `conversation`; an `evolve` step only rewrites an instruction), so add [task.messages] to say which values make the `user` and `assistant` turns",
                ));
            }
            None
        }
    };
    Ok(Validated {
        steps: cx.steps,
        messages,
        seed_vars: cx.seed_vars,
    })
}

/// Names are placeholders in later steps: plain identifiers, unique, and never a seed
/// variable's (`{{x}}` would be ambiguous).
fn check_names(
    i: usize,
    raw: &[RawStep],
    seeds: &BTreeMap<String, SeedValues>,
    loc: &Locator<'_>,
) -> Result<()> {
    for (j, rs) in raw.iter().enumerate() {
        let name = rs.name.get_ref();
        let bad = |m: String| loc.err(rs.name.span(), &format!("task[{i}].step[{j}].name"), m);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(format!(
                "step name {name:?} must be non-empty and use only letters, digits and '_' (it is a `{{{{placeholder}}}}`)"
            )));
        }
        if let Some(k) = raw[..j].iter().position(|o| o.name.get_ref() == name) {
            return Err(bad(format!(
                "step name `{name}` is already step {} of this task; step names are unique",
                k + 1
            )));
        }
        if seeds.contains_key(name) {
            return Err(bad(format!(
                "step name `{name}` is also a seed variable, so `{{{{{name}}}}}` would be ambiguous; rename the step"
            )));
        }
    }
    Ok(())
}

struct Cx<'a> {
    i: usize,
    names: &'a [&'a str],
    seeds: &'a BTreeMap<String, SeedValues>,
    /// The task's `tools`, for `tool_call` steps.
    tools: Option<&'a super::tools::Tools>,
    loc: &'a Locator<'a>,
    /// The steps validated so far (those before the current one).
    steps: Vec<Step>,
    seed_vars: Vec<String>,
}

impl Cx<'_> {
    fn field(&self, j: usize, f: &str) -> String {
        if f.is_empty() {
            format!("task[{}].step[{j}]", self.i)
        } else {
            format!("task[{}].step[{j}].{f}", self.i)
        }
    }

    fn err(
        &self,
        span: Range<usize>,
        j: usize,
        f: &str,
        m: impl std::fmt::Display,
    ) -> crate::Error {
        self.loc.err(span, &self.field(j, f), m)
    }

    fn step(&mut self, j: usize, rs: &RawStep, has_teacher: bool) -> Result<Step> {
        let name = rs.name.get_ref().clone();
        // In file order, so "both" points at the second kind key a reader meets.
        let mut kinds: Vec<(&str, Range<usize>, RawKind<'_>)> = Vec::new();
        if let Some(v) = &rs.template {
            kinds.push(("template", v.span(), RawKind::Llm(v)));
        }
        if let Some(v) = &rs.sampler {
            kinds.push(("sampler", v.span(), RawKind::Sampler(v)));
        }
        if let Some(v) = &rs.expression {
            kinds.push(("expression", v.span(), RawKind::Expression(v)));
        }
        if let Some(v) = &rs.json {
            kinds.push(("json", v.span(), RawKind::Json(v)));
        }
        if let Some(v) = &rs.conversation {
            kinds.push(("conversation", v.span(), RawKind::Conversation(v)));
        }
        if let Some(v) = &rs.evolve {
            kinds.push(("evolve", v.span(), RawKind::Evolve(v)));
        }
        if let Some(v) = &rs.tool_result {
            kinds.push(("tool_result", v.span(), RawKind::ToolResult(v)));
        }
        kinds.sort_by_key(|(_, s, _)| s.start);
        if let [(a, _, _), (b, span, _), ..] = kinds.as_slice() {
            return Err(self.err(
                span.clone(),
                j,
                b,
                format!("step `{name}` has both `{a}` and `{b}`; a step is exactly one of {KINDS}"),
            ));
        }
        let Some((kind_key, _, raw_kind)) = kinds.into_iter().next() else {
            return Err(self.err(
                rs.name.span(),
                j,
                "",
                format!("step `{name}` has no kind; give exactly one of {KINDS}"),
            ));
        };
        if !matches!(kind_key, "template" | "conversation" | "evolve") {
            for (key, span) in [
                ("system", rs.system.as_ref().map(|v| v.span())),
                ("model", rs.model.as_ref().map(|v| v.span())),
                (
                    "max_new_tokens",
                    rs.max_new_tokens.as_ref().map(|v| v.span()),
                ),
                ("sampling", rs.sampling.as_ref().map(|v| v.span())),
                ("stop", rs.stop.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    return Err(self.err(
                        span,
                        j,
                        key,
                        format!("`{key}` belongs to LLM steps (those with `template`, `conversation` or `evolve`); step `{name}` is a `{kind_key}` step"),
                    ));
                }
            }
        }
        for (key, span) in [
            ("output", rs.output.as_ref().map(|v| v.span())),
            ("tool_call", rs.tool_call.as_ref().map(|v| v.span())),
            ("continues", rs.continues.as_ref().map(|v| v.span())),
        ] {
            if let (Some(span), false) = (span, kind_key == "template") {
                return Err(self.err(
                    span,
                    j,
                    key,
                    format!(
                        "`{key}` {}; step `{name}` is a `{kind_key}` step",
                        if key == "continues" {
                            "makes an LLM step (one with `template`) continue an earlier chat"
                        } else {
                            "constrains an LLM step's answer (one with `template`)"
                        }
                    ),
                ));
            }
        }
        if let (Some(f), false) = (&rs.few_shot, kind_key == "template") {
            return Err(self.err(
                f.span(),
                j,
                "few_shot",
                format!("`few_shot` draws examples into an LLM step's `template`; step `{name}` is a `{kind_key}` step"),
            ));
        }
        let mut vars = Vec::new();
        // Any LLM step's system prompt is rendered per record, like its template.
        let system_vars = |cx: &mut Self, vars: &mut Vec<String>| match &rs.system {
            Some(s) => cx.text(j, "system", s, &[], vars),
            None => Ok(()),
        };
        let kind = match raw_kind {
            RawKind::Llm(t) => {
                let few_shot = match &rs.few_shot {
                    Some(f) => Some(self.few_shot(j, f, t)?),
                    None => None,
                };
                let own: &[&str] = if few_shot.is_some() { &[EXAMPLES] } else { &[] };
                self.text(j, "template", t, own, &mut vars)?;
                system_vars(self, &mut vars)?;
                let call = self.call(j, rs, has_teacher)?;
                let (output, tool_call) = self.output(j, rs)?;
                let continues = self.continues(j, rs, tool_call)?;
                StepKind::Llm {
                    template: t.get_ref().clone(),
                    system: call.system,
                    model: call.model,
                    max_new_tokens: call.max_new_tokens,
                    sampling: call.sampling,
                    stop: call.stop,
                    few_shot,
                    output,
                    tool_call,
                    continues,
                }
            }
            RawKind::ToolResult(t) => self.tool_result(j, t, &mut vars)?,
            RawKind::Sampler(s) => StepKind::Sampler(self.sampler(j, s, &mut vars)?),
            RawKind::Expression(e) => {
                self.text(j, "expression", e, &[], &mut vars)?;
                StepKind::Expression(e.get_ref().clone())
            }
            RawKind::Json(js) => self.json(j, js, &mut vars)?,
            RawKind::Conversation(c) => {
                system_vars(self, &mut vars)?;
                let call = self.call(j, rs, has_teacher)?;
                StepKind::Conversation(self.conversation(j, c, call, &mut vars)?)
            }
            RawKind::Evolve(e) => {
                let from = self.evolve_from(j, e, &mut vars)?;
                system_vars(self, &mut vars)?;
                let call = self.call(j, rs, has_teacher)?;
                StepKind::Evolve(self.evolve(j, e, call, from)?)
            }
        };
        Ok(Step { name, kind, vars })
    }

    /// A text with placeholders: every `{{var}}` a seed, an earlier step, or one of
    /// `own` (values the step itself supplies, such as few-shot `{{examples}}`).
    fn text(
        &mut self,
        j: usize,
        f: &str,
        t: &Spanned<String>,
        own: &[&str],
        vars: &mut Vec<String>,
    ) -> Result<()> {
        let used = collect_vars(t.get_ref()).map_err(|m| self.err(t.span(), j, f, m))?;
        for v in used {
            if own.contains(&v.as_str()) {
                continue;
            }
            if let Some(m) = self.reference(j, &v) {
                return Err(self.err(t.span(), j, f, m));
            }
            self.note_use(&v, vars);
        }
        Ok(())
    }

    /// Why step `j` may not use `v`, or `None` if it may.
    fn reference(&self, j: usize, v: &str) -> Option<String> {
        self.reference_as(j, v, &format!("uses `{{{{{v}}}}}`"))
    }

    /// [`Self::reference`] with the verb of the message given (`uses `{{x}}``,
    /// `evolves `x``), so each kind of reference reads naturally.
    fn reference_as(&self, j: usize, v: &str, verb: &str) -> Option<String> {
        if self.seeds.contains_key(v) || self.names[..j].contains(&v) {
            return None;
        }
        let me = self.names[j];
        if v == me {
            return Some(format!(
                "step `{me}` {verb}, its own value; a step can use only seed variables and earlier steps"
            ));
        }
        if let Some(k) = self.names.iter().position(|n| *n == v) {
            return Some(format!(
                "step `{me}` {verb}, which step {} computes after it; steps run in the order written",
                k + 1
            ));
        }
        Some(format!(
            "step `{me}` {verb}, which is neither a seed variable nor an earlier step (seeds: {}; earlier steps: {})",
            list(self.seeds.keys().map(String::as_str)),
            list(self.names[..j].iter().copied())
        ))
    }

    fn note_use(&mut self, v: &str, vars: &mut Vec<String>) {
        push_unique(vars, v);
        if self.seeds.contains_key(v) {
            push_unique(&mut self.seed_vars, v);
        }
    }

    /// The model side of an LLM, conversation or evolve step: its `system`, `model`,
    /// `max_new_tokens`, `sampling` and `stop` keys, with the teacher's bounds.
    fn call(&self, j: usize, rs: &RawStep, has_teacher: bool) -> Result<Call> {
        let name = rs.name.get_ref();
        let model = match &rs.model {
            Some(m) => Some(self.model(j, "model", m)?),
            None if !has_teacher => {
                return Err(self.err(
                    rs.name.span(),
                    j,
                    "model",
                    format!("step `{name}` names no `model` and the spec has no [teacher] section; `generate` needs one (add [teacher], or `model = \"...\"` to this step; see configs/demo.toml)"),
                ))
            }
            None => None,
        };
        let max_new_tokens = match &rs.max_new_tokens {
            Some(n) => Some(self.max_new_tokens(j, "max_new_tokens", n)?),
            None => None,
        };
        let sampling = match &rs.sampling {
            Some(s) => Some(self.sampling(j, s)?),
            None => None,
        };
        let stop = match &rs.stop {
            Some(s) => {
                if s.get_ref().iter().any(String::is_empty) {
                    return Err(self.err(s.span(), j, "stop", "stop strings must not be empty"));
                }
                s.get_ref().clone()
            }
            None => Vec::new(),
        };
        Ok(Call {
            system: rs.system.as_ref().map(|s| s.get_ref().clone()),
            model,
            max_new_tokens,
            sampling,
            stop,
        })
    }

    /// A model named on a step (field `f`), checked and resolved as `teacher.model` is.
    fn model(&self, j: usize, f: &str, m: &Spanned<String>) -> Result<String> {
        check_model(
            m,
            &self.field(j, f),
            " (or give a path to a .gguf file or a Hugging Face model folder, or a repo id in the Hugging Face cache)",
            self.loc,
        )?;
        Ok(model_ref(m.get_ref(), self.loc))
    }

    fn max_new_tokens(&self, j: usize, f: &str, n: &Spanned<usize>) -> Result<usize> {
        let v = *n.get_ref();
        if v == 0 {
            return Err(self.err(n.span(), j, f, "must be at least 1"));
        }
        if v > MAX_NEW_TOKENS {
            return Err(self.err(
                n.span(),
                j,
                f,
                format!("{v} is more than the {MAX_NEW_TOKENS} allowed"),
            ));
        }
        Ok(v)
    }

    /// `[task.step.conversation]`; `assistant` is the step's own call.
    fn conversation(
        &mut self,
        j: usize,
        c: &Spanned<RawConversation>,
        assistant: Call,
        vars: &mut Vec<String>,
    ) -> Result<Conversation> {
        let r = c.get_ref();
        let turns = match &r.turns {
            Some(t) => self.range(j, "conversation.turns", t, MAX_TURNS, "turn")?,
            None => {
                return Err(self.err(
                    c.span(),
                    j,
                    "conversation.turns",
                    format!("a conversation needs `turns = [min, max]` (assistant turns, 1 to {MAX_TURNS}) or `turns = n`"),
                ))
            }
        };
        let Some(user_system) = &r.user_system else {
            return Err(self.err(
                c.span(),
                j,
                "conversation.user_system",
                "a conversation needs `user_system`, the simulated user's system prompt (its persona and goal, e.g. \"You are a {{mood}} customer. Your goal: {{goal}}.\")",
            ));
        };
        self.text(j, "conversation.user_system", user_system, &[], vars)?;
        if let Some(o) = &r.opening {
            self.text(j, "conversation.opening", o, &[], vars)?;
        }
        if let Some(m) = r.stop_marker.as_ref().filter(|m| m.get_ref().is_empty()) {
            return Err(self.err(
                m.span(),
                j,
                "conversation.stop_marker",
                "must not be empty (leave it out to always run the drawn number of turns)",
            ));
        }
        let user_model = match &r.user_model {
            Some(m) => Some(self.model(j, "conversation.user_model", m)?),
            None => assistant.model.clone(),
        };
        let user_max_new_tokens = match &r.user_max_new_tokens {
            Some(n) => Some(self.max_new_tokens(j, "conversation.user_max_new_tokens", n)?),
            None => assistant.max_new_tokens,
        };
        let user = Call {
            system: Some(user_system.get_ref().clone()),
            model: user_model,
            max_new_tokens: user_max_new_tokens,
            sampling: assistant.sampling.clone(),
            stop: assistant.stop.clone(),
        };
        Ok(Conversation {
            assistant,
            user,
            turns,
            opening: r.opening.as_ref().map(|o| o.get_ref().clone()),
            stop_marker: r.stop_marker.as_ref().map(|m| m.get_ref().clone()),
        })
    }

    /// `n` or `[min, max]` with `1 <= min <= max <= most` (`what`: "turn", "round").
    fn range(
        &self,
        j: usize,
        f: &str,
        v: &Spanned<toml::Value>,
        most: usize,
        what: &str,
    ) -> Result<(usize, usize)> {
        let key = f.rsplit('.').next().unwrap_or(f);
        let bad = |m: String| Err(self.err(v.span(), j, f, m));
        let (min, max) = match v.get_ref() {
            toml::Value::Integer(n) => (*n, *n),
            toml::Value::Array(a) => match a.as_slice() {
                [toml::Value::Integer(a), toml::Value::Integer(b)] => (*a, *b),
                _ => {
                    return bad(format!(
                        "expected `{key} = [min, max]` (two integers) or `{key} = n`"
                    ))
                }
            },
            other => {
                return bad(format!(
                    "expected `{key} = [min, max]` or `{key} = n`, got {}",
                    other.type_str()
                ))
            }
        };
        if min < 1 {
            return bad(match what {
                "round" => "an evolve step needs at least 1 round".into(),
                _ => format!("a conversation needs at least 1 {what}, got {min}"),
            });
        }
        if min > max {
            return bad(format!("{key} = [{min}, {max}]: min must be <= max"));
        }
        if max > most as i64 {
            return bad(format!("{max} {what}s is more than the {most} allowed"));
        }
        Ok((min as usize, max as usize))
    }

    /// `evolve.from`: a seed variable or an earlier step.
    fn evolve_from(
        &mut self,
        j: usize,
        e: &Spanned<RawEvolve>,
        vars: &mut Vec<String>,
    ) -> Result<String> {
        let Some(from) = &e.get_ref().from else {
            return Err(self.err(
                e.span(),
                j,
                "evolve.from",
                "an evolve step needs `from`, the seed variable or earlier step holding the instruction to evolve",
            ));
        };
        let v = from.get_ref();
        if let Some(m) = self.reference_as(j, v, &format!("evolves `{v}`")) {
            return Err(self.err(from.span(), j, "evolve.from", m));
        }
        self.note_use(v, vars);
        Ok(v.clone())
    }

    fn evolve(&self, j: usize, e: &Spanned<RawEvolve>, call: Call, from: String) -> Result<Evolve> {
        let r = e.get_ref();
        let rounds = match &r.rounds {
            Some(v) => self.range(j, "evolve.rounds", v, MAX_ROUNDS, "round")?,
            None => {
                return Err(self.err(
                    e.span(),
                    j,
                    "evolve.rounds",
                    format!("an evolve step needs `rounds = n` or `rounds = [min, max]` (1 to {MAX_ROUNDS})"),
                ))
            }
        };
        let operators = match &r.operators {
            None => EvolveOp::ALL.to_vec(),
            Some(ops) => {
                let valid = || list(EvolveOp::ALL.iter().map(|o| o.name()));
                let bad = |m: String| self.err(ops.span(), j, "evolve.operators", m);
                if ops.get_ref().is_empty() {
                    return Err(bad(format!(
                        "the list is empty; give at least one of {}, or leave it out for all",
                        valid()
                    )));
                }
                let mut out: Vec<EvolveOp> = Vec::new();
                for name in ops.get_ref() {
                    let op = EvolveOp::parse(name).ok_or_else(|| {
                        bad(format!(
                            "unknown operator {name:?}; the operators are {}",
                            valid()
                        ))
                    })?;
                    if out.contains(&op) {
                        return Err(bad(format!(
                            "operator {name:?} is listed twice; each is drawn uniformly, so list it once"
                        )));
                    }
                    out.push(op);
                }
                out
            }
        };
        Ok(Evolve {
            call,
            from,
            rounds,
            operators,
        })
    }

    /// `[task.step.few_shot]`: reads the examples file now, so a bad file fails the spec
    /// before any model loads, and its content hash can fingerprint the step.
    fn few_shot(
        &self,
        j: usize,
        f: &Spanned<RawFewShot>,
        template: &Spanned<String>,
    ) -> Result<FewShot> {
        let r = f.get_ref();
        let name = self.names[j];
        let Some(file) = &r.file else {
            return Err(self.err(
                f.span(),
                j,
                "few_shot.file",
                "few_shot needs `file`, the examples (.jsonl with `field`, or one example per line), relative to the spec",
            ));
        };
        if self.seeds.contains_key(EXAMPLES) || self.names[..j].contains(&EXAMPLES) {
            return Err(self.err(
                f.span(),
                j,
                "few_shot",
                format!("few_shot fills `{{{{{EXAMPLES}}}}}`, which is also a seed variable or an earlier step here, so the template would be ambiguous; rename that one"),
            ));
        }
        let uses = collect_vars(template.get_ref())
            .map(|v| v.iter().any(|v| v == EXAMPLES))
            .unwrap_or(false);
        if !uses {
            return Err(self.err(
                template.span(),
                j,
                "template",
                format!("step `{name}` has few_shot but its template does not write `{{{{{EXAMPLES}}}}}`, where the drawn examples go"),
            ));
        }
        let written = std::path::PathBuf::from(file.get_ref());
        let path = self.loc.base_dir().join(&written);
        let ffield = "few_shot.file";
        let jsonl = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
        let field = match (&r.field, jsonl) {
            (Some(fl), true) => Some(fl.get_ref().as_str()),
            (None, false) => None,
            (None, true) => {
                return Err(self.err(
                    f.span(),
                    j,
                    "few_shot.field",
                    format!("{} is JSONL: say which string field of each line is the example, e.g. `field = \"instruction\"`", path.display()),
                ))
            }
            (Some(fl), false) => {
                return Err(self.err(
                    fl.span(),
                    j,
                    "few_shot.field",
                    format!("`field` is for .jsonl files; {} is read as one example per non-empty line", path.display()),
                ))
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                file.span(),
                j,
                ffield,
                format!("cannot read the examples file {}: {e}", path.display()),
            )
        })?;
        let mut examples: Vec<String> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let at = |m: String| {
                self.err(
                    file.span(),
                    j,
                    ffield,
                    format!("{}:{}: {m}", path.display(), n + 1),
                )
            };
            let example = match field {
                None => line.to_string(),
                Some(key) => {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .map_err(|e| at(format!("not valid JSON ({e})")))?;
                    match v.get(key) {
                        Some(serde_json::Value::String(s)) => s.trim().to_string(),
                        Some(other) => {
                            return Err(at(format!(
                                "field `{key}` is {}, expected a string",
                                json_type(other)
                            )))
                        }
                        None if v.is_object() => {
                            return Err(at(format!("the object has no field `{key}`")))
                        }
                        None => {
                            return Err(at(format!(
                                "expected a JSON object with field `{key}`, got {}",
                                json_type(&v)
                            )))
                        }
                    }
                }
            };
            if !example.is_empty() && !examples.contains(&example) {
                examples.push(example);
            }
        }
        if examples.is_empty() {
            return Err(self.err(
                file.span(),
                j,
                ffield,
                format!("{} has no usable examples (empty and repeated ones are dropped); add at least one", path.display()),
            ));
        }
        let k = match &r.k {
            Some(k) => {
                let v = *k.get_ref();
                if v == 0 || v > examples.len() {
                    return Err(self.err(
                        k.span(),
                        j,
                        "few_shot.k",
                        format!(
                            "k = {v}, but few_shot draws 1 to {} examples: {} has {} usable",
                            examples.len(),
                            path.display(),
                            examples.len()
                        ),
                    ));
                }
                v
            }
            None if DEFAULT_K > examples.len() => {
                return Err(self.err(
                    file.span(),
                    j,
                    "few_shot.k",
                    format!(
                        "k is {DEFAULT_K} by default, but {} has only {} usable example{}; add examples or set `k`",
                        path.display(),
                        examples.len(),
                        if examples.len() == 1 { "" } else { "s" }
                    ),
                ))
            }
            None => DEFAULT_K,
        };
        let max_similarity = match &r.max_similarity {
            Some(m) => {
                let v = *m.get_ref();
                if !(v > 0.0 && v <= 1.0) {
                    return Err(self.err(
                        m.span(),
                        j,
                        "few_shot.max_similarity",
                        format!("must be in (0, 1], got {v}"),
                    ));
                }
                v
            }
            None => DEFAULT_MAX_SIMILARITY,
        };
        let sha256 = crate::models::checksum::sha256_bytes(examples.join("\n").as_bytes());
        Ok(FewShot {
            file: written,
            examples,
            sha256,
            k,
            max_similarity,
        })
    }

    /// The same bounds as `[teacher.sampling]`: the override is checked on top of the
    /// defaults, so the field at fault is always one the step set.
    fn sampling(&self, j: usize, s: &Spanned<RawSamplingOverride>) -> Result<SamplingOverride> {
        let r = s.get_ref();
        let o = SamplingOverride {
            temperature: r.temperature.as_ref().map(|v| *v.get_ref()),
            top_p: r.top_p.as_ref().map(|v| *v.get_ref()),
            top_k: r.top_k.as_ref().map(|v| *v.get_ref()),
            repetition_penalty: r.repetition_penalty.as_ref().map(|v| *v.get_ref()),
        };
        if let Some((f, m)) = sampling_problem(&o.apply(&Sampling::default())) {
            let span = match f {
                "temperature" => r.temperature.as_ref().map(|v| v.span()),
                "top_p" => r.top_p.as_ref().map(|v| v.span()),
                "repetition_penalty" => r.repetition_penalty.as_ref().map(|v| v.span()),
                _ => None,
            }
            .unwrap_or(s.span());
            return Err(self.err(span, j, &format!("sampling.{f}"), m));
        }
        Ok(o)
    }

    fn sampler(
        &mut self,
        j: usize,
        s: &Spanned<RawSampler>,
        vars: &mut Vec<String>,
    ) -> Result<Sampler> {
        let r = s.get_ref();
        let given: Vec<&str> = [
            ("choice", r.choice.is_some()),
            ("int", r.int.is_some()),
            ("float", r.float.is_some()),
            ("pick", r.pick.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        let one_of = || {
            self.err(
                s.span(),
                j,
                "sampler",
                format!(
                    "a sampler is exactly one of `choice = [...]`, `int = [a, b]`, `float = [a, b]` or `pick = \"seed\"`; got {}",
                    if given.is_empty() { "none".to_string() } else { given.join(" and ") }
                ),
            )
        };
        if given.len() != 1 {
            return Err(one_of());
        }
        if let (Some(w), None) = (&r.weights, &r.choice) {
            return Err(self.err(w.span(), j, "sampler.weights", "`weights` go with `choice`"));
        }
        if let (Some(k), None) = (&r.k, &r.pick) {
            return Err(self.err(k.span(), j, "sampler.k", "`k` goes with `pick`"));
        }
        if let Some(c) = &r.choice {
            let bad = |m: String| self.err(c.span(), j, "sampler.choice", m);
            let mut values = Vec::with_capacity(c.get_ref().len());
            for (n, v) in c.get_ref().iter().enumerate() {
                values.push(super::seeds::scalar_to_string(v).ok_or_else(|| {
                    bad(format!("item {n} is {}, expected a string", v.type_str()))
                })?);
            }
            if values.is_empty() {
                return Err(bad("the list is empty; give at least one value".into()));
            }
            let weights = match &r.weights {
                Some(w) => {
                    let ws = w.get_ref();
                    let bad = |m: String| self.err(w.span(), j, "sampler.weights", m);
                    if ws.len() != values.len() {
                        return Err(bad(format!(
                            "{} weights for {} choices; give one weight per choice",
                            ws.len(),
                            values.len()
                        )));
                    }
                    if let Some(x) = ws.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
                        return Err(bad(format!("weights must be finite and >= 0, got {x}")));
                    }
                    if ws.iter().sum::<f64>() <= 0.0 {
                        return Err(bad("the weights sum to 0; at least one must be > 0".into()));
                    }
                    Some(ws.clone())
                }
                None => None,
            };
            return Ok(Sampler::Choice { values, weights });
        }
        if let Some(v) = &r.int {
            return match v.get_ref().as_slice() {
                &[min, max] if min <= max => Ok(Sampler::Int { min, max }),
                &[min, max] => Err(self.err(
                    v.span(),
                    j,
                    "sampler.int",
                    format!("int = [{min}, {max}]: the first bound must be <= the second"),
                )),
                other => Err(self.err(
                    v.span(),
                    j,
                    "sampler.int",
                    format!("expected `int = [min, max]`, got {} numbers", other.len()),
                )),
            };
        }
        if let Some(v) = &r.float {
            return match v.get_ref().as_slice() {
                &[min, max] if min.is_finite() && max.is_finite() && min < max => {
                    Ok(Sampler::Float { min, max })
                }
                &[min, max] => Err(self.err(
                    v.span(),
                    j,
                    "sampler.float",
                    format!(
                        "float = [{min}, {max}]: the bounds must be finite, the first < the second"
                    ),
                )),
                other => Err(self.err(
                    v.span(),
                    j,
                    "sampler.float",
                    format!("expected `float = [min, max]`, got {} numbers", other.len()),
                )),
            };
        }
        let Some(p) = &r.pick else {
            return Err(one_of());
        };
        let seed = p.get_ref();
        let Some(list) = self.seeds.get(seed) else {
            return Err(self.err(
                p.span(),
                j,
                "sampler.pick",
                format!(
                    "`pick` names {seed:?}, which is not a seed variable (seeds: {})",
                    list(self.seeds.keys().map(String::as_str))
                ),
            ));
        };
        let (k, kspan) = match &r.k {
            Some(k) => (*k.get_ref(), k.span()),
            None => (1, p.span()),
        };
        if k == 0 || k > list.values.len() {
            return Err(self.err(
                kspan,
                j,
                "sampler.k",
                format!(
                    "k = {k}, but `pick` draws 1 to {} distinct values of seed list `{seed}`",
                    list.values.len()
                ),
            ));
        }
        // The list is drawn from per record, not expanded as a seed combination (that
        // would multiply the plan by its length); it expands only where a step also
        // writes `{{seed}}`.
        push_unique(vars, seed);
        Ok(Sampler::Pick {
            seed: seed.clone(),
            k,
        })
    }

    fn json(
        &mut self,
        j: usize,
        js: &Spanned<RawJson>,
        vars: &mut Vec<String>,
    ) -> Result<StepKind> {
        let r = js.get_ref();
        let from = r.from.get_ref();
        let me = self.names[j];
        let earlier_text: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::Llm { .. }
                        | StepKind::Expression(_)
                        | StepKind::Evolve(_)
                        | StepKind::Conversation(_)
                )
            })
            .map(|s| s.name.as_str())
            .collect();
        let problem = match self.steps.iter().find(|s| &s.name == from) {
            Some(s) => match s.kind {
                StepKind::Llm { .. }
                | StepKind::Expression(_)
                | StepKind::Evolve(_)
                | StepKind::Conversation(_)
                | StepKind::ToolResult { .. } => None,
                StepKind::Sampler(_) => Some(format!(
                    "step `{me}` extracts JSON from `{from}`, a sampler step; JSON comes from an earlier LLM or expression step ({})",
                    list(earlier_text.iter().copied())
                )),
                StepKind::Json { .. } => Some(format!(
                    "step `{me}` extracts JSON from `{from}`, a json step; JSON comes from an earlier LLM or expression step ({})",
                    list(earlier_text.iter().copied())
                )),
            },
            None if from == me => Some(format!(
                "step `{me}` extracts JSON from itself; name an earlier LLM or expression step ({})",
                list(earlier_text.iter().copied())
            )),
            None => match self.names.iter().position(|n| n == from) {
                Some(k) => Some(format!(
                    "step `{me}` extracts JSON from `{from}`, which step {} computes after it; steps run in the order written",
                    k + 1
                )),
                None => Some(format!(
                    "`{from}` is not an earlier LLM or expression step (those are: {})",
                    list(earlier_text.iter().copied())
                )),
            },
        };
        if let Some(m) = problem {
            return Err(self.err(r.from.span(), j, "json.from", m));
        }
        let path: Vec<String> = r.path.get_ref().split('.').map(str::to_string).collect();
        if r.path.get_ref().is_empty() || path.iter().any(String::is_empty) {
            return Err(self.err(
                r.path.span(),
                j,
                "json.path",
                format!(
                    "{:?} is not a path: give dotted keys, array indices as numbers (\"items.0.name\")",
                    r.path.get_ref()
                ),
            ));
        }
        self.note_use(from, vars);
        Ok(StepKind::Json {
            from: from.clone(),
            path,
        })
    }

    /// An LLM step's `output` or `tool_call` (not both): the constraint its answer is
    /// held to, and whether it is a tool call.
    fn output(&self, j: usize, rs: &RawStep) -> Result<(Option<super::Output>, bool)> {
        let name = rs.name.get_ref();
        match (&rs.output, &rs.tool_call) {
            (Some(_), Some(t)) => Err(self.err(
                t.span(),
                j,
                "tool_call",
                format!("step `{name}` has both `output` and `tool_call`; a tool call's structure comes from the task's `tools`"),
            )),
            (Some(o), None) => Ok((
                Some(super::output::validate(
                    o.get_ref(),
                    o.span(),
                    &self.field(j, "output"),
                    self.loc,
                )?),
                false,
            )),
            (None, Some(t)) if !*t.get_ref() => Ok((None, false)),
            (None, Some(t)) => match self.tools {
                Some(tools) => Ok((Some(tools.call.clone()), true)),
                None => Err(self.err(
                    t.span(),
                    j,
                    "tool_call",
                    format!("step `{name}` calls a tool, but the task declares none; add `tools = \"tools.json\"` (a list in the OpenAI function format) to the [[task]]"),
                )),
            },
            (None, None) => Ok((None, false)),
        }
    }

    /// `continues = "step"`: an earlier plain LLM step (one with `template`, not a tool
    /// call). The continued chat brings its own system prompt, so this step has none.
    fn continues(&self, j: usize, rs: &RawStep, tool_call: bool) -> Result<Option<String>> {
        let Some(c) = &rs.continues else {
            return Ok(None);
        };
        let me = self.names[j];
        let target = c.get_ref();
        let bad = |m: String| Err(self.err(c.span(), j, "continues", m));
        if let Some(s) = &rs.system {
            return Err(self.err(
                s.span(),
                j,
                "system",
                format!("step `{me}` continues `{target}`'s chat, which has its own system prompt; remove `system` here"),
            ));
        }
        if tool_call {
            return bad(format!(
                "step `{me}` continues a chat and calls a tool; a tool call starts its own chat (remove one)"
            ));
        }
        if let Some(m) = self.reference_as(j, target, &format!("continues `{target}`")) {
            return bad(m);
        }
        match self.steps.iter().find(|s| &s.name == target).map(|s| &s.kind) {
            Some(StepKind::Llm {
                tool_call: false, ..
            }) => Ok(Some(target.clone())),
            _ => bad(format!(
                "`{target}` is not an LLM step with `template` (only such a step's chat can be continued; a tool call, conversation or evolve step cannot)"
            )),
        }
    }

    /// `tool_result = { from, fixture }`: `from` is an earlier `tool_call` step.
    fn tool_result(
        &mut self,
        j: usize,
        t: &Spanned<RawToolResult>,
        vars: &mut Vec<String>,
    ) -> Result<StepKind> {
        let me = self.names[j];
        let r = t.get_ref();
        let from = r.from.as_ref().ok_or_else(|| {
            self.err(
                t.span(),
                j,
                "tool_result.from",
                format!("step `{me}` needs `from`: the earlier `tool_call = true` step whose call it answers"),
            )
        })?;
        let fname = from.get_ref();
        let is_call = self.steps.iter().any(|s| {
            &s.name == fname
                && matches!(
                    s.kind,
                    StepKind::Llm {
                        tool_call: true,
                        ..
                    }
                )
        });
        if !is_call {
            let m = self
                .reference_as(j, fname, &format!("answers `{fname}`"))
                .unwrap_or_else(|| format!("`{fname}` is not an earlier `tool_call = true` step"));
            return Err(self.err(from.span(), j, "tool_result.from", m));
        }
        let fixture = r.fixture.as_ref().ok_or_else(|| {
            self.err(
                t.span(),
                j,
                "tool_result.fixture",
                format!("step `{me}` needs `fixture`: a JSON file from tool name to its result (to have a model invent results instead, make `{me}` an LLM step whose template uses `{{{{{fname}}}}}`)"),
            )
        })?;
        let tools = self
            .tools
            .ok_or_else(|| self.err(t.span(), j, "tool_result", "the task declares no `tools`"))?;
        let field = self.field(j, "tool_result.fixture");
        let fx = super::tools::load_fixture(self.loc.base_dir(), fixture.get_ref(), tools, &|m| {
            self.loc.err(fixture.span(), &field, m)
        })?;
        self.note_use(fname, vars);
        Ok(StepKind::ToolResult {
            from: fname.clone(),
            fixture: fx,
        })
    }

    /// `[task.messages] tool_call` / `tool_result`: both or neither, the call a
    /// `tool_call` step, and with `user` and `assistant` around them.
    fn tool_turns(&self, m: &Spanned<RawMessages>) -> Result<()> {
        let r = m.get_ref();
        let at = |role: &str| format!("task[{}].messages.{role}", self.i);
        match (&r.tool_call, &r.tool_result) {
            (None, None) => Ok(()),
            (Some(c), None) => Err(self.loc.err(
                c.span(),
                &at("tool_result"),
                "a tool call needs its result: add `tool_result = \"step\"` (the step whose value the tool returned)",
            )),
            (None, Some(t)) => Err(self.loc.err(
                t.span(),
                &at("tool_call"),
                "a tool result answers a call: add `tool_call = \"step\"` (a `tool_call = true` step)",
            )),
            (Some(c), Some(_)) => {
                if r.conversation.is_some() {
                    return Err(self.loc.err(
                        c.span(),
                        &at("tool_call"),
                        "tool calls go with `user` and `assistant` turns, not with `conversation`",
                    ));
                }
                let name = c.get_ref();
                let ok = self.steps.iter().any(|s| {
                    &s.name == name && matches!(s.kind, StepKind::Llm { tool_call: true, .. })
                });
                if !ok {
                    return Err(self.loc.err(
                        c.span(),
                        &at("tool_call"),
                        format!("`{name}` is not a `tool_call = true` step"),
                    ));
                }
                Ok(())
            }
        }
    }

    fn messages(&mut self, m: &Spanned<RawMessages>) -> Result<MessageMap> {
        let r = m.get_ref();
        let i = self.i;
        let at = |role: &str| format!("task[{i}].messages.{role}");
        let mut turns: Vec<(&str, &Spanned<String>)> = Vec::new();
        if let Some(s) = &r.system {
            turns.push(("system", s));
        }
        match &r.conversation {
            Some(c) => {
                for (role, v) in [("user", &r.user), ("assistant", &r.assistant)] {
                    if let Some(v) = v {
                        return Err(self.loc.err(
                            v.span(),
                            &at(role),
                            format!("`conversation` gives every user and assistant turn, so leave `{role}` out"),
                        ));
                    }
                }
                let name = c.get_ref();
                let is_conversation = self
                    .steps
                    .iter()
                    .any(|s| &s.name == name && matches!(s.kind, StepKind::Conversation(_)));
                if !is_conversation {
                    let conversations: Vec<&str> = self
                        .steps
                        .iter()
                        .filter(|s| matches!(s.kind, StepKind::Conversation(_)))
                        .map(|s| s.name.as_str())
                        .collect();
                    return Err(self.loc.err(
                        c.span(),
                        &at("conversation"),
                        format!(
                            "`{name}` is not a conversation step (those are: {})",
                            list(conversations.into_iter())
                        ),
                    ));
                }
            }
            None => {
                for (role, v) in [("user", &r.user), ("assistant", &r.assistant)] {
                    match v {
                        Some(v) => turns.push((role, v)),
                        None => {
                            return Err(self.loc.err(
                                m.span(),
                                &at(role),
                                format!("[task.messages] needs `{role}` (the step or seed variable that makes that turn), or `conversation = \"step\"` for a conversation step's turns"),
                            ))
                        }
                    }
                }
            }
        }
        if let Some(t) = &r.tool_result {
            turns.push(("tool_result", t));
        }
        for (role, v) in turns {
            let name = v.get_ref();
            if self.seeds.contains_key(name) {
                push_unique(&mut self.seed_vars, name);
            } else if !self.names.contains(&name.as_str()) {
                return Err(self.loc.err(
                    v.span(),
                    &at(role),
                    format!(
                        "`{name}` is neither a step nor a seed variable (steps: {}; seeds: {})",
                        list(self.names.iter().copied()),
                        list(self.seeds.keys().map(String::as_str))
                    ),
                ));
            }
        }
        self.tool_turns(m)?;
        let text = |v: &Option<Spanned<String>>| {
            v.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default()
        };
        let name = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        Ok(MessageMap {
            system: name(&r.system),
            user: text(&r.user),
            assistant: text(&r.assistant),
            conversation: name(&r.conversation),
            tool_call: name(&r.tool_call),
            tool_result: name(&r.tool_result),
        })
    }
}

/// A JSON value's type, for messages.
fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn push_unique(v: &mut Vec<String>, x: &str) {
    if !v.iter().any(|y| y == x) {
        v.push(x.to_string());
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests;
