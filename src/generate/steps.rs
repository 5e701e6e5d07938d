//! The executor for tasks written as `[[task.step]]` (issue #15), in waves: step j of every
//! live record before step j+1, so one step's LLM calls share one continuous batch.
//!
//! Every value is a function of the run seed, the record id, the step name and earlier
//! values only: a sampler draws from a ChaCha8 seeded with that triple, and an LLM step's
//! sampling seed is the same derivation. So a record never depends on the batch size or
//! on which records were computed together, and resuming from `steps.jsonl` (every value
//! appended as it is computed) gives the records an uninterrupted run gives.

use super::{evolve, WorkItem};
use crate::engine::sampler::record_seed;
use crate::engine::{Finish, GenParams, GenStats, Llm, ModelInfo, Precision, Request, SeqParams};
use crate::error::{Error, Result};
use crate::models::chat::{ChatTemplate, Message};
use crate::models::{resolve, FetchPolicy, ResolvedModel};
use crate::record::generated::{Lineage, Meta, Provenance, Record, SamplingRecord};
use crate::record::lines::{self, Line};
use crate::spec::{
    render, Call, Conversation, Evolve, EvolveOp, Sampler, Sampling, Spec, Step, StepKind, Task,
};
use crate::store::{JsonlWriter, RunDir};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// Records computed together, at most: bounds memory on a large plan without changing any
/// record (values do not depend on what else is in the wave).
pub(super) const CHUNK: usize = 4096;

/// What defines a task's records beyond its seed values: the steps and the turns. Part of
/// the record id, as a plain task's template is.
pub(super) fn definition(task: &Task) -> Value {
    let steps: Vec<Value> = task
        .steps
        .iter()
        .map(|s| {
            let kind = match &s.kind {
                StepKind::Llm {
                    template,
                    system,
                    model,
                    max_new_tokens,
                    sampling,
                    stop,
                    few_shot,
                    output,
                    tool_call,
                    continues,
                } => {
                    let mut v = json!({"llm": {
                        "template": template, "system": system, "model": model,
                        "max_new_tokens": max_new_tokens, "sampling": sampling, "stop": stop,
                        "few_shot": few_shot.as_ref().map(|f| json!({
                            "sha256": f.sha256, "k": f.k, "max_similarity": f.max_similarity,
                        })),
                    }});
                    // Only when set, so steps written before constraints keep their ids.
                    if let Some(o) = output {
                        v["llm"]["output"] = json!(o.key());
                    }
                    if *tool_call {
                        v["llm"]["tool_call"] = json!(true);
                    }
                    if let Some(c) = continues {
                        v["llm"]["continues"] = json!(c);
                    }
                    v
                }
                StepKind::ToolResult { from, fixture } => json!({"tool_result": {
                    "from": from, "fixture_sha256": fixture.sha256,
                }}),
                StepKind::Conversation(c) => json!({"conversation": {
                    "assistant": call(&c.assistant), "user": call(&c.user),
                    "turns": [c.turns.0, c.turns.1], "opening": c.opening,
                    "stop_marker": c.stop_marker,
                }}),
                StepKind::Evolve(e) => json!({"evolve": {
                    "call": call(&e.call), "from": e.from, "rounds": [e.rounds.0, e.rounds.1],
                    "operators": e.operators.iter().map(|o| o.name()).collect::<Vec<_>>(),
                }}),
                StepKind::Sampler(sm) => json!({ "sampler": match sm {
                    Sampler::Choice { values, weights } => json!({"choice": values, "weights": weights}),
                    Sampler::Int { min, max } => json!({"int": [min, max]}),
                    Sampler::Float { min, max } => json!({"float": [min, max]}),
                    Sampler::Pick { seed, k } => json!({"pick": seed, "k": k}),
                }}),
                StepKind::Expression(e) => json!({ "expression": e }),
                StepKind::Json { from, path } => json!({"json": {"from": from, "path": path}}),
            };
            json!({"name": s.name, "kind": kind})
        })
        .collect();
    let messages = task.messages.as_ref().map(|m| {
        let mut v = json!({"system": m.system, "user": m.user, "assistant": m.assistant});
        // Only when set: the ids of tasks written before conversations existed stay.
        if let Some(c) = &m.conversation {
            v["conversation"] = json!(c);
        }
        if let (Some(c), Some(r)) = (&m.tool_call, &m.tool_result) {
            v["tool_call"] = json!(c);
            v["tool_result"] = json!(r);
        }
        v
    });
    let mut d = json!({"steps": steps, "messages": messages});
    // The declarations are part of what the calling step is shown.
    if let Some(t) = &task.tools {
        d["tools"] = json!(t.list);
    }
    d
}

fn call(c: &Call) -> Value {
    json!({
        "system": c.system, "model": c.model, "max_new_tokens": c.max_new_tokens,
        "sampling": c.sampling, "stop": c.stop,
    })
}

/// The per-record, per-step seed: sha256(run seed, "<record id>:<step>"), as a record's
/// own seed is sha256(run seed, record id). Ids are hex and step names have no `:`.
pub fn step_seed(run_seed: u64, record_id: &str, step: &str) -> u64 {
    record_seed(run_seed, &format!("{record_id}:{step}"))
}

fn key(task: &Task, step: &Step) -> String {
    format!("{}/{}", task.name, step.name)
}

/// Each LLM step's model (by `task/step`), resolved up front (the fingerprint needs its
/// sha256 before any work), with the teacher's chat template override for steps that use
/// the teacher's model.
pub(super) struct StepModels(BTreeMap<String, (ResolvedModel, Option<ChatTemplate>)>);

