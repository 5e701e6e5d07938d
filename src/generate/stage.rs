//! The generate stage: plan → skip what the run directory already holds → generate the
//! rest with continuous batching → append records as they finish.

use super::steps::{Counts, Executor, Journal, StepModels, CHUNK};
use super::{plan_iter, plan_len, PlanIndex, WorkItem};
use crate::engine::sampler::record_seed;
use crate::engine::{self, Finish, GenParams, GenStats, Precision, Request, Runtime};
use crate::error::{Error, Result};
use crate::models::chat::{ChatTemplate, Message};
use crate::models::{resolve, FetchPolicy};
use crate::record::generated::{Meta, OutputCheck, Provenance, Record, SamplingRecord};
use crate::spec::{Sampling, Spec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{create_run_dir, JsonlWriter, Manifest};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// Bumped when the engine's numerics change in a way that changes generated text.
/// 3: generation also stops at every end-of-generation control token the vocabulary has
/// (SmolLM2's `<|endoftext|>` among them), so older records may run past one.
pub const ENGINE_REVISION: u32 = 3;

/// Command-line overrides for a generate run.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Device and matmul precision.
    pub runtime: Runtime,
    pub batch_size: Option<usize>,
    /// Only the first N planned items.
    pub limit: Option<usize>,
    /// The run directory (default `<run.out_dir>/<run.name>`).
    pub out: Option<PathBuf>,
    /// Start over when the run directory holds records made with other settings.
    pub force: bool,
    pub progress: bool,
    pub fetch: FetchPolicy,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            runtime: Runtime::default(),
            batch_size: None,
            limit: None,
            out: None,
            force: false,
            progress: false,
            fetch: FetchPolicy::from_env(),
        }
    }
}

/// What a generate run did.
#[derive(Debug, Clone)]
pub struct GenerateSummary {
    pub run_dir: PathBuf,
    pub planned: usize,
    pub already_done: usize,
    pub written: usize,
    pub skipped_prompt_too_long: usize,
    /// Records of tasks with steps that failed a step this run (each written to
    /// `steps_rejected.jsonl` with the step and the reason).
    pub rejected: usize,
    /// Records in the file that the current plan no longer contains.
    pub not_in_plan: usize,
    pub generated_tokens: usize,
    pub prefill_tokens: usize,
    pub wall_seconds: f64,
}

/// What `flywheel generate` prints: the counts, throughput and file, then warnings.
impl std::fmt::Display for GenerateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generate: {} planned, {} already done, {} written, {} tokens in {:.1}s ({:.1} tok/s) → {}",
            self.planned,
            self.already_done,
            self.written,
            self.generated_tokens,
            self.wall_seconds,
            self.generated_tokens as f64 / self.wall_seconds.max(1e-9),
            crate::store::RunDir::new(&self.run_dir).generated().display()
        )?;
        if self.skipped_prompt_too_long > 0 {
            write!(
                f,
                "\nwarning: {} prompts did not fit the model's context and were skipped",
                self.skipped_prompt_too_long
            )?;
        }
        if self.rejected > 0 {
            write!(
                f,
                "\nnote: {} records failed a step; each is in {} with the step and the reason",
                self.rejected,
                crate::store::RunDir::new(&self.run_dir)
                    .steps_rejected()
                    .display()
            )?;
        }
        if self.not_in_plan > 0 {
            write!(f, "\nnote: {} records no longer in the plan were moved aside (see the note above); they will not reach the dataset", self.not_in_plan)?;
        }
        Ok(())
    }
}

impl GenerateSummary {
    /// The line `flywheel run` prints after `[1/6] generate:`.
    pub fn run_line(&self) -> String {
        let failed = if self.rejected > 0 {
            format!(", {} failed a step (steps_rejected.jsonl)", self.rejected)
        } else {
            String::new()
        };
        format!(
            "{} planned, {} already done, {} written{failed} ({} tokens) in {:.1}s",
            self.planned, self.already_done, self.written, self.generated_tokens, self.wall_seconds
        )
    }
}

