//! The prompt plan: every task's template expanded over its seed lists (cartesian product
//! or a seeded sample of it) × `samples_per_prompt`, each item with a stable id.
//!
//! Ids hash what makes the item (task, template, system prompt, the seed values it uses,
//! sample index), not its position, so adding a seed value leaves every other id — and so
//! every finished record — unchanged, and a rerun resumes.

pub mod stage;

use crate::models::chat::Message;
use crate::spec::{render, Spec, Task};
use rand::seq::index::sample as sample_indices;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// One planned generation.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub id: String,
    pub task: String,
    /// The seed values this item's template uses.
    pub vars: BTreeMap<String, String>,
    pub sample_index: usize,
    /// System (optional) and user messages.
    pub messages: Vec<Message>,
}

/// Expands all tasks in spec order.
pub fn plan(spec: &Spec) -> Vec<WorkItem> {
    let mut out = Vec::new();
    for task in &spec.tasks {
        expand_task(spec, task, &mut out);
    }
    out
}

fn expand_task(spec: &Spec, task: &Task, out: &mut Vec<WorkItem>) {
    let lists: Vec<&Vec<String>> = task.vars.iter().map(|v| &spec.seeds[v].values).collect();
    let total: u128 = lists.iter().map(|l| l.len() as u128).product();
    let combos: Vec<u128> = match task.sample {
        Some(n) if (n as u128) < total => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                crate::engine::sampler::record_seed(spec.run.seed, &task.name),
            );
            // Sampling indices needs a usize range; products beyond it are capped, which
            // only narrows which combinations can be drawn.
            let range = total.min(usize::MAX as u128) as usize;
            let mut idx: Vec<u128> = sample_indices(&mut rng, range, n)
                .into_iter()
                .map(|i| i as u128)
                .collect();
            idx.sort_unstable();
            idx
        }
        _ => (0..total).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    for mut c in combos {
        // Mixed-radix decode, last variable fastest.
        let mut vals = vec![String::new(); lists.len()];
        for (i, list) in lists.iter().enumerate().rev() {
            let n = list.len() as u128;
            vals[i] = list[(c % n) as usize].clone();
            c /= n;
        }
        let vars: BTreeMap<String, String> = task.vars.iter().cloned().zip(vals).collect();
        if !seen.insert(vars.clone()) {
            // Duplicate seed values give the same prompt; one copy is enough.
            continue;
        }
        let mut messages = Vec::new();
        if let Some(sys) = &task.system {
            messages.push(Message::new("system", render(sys, &vars)));
        }
        messages.push(Message::new("user", render(&task.template, &vars)));
        for s in 0..task.samples_per_prompt {
            out.push(WorkItem {
                id: item_id(task, &vars, s),
                task: task.name.clone(),
                vars: vars.clone(),
                sample_index: s,
                messages: messages.clone(),
            });
        }
    }
}

/// sha256 over the item's defining content; 32 hex chars.
pub fn item_id(task: &Task, vars: &BTreeMap<String, String>, sample: usize) -> String {
    let key = serde_json::json!({
        "v": 1,
        "task": task.name,
        "template": task.template,
        "system": task.system,
        "vars": vars,
        "sample": sample,
    });
    crate::models::checksum::sha256_bytes(key.to_string().as_bytes())[..32].to_string()
}

#[cfg(test)]
mod tests;
