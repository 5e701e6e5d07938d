//! The report's sections for generation programs (issue #15): the per-step funnel of tasks
//! with steps, the turn-count histogram of conversations and the difficulty levels of
//! evolved records. Each is `None` when the run has no such data, so a plain task's report
//! keeps exactly its keys.

use crate::record::lines::{self, Line};
use crate::spec::Spec;
use crate::store::Manifest;
use crate::store::RunDir;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The part of a reason before its first ':' (`json_missing:title` → `json_missing`): the
/// rest names a field or a size, which would split one cause into many rows.
pub(super) fn reason_group(reason: &str) -> &str {
    reason.split(':').next().unwrap_or("").trim()
}

/// `steps_rejected.jsonl`: `(id, task, step, reason)`, one per record (the first line of
/// an id wins: a rerun does not retry a failed record). Read tolerantly: a torn last line
/// after a kill must not cost the whole report.
pub(super) fn read_step_rejections(rd: &RunDir) -> Vec<StepRejection> {
    let path = rd.steps_rejected();
    if !path.exists() {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in lines::read(&path, false).unwrap_or_default() {
        let Line::Record { value, .. } = line else {
            continue;
        };
        let s = |k: &str| value[k].as_str().unwrap_or("").to_string();
        let r = StepRejection {
            id: s("id"),
            task: s("task"),
            step: s("step"),
            reason: s("reason"),
        };
        if !r.id.is_empty() && seen.insert(r.id.clone()) {
            out.push(r);
        }
    }
    out
}

/// A record that failed a step.
#[derive(Debug, Clone)]
pub(super) struct StepRejection {
    id: String,
    pub task: String,
    pub step: String,
    pub reason: String,
}

/// What the per-step funnel needs from `generated.jsonl`, gathered as it streams by.
pub(super) struct StepTally {
    /// The order from the spec that made the run, when it is still there unchanged.
    from_spec: Option<Vec<(String, Vec<String>)>>,
    /// Tasks with steps in the order their first record appears, with its step names.
    seen: Vec<(String, Vec<String>)>,
    /// Records per task with steps.
    finished: BTreeMap<String, usize>,
    /// Each step record's task (an index into `seen`), to place the journal's values;
    /// only gathered when the order must come from the journal.
    task_of: HashMap<String, usize>,
    /// `(task, step)` → its place among the first record's `meta.steps` keys that has it.
    key_pos: BTreeMap<(String, String), usize>,
}

impl StepTally {
    pub fn new(m: &Manifest) -> StepTally {
        StepTally {
            from_spec: order_from_spec(&m.spec_path, &m.spec_sha256),
            seen: Vec::new(),
            finished: BTreeMap::new(),
            task_of: HashMap::new(),
            key_pos: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, r: &Value) {
        let Some(steps) = r["meta"]["steps"].as_object().filter(|o| !o.is_empty()) else {
            return;
        };
        let Some(task) = r["meta"]["task"].as_str() else {
            return;
        };
        for (i, k) in steps.keys().enumerate() {
            self.key_pos
                .entry((task.to_string(), k.clone()))
                .or_insert(i);
        }
        let i = match self.seen.iter().position(|(t, _)| t == task) {
            Some(i) => i,
            None => {
                self.seen
                    .push((task.to_string(), steps.keys().cloned().collect()));
                self.seen.len() - 1
            }
        };
        *self.finished.entry(task.to_string()).or_default() += 1;
        if let (None, Some(id)) = (&self.from_spec, r["id"].as_str()) {
            self.task_of.insert(id.to_string(), i);
        }
    }
}

/// Each task's step names in the order they run: from the spec that made the run when it
/// is still where the manifest says and unchanged (same sha256), else as `steps.jsonl`
/// shows them (each step at its mean position in the records' value sequences).
fn step_order(dir: &Path, t: &StepTally, rejected: &[StepRejection]) -> Vec<(String, Vec<String>)> {
    if let Some(order) = &t.from_spec {
        return order.clone();
    }
    order_from_journal(&RunDir::new(dir), t, rejected)
}

fn order_from_spec(spec_path: &str, sha: &str) -> Option<Vec<(String, Vec<String>)>> {
    let path = Path::new(spec_path);
    let text = std::fs::read_to_string(path).ok()?;
    if sha.is_empty() || crate::models::checksum::sha256_bytes(text.as_bytes()) != sha {
        return None;
    }
    let spec = Spec::parse(path, text).ok()?;
    Some(
        spec.tasks
            .iter()
            .filter(|t| t.has_steps())
            .map(|t| {
                let names = t.steps.iter().map(|s| s.name.clone()).collect();
                (t.name.clone(), names)
            })
            .collect(),
    )
}

fn order_from_journal(
    rd: &RunDir,
    t: &StepTally,
    rejected: &[StepRejection],
) -> Vec<(String, Vec<String>)> {
    // Which task each record belongs to (a failed record's own line wins).
    let failed_task: HashMap<&str, &str> = rejected
        .iter()
        .map(|r| (r.id.as_str(), r.task.as_str()))
        .collect();
    let task_of = |id: &str| {
        failed_task
            .get(id)
            .copied()
            .or_else(|| t.task_of.get(id).map(|&i| t.seen[i].0.as_str()))
    };
    // Each record's steps in the order their values were written.
    let mut seq: HashMap<String, Vec<String>> = HashMap::new();
    let path = rd.steps();
    if path.exists() {
        let _ = lines::for_each(&path, false, |line| {
            let Line::Record { value, .. } = line else {
                return Ok(());
            };
            let (Some(id), Some(step)) = (value["id"].as_str(), value["step"].as_str()) else {
                return Ok(());
            };
            // `step#turn.role` / `step#round`: a turn or round inside one step.
            let step = step.split('#').next().unwrap_or(step);
            let s = seq.entry(id.to_string()).or_default();
            if !s.iter().any(|x| x == step) {
                s.push(step.to_string());
            }
            Ok(())
        });
    }
    // The failed step comes right after the last value its record has.
    let mut positions: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    let mut add = |task: &str, step: &str, pos: usize| {
        let e = positions
            .entry((task.to_string(), step.to_string()))
            .or_insert((0.0, 0));
        e.0 += pos as f64;
        e.1 += 1;
    };
    for (id, steps) in &seq {
        let Some(task) = task_of(id) else {
            continue;
        };
        for (i, s) in steps.iter().enumerate() {
            add(task, s, i);
        }
    }
    // (A record that failed its first step has no value; with no journal at all, nothing
    // places a failed step.)
    if !seq.is_empty() {
        for r in rejected {
            add(&r.task, &r.step, seq.get(&r.id).map_or(0, Vec::len));
        }
    }
    // Steps with no journal at all: the keys of `meta.steps` (alphabetical, the best left).
    for (k, &i) in &t.key_pos {
        positions.entry(k.clone()).or_insert((i as f64 + 1e6, 1));
    }
    let mut by_task: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for ((task, step), (sum, n)) in positions {
        by_task
            .entry(task)
            .or_default()
            .push((sum / n as f64, step));
    }
    by_task
        .into_iter()
        .map(|(t, mut v)| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            (t, v.into_iter().map(|x| x.1).collect())
        })
        .collect()
}

/// Per task with steps, per step in order: how many records reached it, failed at it
/// (by reason) and passed it. Failed records never reach `generated.jsonl`, so failures
/// come from `steps_rejected.jsonl`; the records that started a task are its generated
/// records plus its failed ones. `None` without a task with steps.
pub(super) fn step_funnel(dir: &Path, t: &StepTally, rejected: &[StepRejection]) -> Option<Value> {
    if rejected.is_empty() && t.seen.is_empty() {
        return None;
    }
    let mut order = step_order(dir, t, rejected);
    // Tasks seen in the files but not in the order (a spec edited since): their steps are
    // appended below as they appear.
    for (task, names) in &t.seen {
        if !order.iter().any(|(o, _)| o == task) {
            order.push((task.clone(), names.clone()));
        }
    }
    let mut failed: BTreeMap<(&str, &str), BTreeMap<&str, usize>> = BTreeMap::new();
    for r in rejected {
        let i = order
            .iter()
            .position(|(t, _)| *t == r.task)
            .unwrap_or_else(|| {
                order.push((r.task.clone(), Vec::new()));
                order.len() - 1
            });
        let steps = &mut order[i].1;
        if !steps.contains(&r.step) {
            steps.push(r.step.clone());
        }
        *failed
            .entry((&r.task, &r.step))
            .or_default()
            .entry(reason_group(&r.reason))
            .or_default() += 1;
    }
    let mut tasks = Vec::new();
    for (task, steps) in &order {
        let finished = t.finished.get(task).copied().unwrap_or(0);
        let task_failed: usize = rejected.iter().filter(|r| &r.task == task).count();
        let started = finished + task_failed;
        if started == 0 {
            continue;
        }
        let mut reached = started;
        let mut rows = Vec::new();
        for step in steps {
            let reasons = failed.get(&(task.as_str(), step.as_str()));
            let n_failed: usize = reasons.map_or(0, |m| m.values().sum());
            let mut by_reason: Vec<(&str, usize)> = reasons
                .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default();
            by_reason.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            rows.push(json!({
                "step": step,
                "reached": reached,
                "failed": n_failed,
                "passed": reached.saturating_sub(n_failed),
                "reasons": by_reason.iter().map(|(r, c)| json!({"reason": r, "count": c})).collect::<Vec<_>>(),
            }));
            reached = reached.saturating_sub(n_failed);
        }
        tasks.push(json!({"task": task, "started": started, "finished": finished, "steps": rows}));
    }
    (!tasks.is_empty()).then_some(Value::Array(tasks))
}

/// Losses at generation for the funnel's loss table: one row per task, step and reason
/// group, largest first.
pub(super) fn step_losses(rejected: &[StepRejection]) -> Vec<Value> {
    let mut by: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for r in rejected {
        *by.entry((
            format!("failed step {}/{}", r.task, r.step),
            reason_group(&r.reason),
        ))
        .or_default() += 1;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .map(|((what, reason), count)| {
            json!({"stage": "generate", "reason": format!("{what}: {reason}"), "count": count})
        })
        .collect()
}

/// Turns and difficulty, tallied record by record on the latest synthetic set the run
/// has: the dataset's synthetic records, else audit's, dedup's, verify's or generate's
/// records. They describe what the run delivers, so they are counted on the furthest
/// stage reached; the report names which.
#[derive(Default)]
pub(super) struct ProgramTally {
    /// Records per number of assistant turns (`meta.turns`).
    turns: BTreeMap<u64, usize>,
    /// Records evolved (with `meta.difficulty` or a lineage).
    evolved: usize,
    /// Records per difficulty level.
    levels: BTreeMap<u64, usize>,
    /// Failed evolution rounds per reason group.
    failures: BTreeMap<String, usize>,
    /// Per operator: rounds that succeeded and failed.
    by_operator: BTreeMap<String, (usize, usize)>,
}

impl ProgramTally {
    pub fn add(&mut self, r: &Value) {
        let meta = &r["meta"];
        if let Some(t) = meta["turns"].as_u64() {
            *self.turns.entry(t).or_default() += 1;
        }
        let lineage = meta["lineage"].as_array().filter(|a| !a.is_empty());
        if !meta["difficulty"].is_u64() && lineage.is_none() {
            return;
        }
        self.evolved += 1;
        if let Some(d) = meta["difficulty"].as_u64() {
            *self.levels.entry(d).or_default() += 1;
        }
        for l in lineage.into_iter().flatten() {
            let op = l["operator"].as_str().unwrap_or("?");
            if op == "seed" {
                continue;
            }
            let e = self.by_operator.entry(op.to_string()).or_default();
            match l["failed"].as_str() {
                Some(why) => {
                    *self
                        .failures
                        .entry(reason_group(why).to_string())
                        .or_default() += 1;
                    e.1 += 1;
                }
                None => e.0 += 1,
            }
        }
    }

    /// Records per number of assistant turns, or `None` when no record has it.
    pub fn turns(&self, set: &str) -> Option<Value> {
        let n: usize = self.turns.values().sum();
        if n == 0 {
            return None;
        }
        Some(json!({
            "set": set,
            "n": n,
            "mean": mean(&self.turns),
            "histogram": integer_histogram(&self.turns, "turns"),
        }))
    }

    /// Records per difficulty level (`meta.difficulty`, the evolution rounds that
    /// succeeded) and the rounds that failed (`meta.lineage[].failed`) by reason, or
    /// `None` when no record was evolved.
    pub fn difficulty(&self, set: &str) -> Option<Value> {
        if self.evolved == 0 {
            return None;
        }
        let mut failures: Vec<(&String, &usize)> = self.failures.iter().collect();
        failures.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mean = if self.levels.is_empty() {
            Value::Null
        } else {
            json!(mean(&self.levels))
        };
        Some(json!({
            "set": set,
            "n": self.evolved,
            "mean": mean,
            "levels": integer_histogram(&self.levels, "level"),
            "failed_rounds": failures.iter().map(|(_, c)| **c).sum::<usize>(),
            "failures": failures.iter().map(|(r, c)| json!({"reason": r, "count": c})).collect::<Vec<_>>(),
            "operators": self.by_operator.iter().map(|(op, (ok, bad))| json!({"operator": op, "succeeded": ok, "failed": bad})).collect::<Vec<_>>(),
        }))
    }
}

/// The mean of values given as value → count.
fn mean(counts: &BTreeMap<u64, usize>) -> f64 {
    let n: usize = counts.values().sum();
    let sum: u64 = counts.iter().map(|(v, c)| v * *c as u64).sum();
    sum as f64 / n as f64
}

/// `[{key: value, "count": n}]` for every value from the smallest to the largest seen (a
/// gap shows as 0, so the bars read as a histogram).
fn integer_histogram(counts: &BTreeMap<u64, usize>, key: &str) -> Vec<Value> {
    let (Some(&lo), Some(&hi)) = (counts.keys().next(), counts.keys().next_back()) else {
        return Vec::new();
    };
    (lo..=hi)
        .map(|v| json!({key: v, "count": counts.get(&v).copied().unwrap_or(0)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{build, html, ReportOptions};
    use crate::models::FetchPolicy;
    use serde_json::{json, Value};
    use std::path::Path;

    fn opts() -> ReportOptions {
        ReportOptions {
            embedder: Some("none".into()),
            device: candle_core::Device::Cpu,
            fetch: FetchPolicy::Offline,
            progress: false,
        }
    }

    fn write_jsonl(path: &Path, rows: &[Value]) {
        let s: String = rows.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(path, s).unwrap();
    }

    fn manifest(dir: &Path, spec_path: &str, sha: &str, planned: usize) {
        let m = json!({"flywheel": "0.1.0", "spec_path": spec_path, "spec_sha256": sha,
                       "models": [], "stages": {"generate": {"status": "done", "planned": planned,
                       "done": planned, "written_this_run": planned, "wall_seconds": 1.0}}});
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }

    fn record(id: &str, task: &str, meta: Value) -> Value {
        let mut m = json!({"task": task, "vars": {}, "sample_index": 0});
        for (k, v) in meta.as_object().unwrap() {
            m[k] = v.clone();
        }
        json!({"id": id, "source": "synthetic", "meta": m, "messages": [
            {"role": "user", "content": format!("question {id}")},
            {"role": "assistant", "content": format!("an answer for {id}")}]})
    }

    fn qa_steps() -> Value {
        json!({"steps": {"draft": "d", "card": "{}", "title": "t"}})
    }

    /// A run with a three-step task (`draft` → `card` → `title`), conversations, evolved
    /// records and a plain task; failures at `card` and `title`.
    fn program_run(dir: &Path) {
        let mut generated: Vec<Value> = (0..3)
            .map(|i| record(&format!("q{i}"), "qa", qa_steps()))
            .collect();
        generated.push(record("p0", "plain", json!({})));
        for (i, t) in [3, 3, 5].iter().enumerate() {
            generated.push(record(
                &format!("c{i}"),
                "chat",
                json!({"steps": {"talk": "…"}, "turns": t}),
            ));
        }
        let lineage = |d: usize, failed: Option<&str>| {
            let mut l = vec![json!({"round": 0, "operator": "seed", "text": "seed"})];
            for r in 1..=d {
                l.push(json!({"round": r, "operator": "deepen", "text": format!("round {r}")}));
            }
            if let Some(f) = failed {
                l.push(json!({"round": d + 1, "operator": "breadth", "text": "no", "failed": f}));
            }
            Value::Array(l)
        };
        for (i, (d, failed)) in [
            (1, Some("not_harder")),
            (3, None),
            (3, None),
            (2, Some("refusal")),
        ]
        .into_iter()
        .enumerate()
        {
            generated.push(record(
                &format!("e{i}"),
                "evol",
                json!({"steps": {"evolved": "x"}, "difficulty": d, "lineage": lineage(d, failed)}),
            ));
        }
        write_jsonl(&dir.join("generated.jsonl"), &generated);
        let rej = |id: &str, task: &str, step: &str, reason: &str| json!({"id": id, "task": task, "step": step, "reason": reason});
        let mut lines: String = [
            rej("q3", "qa", "card", "prompt_too_long:card (700 tokens)"),
            rej("q4", "qa", "title", "json_missing:title"),
            rej("q5", "qa", "title", "json_missing:title"),
            rej("q5", "qa", "title", "json_missing:title"), // a repeated line counts once
            rej("e9", "evol", "evolved", "evolve_refusal:evolved"),
        ]
        .iter()
        .map(|r| r.to_string() + "\n")
        .collect();
        lines.push_str("{\"id\": \"torn"); // a kill mid-write
        std::fs::write(dir.join("steps_rejected.jsonl"), lines).unwrap();
        // 11 generated + 4 failed; one more planned was never generated.
        manifest(dir, "nowhere.toml", "", 16);
    }

    /// Checks every `data-k` number of the page as its script does in the browser.
    fn page_agrees(page: &str, report: &Value) -> usize {
        let mut n = 0;
        for part in page.split("<span data-k=\"").skip(1) {
            let (path, rest) = part.split_once("\" data-fmt=\"").unwrap();
            let (fmt, rest) = rest.split_once("\">").unwrap();
            let shown = rest.split_once('<').unwrap().0;
            let mut x = report;
            for k in path.split('.') {
                x = match k.parse::<usize>() {
                    Ok(i) if x.is_array() => &x[i],
                    _ => &x[k],
                };
            }
            assert_eq!(shown, html::format_like_js(x.as_f64(), fmt), "at {path}");
            n += 1;
        }
        n
    }

    #[test]
    fn step_funnel_turns_and_difficulty_from_a_run_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        program_run(dir);
        // No spec at the manifest's path: step order comes from steps.jsonl.
        let line = |id: &str, step: &str| json!({"id": id, "step": step, "value": "v"});
        let mut journal = Vec::new();
        for id in ["q0", "q1", "q2", "q4", "q5"] {
            journal.push(line(id, "draft"));
        }
        journal.push(line("q3", "draft"));
        for id in ["q0", "q1", "q2", "q4", "q5"] {
            journal.push(line(id, "card#1"));
            journal.push(line(id, "card#2"));
        }
        for id in ["q0", "q1", "q2"] {
            journal.push(line(id, "title"));
        }
        write_jsonl(&dir.join("steps.jsonl"), &journal);
        let r = build(dir, &opts()).unwrap();

        let sf = r["step_funnel"].as_array().unwrap();
        let qa = sf.iter().find(|t| t["task"] == "qa").unwrap();
        assert_eq!(qa["started"], 6);
        assert_eq!(qa["finished"], 3);
        let steps: Vec<(&str, u64, u64, u64)> = qa["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let n = |k: &str| s[k].as_u64().unwrap();
                (
                    s["step"].as_str().unwrap(),
                    n("reached"),
                    n("failed"),
                    n("passed"),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [("draft", 6, 0, 6), ("card", 6, 1, 5), ("title", 5, 2, 3)],
            "in run order, not alphabetical"
        );
        assert_eq!(
            qa["steps"][2]["reasons"],
            json!([{"reason": "json_missing", "count": 2}])
        );
        assert_eq!(qa["steps"][1]["reasons"][0]["reason"], "prompt_too_long");
        let evol = sf.iter().find(|t| t["task"] == "evol").unwrap();
        assert_eq!(
            (evol["started"].as_u64(), evol["finished"].as_u64()),
            (Some(5), Some(4))
        );
        assert_eq!(evol["steps"][0]["reasons"][0]["reason"], "evolve_refusal");
        assert!(
            sf.iter().all(|t| t["task"] != "plain"),
            "a plain task has no steps"
        );

        // Losses name the failed step and the reason; the plain shortfall is what is left.
        let losses = r["losses"].as_array().unwrap();
        let loss = |reason: &str| {
            losses
                .iter()
                .find(|l| l["reason"] == reason)
                .map(|l| l["count"].as_u64().unwrap())
        };
        assert_eq!(loss("failed step qa/title: json_missing"), Some(2));
        assert_eq!(loss("failed step qa/card: prompt_too_long"), Some(1));
        assert_eq!(loss("failed step evol/evolved: evolve_refusal"), Some(1));
        let not_generated = losses
            .iter()
            .find(|l| l["reason"].as_str().unwrap().starts_with("not generated"))
            .unwrap();
        assert_eq!(not_generated["count"], 1);

        assert_eq!(r["turns"]["set"], "generated");
        assert_eq!(r["turns"]["n"], 3);
        assert_eq!(
            r["turns"]["histogram"],
            json!([{"turns": 3, "count": 2}, {"turns": 4, "count": 0}, {"turns": 5, "count": 1}])
        );
        assert!((r["turns"]["mean"].as_f64().unwrap() - 11.0 / 3.0).abs() < 1e-9);

        let d = &r["difficulty"];
        assert_eq!(d["n"], 4);
        assert_eq!(
            d["levels"],
            json!([{"level": 1, "count": 1}, {"level": 2, "count": 1}, {"level": 3, "count": 2}])
        );
        assert_eq!(d["failed_rounds"], 2);
        assert_eq!(
            d["failures"],
            json!([{"reason": "not_harder", "count": 1}, {"reason": "refusal", "count": 1}])
        );
        assert_eq!(
            d["operators"],
            json!([{"operator": "breadth", "succeeded": 0, "failed": 2},
                   {"operator": "deepen", "succeeded": 9, "failed": 0}])
        );

        // The page shows all of it, every number checkable against the JSON.
        let page = html::render(&r);
        for s in [
            "Steps: where records were lost",
            "<code>json_missing</code>",
            "Conversation turns",
            "Evolution difficulty",
            "data-k=\"step_funnel.",
            "data-k=\"turns.mean\"",
            "data-k=\"difficulty.failures.1.count\"",
        ] {
            assert!(page.contains(s), "page lacks {s}");
        }
        assert!(page_agrees(&page, &r) > 30);
    }

    #[test]
    fn step_order_comes_from_the_spec_that_made_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir_all(&dir).unwrap();
        program_run(&dir);
        // No steps.jsonl: without the spec, the order would be meta.steps' (alphabetical).
        let spec = r#"[run]
name = "s"

[seeds]
topic = ["a", "b"]

[[task]]
name = "qa"

  [[task.step]]
  name = "draft"
  expression = "a draft on {{topic}}"

  [[task.step]]
  name = "card"
  expression = '{"title": "{{topic}}"}'

  [[task.step]]
  name = "title"
  json = { from = "card", path = "title" }

  [task.messages]
  user = "draft"
  assistant = "title"
"#;
        let spec_path = tmp.path().join("s.toml");
        std::fs::write(&spec_path, spec).unwrap();
        let sha = crate::models::checksum::sha256_bytes(spec.as_bytes());
        crate::spec::Spec::load(&spec_path).expect("the test spec is valid");
        manifest(&dir, spec_path.to_str().unwrap(), &sha, 16);
        let order = |r: &Value| -> Vec<String> {
            let qa = r["step_funnel"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["task"] == "qa")
                .unwrap()
                .clone();
            qa["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["step"].as_str().unwrap().to_string())
                .collect()
        };
        let r = build(&dir, &opts()).unwrap();
        assert_eq!(order(&r), ["draft", "card", "title"]);
        assert_eq!(r["step_funnel"][0]["task"], "qa", "spec order first");
        // The spec edited since the run: not trusted, so the files' order is used.
        std::fs::write(&spec_path, spec.replace("a draft", "another draft")).unwrap();
        let r = build(&dir, &opts()).unwrap();
        assert_eq!(order(&r), ["card", "draft", "title"]);
    }

    #[test]
    fn a_plain_run_gains_no_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let rows: Vec<Value> = (0..4)
            .map(|i| record(&format!("p{i}"), "plain", json!({})))
            .collect();
        write_jsonl(&dir.join("generated.jsonl"), &rows);
        manifest(dir, "x.toml", "", 5);
        let r = build(dir, &opts()).unwrap();
        for k in ["step_funnel", "turns", "difficulty"] {
            assert!(r.get(k).is_none(), "{k} in a plain report");
        }
        let losses = r["losses"].as_array().unwrap();
        assert_eq!(losses.len(), 1, "{losses:?}");
        assert_eq!(losses[0]["count"], 1);
        let page = html::render(&r);
        assert!(!page.contains("Conversation turns") && !page.contains("Steps: where"));
        page_agrees(&page, &r);
    }
}