/// Runs the generate stage for a spec.
pub fn run(spec: &Spec, opts: &GenerateOptions) -> Result<GenerateSummary> {
    let started = Instant::now();
    let run_dir = opts.out.clone().unwrap_or_else(|| spec.run_dir());
    let (device, precision) = (&opts.runtime.device, opts.runtime.precision);
    let _lock = create_run_dir(&run_dir)?;
    let has_plain = spec.tasks.iter().any(|t| !t.has_steps());
    let has_steps = spec.tasks.iter().any(|t| t.has_steps());
    // Plain tasks need the teacher; a task with steps needs it only where a step names
    // no model (the spec checks that).
    let teacher = match &spec.teacher {
        Some(t) => Some(t),
        None if has_plain => {
            return Err(Error::Spec(format!(
            "{}: the spec has no [teacher] section; `generate` needs one (see configs/demo.toml)",
            spec.path.display()
        )))
        }
        None => None,
    };
    if spec.tasks.is_empty() {
        return Err(Error::Spec(format!(
            "{}: task: the spec has no [[task]] section; add one with a `name` and a `template`",
            spec.path.display()
        )));
    }
    // The spec bounds the plan (MAX_PLAN_RECORDS), so it fits a usize.
    let full_plan = usize::try_from(plan_len(spec)).unwrap_or(usize::MAX);
    let limit = opts.limit.unwrap_or(usize::MAX);
    let planned = full_plan.min(limit);
    let model = teacher.map(|t| resolve(&t.model, opts.fetch)).transpose()?;
    let template = teacher
        .and_then(|t| t.chat_template.as_deref())
        .map(ChatTemplate::from_override)
        .transpose()?;
    let step_models = StepModels::resolve(spec, opts.fetch)?;

    // A built-in override keeps its name; a `.jinja` file is keyed by its content, so
    // editing the file regenerates instead of resuming records made with the old text.
    let mut fingerprint = serde_json::json!({
        "seed": spec.run.seed,
        "device": engine::device::name(device),
        "engine_revision": ENGINE_REVISION,
    });
    if let (Some(t), Some(m)) = (teacher, &model) {
        fingerprint["model_sha256"] = serde_json::json!(m.main_file().sha256);
        fingerprint["chat_template"] =
            serde_json::json!(template.as_ref().map(ChatTemplate::provenance));
        fingerprint["sampling"] = serde_json::json!(t.sampling);
        fingerprint["max_new_tokens"] = serde_json::json!(t.max_new_tokens);
    }
    // Only a spec with steps has the key, so plain runs keep their fingerprint.
    if has_steps {
        fingerprint["steps"] = step_models.fingerprint(spec);
    }
    // Records made before `--dtype` existed were all Q8_0 and have no key: only another
    // precision is written, so those runs still resume.
    if precision != Precision::Q8_0 {
        fingerprint["weights"] = serde_json::json!(precision.name());
    }
    if let Some(c) = model
        .as_ref()
        .and_then(|m| engine::model::changed_outputs(&m.main_file().path))
    {
        fingerprint["engine_changed"] = serde_json::json!(c);
    }
    let rd = crate::store::RunDir::new(&run_dir);
    let gen_path = rd.generated();
    let mut manifest = Manifest::load(&run_dir)?.unwrap_or_default();
    // Only records on disk can be mixed (step values too); an old fingerprint with no
    // records is harmless.
    let non_empty = |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.len() > 0);
    let has_records = non_empty(&gen_path) || non_empty(&rd.steps());
    if let Some(old) = manifest
        .generation_fingerprint
        .as_ref()
        .filter(|_| has_records)
    {
        if *old != fingerprint {
            let changed = changed_keys(old, &fingerprint);
            if !opts.force {
                return Err(Error::RunConflict(format!(
                    "{} holds records generated with different settings (changed: {}). Mixing them would give a dataset no single spec describes. Rerun with --force to move the old records aside and start over, or set another [run].name in the spec (generate also takes --out DIR)",
                    run_dir.display(),
                    changed.join(", ")
                )));
            }
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = run_dir.join(format!("generated.{stamp}.replaced.jsonl"));
            if gen_path.exists() {
                std::fs::rename(&gen_path, &aside)
                    .map_err(|e| Error::io("cannot move aside", &gen_path, e))?;
                eprintln!("--force: moved the old records to {}", aside.display());
            }
            // Step values and rejections were made with the old settings too.
            for (p, stem) in [
                (rd.steps(), "steps"),
                (rd.steps_rejected(), "steps_rejected"),
            ] {
                if p.exists() {
                    let to = run_dir.join(format!("{stem}.{stamp}.replaced.jsonl"));
                    std::fs::rename(&p, &to).map_err(|e| Error::io("cannot move aside", &p, e))?;
                }
            }
            manifest.stages.remove("generate");
        }
    }
    // Records the current plan no longer makes (a seed value, template, task or
    // samples_per_prompt changed) must not flow downstream: move them aside, as --force does.
    let index = PlanIndex::new(spec);
    let moved = crate::store::move_aside(&gen_path, "not-in-plan", |r| {
        (!index.contains(r)).then(|| "not in the current plan".to_string())
    })?;
    if let Some(to) = &moved.to {
        eprintln!(
            "note: moved {} records that the current plan no longer makes (a seed value, template, task or samples_per_prompt changed) to {}; they will not reach the dataset",
            moved.count(),
            to.display()
        );
    }
    let (mut writer, mut existing) = JsonlWriter::open(&gen_path)?;
    if existing.torn_bytes > 0 {
        eprintln!(
            "note: cut a torn last line ({} bytes) from {}; that record will be generated again",
            existing.torn_bytes,
            gen_path.display()
        );
    }
    if let Some(shard) = spec.shard {
        let n = adopt(
            spec,
            shard,
            &fingerprint,
            &index,
            &mut writer,
            &mut existing.ids,
        )?;
        if n > 0 {
            writer.sync()?;
            eprintln!(
                "note: took {n} records this shard owns from shards of another count, made from this spec with these settings: they are not generated again"
            );
        }
    }
    let mut journal = if has_steps {
        Some(Journal::open(&rd)?)
    } else {
        None
    };
    // A record that failed a step in an earlier run is done: the same inputs fail again.
    let rejected_before = journal
        .as_ref()
        .map(|j| j.rejected_ids.clone())
        .unwrap_or_default();
    let is_done = |id: &str| existing.ids.contains(id) || rejected_before.contains(id);
    // Every record left in the file is in the plan; only a --limit (or failed records,
    // whose file is not sorted out by plan) leaves some outside it.
    let already_done = if planned == full_plan && !has_steps {
        existing.ids.len()
    } else {
        plan_iter(spec)
            .take(limit)
            .filter(|i| is_done(&i.id))
            .count()
    };
    let pending = planned - already_done;
    let steps_task = |name: &str| spec.tasks.iter().any(|t| t.name == name && t.has_steps());
    let plain_pending = if !has_plain || pending == 0 {
        false
    } else if !has_steps {
        true
    } else {
        plan_iter(spec)
            .take(limit)
            .any(|i| !steps_task(&i.task) && !is_done(&i.id))
    };

    manifest.flywheel = env!("CARGO_PKG_VERSION").into();
    manifest.spec_path = spec.path.display().to_string();
    manifest.spec_sha256 = spec.sha256();
    manifest.generation_fingerprint = Some(fingerprint);
    let llm = match &model {
        Some(m) if plain_pending => Some(crate::runtime::llm(m, device, precision, template)?),
        _ => None,
    };
    manifest
        .models
        .retain(|m| m.role != "teacher" && !m.role.starts_with("step "));
    let entry = |role: String, m: &crate::models::ResolvedModel| ModelEntry {
        role,
        id: m.id.clone(),
        file: m.main_file().path.display().to_string(),
        sha256: m.main_file().sha256.clone(),
    };
    if let Some(m) = &model {
        manifest.models.push(entry("teacher".into(), m));
    }
    for (role, m) in step_models.entries() {
        manifest.models.push(entry(role, m));
    }
    let mut status = StageStatus {
        status: "running".into(),
        planned,
        done: already_done,
        ..Default::default()
    };
    manifest.stages.insert("generate".into(), status.clone());
    manifest.save(&run_dir)?;

    let mut summary = GenerateSummary {
        run_dir: run_dir.clone(),
        planned,
        already_done,
        written: 0,
        skipped_prompt_too_long: 0,
        rejected: 0,
        not_in_plan: moved.count(),
        generated_tokens: 0,
        prefill_tokens: 0,
        wall_seconds: 0.0,
    };
    if pending == 0 {
        status.status = "done".into();
        status.wall_seconds = started.elapsed().as_secs_f64();
        manifest.stages.insert("generate".into(), status);
        manifest.save(&run_dir)?;
        summary.wall_seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let pb = crate::progress::bar(pending, opts.progress, "generate");
    let spec_sha = spec.sha256();
    let device_name = engine::device::name(device);
    let batch_size = opts
        .batch_size
        .unwrap_or(teacher.map_or(DEFAULT_BATCH, |t| t.batch_size));
    let plain: Result<GenStats> = match (&llm, teacher) {
        (Some(llm), Some(teacher)) => {
            let params = GenParams {
                sampling: teacher.sampling.clone(),
                max_new_tokens: teacher.max_new_tokens,
                batch_size: opts.batch_size.unwrap_or(teacher.batch_size),
                stop: teacher.sampling.stop.clone(),
            };
            // Requests are made as the engine asks for them, so a large plan is never held in
            // memory; the items in flight wait in `inflight` until their record is written.
            // Each task's output constraint, compiled once for the teacher.
            let mut grammars = HashMap::new();
            for t in spec.tasks.iter().filter(|t| !t.has_steps()) {
                if let Some(o) = &t.output {
                    grammars.insert(t.name.clone(), llm.compile(&o.constraint)?);
                }
            }
            let inflight: RefCell<HashMap<String, WorkItem>> = RefCell::new(HashMap::new());
            let prompt_error: RefCell<Option<Error>> = RefCell::new(None);
            let requests = plan_iter(spec)
                .take(limit)
                .filter(|i| !steps_task(&i.task) && !existing.ids.contains(&i.id))
                .map_while(|it| match llm.prompt_ids(&it.messages) {
                    Ok(prompt_ids) => {
                        let mut r = Request::new(
                            it.id.clone(),
                            prompt_ids,
                            record_seed(spec.run.seed, &it.id),
                        );
                        r.constraint = grammars.get(&it.task).cloned();
                        inflight.borrow_mut().insert(it.id.clone(), it);
                        Some(r)
                    }
                    Err(e) => {
                        *prompt_error.borrow_mut() = Some(e);
                        None
                    }
                });
            let gen_started = Instant::now();
            let mut tokens_out = 0usize;
            let result = llm.generate(requests, &params, |out| {
            if out.finish == Finish::PromptTooLong {
                inflight.borrow_mut().remove(&out.id);
                summary.skipped_prompt_too_long += 1;
                eprintln!("warning: record {} skipped: its prompt ({} tokens) does not fit the model's context", out.id, out.prompt_tokens);
                return Ok(());
            }
            let item = inflight.borrow_mut().remove(&out.id).ok_or_else(|| {
                Error::Internal(format!("the engine returned unknown record {}", out.id))
            })?;
            tokens_out += out.tokens.len();
            let mut messages: Vec<Message> = item.messages;
            let output = grammars.get(&item.task).map(|g| OutputCheck {
                constraint: g.kind().to_string(),
                valid: out.valid.unwrap_or(false),
            });
            // A constrained answer is kept byte for byte: trimming could unmatch a regex.
            let text = if output.is_some() { out.text.as_str() } else { out.text.trim() };
            messages.push(Message::new("assistant", text));
            let rec = Record {
                id: out.id.clone(),
                source: "synthetic".into(),
                messages,
                tools: None,
                meta: Meta { task: item.task, vars: item.vars, sample_index: item.sample_index, output, ..Default::default() },
                provenance: Provenance {
                    generator: llm.info.clone(),
                    sampling: SamplingRecord {
                        seed: record_seed(spec.run.seed, &out.id),
                        run_seed: spec.run.seed,
                        temperature: params.sampling.temperature,
                        top_p: params.sampling.top_p,
                        top_k: params.sampling.top_k,
                        repetition_penalty: params.sampling.repetition_penalty,
                        max_new_tokens: params.max_new_tokens,
                    },
                    finish_reason: out.finish,
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.tokens.len(),
                    device: device_name.clone(),
                    spec_sha256: spec_sha.clone(),
                    flywheel: env!("CARGO_PKG_VERSION").into(),
                },
                scores: None,
                decision: None,
            };
            writer.append(&rec)?;
            writer.sync()?;
            summary.written += 1;
            pb.inc(1);
            let secs = gen_started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!("{:.1} tok/s", tokens_out as f64 / secs));
            Ok(())
        });
            // A prompt that could not be tokenized ended the request stream early.
            match prompt_error.into_inner() {
                Some(e) => result.and(Err(e)),
                None => result,
            }
        }
        _ => Ok(GenStats::default()),
    };
    let result = plain.and_then(|mut stats| {
        let Some(journal) = journal.as_mut() else {
            return Ok(stats);
        };
        let exec = Executor {
            spec,
            models: &step_models,
            device,
            precision,
            base: teacher.map_or_else(Sampling::default, |t| t.sampling.clone()),
            base_max_new: teacher.map_or(DEFAULT_MAX_NEW_TOKENS, |t| t.max_new_tokens),
            batch_size,
            device_name: device_name.clone(),
            spec_sha: spec_sha.clone(),
        };
        let mut counts = Counts::default();
        let result = run_steps(
            spec,
            limit,
            &is_done,
            &exec,
            journal,
            &mut writer,
            &pb,
            &mut counts,
        );
        summary.written += counts.written;
        summary.rejected += counts.rejected;
        stats.generated_tokens += counts.stats.generated_tokens;
        stats.prefill_tokens += counts.stats.prefill_tokens;
        result.map(|()| stats)
    });
    pb.finish_and_clear();
    summary.wall_seconds = started.elapsed().as_secs_f64();
    // A record that failed a step is done too (a rerun does not retry it), as
    // `already_done` counts the earlier ones.
    status.done = already_done + summary.written + summary.rejected;
    status.written_this_run = summary.written;
    if has_steps {
        status
            .extra
            .insert("steps_rejected".into(), summary.rejected.into());
    }
    status.wall_seconds = summary.wall_seconds;
    match result {
        Ok(stats) => {
            summary.generated_tokens = stats.generated_tokens;
            summary.prefill_tokens = stats.prefill_tokens;
            status.status = "done".into();
            status
                .extra
                .insert("generated_tokens".into(), stats.generated_tokens.into());
            status
                .extra
                .insert("prefill_tokens".into(), stats.prefill_tokens.into());
            if let Some(llm) = &llm {
                status
                    .extra
                    .insert("weights".into(), llm.info.weights.clone().into());
            }
            manifest.stages.insert("generate".into(), status);
            manifest.save(&run_dir)?;
            Ok(summary)
        }
        Err(e) => {
            status.status = if matches!(e, Error::Interrupted) {
                "interrupted"
            } else {
                "failed"
            }
            .into();
            manifest.stages.insert("generate".into(), status);
            // The original error matters more than a failure to record it.
            let _ = manifest.save(&run_dir);
            Err(e)
        }
    }
}