impl StepModels {
    pub fn resolve(spec: &Spec, fetch: FetchPolicy) -> Result<StepModels> {
        let mut cache: HashMap<String, ResolvedModel> = HashMap::new();
        let mut out = BTreeMap::new();
        for task in spec.tasks.iter().filter(|t| t.has_steps()) {
            for step in &task.steps {
                let calls: Vec<(String, &Option<String>)> = match &step.kind {
                    StepKind::Llm { model, .. } => vec![(key(task, step), model)],
                    StepKind::Evolve(e) => vec![(key(task, step), &e.call.model)],
                    // The simulated user talks with the assistant's model unless it has its own.
                    StepKind::Conversation(c) => vec![
                        (key(task, step), &c.assistant.model),
                        (
                            format!("{}#user", key(task, step)),
                            if c.user.model.is_some() {
                                &c.user.model
                            } else {
                                &c.assistant.model
                            },
                        ),
                    ],
                    _ => continue,
                };
                for (k, model) in calls {
                    let (name, template) = match (model, &spec.teacher) {
                        (Some(m), _) => (m.clone(), None),
                        (None, Some(t)) => (
                            t.model.clone(),
                            t.chat_template
                                .as_deref()
                                .map(ChatTemplate::from_override)
                                .transpose()?,
                        ),
                        (None, None) => {
                            return Err(Error::Spec(format!(
                            "{}: task `{}` step `{}` names no model and the spec has no [teacher]",
                            spec.path.display(),
                            task.name,
                            step.name
                        )))
                        }
                    };
                    let m = match cache.get(&name) {
                        Some(m) => m.clone(),
                        None => {
                            let m = resolve(&name, fetch)?;
                            cache.insert(name, m.clone());
                            m
                        }
                    };
                    out.insert(k, (m, template));
                }
            }
        }
        Ok(StepModels(out))
    }

    /// What the generation fingerprint adds for steps: each LLM step's model sha256 and
    /// each `pick` list's content (neither is in the record id).
    pub fn fingerprint(&self, spec: &Spec) -> Value {
        let mut fp = serde_json::Map::new();
        for (k, (m, t)) in &self.0 {
            fp.insert(
                k.clone(),
                json!({"model_sha256": m.main_file().sha256, "chat_template": t.as_ref().map(ChatTemplate::provenance)}),
            );
        }
        for task in &spec.tasks {
            for step in &task.steps {
                if let StepKind::Sampler(Sampler::Pick { seed, .. }) = &step.kind {
                    let list = spec.seeds.get(seed).map(|s| s.values.join("\n"));
                    let sha = list.map(|l| crate::models::checksum::sha256_bytes(l.as_bytes()));
                    fp.insert(key(task, step), json!({ "pick_sha256": sha }));
                }
            }
        }
        Value::Object(fp)
    }

    /// `(role, model)` pairs for the manifest.
    pub fn entries(&self) -> impl Iterator<Item = (String, &ResolvedModel)> {
        self.0.iter().map(|(k, (m, _))| (format!("step {k}"), m))
    }
}

/// One line of `steps.jsonl`: a computed value, with what an LLM step's record needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepLine {
    id: String,
    step: String,
    value: String,
    /// An LLM step's finish; absent for the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finish: Option<Finish>,
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
    /// A constrained call: whether its answer matched the grammar in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
}

/// One line of `steps_rejected.jsonl`: a record that failed a step, and why.
#[derive(Debug, Serialize)]
struct RejectLine<'a> {
    id: &'a str,
    task: &'a str,
    step: &'a str,
    reason: String,
}

/// What earlier runs left: computed `(id, step)` values and failed records, and the
/// writers that append this run's.
pub(super) struct Journal {
    steps: JsonlWriter,
    rejected: JsonlWriter,
    done: HashMap<(String, String), StepLine>,
    /// Ids of records that failed a step in an earlier run: not retried (same inputs,
    /// same failure).
    pub rejected_ids: HashSet<String>,
}

impl Journal {
    pub fn open(rd: &RunDir) -> Result<Journal> {
        let path = rd.steps();
        let (steps, ex) = JsonlWriter::open(&path)?;
        if ex.torn_bytes > 0 {
            eprintln!(
                "note: cut a torn last line ({} bytes) from {}; that step will be computed again",
                ex.torn_bytes,
                path.display()
            );
        }
        let mut done = HashMap::new();
        let mut bad = Vec::new();
        for line in lines::read(&path, false)? {
            match line {
                Line::Record { line, value } => match serde_json::from_value::<StepLine>(value) {
                    Ok(l) => {
                        done.insert((l.id.clone(), l.step.clone()), l);
                    }
                    Err(e) => bad.push(lines::BadLine {
                        line,
                        reason: format!("bad_input:not_a_step_value ({e})"),
                        raw: String::new(),
                    }),
                },
                Line::Bad(b) => bad.push(b),
            }
        }
        lines::warn(&path, &bad, "ignored; that step is computed again");
        let (rejected, rex) = JsonlWriter::open(&rd.steps_rejected())?;
        Ok(Journal {
            steps,
            rejected,
            done,
            rejected_ids: rex.ids,
        })
    }

    fn record(&mut self, line: &StepLine) -> Result<()> {
        self.steps.append(line)?;
        self.steps.sync()
    }

    fn reject(&mut self, id: &str, task: &str, step: &str, reason: String) -> Result<()> {
        self.rejected.append(&RejectLine {
            id,
            task,
            step,
            reason,
        })?;
        self.rejected.sync()?;
        self.rejected_ids.insert(id.to_string());
        Ok(())
    }
}

/// What one executor run did.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub written: usize,
    /// Records that failed a step this run (each in `steps_rejected.jsonl`).
    pub rejected: usize,
    pub stats: GenStats,
}

/// The settings every step of a run shares.
pub(super) struct Executor<'a> {
    pub spec: &'a Spec,
    pub models: &'a StepModels,
    pub device: &'a candle_core::Device,
    pub precision: Precision,
    /// `[teacher.sampling]` (or the defaults without a teacher): what steps override.
    pub base: Sampling,
    pub base_max_new: usize,
    pub batch_size: usize,
    pub device_name: String,
    pub spec_sha: String,
}

/// A record being computed: its scope (seed values, then each step's value as it comes)
/// and where it is in its steps.
struct Live {
    item: WorkItem,
    scope: BTreeMap<String, String>,
    steps: BTreeMap<String, String>,
    /// The last model call of each LLM, conversation (assistant side) or evolve step.
    llm: HashMap<String, Done>,
    /// Conversation transcripts, by step name.
    transcripts: HashMap<String, Vec<Message>>,
    /// Each LLM step's chat (what it was sent, then its answer), for `continues`.
    chats: HashMap<String, Vec<Message>>,
    turns: Option<usize>,
    difficulty: Option<usize>,
    lineage: Vec<Lineage>,
    /// Index of the step being computed.
    at: usize,
    /// Progress inside a conversation or evolve step.
    sub: Sub,
    /// The call key of the request in flight, if any (a record has at most one).
    waiting: Option<String>,
    failed: bool,
}

/// A finished model call, for provenance.
#[derive(Debug, Clone, Copy)]
struct Done {
    seed: u64,
    finish: Finish,
    prompt_tokens: usize,
    completion_tokens: usize,
}

