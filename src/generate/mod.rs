//! The prompt plan: every task's template expanded over its seed lists (cartesian product
//! or a seeded sample of it) × `samples_per_prompt`, each item with a stable id.
//!
//! Ids hash what makes the item (task, template, system prompt, the seed values it uses,
//! sample index), not its position, so adding a seed value leaves every other id — and so
//! every finished record — unchanged, and a rerun resumes.

pub mod bench;
pub mod estimate;
pub mod evolve;
pub mod stage;
mod steps;

use crate::models::chat::Message;
use crate::spec::{render, Spec, Task};
use rand::seq::index::sample as sample_indices;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// Expands all tasks in spec order (the whole plan in memory: for tests and small specs;
/// the stage walks [`plan_iter`]).
pub fn plan(spec: &Spec) -> Vec<WorkItem> {
    plan_iter(spec).collect()
}

/// The plan, item by item in spec order, built lazily: `--limit` and `sample` pay only for
/// what they take, never for the full product.
pub fn plan_iter(spec: &Spec) -> impl Iterator<Item = WorkItem> + '_ {
    spec.tasks
        .iter()
        .flat_map(move |t| task_iter(spec, t))
        .filter(move |i| spec.shard.is_none_or(|s| s.owns(&i.id)))
}

/// How many items the plan holds: counted without building it, except for a shard (its
/// share depends on the ids).
pub fn plan_len(spec: &Spec) -> u128 {
    if spec.shard.is_some() {
        return plan_iter(spec).count() as u128;
    }
    spec.tasks
        .iter()
        .map(|t| combos_of(spec, t).len() * t.samples_per_prompt as u128)
        .sum()
}

/// The seed-value combinations a task uses, as mixed-radix indices (last variable fastest).
enum Combos {
    /// Every combination `0..n`.
    All(u128),
    /// A seeded sample, sorted.
    Sampled(Vec<u128>),
}

impl Combos {
    fn len(&self) -> u128 {
        match self {
            Combos::All(n) => *n,
            Combos::Sampled(v) => v.len() as u128,
        }
    }
    fn get(&self, i: u128) -> u128 {
        match self {
            Combos::All(_) => i,
            Combos::Sampled(v) => v[i as usize],
        }
    }
}

fn seed_lists<'a>(spec: &'a Spec, task: &Task) -> Vec<&'a Vec<String>> {
    task.vars.iter().map(|v| &spec.seeds[v].values).collect()
}

fn combos_of(spec: &Spec, task: &Task) -> Combos {
    let total: u128 = seed_lists(spec, task)
        .iter()
        .map(|l| l.len() as u128)
        .product();
    match task.sample {
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
            Combos::Sampled(idx)
        }
        _ => Combos::All(total),
    }
}

fn task_iter<'a>(spec: &'a Spec, task: &'a Task) -> impl Iterator<Item = WorkItem> + 'a {
    let lists = seed_lists(spec, task);
    let combos = combos_of(spec, task);
    let n = combos.len();
    // Seed lists hold distinct values (the spec drops repeats), so every combination is
    // a distinct prompt.
    (0..n).flat_map(move |k| {
        let mut c = combos.get(k);
        let mut vals = vec![String::new(); lists.len()];
        for (i, list) in lists.iter().enumerate().rev() {
            let n = list.len() as u128;
            vals[i] = list[(c % n) as usize].clone();
            c /= n;
        }
        let vars: BTreeMap<String, String> = task.vars.iter().cloned().zip(vals).collect();
        let mut messages = Vec::new();
        if let Some(sys) = &task.system {
            messages.push(Message::new("system", render(sys, &vars)));
        }
        messages.push(Message::new("user", render(&task.template, &vars)));
        (0..task.samples_per_prompt).map(move |s| WorkItem {
            id: item_id(task, &vars, s),
            task: task.name.clone(),
            vars: vars.clone(),
            sample_index: s,
            messages: messages.clone(),
        })
    })
}

/// Answers "does the current plan still make this record?" from the record alone, in
/// O(1) per record: a record whose task, template, seed values or sample index left the
/// spec is not in the plan, and must not pass downstream.
pub struct PlanIndex<'a> {
    spec: &'a Spec,
    tasks: HashMap<&'a str, TaskIndex<'a>>,
}

struct TaskIndex<'a> {
    task: &'a Task,
    /// Per variable: value → its position in the seed list.
    positions: Vec<HashMap<&'a str, usize>>,
    sampled: Option<HashSet<u128>>,
}

impl<'a> PlanIndex<'a> {
    pub fn new(spec: &'a Spec) -> PlanIndex<'a> {
        let tasks = spec
            .tasks
            .iter()
            .map(|t| {
                let positions = seed_lists(spec, t)
                    .iter()
                    .map(|l| l.iter().enumerate().map(|(i, v)| (v.as_str(), i)).collect())
                    .collect();
                let sampled = match combos_of(spec, t) {
                    Combos::All(_) => None,
                    Combos::Sampled(v) => Some(v.into_iter().collect()),
                };
                (
                    t.name.as_str(),
                    TaskIndex {
                        task: t,
                        positions,
                        sampled,
                    },
                )
            })
            .collect();
        PlanIndex { spec, tasks }
    }

    /// Whether `record` (a generated record: `id` and `meta.{task, vars, sample_index}`)
    /// is an item of the current plan.
    pub fn contains(&self, record: &serde_json::Value) -> bool {
        let (Some(id), Some(meta)) = (record["id"].as_str(), record.get("meta")) else {
            return false;
        };
        if self.spec.shard.is_some_and(|s| !s.owns(id)) {
            return false;
        }
        let Some(ti) = meta["task"].as_str().and_then(|t| self.tasks.get(t)) else {
            return false;
        };
        let Some(sample) = meta["sample_index"].as_u64() else {
            return false;
        };
        if sample >= ti.task.samples_per_prompt as u64 {
            return false;
        }
        let Some(vars) = meta["vars"].as_object() else {
            return false;
        };
        if vars.len() != ti.task.vars.len() {
            return false;
        }
        let lists = seed_lists(self.spec, ti.task);
        let mut combo: u128 = 0;
        let mut values = BTreeMap::new();
        for (k, name) in ti.task.vars.iter().enumerate() {
            let Some(v) = vars.get(name).and_then(|v| v.as_str()) else {
                return false;
            };
            let Some(&pos) = ti.positions[k].get(v) else {
                return false;
            };
            combo = combo * lists[k].len() as u128 + pos as u128;
            values.insert(name.clone(), v.to_string());
        }
        if let Some(s) = &ti.sampled {
            if !s.contains(&combo) {
                return false;
            }
        }
        item_id(ti.task, &values, sample as usize) == id
    }
}

/// sha256 over the item's defining content; 32 hex chars.
/// A task with steps also hashes its steps and turns (as a plain task hashes its
/// template), so editing a step makes new records instead of resuming old ones.
pub fn item_id(task: &Task, vars: &BTreeMap<String, String>, sample: usize) -> String {
    let mut key = serde_json::json!({
        "v": 1,
        "task": task.name,
        "template": task.template,
        "system": task.system,
        "vars": vars,
        "sample": sample,
    });
    if task.has_steps() {
        key["steps"] = steps::definition(task);
    }
    if let Some(o) = &task.output {
        key["output"] = o.key().into();
    }
    crate::models::checksum::sha256_bytes(key.to_string().as_bytes())[..32].to_string()
}

#[cfg(test)]
mod tests;
