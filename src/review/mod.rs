//! Human review: people accept, reject (with a reason) or edit candidates in
//! `flywheel review`, and every action is data.
//!
//! - [`log`]: `review.jsonl`, the append-only journal of actions (crash-safe appends,
//!   undo, several reviewers), folded into each record's current decision.
//! - [`queue`]: the candidates (`audited.jsonl`) indexed by byte offset, so 100,000
//!   records are served one at a time; filters and queue orders.
//! - [`server`]: the loopback HTTP server and its embedded page.
//! - [`stats`]: agreement between reviewers (Cohen's κ), the judge's AUROC against human
//!   labels, and the sample audit's error-rate interval, for the report.
//!
//! A decision is bound to the content it was made on ([`content_sha256`]): when a record's
//! text changes (regenerated after a spec edit), the old decision no longer applies to it
//! and the record is back in the queue. A rescore alone keeps decisions: the person judged
//! the conversation, not the numbers.

pub mod log;
pub mod queue;
pub mod server;
pub mod stats;

pub use log::{Action, Decision, Log};

use crate::record::View;
use serde_json::Value;

/// sha256 of what a reviewer sees and decides on: the conversation (roles, contents,
/// tool calls), or the whole record when it has no `messages`.
pub fn content_sha256(record: &Value) -> String {
    let bytes = match View::new(record).messages() {
        Ok(m) => serde_json::to_vec(&m).unwrap_or_default(),
        Err(_) => serde_json::to_vec(record).unwrap_or_default(),
    };
    crate::models::checksum::sha256_bytes(&bytes)
}

/// The text an edit replaces: the last assistant message, or `response`.
pub fn editable_text(record: &Value) -> Option<String> {
    if let Some(m) = record.get("messages").and_then(Value::as_array) {
        return m
            .iter()
            .rev()
            .find(|x| x["role"] == "assistant")
            .and_then(|x| x["content"].as_str())
            .map(str::to_string);
    }
    record
        .get("response")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `record` with its response replaced by `text` (see [`editable_text`]); `None` when the
/// record has no response to replace.
pub fn with_edit(record: &Value, text: &str) -> Option<Value> {
    let mut r = record.clone();
    if let Some(m) = r.get_mut("messages").and_then(Value::as_array_mut) {
        let last = m.iter_mut().rev().find(|x| x["role"] == "assistant")?;
        last["content"] = text.into();
        return Some(r);
    }
    if r.get("response").is_some_and(Value::is_string) {
        r["response"] = text.into();
        return Some(r);
    }
    None
}

/// What the reviews say about one record, for blend and the exports.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'a> {
    /// No decision on this content yet.
    Unreviewed,
    Accepted(&'a Action),
    Rejected(&'a Action),
    /// Accepted with a corrected response (the action's `edited`).
    Edited(&'a Action),
}

impl Log {
    /// The verdict on `record`: the latest decision on its current content, whoever made
    /// it (an adjudicator who reviews a disagreement has the last word). Decisions made
    /// on other content (the record changed since) do not count.
    pub fn verdict(&self, record: &Value) -> Verdict<'_> {
        let Some(id) = View::new(record).id() else {
            return Verdict::Unreviewed;
        };
        let sha = content_sha256(record);
        match self.latest(id, &sha) {
            None => Verdict::Unreviewed,
            Some(a) => match a.decision {
                Decision::Accept => Verdict::Accepted(a),
                Decision::Reject => Verdict::Rejected(a),
                Decision::Edit => Verdict::Edited(a),
                Decision::Undo => Verdict::Unreviewed,
            },
        }
    }
}

/// The ids of a seeded random sample of `n` of `ids` (`[review] sample`): the same run
/// seed picks the same records whatever their order in the file.
pub fn sample_ids(ids: &[&str], n: usize, seed: u64) -> std::collections::HashSet<String> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5e1ec7);
    sorted.shuffle(&mut rng);
    sorted.into_iter().take(n).map(str::to_string).collect()
}

#[cfg(test)]
mod tests;