impl Done {
    fn of(line: &StepLine, seed: u64) -> Done {
        Done {
            seed,
            finish: line.finish.unwrap_or(Finish::Stop),
            prompt_tokens: line.prompt_tokens,
            completion_tokens: line.completion_tokens,
        }
    }
}

/// Progress inside a step that makes several calls.
enum Sub {
    Idle,
    Conv {
        /// Assistant turns drawn for this record.
        n: usize,
        /// The turn being made (1-based).
        turn: usize,
        transcript: Vec<Message>,
    },
    Evo {
        /// Rounds drawn for this record.
        n: usize,
        /// The round being made (1-based).
        round: usize,
        current: String,
        op: EvolveOp,
        lineage: Vec<Lineage>,
    },
}

/// A model call a record's current step needs.
struct Want {
    /// The journal key: the step name, or `step#turn.role` / `step#round` inside a step.
    key: String,
    /// The [`StepModels`] key of the model that answers.
    model: String,
    params: SeqParams,
    messages: Vec<Message>,
    /// The grammar the answer is held to (`output` or `tool_call` on an LLM step).
    output: Option<crate::spec::Output>,
}

/// What came back for a call.
enum Got {
    Line(StepLine),
    TooLong(usize),
}

/// The opening line the simulated user sees, so its view of the dialogue alternates
/// user/assistant from the start as every chat template expects.
const KICKOFF: &str =
    "Stay in the role your instructions give you. Write your first message to the assistant.";

/// Requests waiting for each loaded model.
#[derive(Default)]
struct Queues {
    llms: Vec<Rc<Llm>>,
    queues: Vec<VecDeque<Request>>,
}

impl Queues {
    fn push(&mut self, llm: Rc<Llm>, r: Request) {
        let g = match self.llms.iter().position(|l| Rc::ptr_eq(l, &llm)) {
            Some(g) => g,
            None => {
                self.llms.push(llm);
                self.queues.push(VecDeque::new());
                self.llms.len() - 1
            }
        };
        self.queues[g].push_back(r);
    }

    /// The model with the most requests waiting.
    fn busiest(&self) -> Option<usize> {
        (0..self.queues.len())
            .filter(|&g| !self.queues[g].is_empty())
            .max_by_key(|&g| (self.queues[g].len(), std::cmp::Reverse(g)))
    }
}

impl Live {
    fn set(&mut self, step: &str, value: &str) {
        self.scope.insert(step.to_string(), value.to_string());
        self.steps.insert(step.to_string(), value.to_string());
    }
}

