//! The executor for tasks written as `[[task.step]]` (issue #15), in waves: step j of every
//! live record before step j+1, so one step's LLM calls share one continuous batch.
//!
//! Every value is a function of the run seed, the record id, the step name and earlier
//! values only: a sampler draws from a ChaCha8 seeded with that triple, and an LLM step's
//! sampling seed is the same derivation. So a record never depends on the batch size or
//! on which records were computed together, and resuming from `steps.jsonl` (every value
//! appended as it is computed) gives the records an uninterrupted run gives.

use super::WorkItem;
use crate::engine::sampler::record_seed;
use crate::engine::{Finish, GenParams, GenStats, Llm, ModelInfo, Precision, Request};
use crate::error::{Error, Result};
use crate::models::chat::{ChatTemplate, Message};
use crate::models::{resolve, FetchPolicy, ResolvedModel};
use crate::record::generated::{Meta, Provenance, Record, SamplingRecord};
use crate::record::lines::{self, Line};
use crate::spec::{render, Call, Sampler, Sampling, Spec, Step, StepKind, Task};
use crate::store::{JsonlWriter, RunDir};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

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
                } => json!({"llm": {
                    "template": template, "system": system, "model": model,
                    "max_new_tokens": max_new_tokens, "sampling": sampling, "stop": stop,
                    "few_shot": few_shot.as_ref().map(|f| json!({
                        "sha256": f.sha256, "k": f.k, "max_similarity": f.max_similarity,
                    })),
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
    let messages = task
        .messages
        .as_ref()
        .map(|m| json!({"system": m.system, "user": m.user, "assistant": m.assistant}));
    json!({"steps": steps, "messages": messages})
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
                let StepKind::Llm { model, .. } = &step.kind else {
                    continue;
                };
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
                out.insert(key(task, step), (m, template));
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

/// A record being computed: its scope (seed values, then each step's value as it comes).
struct Live {
    item: WorkItem,
    scope: BTreeMap<String, String>,
    steps: BTreeMap<String, String>,
    /// An LLM step's `(finish, prompt tokens, completion tokens)`, by step name.
    llm: HashMap<String, (Finish, usize, usize)>,
    failed: bool,
}

impl Live {
    fn set(&mut self, step: &str, l: &StepLine) {
        self.scope.insert(step.to_string(), l.value.clone());
        self.steps.insert(step.to_string(), l.value.clone());
        if let Some(f) = l.finish {
            self.llm
                .insert(step.to_string(), (f, l.prompt_tokens, l.completion_tokens));
        }
    }
}

impl Executor<'_> {
    fn llm(&self, task: &Task, step: &Step) -> Result<Rc<Llm>> {
        let (m, t) = self.models.0.get(&key(task, step)).ok_or_else(|| {
            Error::Internal(format!("no model resolved for step {}", key(task, step)))
        })?;
        crate::runtime::llm(m, self.device, self.precision, t.clone())
    }

    fn params(&self, step: &Step) -> GenParams {
        let (sampling, max_new, stop) = match &step.kind {
            StepKind::Llm {
                sampling,
                max_new_tokens,
                stop,
                ..
            } => (sampling.as_ref(), *max_new_tokens, stop.as_slice()),
            _ => (None, None, &[][..]),
        };
        let sampling = sampling.map_or_else(|| self.base.clone(), |o| o.apply(&self.base));
        let mut stops = self.base.stop.clone();
        stops.extend(stop.iter().cloned());
        GenParams {
            sampling,
            max_new_tokens: max_new.unwrap_or(self.base_max_new),
            batch_size: self.batch_size,
            stop: stops,
        }
    }

    /// Computes `items` (records of `task` not yet written) step by step, then appends
    /// the records that passed every step to `out`, in plan order.
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
                failed: false,
            })
            .collect();
        for step in &task.steps {
            let mut todo = Vec::new();
            for (i, r) in live.iter_mut().enumerate() {
                if r.failed {
                    continue;
                }
                match journal.done.get(&(r.item.id.clone(), step.name.clone())) {
                    Some(l) => r.set(&step.name, l),
                    None => todo.push(i),
                }
            }
            if todo.is_empty() {
                continue;
            }
            if let StepKind::Llm { .. } = step.kind {
                self.llm_wave(task, step, &mut live, &todo, journal, counts)?;
                continue;
            }
            for i in todo {
                let r = &mut live[i];
                let seed = step_seed(self.spec.run.seed, &r.item.id, &step.name);
                match compute(self.spec, step, &r.scope, seed)? {
                    Ok(value) => {
                        let line = StepLine {
                            id: r.item.id.clone(),
                            step: step.name.clone(),
                            value,
                            finish: None,
                            prompt_tokens: 0,
                            completion_tokens: 0,
                        };
                        journal.record(&line)?;
                        r.set(&step.name, &line);
                    }
                    Err(reason) => {
                        journal.reject(&r.item.id, &task.name, &step.name, reason)?;
                        r.failed = true;
                        counts.rejected += 1;
                    }
                }
            }
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

    /// One LLM step for the records `todo`, in one continuous batch.
    fn llm_wave(
        &self,
        task: &Task,
        step: &Step,
        live: &mut [Live],
        todo: &[usize],
        journal: &mut Journal,
        counts: &mut Counts,
    ) -> Result<()> {
        let llm = self.llm(task, step)?;
        let params = self.params(step);
        let mut index = HashMap::new();
        let mut requests = Vec::with_capacity(todo.len());
        for &i in todo {
            let r = &live[i];
            let ids = llm.prompt_ids(&prompt(step, &r.scope))?;
            index.insert(r.item.id.clone(), i);
            requests.push(Request {
                id: r.item.id.clone(),
                prompt_ids: ids,
                seed: step_seed(self.spec.run.seed, &r.item.id, &step.name),
            });
        }
        let mut rejected = 0;
        let stats = llm.generate(requests, &params, |o| {
            let i = *index.get(&o.id).ok_or_else(|| {
                Error::Internal(format!("the engine returned unknown record {}", o.id))
            })?;
            let r = &mut live[i];
            if o.finish == Finish::PromptTooLong {
                let reason = format!("prompt_too_long:{} ({} tokens)", step.name, o.prompt_tokens);
                journal.reject(&r.item.id, &task.name, &step.name, reason)?;
                r.failed = true;
                rejected += 1;
                return Ok(());
            }
            let line = StepLine {
                id: o.id,
                step: step.name.clone(),
                value: o.text.trim().to_string(),
                finish: Some(o.finish),
                prompt_tokens: o.prompt_tokens,
                completion_tokens: o.tokens.len(),
            };
            journal.record(&line)?;
            r.set(&step.name, &line);
            Ok(())
        })?;
        counts.rejected += rejected;
        counts.stats.generated_tokens += stats.generated_tokens;
        counts.stats.prefill_tokens += stats.prefill_tokens;
        counts.stats.steps += stats.steps;
        counts.stats.oom_backoffs += stats.oom_backoffs;
        Ok(())
    }

    /// The record: turns from `[task.messages]` (or the last LLM step's prompt and
    /// answer), every step's value in `meta.steps`, provenance from the assistant's LLM
    /// step (or the last LLM step when the assistant turn is another kind of value).
    fn assemble(&self, task: &Task, r: &Live) -> Result<Record> {
        let last_llm = task
            .steps
            .iter()
            .rev()
            .find(|s| matches!(s.kind, StepKind::Llm { .. }));
        let value = |name: &str| {
            r.scope.get(name).cloned().ok_or_else(|| {
                Error::Internal(format!("record {} has no value `{name}`", r.item.id))
            })
        };
        let (messages, prov_step) = match (&task.messages, last_llm) {
            (Some(m), _) => {
                let mut msgs = Vec::new();
                if let Some(s) = &m.system {
                    msgs.push(Message::new("system", value(s)?));
                }
                msgs.push(Message::new("user", value(&m.user)?));
                msgs.push(Message::new("assistant", value(&m.assistant)?));
                let assistant_llm = task
                    .steps
                    .iter()
                    .find(|s| s.name == m.assistant && matches!(s.kind, StepKind::Llm { .. }));
                (msgs, assistant_llm.or(last_llm))
            }
            (None, Some(s)) => {
                let mut msgs = prompt(s, &r.scope);
                msgs.push(Message::new("assistant", value(&s.name)?));
                (msgs, Some(s))
            }
            (None, None) => {
                return Err(Error::Internal(format!(
                    "task `{}` has neither [task.messages] nor an LLM step",
                    task.name
                )))
            }
        };
        let run_seed = self.spec.run.seed;
        let (generator, sampling, (finish, prompt_tokens, completion_tokens)) = match prov_step {
            Some(s) => {
                let p = self.params(s);
                let llm = self.llm(task, s)?;
                let done = r.llm.get(&s.name).copied().ok_or_else(|| {
                    Error::Internal(format!("record {} lacks step {}", r.item.id, s.name))
                })?;
                (
                    llm.info.clone(),
                    SamplingRecord {
                        seed: step_seed(run_seed, &r.item.id, &s.name),
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
                (Finish::Stop, 0, 0),
            ),
        };
        Ok(Record {
            id: r.item.id.clone(),
            source: "synthetic".into(),
            messages,
            meta: Meta {
                task: task.name.clone(),
                vars: r.item.vars.clone(),
                sample_index: r.item.sample_index,
                steps: r.steps.clone(),
                ..Default::default()
            },
            provenance: Provenance {
                generator,
                sampling,
                finish_reason: finish,
                prompt_tokens,
                completion_tokens,
                device: self.device_name.clone(),
                spec_sha256: self.spec_sha.clone(),
                flywheel: env!("CARGO_PKG_VERSION").into(),
            },
            scores: None,
            decision: None,
        })
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
