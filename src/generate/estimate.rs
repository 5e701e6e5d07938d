//! `flywheel plan`: how a spec's work splits over N shards, and how long each shard takes
//! on this machine, from a short calibration run of the teacher on the spec's own first
//! prompts (so the estimate carries this model, device, precision and batch size).

use super::plan_iter;
use crate::engine::sampler::record_seed;
use crate::engine::{GenParams, Request, Runtime};
use crate::error::{Error, Result};
use crate::models::chat::ChatTemplate;
use crate::models::{resolve, FetchPolicy};
use crate::spec::{Shard, Spec};
use serde::Serialize;
use std::time::Instant;

/// One shard's share.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardPlan {
    pub shard: usize,
    pub records: usize,
    pub prompt_tokens: usize,
    /// Records × max_new_tokens: the most the teacher can write.
    pub max_output_tokens: usize,
    pub estimated_seconds: Option<f64>,
}

/// The plan over `shards`, with the calibration behind the estimate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Estimate {
    pub records: usize,
    pub shards: Vec<ShardPlan>,
    /// Records of tasks with steps (several model calls each): counted, not timed.
    pub step_records: usize,
    /// Calibration: records generated, seconds, and so seconds per record at the batch size.
    pub calibration_records: usize,
    pub calibration_seconds: f64,
    pub seconds_per_record: Option<f64>,
    pub batch_size: usize,
}

/// Splits the plan of `spec` over `shards` and times `calibrate` records of it.
pub fn estimate(
    spec: &Spec,
    shards: usize,
    calibrate: usize,
    runtime: &Runtime,
    fetch: FetchPolicy,
) -> Result<Estimate> {
    let teacher = spec.teacher.as_ref().ok_or_else(|| {
        Error::Spec(format!(
            "{}: no [teacher]: plan estimates the teacher's work",
            spec.path.display()
        ))
    })?;
    let model = resolve(&teacher.model, fetch)?;
    let template = teacher
        .chat_template
        .as_deref()
        .map(ChatTemplate::from_override)
        .transpose()?;
    let llm = crate::runtime::llm(&model, &runtime.device, runtime.precision, template)?;
    let mut out = Estimate {
        shards: (0..shards)
            .map(|i| ShardPlan {
                shard: i,
                ..Default::default()
            })
            .collect(),
        batch_size: teacher.batch_size,
        ..Default::default()
    };
    let mut sample = Vec::new();
    for item in plan_iter(spec) {
        out.records += 1;
        let s = &mut out.shards[Shard::of(&item.id, shards)];
        s.records += 1;
        if spec
            .tasks
            .iter()
            .any(|t| t.name == item.task && t.has_steps())
        {
            out.step_records += 1;
            continue;
        }
        let ids = llm.prompt_ids(&item.messages)?;
        s.prompt_tokens += ids.len();
        s.max_output_tokens += teacher.max_new_tokens;
        if sample.len() < calibrate {
            sample.push(Request::new(
                item.id.clone(),
                ids,
                record_seed(spec.run.seed, &item.id),
            ));
        }
    }
    if !sample.is_empty() {
        let params = GenParams {
            sampling: teacher.sampling.clone(),
            max_new_tokens: teacher.max_new_tokens,
            batch_size: teacher.batch_size,
            stop: teacher.sampling.stop.clone(),
        };
        let n = sample.len();
        let t0 = Instant::now();
        llm.generate(sample, &params, |_| Ok(()))?;
        out.calibration_records = n;
        out.calibration_seconds = t0.elapsed().as_secs_f64();
        let per = out.calibration_seconds / n as f64;
        out.seconds_per_record = Some(per);
        for s in &mut out.shards {
            // Records of tasks with steps are not timed (several calls each).
            let plain = s.max_output_tokens / teacher.max_new_tokens.max(1);
            s.estimated_seconds = Some(plain as f64 * per);
        }
    }
    Ok(out)
}