impl Executor<'_> {
    /// Loads every model `task`'s steps use (so a bench's clock starts after loading).
    pub fn warm(&self, task: &Task) -> Result<()> {
        let prefix = format!("{}/", task.name);
        for k in self.models.0.keys().filter(|k| k.starts_with(&prefix)) {
            self.llm_for(k)?;
        }
        Ok(())
    }

    fn llm_for(&self, model_key: &str) -> Result<Rc<Llm>> {
        let (m, t) =
            self.models.0.get(model_key).ok_or_else(|| {
                Error::Internal(format!("no model resolved for step {model_key}"))
            })?;
        crate::runtime::llm(m, self.device, self.precision, t.clone())
    }

    fn seq_params(&self, call: &Call) -> SeqParams {
        let sampling = call
            .sampling
            .as_ref()
            .map_or_else(|| self.base.clone(), |o| o.apply(&self.base));
        let mut stop = self.base.stop.clone();
        stop.extend(call.stop.iter().cloned());
        SeqParams {
            sampling,
            max_new_tokens: call.max_new_tokens.unwrap_or(self.base_max_new),
            stop,
        }
    }

    fn seed(&self, r: &Live, key: &str) -> u64 {
        step_seed(self.spec.run.seed, &r.item.id, key)
    }

    /// Computes `items` (records of `task` not yet written), then appends the records
    /// that passed every step to `out`, in plan order.
    ///
    /// Records move through their steps independently: when a record's call finishes,
    /// its next call joins the running batch of the model it needs (continuous batching
    /// across steps and turns). Calls for another model wait in that model's queue; the
    /// model with the most waiting runs next.
    pub fn run(
        &self,
        task: &Task,
        items: Vec<WorkItem>,
        journal: &mut Journal,
        out: &mut JsonlWriter,
        pb: &indicatif::ProgressBar,
        counts: &mut Counts,
    ) -> Result<()> {
        let mut live: Vec<Live> = items
            .into_iter()
            .map(|item| Live {
                scope: item.vars.clone(),
                item,
                steps: BTreeMap::new(),
                llm: HashMap::new(),
                transcripts: HashMap::new(),
                chats: HashMap::new(),
                turns: None,
                difficulty: None,
                lineage: Vec::new(),
                at: 0,
                sub: Sub::Idle,
                waiting: None,
                failed: false,
            })
            .collect();
        let index: HashMap<String, usize> = live
            .iter()
            .enumerate()
            .map(|(i, r)| (r.item.id.clone(), i))
            .collect();
        let queues = RefCell::new(Queues::default());
        for r in live.iter_mut() {
            if let Some((llm, req)) = self.advance(task, r, journal, counts)? {
                queues.borrow_mut().push(llm, req);
            }
        }
        loop {
            // A statement, not `while let`: the borrow must end before the batch runs.
            let Some(g) = queues.borrow().busiest() else {
                break;
            };
            let llm = queues.borrow().llms[g].clone();
            let params = GenParams {
                sampling: self.base.clone(),
                max_new_tokens: self.base_max_new,
                batch_size: self.batch_size,
                stop: Vec::new(),
            };
            let feed = std::iter::from_fn(|| queues.borrow_mut().queues[g].pop_front());
            let stats = llm.generate(feed, &params, |o| {
                let i = *index.get(&o.id).ok_or_else(|| {
                    Error::Internal(format!("the engine returned unknown record {}", o.id))
                })?;
                let r = &mut live[i];
                let key = r.waiting.take().ok_or_else(|| {
                    Error::Internal(format!("record {} got an answer it did not ask for", o.id))
                })?;
                let got = if o.finish == Finish::PromptTooLong {
                    Got::TooLong(o.prompt_tokens)
                } else {
                    // A constrained answer is exactly what its grammar matched.
                    let value = match o.valid {
                        Some(_) => o.text,
                        None => o.text.trim().to_string(),
                    };
                    let line = StepLine {
                        id: o.id,
                        step: key,
                        value,
                        finish: Some(o.finish),
                        prompt_tokens: o.prompt_tokens,
                        completion_tokens: o.tokens.len(),
                        valid: o.valid,
                    };
                    journal.record(&line)?;
                    Got::Line(line)
                };
                self.take(task, r, got, journal, counts)?;
                if let Some((llm, req)) = self.advance(task, r, journal, counts)? {
                    queues.borrow_mut().push(llm, req);
                }
                Ok(())
            })?;
            counts.stats.generated_tokens += stats.generated_tokens;
            counts.stats.prefill_tokens += stats.prefill_tokens;
            counts.stats.reused_tokens += stats.reused_tokens;
            counts.stats.steps += stats.steps;
            counts.stats.oom_backoffs += stats.oom_backoffs;
        }
        if let Some(r) = live.iter().find(|r| !r.failed && r.at < task.steps.len()) {
            return Err(Error::Internal(format!(
                "record {} stopped at step {} of {}",
                r.item.id,
                r.at + 1,
                task.steps.len()
            )));
        }
        // Failed records are settled too: the bar counts them with the written ones.
        pb.inc(live.iter().filter(|r| r.failed).count() as u64);
        for r in live.iter().filter(|r| !r.failed) {
            let rec = self.assemble(task, r)?;
            out.append(&rec)?;
            out.sync()?;
            counts.written += 1;
            pb.inc(1);
        }
        Ok(())
    }

    /// Runs the record's steps until one needs a model call (returned, with the model
    /// that answers it) or the record is finished or failed (`None`). A call already in
    /// the journal is taken from there, so a resumed record replays its finished calls
    /// without computing them.
    fn advance(
        &self,
        task: &Task,
        r: &mut Live,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<Option<(Rc<Llm>, Request)>> {
        loop {
            if r.failed || r.at >= task.steps.len() {
                return Ok(None);
            }
            let step = &task.steps[r.at];
            let want = match &step.kind {
                StepKind::Sampler(_)
                | StepKind::Expression(_)
                | StepKind::Json { .. }
                | StepKind::ToolResult { .. } => {
                    self.simple(task, step, r, journal, counts)?;
                    continue;
                }
                StepKind::Llm {
                    few_shot,
                    output,
                    tool_call,
                    continues,
                    ..
                } => {
                    let mut scope = r.scope.clone();
                    if let Some(f) = few_shot {
                        let seed = self.seed(r, &format!("{}#examples", step.name));
                        scope.insert(
                            "examples".into(),
                            evolve::examples_block(&f.examples, f.k, seed),
                        );
                    }
                    let mut messages = match continues {
                        Some(c) => {
                            let mut m = r.chats.get(c).cloned().ok_or_else(|| {
                                Error::Internal(format!(
                                    "step {} continues `{c}` before it ran",
                                    step.name
                                ))
                            })?;
                            m.extend(prompt(step, &scope));
                            m
                        }
                        None => prompt(step, &scope),
                    };
                    if let (true, Some(tools)) = (*tool_call, &task.tools) {
                        with_tools(&mut messages, tools);
                    }
                    r.chats.insert(step.name.clone(), messages.clone());
                    Want {
                        key: step.name.clone(),
                        model: key(task, step),
                        params: self.params(step),
                        messages,
                        output: output.clone(),
                    }
                }
                StepKind::Conversation(c) => {
                    match self.conv_next(task, step, c, r, journal, counts)? {
                        Some(w) => w,
                        None => continue,
                    }
                }
                StepKind::Evolve(e) => match self.evo_next(task, step, e, r, journal, counts)? {
                    Some(w) => w,
                    None => continue,
                },
            };
            if let Some(line) = journal.done.get(&(r.item.id.clone(), want.key.clone())) {
                let line = line.clone();
                self.take(task, r, Got::Line(line), journal, counts)?;
                continue;
            }
            let llm = self.llm_for(&want.model)?;
            let prompt_ids = llm.prompt_ids(&want.messages)?;
            let constraint = match &want.output {
                Some(o) => Some(llm.compile(&o.constraint)?),
                None => None,
            };
            let req = Request {
                id: r.item.id.clone(),
                prompt_ids,
                seed: self.seed(r, &want.key),
                own: Some(Arc::new(want.params)),
                constraint,
            };
            r.waiting = Some(want.key);
            return Ok(Some((llm, req)));
        }
    }

    /// A sampler, expression or json step, from the journal or computed now.
    fn simple(
        &self,
        task: &Task,
        step: &Step,
        r: &mut Live,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        if let Some(l) = journal.done.get(&(r.item.id.clone(), step.name.clone())) {
            let v = l.value.clone();
            r.set(&step.name, &v);
            r.at += 1;
            return Ok(());
        }
        match compute(self.spec, step, &r.scope, self.seed(r, &step.name))? {
            Ok(value) => {
                journal.record(&StepLine {
                    id: r.item.id.clone(),
                    step: step.name.clone(),
                    value: value.clone(),
                    finish: None,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    valid: None,
                })?;
                r.set(&step.name, &value);
                r.at += 1;
            }
            Err(reason) => self.fail(task, step, r, reason, journal, counts)?,
        }
        Ok(())
    }

    fn fail(
        &self,
        task: &Task,
        step: &Step,
        r: &mut Live,
        reason: String,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        journal.reject(&r.item.id, &task.name, &step.name, reason)?;
        r.failed = true;
        r.sub = Sub::Idle;
        counts.rejected += 1;
        Ok(())
    }

    /// Applies the answer to the call the record's current step made.
    fn take(
        &self,
        task: &Task,
        r: &mut Live,
        got: Got,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        let step = &task.steps[r.at];
        let name = step.name.as_str();
        match &step.kind {
            StepKind::Llm {
                few_shot, output, ..
            } => match got {
                Got::TooLong(n) => {
                    let reason = format!("prompt_too_long:{name} ({n} tokens)");
                    self.fail(task, step, r, reason, journal, counts)?;
                }
                Got::Line(l) => {
                    // Cut off inside its grammar: a valid prefix, never a valid answer.
                    if output.is_some() && l.valid != Some(true) {
                        let reason = format!("truncated_in_grammar:{name}");
                        return self.fail(task, step, r, reason, journal, counts);
                    }
                    let copies = few_shot.as_ref().and_then(|f| {
                        evolve::copies_example(&l.value, &f.examples, f.max_similarity)
                    });
                    if let Some(k) = copies {
                        let reason = format!("copies_example:{name} (example {})", k + 1);
                        return self.fail(task, step, r, reason, journal, counts);
                    }
                    let seed = self.seed(r, name);
                    if let Some(chat) = r.chats.get_mut(name) {
                        chat.push(Message::new("assistant", l.value.clone()));
                    }
                    r.llm.insert(name.to_string(), Done::of(&l, seed));
                    r.set(name, &l.value);
                    r.at += 1;
                }
            },
            StepKind::Conversation(c) => self.conv_take(task, step, c, r, got, journal, counts)?,
            StepKind::Evolve(_) => self.evo_take(task, step, r, got, journal, counts)?,
            _ => {
                return Err(Error::Internal(format!(
                    "step {name} got a model answer but makes no model call"
                )))
            }
        }
        Ok(())
    }

    /// The next call of a conversation step, or `None` when it made progress without
    /// one (the opening line, or the conversation finished).
    #[allow(clippy::too_many_arguments)]
    fn conv_next(
        &self,
        task: &Task,
        step: &Step,
        c: &Conversation,
        r: &mut Live,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<Option<Want>> {
        let name = &step.name;
        if let Sub::Idle = r.sub {
            let seed = self.seed(r, &format!("{name}#turns"));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            r.sub = Sub::Conv {
                n: rng.random_range(c.turns.0..=c.turns.1),
                turn: 1,
                transcript: Vec::new(),
            };
        }
        let Sub::Conv {
            n,
            turn,
            transcript,
        } = &mut r.sub
        else {
            return Err(Error::Internal(format!(
                "step {name}: not in a conversation"
            )));
        };
        let (n, turn) = (*n, *turn);
        let user_next = transcript.last().is_none_or(|m| m.role != "user");
        if user_next {
            if turn > n {
                self.conv_finish(task, step, c, r, journal, counts)?;
                return Ok(None);
            }
            if let (1, Some(o)) = (turn, &c.opening) {
                let text = render(o, &r.scope).trim().to_string();
                if text.is_empty() {
                    let reason = format!("empty_turn:{name} (the opening is empty)");
                    self.fail(task, step, r, reason, journal, counts)?;
                    return Ok(None);
                }
                transcript.push(Message::new("user", text));
                return Ok(None);
            }
            let mut messages = Vec::new();
            if let Some(s) = &c.user.system {
                messages.push(Message::new("system", render(s, &r.scope)));
            }
            // The simulated user's view: its own lines are the assistant's turns.
            messages.push(Message::new("user", KICKOFF));
            for m in transcript.iter() {
                let role = if m.role == "user" {
                    "assistant"
                } else {
                    "user"
                };
                messages.push(Message::new(role, m.content.clone()));
            }
            return Ok(Some(Want {
                key: format!("{name}#{turn}.user"),
                model: format!("{}#user", key(task, step)),
                params: self.seq_params(&c.user),
                messages,
                output: None,
            }));
        }
        let mut messages = Vec::new();
        if let Some(s) = &c.assistant.system {
            messages.push(Message::new("system", render(s, &r.scope)));
        }
        messages.extend(transcript.iter().cloned());
        Ok(Some(Want {
            key: format!("{name}#{turn}.assistant"),
            model: key(task, step),
            params: self.seq_params(&c.assistant),
            messages,
            output: None,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_take(
        &self,
        task: &Task,
        step: &Step,
        c: &Conversation,
        r: &mut Live,
        got: Got,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        let name = &step.name;
        let Sub::Conv {
            turn, transcript, ..
        } = &mut r.sub
        else {
            return Err(Error::Internal(format!(
                "step {name}: not in a conversation"
            )));
        };
        let done_turns = *turn - 1;
        let user_turn = transcript.last().is_none_or(|m| m.role != "user");
        let line = match got {
            Got::Line(l) => l,
            // A dialogue outgrew the context: keep the turns made, if any.
            Got::TooLong(n) => {
                if done_turns == 0 {
                    let reason = format!("prompt_too_long:{name} ({n} tokens)");
                    return self.fail(task, step, r, reason, journal, counts);
                }
                return self.conv_finish(task, step, c, r, journal, counts);
            }
        };
        if user_turn {
            let mut text = line.value.as_str();
            let mut stopped = false;
            if let Some(m) = &c.stop_marker {
                if let Some(at) = text.find(m.as_str()) {
                    text = text[..at].trim();
                    stopped = true;
                }
            }
            // The marker ends the dialogue once `min` turns are made; before that it
            // is cut and the message kept.
            if (stopped && done_turns >= c.turns.0) || (text.is_empty() && done_turns > 0) {
                return self.conv_finish(task, step, c, r, journal, counts);
            }
            if text.is_empty() {
                let reason = format!("empty_turn:{name} (the simulated user wrote nothing)");
                return self.fail(task, step, r, reason, journal, counts);
            }
            transcript.push(Message::new("user", text.to_string()));
            return Ok(());
        }
        if line.value.is_empty() {
            if done_turns == 0 {
                let reason = format!("empty_turn:{name} (the assistant wrote nothing)");
                return self.fail(task, step, r, reason, journal, counts);
            }
            return self.conv_finish(task, step, c, r, journal, counts);
        }
        transcript.push(Message::new("assistant", line.value.clone()));
        let seed = step_seed(self.spec.run.seed, &r.item.id, &line.step);
        *turn += 1;
        r.llm.insert(name.clone(), Done::of(&line, seed));
        Ok(())
    }

    /// Ends a conversation on its last assistant turn.
    fn conv_finish(
        &self,
        task: &Task,
        step: &Step,
        _c: &Conversation,
        r: &mut Live,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        let Sub::Conv { transcript, .. } = std::mem::replace(&mut r.sub, Sub::Idle) else {
            return Err(Error::Internal(format!(
                "step {}: not in a conversation",
                step.name
            )));
        };
        let mut transcript = transcript;
        if transcript.last().is_some_and(|m| m.role == "user") {
            transcript.pop();
        }
        let turns = transcript.iter().filter(|m| m.role == "assistant").count();
        if turns == 0 {
            let reason = format!("empty_turn:{} (no assistant turn)", step.name);
            return self.fail(task, step, r, reason, journal, counts);
        }
        r.set(&step.name, &transcript_text(&transcript));
        r.transcripts.insert(step.name.clone(), transcript);
        r.turns = Some(turns);
        r.at += 1;
        Ok(())
    }

    /// The next rewrite of an evolve step, or `None` when it finished.
    fn evo_next(
        &self,
        task: &Task,
        step: &Step,
        e: &Evolve,
        r: &mut Live,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<Option<Want>> {
        let name = &step.name;
        if let Sub::Idle = r.sub {
            let from = r.scope.get(&e.from).cloned().ok_or_else(|| {
                Error::Internal(format!("evolve step {name} runs before `{}`", e.from))
            })?;
            let seed = self.seed(r, &format!("{name}#rounds"));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            r.sub = Sub::Evo {
                n: rng.random_range(e.rounds.0..=e.rounds.1),
                round: 1,
                lineage: vec![Lineage {
                    round: 0,
                    operator: "seed".into(),
                    text: from.clone(),
                    failed: None,
                }],
                current: from,
                op: EvolveOp::Deepen,
            };
        }
        let op_seed = match &r.sub {
            Sub::Evo { round, .. } => self.seed(r, &format!("{name}#{round}.op")),
            _ => return Err(Error::Internal(format!("step {name}: not evolving"))),
        };
        let Sub::Evo {
            n,
            round,
            current,
            op,
            ..
        } = &mut r.sub
        else {
            return Err(Error::Internal(format!("step {name}: not evolving")));
        };
        if *round > *n {
            self.evo_finish(task, step, r, journal, counts)?;
            return Ok(None);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(op_seed);
        *op = e.operators[rng.random_range(0..e.operators.len())];
        let mut messages = Vec::new();
        if let Some(s) = &e.call.system {
            messages.push(Message::new("system", render(s, &r.scope)));
        }
        messages.push(Message::new("user", evolve::prompt(*op, current)));
        Ok(Some(Want {
            key: format!("{name}#{round}"),
            model: key(task, step),
            params: self.seq_params(&e.call),
            messages,
            output: None,
        }))
    }

    fn evo_take(
        &self,
        task: &Task,
        step: &Step,
        r: &mut Live,
        got: Got,
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        let name = &step.name;
        let seed = match (&got, &r.sub) {
            (Got::Line(l), _) => self.seed(r, &l.step),
            _ => 0,
        };
        let Sub::Evo {
            round,
            current,
            op,
            lineage,
            ..
        } = &mut r.sub
        else {
            return Err(Error::Internal(format!("step {name}: not evolving")));
        };
        let (child, verdict, line) = match got {
            Got::Line(l) => {
                let child = evolve::clean(&l.value);
                let verdict = evolve::check(*op, current, &child);
                (child, verdict, Some(l))
            }
            Got::TooLong(_) => (String::new(), Err("prompt_too_long"), None),
        };
        match verdict {
            Ok(()) => {
                lineage.push(Lineage {
                    round: *round,
                    operator: op.name().into(),
                    text: child.clone(),
                    failed: None,
                });
                *current = child;
                *round += 1;
                if let Some(l) = line {
                    r.llm.insert(name.clone(), Done::of(&l, seed));
                }
                Ok(())
            }
            Err(why) => {
                lineage.push(Lineage {
                    round: *round,
                    operator: op.name().into(),
                    text: child,
                    failed: Some(why.into()),
                });
                if *round == 1 {
                    let reason = format!("evolve_{why}:{name} (round 1, {})", op.name());
                    return self.fail(task, step, r, reason, journal, counts);
                }
                self.evo_finish(task, step, r, journal, counts)
            }
        }
    }

    /// Ends an evolution on its last good instruction.
    fn evo_finish(
        &self,
        _task: &Task,
        step: &Step,
        r: &mut Live,
        _journal: &mut Journal,
        _counts: &mut Counts,
    ) -> Result<()> {
        let Sub::Evo {
            current, lineage, ..
        } = std::mem::replace(&mut r.sub, Sub::Idle)
        else {
            return Err(Error::Internal(format!("step {}: not evolving", step.name)));
        };
        r.difficulty = Some(
            lineage
                .iter()
                .filter(|l| l.round > 0 && l.failed.is_none())
                .count(),
        );
        r.lineage = lineage;
        r.set(&step.name, &current);
        r.at += 1;
        Ok(())
    }

    /// An LLM step's settings as one call.
    fn params(&self, step: &Step) -> SeqParams {
        self.seq_params(&call_of(step))
    }

    /// The record: turns from `[task.messages]` (or the last LLM or conversation step),
    /// every step's value in `meta.steps`, provenance from the step that made the
    /// assistant turn (or the last model step when that turn is another kind of value).
    fn assemble(&self, task: &Task, r: &Live) -> Result<Record> {
        let is_model = |s: &&Step| {
            matches!(
                s.kind,
                StepKind::Llm { .. } | StepKind::Conversation(_) | StepKind::Evolve(_)
            )
        };
        let last_model = task.steps.iter().rev().find(is_model);
        let value = |name: &str| {
            r.scope.get(name).cloned().ok_or_else(|| {
                Error::Internal(format!("record {} has no value `{name}`", r.item.id))
            })
        };
        let transcript = |name: &str| {
            r.transcripts.get(name).cloned().ok_or_else(|| {
                Error::Internal(format!("record {} has no conversation `{name}`", r.item.id))
            })
        };
        let by_name = |n: &str| task.steps.iter().find(|s| s.name == n).filter(is_model);
        let (messages, prov_step) = match &task.messages {
            Some(m) => {
                let mut msgs = Vec::new();
                if let Some(s) = &m.system {
                    msgs.push(Message::new("system", value(s)?));
                }
                let made_by = match &m.conversation {
                    Some(c) => {
                        msgs.extend(transcript(c)?);
                        by_name(c)
                    }
                    None => {
                        msgs.push(Message::new("user", value(&m.user)?));
                        if let (Some(c), Some(t)) = (&m.tool_call, &m.tool_result) {
                            msgs.extend(tool_turns(&r.item.id, &value(c)?, value(t)?)?);
                        }
                        msgs.push(Message::new("assistant", value(&m.assistant)?));
                        by_name(&m.assistant)
                    }
                };
                (msgs, made_by.or(last_model))
            }
            None => {
                let last =
                    task.steps.iter().rev().find(|s| {
                        matches!(s.kind, StepKind::Llm { .. } | StepKind::Conversation(_))
                    });
                match last.map(|s| (s, &s.kind)) {
                    Some((s, StepKind::Conversation(c))) => {
                        let mut msgs = Vec::new();
                        if let Some(sys) = &c.assistant.system {
                            msgs.push(Message::new("system", render(sys, &r.scope)));
                        }
                        msgs.extend(transcript(&s.name)?);
                        (msgs, Some(s))
                    }
                    // A step that continues a chat makes the whole chat.
                    Some((
                        s,
                        StepKind::Llm {
                            continues: Some(_), ..
                        },
                    )) => {
                        let chat = r.chats.get(&s.name).cloned().ok_or_else(|| {
                            Error::Internal(format!("record {} has no chat for step {}", r.item.id, s.name))
                        })?;
                        (chat, Some(s))
                    }
                    Some((s, _)) => {
                        let mut msgs = prompt(s, &r.scope);
                        if let StepKind::Llm {
                            few_shot: Some(f), ..
                        } = &s.kind
                        {
                            // The record's user turn is the prompt the model saw.
                            let mut scope = r.scope.clone();
                            let seed = self.seed(r, &format!("{}#examples", s.name));
                            scope.insert(
                                "examples".into(),
                                evolve::examples_block(&f.examples, f.k, seed),
                            );
                            msgs = prompt(s, &scope);
                        }
                        msgs.push(Message::new("assistant", value(&s.name)?));
                        (msgs, Some(s))
                    }
                    None => {
                        return Err(Error::Spec(format!(
                            "task `{}` has no LLM or conversation step to make its assistant turn; add [task.messages]",
                            task.name
                        )))
                    }
                }
            }
        };
        let run_seed = self.spec.run.seed;
        let (generator, sampling, done) = match prov_step {
            Some(s) => {
                let p = self.params(s);
                let llm = self.llm_for(&key(task, s))?;
                let done = r.llm.get(&s.name).copied().ok_or_else(|| {
                    Error::Internal(format!("record {} lacks step {}", r.item.id, s.name))
                })?;
                (
                    llm.info.clone(),
                    SamplingRecord {
                        seed: done.seed,
                        run_seed,
                        temperature: p.sampling.temperature,
                        top_p: p.sampling.top_p,
                        top_k: p.sampling.top_k,
                        repetition_penalty: p.sampling.repetition_penalty,
                        max_new_tokens: p.max_new_tokens,
                    },
                    done,
                )
            }
            // Only samplers and expressions: no model made this record.
            None => (
                ModelInfo {
                    model: "none".into(),
                    file_sha256: String::new(),
                    quant: String::new(),
                    weights: String::new(),
                    arch: String::new(),
                    chat_template: String::new(),
                    files: BTreeMap::new(),
                },
                SamplingRecord {
                    seed: record_seed(run_seed, &r.item.id),
                    run_seed,
                    temperature: 0.0,
                    top_p: 1.0,
                    top_k: 0,
                    repetition_penalty: 1.0,
                    max_new_tokens: 0,
                },
                Done {
                    seed: 0,
                    finish: Finish::Stop,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                },
            ),
        };
        Ok(Record {
            id: r.item.id.clone(),
            source: "synthetic".into(),
            messages,
            tools: task.tools.as_ref().map(|t| t.list.clone()),
            meta: Meta {
                task: task.name.clone(),
                vars: r.item.vars.clone(),
                sample_index: r.item.sample_index,
                steps: r.steps.clone(),
                turns: r.turns,
                difficulty: r.difficulty,
                lineage: r.lineage.clone(),
                output: None,
            },
            provenance: Provenance {
                generator,
                sampling,
                finish_reason: done.finish,
                prompt_tokens: done.prompt_tokens,
                completion_tokens: done.completion_tokens,
                device: self.device_name.clone(),
                spec_sha256: self.spec_sha.clone(),
                flywheel: env!("CARGO_PKG_VERSION").into(),
            },
            scores: None,
            decision: None,
        })
    }
}

/// A model step's settings: an LLM step's fields, a conversation's assistant side, an
/// evolve step's rewriter.
fn call_of(step: &Step) -> Call {
    match &step.kind {
        StepKind::Llm {
            system,
            model,
            max_new_tokens,
            sampling,
            stop,
            ..
        } => Call {
            system: system.clone(),
            model: model.clone(),
            max_new_tokens: *max_new_tokens,
            sampling: sampling.clone(),
            stop: stop.clone(),
        },
        StepKind::Conversation(c) => c.assistant.clone(),
        StepKind::Evolve(e) => e.call.clone(),
        _ => Call::default(),
    }
}

/// A transcript as text for later steps' `{{placeholders}}`.
fn transcript_text(t: &[Message]) -> String {
    t.iter()
        .map(|m| {
            let who = if m.role == "user" {
                "User"
            } else {
                "Assistant"
            };
            format!("{who}: {}", m.content)
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The assistant's tool call and the tool's answer, as OpenAI chat messages. The call id
/// is derived from the record id, so a record's bytes are reproducible.
fn tool_turns(record_id: &str, call: &str, result: String) -> Result<[Message; 2]> {
    let (name, args) = crate::spec::tools::parse_call(call).map_err(|why| {
        Error::Internal(format!(
            "record {record_id}: its tool call passed its grammar but reads as {why}"
        ))
    })?;
    let id = format!("call_{}", &record_id[..record_id.len().min(16)]);
    let mut assistant = Message::new("assistant", "");
    assistant.tool_calls = Some(vec![json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": args.to_string()},
    })]);
    let mut tool = Message::new("tool", result);
    tool.tool_call_id = Some(id);
    Ok([assistant, tool])
}

/// A tool-calling step's prompt: the task's tool declarations end its system prompt.
fn with_tools(messages: &mut Vec<Message>, tools: &crate::spec::tools::Tools) {
    let block = tools.prompt_block();
    match messages.iter_mut().find(|m| m.role == "system") {
        Some(m) => m.content = format!("{}\n\n{block}", m.content),
        None => messages.insert(0, Message::new("system", block)),
    }
}

/// An LLM step's prompt: its rendered system prompt (if any) and user template.
fn prompt(step: &Step, scope: &BTreeMap<String, String>) -> Vec<Message> {
    let mut msgs = Vec::new();
    if let StepKind::Llm {
        template, system, ..
    } = &step.kind
    {
        if let Some(s) = system {
            msgs.push(Message::new("system", render(s, scope)));
        }
        msgs.push(Message::new("user", render(template, scope)));
    }
    msgs
}

/// A sampler, expression or json step's value; the inner `Err` is the record's failure
/// reason (`json_missing:<step>`, `json_invalid:<step>`).
fn compute(
    spec: &Spec,
    step: &Step,
    scope: &BTreeMap<String, String>,
    seed: u64,
) -> Result<std::result::Result<String, String>> {
    Ok(match &step.kind {
        StepKind::Sampler(s) => Ok(draw(spec, s, seed)?),
        StepKind::Expression(e) => Ok(render(e, scope)),
        StepKind::Json { from, path } => {
            let text = scope.get(from).ok_or_else(|| {
                Error::Internal(format!("json step {} runs before `{from}`", step.name))
            })?;
            extract(text, path).map_err(|why| format!("{why}:{}", step.name))
        }
        StepKind::ToolResult { from, fixture } => {
            let call = scope.get(from).ok_or_else(|| {
                Error::Internal(format!(
                    "tool_result step {} runs before `{from}`",
                    step.name
                ))
            })?;
            fixture
                .answer(call)
                .map_err(|why| format!("{why}:{}", step.name))
        }
        StepKind::Llm { .. } | StepKind::Conversation(_) | StepKind::Evolve(_) => {
            return Err(Error::Internal(format!(
                "LLM step {} computed outside a wave",
                step.name
            )))
        }
    })
}

/// One draw of a sampler from a ChaCha8 seeded per record and step.
fn draw(spec: &Spec, s: &Sampler, seed: u64) -> Result<String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok(match s {
        Sampler::Choice {
            values,
            weights: None,
        } => values[rng.random_range(0..values.len())].clone(),
        Sampler::Choice {
            values,
            weights: Some(w),
        } => {
            let total: f64 = w.iter().sum();
            let mut x = rng.random::<f64>() * total;
            let mut pick = None;
            for (v, wi) in values.iter().zip(w) {
                if *wi > 0.0 {
                    pick = Some(v);
                    if x < *wi {
                        break;
                    }
                    x -= wi;
                }
            }
            // Rounding can leave `x` past the last weight: that is the last value with
            // weight > 0, which `pick` then holds (the spec guarantees one exists).
            pick.cloned().ok_or_else(|| {
                Error::Internal("a weighted choice with no positive weight".into())
            })?
        }
        Sampler::Int { min, max } => rng.random_range(*min..=*max).to_string(),
        Sampler::Float { min, max } => rng.random_range(*min..*max).to_string(),
        Sampler::Pick { seed: list, k } => {
            let vals = &spec
                .seeds
                .get(list)
                .ok_or_else(|| Error::Internal(format!("pick: no seed list `{list}`")))?
                .values;
            rand::seq::index::sample(&mut rng, vals.len(), (*k).min(vals.len()))
                .into_iter()
                .map(|i| vals[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    })
}

/// The field at `path` of `text` parsed as JSON (a ```json fenced block is accepted):
/// strings as they are, other values as compact JSON.
fn extract(text: &str, path: &[String]) -> std::result::Result<String, &'static str> {
    let v = parse_json(text).ok_or("json_invalid")?;
    let mut cur = &v;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or("json_missing")?;
    }
    Ok(match cur {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn parse_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = match t.find("```json") {
        Some(i) => i + "```json".len(),
        None => t.find("```")? + 3,
    };
    let rest = &t[start..];
    let end = rest.find("```")?;
    serde_json::from_str(rest[..end].trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn json_paths_fences_and_reasons() {
        let t = r#"{"a": {"b": [1, {"c": "x"}]}, "n": null}"#;
        assert_eq!(extract(t, &path("a.b.1.c")), Ok("x".into()));
        assert_eq!(extract(t, &path("a.b.0")), Ok("1".into()));
        assert_eq!(extract(t, &path("a.b")), Ok(r#"[1,{"c":"x"}]"#.into()));
        assert_eq!(extract(t, &path("n")), Ok("null".into()));
        assert_eq!(extract(t, &path("a.z")), Err("json_missing"));
        assert_eq!(extract(t, &path("a.b.9")), Err("json_missing"));
        assert_eq!(extract("not json", &path("a")), Err("json_invalid"));
        let fenced = "Here:\n```json\n{\"title\": \"T\"}\n```\nbye";
        assert_eq!(extract(fenced, &path("title")), Ok("T".into()));
    }

    fn spec() -> Spec {
        let text = r#"[run]
name = "t"
[teacher]
model = "smollm2-135m-instruct"
[seeds]
topic = ["a", "b", "c", "d"]
[[task]]
name = "s"
  [[task.step]]
  name = "p"
  sampler = { pick = "topic", k = 3 }
  [[task.step]]
  name = "q"
  template = "{{p}}"
"#;
        Spec::parse(std::path::Path::new("s.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn samplers_are_seeded_and_in_range() {
        let s = spec();
        let choice = Sampler::Choice {
            values: vec!["x".into(), "y".into(), "z".into()],
            weights: Some(vec![0.0, 1.0, 0.0]),
        };
        for seed in 0..200u64 {
            assert_eq!(draw(&s, &choice, seed).unwrap(), "y");
            let i: i64 = draw(&s, &Sampler::Int { min: -2, max: 2 }, seed)
                .unwrap()
                .parse()
                .unwrap();
            assert!((-2..=2).contains(&i));
            let f: f64 = draw(&s, &Sampler::Float { min: 1.0, max: 1.5 }, seed)
                .unwrap()
                .parse()
                .unwrap();
            assert!((1.0..1.5).contains(&f));
            let p = draw(
                &s,
                &Sampler::Pick {
                    seed: "topic".into(),
                    k: 3,
                },
                seed,
            )
            .unwrap();
            let parts: HashSet<&str> = p.split(", ").collect();
            assert_eq!(parts.len(), 3, "{p}");
        }
        let uniform = Sampler::Choice {
            values: vec!["x".into(), "y".into()],
            weights: None,
        };
        let a: Vec<String> = (0..20).map(|k| draw(&s, &uniform, k).unwrap()).collect();
        let b: Vec<String> = (0..20).map(|k| draw(&s, &uniform, k).unwrap()).collect();
        assert_eq!(a, b, "same seed, same draw");
        assert!(a.iter().any(|v| v == "x") && a.iter().any(|v| v == "y"));
        assert_ne!(step_seed(1, "id", "a"), step_seed(1, "id", "b"));
        assert_ne!(step_seed(1, "id", "a"), step_seed(2, "id", "a"));
    }

    #[test]
    fn step_definitions_change_the_record_id() {
        let s = spec();
        let t = &s.tasks[0];
        let before = super::super::item_id(t, &BTreeMap::new(), 0);
        let mut t2 = t.clone();
        t2.steps[0].kind = StepKind::Sampler(Sampler::Pick {
            seed: "topic".into(),
            k: 2,
        });
        assert_ne!(before, super::super::item_id(&t2, &BTreeMap::new(), 0));
    }
}
