//! What the reviews say, for the report: how much was reviewed, how often each task's
//! records were accepted, why records were rejected, whether reviewers agree (Cohen's κ)
//! and whether the judge ranks records as people do (AUROC). With `[review] sample`, the
//! error rate of the whole set estimated from the sample, with a Wilson interval.

use super::queue::ReviewState;
use super::{Decision, Log};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Cohen's κ of two raters' labels on the same items (`None` with no items). 1 when they
/// agree on every item, 0 when they agree only as often as chance would.
pub fn cohen_kappa<T: Ord + Clone>(pairs: &[(T, T)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let agree = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut ca: BTreeMap<T, f64> = BTreeMap::new();
    let mut cb: BTreeMap<T, f64> = BTreeMap::new();
    for (a, b) in pairs {
        *ca.entry(a.clone()).or_default() += 1.0;
        *cb.entry(b.clone()).or_default() += 1.0;
    }
    let chance: f64 = ca
        .iter()
        .map(|(k, x)| x / n * cb.get(k).copied().unwrap_or(0.0) / n)
        .sum();
    if (1.0 - chance).abs() < 1e-12 {
        // Both gave one label to everything: agreement is total or absent.
        return Some(if agree == 1.0 { 1.0 } else { 0.0 });
    }
    Some((agree - chance) / (1.0 - chance))
}

/// Area under the ROC curve of `scores` for telling `true` labels from `false` ones: the
/// chance a random good record scores above a random bad one (ties count half). `None`
/// unless both labels occur.
pub fn auroc(scored: &[(f64, bool)]) -> Option<f64> {
    let pos = scored.iter().filter(|x| x.1).count();
    let neg = scored.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Rank-sum (Mann–Whitney U) with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0; // ranks i+1 ..= j
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

/// The 95 % Wilson score interval of `k` successes in `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

/// The report's `review` section for the candidates in `index`; `None` with no reviews.
pub fn section(index: &super::queue::Index, log: &Log) -> Option<Value> {
    // No decisions: no section.
    log.effective().next()?;
    let states = ReviewState::of(index, log);
    let mut scope = 0usize;
    let mut reviewed = 0usize;
    // Per task: (reviewed, accepted as is, edited, rejected).
    let mut by_task: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut judged: Vec<(f64, bool)> = Vec::new();
    for (i, it) in index.items.iter().enumerate() {
        if !index.in_scope(it) {
            continue;
        }
        scope += 1;
        // The verdict: the latest decision on this content, as blend takes it (the state
        // lists each reviewer's decision in the order they were written).
        let Some(last) = states.per_item[i].last() else {
            continue;
        };
        reviewed += 1;
        let t = by_task.entry(it.task.as_str()).or_default();
        t[0] += 1;
        match last.decision {
            Decision::Accept => t[1] += 1,
            Decision::Edit => t[2] += 1,
            _ => {
                t[3] += 1;
                *reasons
                    .entry(last.reason.clone().unwrap_or_default())
                    .or_default() += 1;
            }
        }
        if let Some(s) = it.score {
            judged.push((s, last.good_as_is()));
        }
    }
    let tasks: Vec<Value> = by_task
        .iter()
        .map(|(t, c)| {
            json!({"task": t, "reviewed": c[0], "accepted": c[1], "edited": c[2], "rejected": c[3],
                   "accept_rate": (c[1] + c[2]) as f64 / c[0].max(1) as f64})
        })
        .collect();
    let mut top: Vec<(String, usize)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<Value> = top
        .into_iter()
        .map(|(r, n)| json!({"reason": r, "count": n}))
        .collect();
    // Agreement between each pair of reviewers, on the records both decided.
    let reviewers = log.reviewers();
    let mut agreement = Vec::new();
    for a in 0..reviewers.len() {
        for b in a + 1..reviewers.len() {
            let pairs: Vec<(Decision, Decision)> = states
                .per_item
                .iter()
                .filter_map(|v| {
                    let x = v.iter().find(|x| x.reviewer == reviewers[a])?;
                    let y = v.iter().find(|y| y.reviewer == reviewers[b])?;
                    Some((x.decision, y.decision))
                })
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let same = pairs.iter().filter(|(x, y)| x == y).count();
            agreement.push(
                json!({"a": reviewers[a], "b": reviewers[b], "both": pairs.len(),
                                  "agreed": same, "kappa": cohen_kappa(&pairs)}),
            );
        }
    }
    let disagreed = (0..index.items.len())
        .filter(|&i| states.disagreed(i))
        .count();
    let judge_auroc = auroc(&judged);
    let mut out = json!({
        "candidates": scope,
        "reviewed": reviewed,
        "reviewed_share": reviewed as f64 / scope.max(1) as f64,
        "by_task": tasks,
        "reject_reasons": top,
        "reviewers": reviewers,
        "agreement": agreement,
        "disagreed": disagreed,
        "judge": {"auroc": judge_auroc, "n": judged.len(),
                  "good": judged.iter().filter(|x| x.1).count()},
        "undone": log.undone,
    });
    if index.sample.is_some() {
        // The error rate of the whole set: records in the sample not accepted as is.
        let bad = by_task.values().map(|c| c[2] + c[3]).sum::<usize>();
        let (lo, hi) = wilson(bad, reviewed);
        out["sample"] = json!({"size": scope, "reviewed": reviewed, "not_good": bad,
            "error_rate": bad as f64 / reviewed.max(1) as f64, "ci95": [lo, hi],
            "population": index.items.len()});
    }
    Some(out)
}