/// What the reviews did to blend's candidates.
#[derive(Debug, Default)]
pub struct Applied {
    /// Candidates that may enter the dataset: accepted ones (marked), edited ones
    /// (replaced, provenance keeping the original's hash), and, unless review is required,
    /// unreviewed ones.
    pub records: Vec<Value>,
    /// Records a reviewer rejected, each with `decision.reason = review:rejected:<reason>`.
    pub rejected: Vec<Value>,
    pub accepted: usize,
    pub edited: usize,
    /// Records in the review queue no one has decided yet.
    pub awaiting: usize,
    /// Unreviewed records left out because `[review] required = true`.
    pub held_back: usize,
    /// Decisions made on an earlier version of a record (its text changed since): they no
    /// longer apply, and the record is back in the queue.
    pub stale: usize,
}

/// Applies `log` to blend's candidates under `[review]`.
pub fn apply(
    section: &crate::spec::ReviewSection,
    log: &Log,
    candidates: Vec<Value>,
    seed: u64,
) -> Applied {
    let mut first = Reviewer::first_pass(section, log);
    for r in &candidates {
        first.see(r);
    }
    let reviewer = first.finish(seed);
    let mut out = Applied::default();
    for r in &candidates {
        if let Some(kept) = reviewer.decide(r, &mut out) {
            out.records.push(kept);
        }
    }
    out
}

/// What a [`Reviewer`] needs from every candidate before deciding any: the ids (for
/// `[review] sample`) and the content of records the log names (to tell stale decisions).
/// Kept apart so blend can stream its candidates twice instead of holding them.
pub struct FirstPass<'a> {
    section: &'a crate::spec::ReviewSection,
    log: &'a Log,
    logged: std::collections::HashSet<&'a str>,
    ids: Vec<String>,
    current: std::collections::HashMap<String, String>,
}

impl<'a> FirstPass<'a> {
    pub fn see(&mut self, r: &Value) {
        let Some(id) = View::new(r).id() else {
            return;
        };
        if self.section.sample.is_some() {
            self.ids.push(id.to_string());
        }
        if self.logged.contains(id) {
            self.current.insert(id.to_string(), content_sha256(r));
        }
    }

    pub fn finish(self, seed: u64) -> Reviewer<'a> {
        let sample = self.section.sample.map(|n| {
            let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
            sample_ids(&ids, n, seed)
        });
        // Stale: a record's decisions were all made on content it no longer has.
        let mut stale_ids = std::collections::HashSet::new();
        for a in self.log.effective() {
            if self
                .current
                .get(a.id.as_str())
                .is_some_and(|s| *s != a.content_sha256)
            {
                stale_ids.insert(a.id.clone());
            }
        }
        Reviewer {
            section: self.section,
            log: self.log,
            sample,
            stale_ids,
        }
    }
}

/// People's decisions, applied one candidate at a time.
pub struct Reviewer<'a> {
    section: &'a crate::spec::ReviewSection,
    log: &'a Log,
    sample: Option<std::collections::HashSet<String>>,
    stale_ids: std::collections::HashSet<String>,
}

impl<'a> Reviewer<'a> {
    /// Starts the pass over every candidate that must come before any decision.
    pub fn first_pass(section: &'a crate::spec::ReviewSection, log: &'a Log) -> FirstPass<'a> {
        FirstPass {
            section,
            log,
            logged: log.effective().map(|a| a.id.as_str()).collect(),
            ids: Vec::new(),
            current: Default::default(),
        }
    }

    /// The candidate as it may enter the dataset (accepted and edited ones marked in
    /// their provenance), or `None`: rejected (added to `out.rejected`) or held back.
    /// Counts go to `out`.
    pub fn decide(&self, r: &Value, out: &mut Applied) -> Option<Value> {
        let id = View::new(r).id().unwrap_or_default();
        let in_queue = self.sample.as_ref().is_none_or(|s| s.contains(id));
        let verdict = self.log.verdict(r);
        if verdict == Verdict::Unreviewed && self.stale_ids.contains(id) {
            out.stale += 1;
        }
        let mark = |r: &Value, a: &Action, what: &str| {
            let mut r = r.clone();
            let mut p = serde_json::json!({"decision": what, "reviewer": a.reviewer, "at": a.at});
            if what == "edited" {
                p["original_sha256"] = a.content_sha256.clone().into();
                p["action"] = a.action.clone().into();
            }
            if let Some(o) = r.as_object_mut() {
                let prov = o
                    .entry("provenance")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(po) = prov.as_object_mut() {
                    po.insert("review".into(), p);
                }
            }
            r
        };
        match verdict {
            Verdict::Accepted(a) => {
                out.accepted += 1;
                Some(mark(r, a, "accepted"))
            }
            Verdict::Edited(a) => {
                match a.edited.as_deref().and_then(|t| with_edit(r, t)) {
                    Some(e) => {
                        out.edited += 1;
                        Some(mark(&e, a, "edited"))
                    }
                    // Cannot happen for a record the server let be edited; never guess.
                    None => {
                        out.held_back += 1;
                        None
                    }
                }
            }
            Verdict::Rejected(a) => {
                let mut x = r.clone();
                x["decision"] = serde_json::json!({
                    "kept": false, "stage": "review",
                    "reason": format!("review:rejected:{}", a.reason.as_deref().unwrap_or("unspecified")),
                    "reviewer": a.reviewer, "at": a.at,
                });
                out.rejected.push(x);
                None
            }
            Verdict::Unreviewed => {
                if in_queue {
                    out.awaiting += 1;
                }
                if self.section.required {
                    out.held_back += 1;
                    None
                } else {
                    Some(r.clone())
                }
            }
        }
    }
}

