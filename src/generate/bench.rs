//! The multi-step case of `flywheel bench generate`: records made by one LLM step, then
//! by two chained steps of half the length each, through the real executor (journal
//! and all) at one batch size. With continuous batching across steps, a record's second
//! call joins the running batch as soon as its first finishes, so the two-step task
//! should keep the one-step task's tokens/s. Two shapes of second step are measured: one
//! that `continues` the first step's chat (its prefix comes from the kept KV cache), and
//! one whose new prompt quotes the first answer (which must be prefilled again).

use super::steps::{Counts, Executor, Journal, StepModels};
use crate::engine::Precision;
use crate::error::{Error, Result};
use crate::models::FetchPolicy;
use crate::spec::Spec;
use crate::store::{JsonlWriter, RunDir};
use candle_core::Device;
use std::time::Instant;

/// One measured case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepsCase {
    pub steps: usize,
    /// Step 2 continues step 1's chat (else its prompt quotes step 1's answer).
    pub continues: bool,
    pub records: usize,
    pub generated_tokens: usize,
    pub prefill_tokens: usize,
    /// Prompt positions copied from kept KV caches instead of prefilled.
    pub reused_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// Runs the one-step and two-step tasks (`records` records, `tokens` new tokens per
/// record in all) with `model` at batch `batch`, in a scratch directory.
pub fn steps_bench(
    model: &str,
    device: &Device,
    precision: Precision,
    batch: usize,
    tokens: usize,
    records: usize,
) -> Result<[StepsCase; 3]> {
    let dir = std::env::temp_dir().join(format!("flywheel-steps-bench-{}", std::process::id()));
    let result = (|| {
        let prompts: Vec<String> = (0..records)
            .map(|i| format!("Write a long essay about subject {i}."))
            .collect();
        let run = |steps, continues| {
            Case {
                model,
                device,
                precision,
                batch,
                tokens,
                records,
                steps,
                continues,
                sampling: None,
                prompts: prompts.clone(),
            }
            .run(&dir)
        };
        Ok([run(1, false)?, run(2, true)?, run(2, false)?])
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The end-to-end chat prompts of [`chat_bench`] (the same ones llama.cpp's reference
/// sends to `create_chat_completion`).
pub fn chat_prompts(records: usize) -> Vec<String> {
    (0..records)
        .map(|i| format!("Write a short paragraph about subject {i}."))
        .collect()
}

/// End to end: `records` chat prompts ([`chat_prompts`]) answered by one LLM step through
/// the real executor (journal and records written) at batch `batch`, with `sampling`.
pub fn chat_bench(
    model: &str,
    device: &Device,
    precision: Precision,
    batch: usize,
    tokens: usize,
    records: usize,
    sampling: &crate::spec::Sampling,
) -> Result<StepsCase> {
    let dir = std::env::temp_dir().join(format!("flywheel-chat-bench-{}", std::process::id()));
    let table = format!(
        "[teacher.sampling]\ntemperature = {}\ntop_p = {}\ntop_k = {}\nrepetition_penalty = {}\n",
        sampling.temperature, sampling.top_p, sampling.top_k, sampling.repetition_penalty
    );
    let r = Case {
        model,
        device,
        precision,
        batch,
        tokens,
        records,
        steps: 1,
        continues: false,
        sampling: Some(table),
        prompts: chat_prompts(records),
    }
    .run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// One measured task shape.
struct Case<'a> {
    model: &'a str,
    device: &'a Device,
    precision: Precision,
    batch: usize,
    tokens: usize,
    records: usize,
    steps: usize,
    continues: bool,
    /// A `[teacher.sampling]` table (else the teacher's defaults).
    sampling: Option<String>,
    /// The first step's whole user message, one per record.
    prompts: Vec<String>,
}

impl Case<'_> {
    fn run(&self, dir: &std::path::Path) -> Result<StepsCase> {
        case(self, dir)
    }
}

fn case(c: &Case<'_>, dir: &std::path::Path) -> Result<StepsCase> {
    let Case {
        model,
        device,
        precision,
        batch,
        tokens,
        records,
        steps,
        continues,
        ..
    } = *c;
    let (sampling, prompts) = (c.sampling.as_deref(), &c.prompts);
    let case_dir = dir.join(format!("{steps}-step-{continues}"));
    std::fs::create_dir_all(&case_dir).map_err(|e| Error::io("creating", &case_dir, e))?;
    // A model given as a relative path stays the file the user named.
    let model = match std::path::Path::new(model) {
        p if p.exists() => std::fs::canonicalize(p)
            .map_err(|e| Error::io("reading", p, e))?
            .display()
            .to_string(),
        _ => model.to_string(),
    };
    let per_step = tokens / steps;
    let topics: Vec<String> = prompts.iter().map(|p| format!("{p:?}")).collect();
    let mut text = format!(
        "[run]\nname = \"bench\"\nseed = 7\n[teacher]\nmodel = {model:?}\nbatch_size = {batch}\nmax_new_tokens = {per_step}\n{}[seeds]\nprompt = [{}]\n[[task]]\nname = \"t\"\n",
        sampling.unwrap_or(""),
        topics.join(", ")
    );
    text.push_str("  [[task.step]]\n  name = \"s1\"\n  template = \"{{prompt}}\"\n");
    match (steps, continues) {
        (1, _) => {}
        (_, true) => text.push_str(
            "  [[task.step]]\n  name = \"s2\"\n  continues = \"s1\"\n  template = \"Continue the essay.\"\n",
        ),
        (_, false) => text.push_str(
            "  [[task.step]]\n  name = \"s2\"\n  template = \"Continue this essay:\\n{{s1}}\"\n",
        ),
    }
    let spec_path = case_dir.join("bench.toml");
    std::fs::write(&spec_path, &text).map_err(|e| Error::io("writing", &spec_path, e))?;
    let spec = Spec::parse(&spec_path, text)?;
    let models = StepModels::resolve(&spec, FetchPolicy::from_env())?;
    let rd = RunDir::new(&case_dir);
    let mut journal = Journal::open(&rd)?;
    let (mut out, _) = JsonlWriter::open(&case_dir.join("out.jsonl"))?;
    let teacher = spec
        .teacher
        .as_ref()
        .ok_or_else(|| Error::Internal("bench spec without [teacher]".into()))?;
    let exec = Executor {
        spec: &spec,
        models: &models,
        device,
        precision,
        base: teacher.sampling.clone(),
        base_max_new: per_step,
        batch_size: batch,
        device_name: crate::engine::device::name(device),
        spec_sha: String::new(),
    };
    let task = &spec.tasks[0];
    // Load the model before the clock starts.
    exec.warm(task)?;
    let items: Vec<_> = super::plan_iter(&spec).collect();
    let mut counts = Counts::default();
    let t0 = Instant::now();
    exec.run(
        task,
        items,
        &mut journal,
        &mut out,
        &indicatif::ProgressBar::hidden(),
        &mut counts,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(StepsCase {
        steps,
        continues,
        records,
        generated_tokens: counts.stats.generated_tokens,
        prefill_tokens: counts.stats.prefill_tokens,
        reused_tokens: counts.stats.reused_tokens,
        seconds,
        tokens_per_s: counts.stats.generated_tokens as f64 / seconds,
    })
}