/// `[teacher]`'s defaults, for a spec whose every LLM step names its model.
const DEFAULT_BATCH: usize = 8;
const DEFAULT_MAX_NEW_TOKENS: usize = 256;

/// Every steps task's pending records (in plan order, within `limit`), in chunks of
/// [`CHUNK`] records, through the executor.
#[allow(clippy::too_many_arguments)]
fn run_steps(
    spec: &Spec,
    limit: usize,
    is_done: &dyn Fn(&str) -> bool,
    exec: &Executor<'_>,
    journal: &mut Journal,
    writer: &mut JsonlWriter,
    pb: &indicatif::ProgressBar,
    counts: &mut Counts,
) -> Result<()> {
    for task in spec.tasks.iter().filter(|t| t.has_steps()) {
        let mut chunk = Vec::new();
        let items = plan_iter(spec)
            .take(limit)
            .filter(|i| i.task == task.name && !is_done(&i.id));
        for item in items {
            chunk.push(item);
            if chunk.len() == CHUNK {
                exec.run(
                    task,
                    std::mem::take(&mut chunk),
                    journal,
                    writer,
                    pb,
                    counts,
                )?;
            }
        }
        if !chunk.is_empty() {
            exec.run(task, chunk, journal, writer, pb, counts)?;
        }
    }
    Ok(())
}

fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return vec!["everything".into()];
    };
    let mut keys: Vec<String> = o
        .keys()
        .chain(n.keys())
        .filter(|k| o.get(*k) != n.get(*k))
        .cloned()
        .collect();
    keys.dedup();
    keys.iter()
        .map(|k| {
            format!(
                "{k}: {} → {}",
                o.get(k).map_or("-".into(), |v| v.to_string()),
                n.get(k).map_or("-".into(), |v| v.to_string())
            )
        })
        .collect()
}

/// Records shard `shard` owns that shards of another count already made (the run was split
/// another way before), from this very spec text with this generation fingerprint: copied
/// byte for byte into this shard's file, so changing the number of shards never makes a
/// finished record again. Records of tasks with steps are left to be made again (their
/// step journal stays with the shard that made them).
fn adopt(
    spec: &Spec,
    shard: crate::spec::Shard,
    fingerprint: &serde_json::Value,
    index: &PlanIndex,
    writer: &mut JsonlWriter,
    have: &mut std::collections::HashSet<String>,
) -> Result<usize> {
    use crate::spec::Shard;
    let run = spec.run_dir();
    let Some(root) = run.parent() else {
        return Ok(0);
    };
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(0);
    };
    let mut dirs: Vec<std::path::PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(Shard::from_dir_name)
                .is_some_and(|s| s.count != shard.count)
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let spec_sha = spec.sha256();
    let mut n = 0;
    for d in dirs {
        let Some(m) = Manifest::load(&d)? else {
            continue;
        };
        if m.spec_sha256 != spec_sha || m.generation_fingerprint.as_ref() != Some(fingerprint) {
            continue;
        }
        let file = crate::store::RunDir::new(&d).generated();
        if !file.is_file() {
            continue;
        }
        crate::record::lines::for_each_raw(
            &file,
            |_| {},
            |_, _, raw| {
                let Ok(v) = crate::record::lines::parse_line(raw) else {
                    return Ok(());
                };
                let Some(id) = v["id"].as_str() else {
                    return Ok(());
                };
                let steps = v["meta"]["task"].as_str().is_some_and(|t| {
                    spec.tasks
                        .iter()
                        .any(|task| task.name == t && task.has_steps())
                });
                if shard.owns(id) && !steps && !have.contains(id) && index.contains(&v) {
                    writer.append_raw(raw)?;
                    have.insert(id.to_string());
                    n += 1;
                }
                Ok(())
            },
        )?;
    }
    Ok(n)
}