/// The candidates of run directory `run` and its review log.
fn reviewed_candidates(run: &std::path::Path) -> crate::Result<(Vec<Value>, Log)> {
    let dir = crate::store::RunDir::new(run);
    let log = Log::load(&dir.review())?;
    let audited = crate::store::RunDir::input(None, dir.audited(), "run SPEC")?;
    Ok((crate::record::read_records(&audited)?, log))
}

/// DPO pairs from people's edits: the edited response chosen over the original (TRL's
/// conversational form, as `export --format dpo` writes its other pairs).
pub fn dpo_pairs(run: &std::path::Path) -> crate::Result<Vec<Value>> {
    let dir = crate::store::RunDir::new(run);
    if !dir.review().exists() {
        return Ok(Vec::new());
    }
    let (records, log) = reviewed_candidates(run)?;
    let mut out = Vec::new();
    for r in &records {
        let Verdict::Edited(a) = log.verdict(r) else {
            continue;
        };
        let (Some(text), Ok(m)) = (a.edited.as_deref(), View::new(r).messages()) else {
            continue;
        };
        let Some(last) = m.iter().rposition(|x| x.role == "assistant") else {
            continue;
        };
        let prompt: Vec<Value> = m[..last].iter().map(|x| serde_json::json!(x)).collect();
        out.push(serde_json::json!({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": text}],
            "rejected": [m[last]],
            "chosen_id": format!("{}#review:{}", a.id, a.action),
            "rejected_id": a.id,
            "source": "review:edit", "reviewer": a.reviewer, "at": a.at,
        }));
    }
    Ok(out)
}

/// One row per reviewed candidate: the record as it was reviewed and the human label
/// (`accept`, `edit`, `reject`), with the reason, the correction, every reviewer's
/// decision and the judge's score, to calibrate or train a judge.
pub fn labels(run: &std::path::Path) -> crate::Result<Vec<Value>> {
    let (records, log) = reviewed_candidates(run)?;
    let mut out = Vec::new();
    for r in &records {
        let Some(id) = View::new(r).id() else {
            continue;
        };
        let sha = content_sha256(r);
        let Some(a) = log.latest(id, &sha) else {
            continue;
        };
        let everyone: Vec<Value> = log
            .by_reviewer(id, &sha)
            .iter()
            .map(|x| serde_json::json!({"reviewer": x.reviewer, "label": x.decision, "reason": x.reason, "at": x.at}))
            .collect();
        let mut row = serde_json::json!({
            "id": id,
            "label": a.decision,
            "good": a.good_as_is(),
            "reason": a.reason,
            "edited": a.edited,
            "reviewers": everyone,
            "judge_score": r.pointer("/scores/judge_combined/score"),
            "content_sha256": sha,
        });
        match View::new(r).messages() {
            Ok(m) => row["messages"] = serde_json::json!(m),
            Err(_) => row["record"] = r.clone(),
        }
        if let Some(t) = r.pointer("/meta/task") {
            row["task"] = t.clone();
        }
        out.push(row);
    }
    Ok(out)
}
