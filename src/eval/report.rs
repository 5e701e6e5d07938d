//! The eval's report: per metric, each model's mean with its interval and the paired
//! difference with its p-value, in words; per category; the items where the models differ
//! most; and the contamination check. `eval.json` for machines, `eval.html` (one
//! self-contained page, every text escaped) for people.

use super::set::Item;
use super::stats::{self, Paired};
use super::EvalOptions;
use crate::dedup::decontam::{EvalIndex, EvalItem};
use crate::error::{Error, Result};
use crate::record::View;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// One metric's per-item scores for the base (`a`) and tuned (`b`) model.
pub struct Metric {
    pub name: String,
    pub kind: String,
    pub ids: Vec<String>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    /// Pairwise only: the share of items whose verdict flips with the answers' order.
    pub disagreement: Option<f64>,
}

/// A model under test, for the report.
pub struct ModelSummary {
    pub name: String,
    pub model: String,
    pub sha256: String,
    /// Item id → (answer, finish).
    pub answers: BTreeMap<String, (String, String)>,
}

/// A test item that overlaps the training blend.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    pub id: String,
    /// `13-gram` or `embedding`.
    pub by: String,
    /// The training record it overlaps (its id, or its line).
    pub train_record: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f32>,
}

/// What the contamination check found.
#[derive(Debug, Clone, Serialize)]
pub struct Contamination {
    pub train: String,
    pub train_records: usize,
    pub by_ngram: usize,
    pub by_embedding: usize,
    pub flagged: Vec<Flagged>,
}

/// Checks every test prompt against the training blend: a shared 13-word window (the
/// decontamination the dedup stage uses), then embedding cosine ≥ the threshold.
pub fn contamination(opts: &EvalOptions, items: &[Item], train: &Path) -> Result<Contamination> {
    let records = crate::record::read::read_records(train)?;
    let texts: Vec<(String, String)> = records
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let v = View::new(r);
            let id = v
                .id()
                .map_or_else(|| format!("line {}", k + 1), str::to_string);
            let text = match v.messages() {
                Ok(ms) => ms
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(_) => v
                    .prompt_response()
                    .map(|(p, r)| format!("{p}\n{r}"))
                    .unwrap_or_default(),
            };
            (id, text)
        })
        .collect();
    let idx = EvalIndex::build(
        items
            .iter()
            .map(|it| EvalItem {
                file: "test".into(),
                id: it.id.clone(),
                text: it.prompt.clone(),
            })
            .collect(),
        13,
    );
    let mut flagged: BTreeMap<String, Flagged> = BTreeMap::new();
    for (tid, t) in &texts {
        if let Some(hit) = idx.find(t) {
            flagged.entry(hit.id.clone()).or_insert(Flagged {
                id: hit.id.clone(),
                by: "13-gram".into(),
                train_record: tid.clone(),
                cosine: None,
            });
        }
    }
    let by_ngram = flagged.len();
    let emb = crate::runtime::embedder(&opts.embedder, opts.fetch, &opts.device)?;
    let prompts: Vec<String> = items.iter().map(|i| i.prompt.clone()).collect();
    let train_texts: Vec<String> = texts.iter().map(|t| t.1.clone()).collect();
    let a = emb.embed_flat(&prompts, opts.progress, "contamination (test)")?;
    let b = emb.embed_flat(&train_texts, opts.progress, "contamination (train)")?;
    let mut by_embedding = 0;
    for p in crate::dedup::semantic::cross_pairs(&a, &b, emb.dim(), opts.contamination_cosine) {
        let it = &items[p.i as usize];
        if !flagged.contains_key(&it.id) {
            by_embedding += 1;
            flagged.insert(
                it.id.clone(),
                Flagged {
                    id: it.id.clone(),
                    by: "embedding".into(),
                    train_record: texts[p.j as usize].0.clone(),
                    cosine: Some(p.sim),
                },
            );
        }
    }
    Ok(Contamination {
        train: train.display().to_string(),
        train_records: records.len(),
        by_ngram,
        by_embedding,
        flagged: flagged.into_values().collect(),
    })
}

fn verdict(name: &str, p: &Paired) -> String {
    let dir = if p.diff.mean > 0.0 { "better" } else { "worse" };
    if p.significant {
        format!(
            "{name}: the tuned model is {dir} by {:+.3} (95% CI {:+.3} to {:+.3}); significant at α = {} (sign test p = {:.4}, {} wins / {} losses / {} ties).",
            p.diff.mean, p.diff.lo, p.diff.hi, p.alpha, p.p_sign, p.wins, p.losses, p.ties
        )
    } else {
        format!(
            "{name}: difference {:+.3} (95% CI {:+.3} to {:+.3}); not significant at α = {} (sign test p = {:.4}, {} wins / {} losses / {} ties): no evidence either model is better on this set.",
            p.diff.mean, p.diff.lo, p.diff.hi, p.alpha, p.p_sign, p.wins, p.losses, p.ties
        )
    }
}

/// The report as JSON.
pub fn build(
    opts: &EvalOptions,
    items: &[Item],
    scored: &[&Item],
    models: &[ModelSummary],
    metrics: &[Metric],
    contamination: Option<&Contamination>,
    set_sha: &str,
) -> Result<Value> {
    let by_id: BTreeMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut rows = Vec::new();
    let mut words = Vec::new();
    for (k, m) in metrics.iter().enumerate() {
        if m.a.is_empty() {
            continue;
        }
        let seed = opts.seed.wrapping_add(k as u64 * 1000);
        let p = stats::paired(&m.a, &m.b, opts.alpha, opts.resamples, seed);
        words.push(verdict(&m.name, &p));
        // Per category, where items carry one.
        let mut cats: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (i, id) in m.ids.iter().enumerate() {
            if let Some(c) = by_id.get(id.as_str()).and_then(|it| it.category.clone()) {
                let e = cats.entry(c).or_default();
                e.0.push(m.a[i]);
                e.1.push(m.b[i]);
            }
        }
        let categories: Vec<Value> = cats
            .iter()
            .map(|(c, (a, b))| {
                let q = stats::paired(a, b, opts.alpha, opts.resamples, seed ^ 7);
                json!({"category": c, "n": a.len(), "base": q.a, "tuned": q.b, "diff": q.diff,
                    "p_sign": q.p_sign, "significant": q.significant})
            })
            .collect();
        rows.push(json!({
            "metric": m.name, "kind": m.kind, "n": m.a.len(),
            "base": p.a, "tuned": p.b, "diff": p.diff,
            "p_sign": p.p_sign, "p_bootstrap": p.p_bootstrap,
            "wins": p.wins, "losses": p.losses, "ties": p.ties,
            "significant": p.significant, "alpha": p.alpha,
            "position_disagreement": m.disagreement,
            "verdict": words.last(),
            "categories": categories,
        }));
    }
    // Where the models differ most: summed absolute differences across metrics.
    let mut gap: BTreeMap<&str, f64> = BTreeMap::new();
    for m in metrics {
        for (i, id) in m.ids.iter().enumerate() {
            *gap.entry(id.as_str()).or_default() += (m.b[i] - m.a[i]).abs();
        }
    }
    let mut ranked: Vec<(&str, f64)> = gap.into_iter().filter(|g| g.1 > 0.0).collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
    let differ: Vec<Value> = ranked
        .iter()
        .take(10)
        .filter_map(|(id, g)| {
            let it = by_id.get(id)?;
            let scores: BTreeMap<&str, Value> = metrics
                .iter()
                .filter_map(|m| {
                    let i = m.ids.iter().position(|x| x == id)?;
                    Some((m.name.as_str(), json!({"base": m.a[i], "tuned": m.b[i]})))
                })
                .collect();
            Some(json!({
                "id": id, "gap": g, "prompt": it.prompt, "reference": it.answer, "category": it.category,
                "base": models[0].answers.get(*id).map(|a| &a.0),
                "tuned": models[1].answers.get(*id).map(|a| &a.0),
                "scores": scores,
            }))
        })
        .collect();
    let cut = |m: &ModelSummary| m.answers.values().filter(|a| a.1 == "length").count();
    Ok(json!({
        "flywheel_version": env!("CARGO_PKG_VERSION"),
        "set": {"path": opts.set.display().to_string(), "sha256": set_sha, "items": items.len(), "scored": scored.len()},
        "models": models.iter().map(|m| json!({"role": m.name, "model": m.model, "sha256": m.sha256,
            "answers": m.answers.len(), "cut_at_max_new_tokens": cut(m)})).collect::<Vec<_>>(),
        "generation": {"max_new_tokens": opts.max_new_tokens, "sampling": "greedy",
            "precision": opts.precision.name(), "device": crate::engine::device::name(&opts.device)},
        "judge": opts.judge.as_ref().map(|(m, r)| json!({"model": m, "rubric": r})),
        "verifiers": opts.verifier_specs,
        "statistics": {"alpha": opts.alpha, "bootstrap_resamples": opts.resamples, "seed": opts.seed,
            "interval": "percentile bootstrap over items", "test": "exact two-sided sign test on paired items (McNemar for pass/fail)"},
        "contamination": contamination,
        "metrics": rows,
        "summary": words,
        "largest_differences": differ,
    }))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn f3(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.3}"))
}

/// A bar from 0 to 1 with the interval drawn over it.
fn bar(e: &Value) -> String {
    let g = |k: &str| e[k].as_f64().unwrap_or(0.0).clamp(0.0, 1.0) * 100.0;
    format!(
        "<svg width=\"160\" height=\"14\" role=\"img\"><rect x=\"0\" y=\"3\" width=\"{:.1}\" height=\"8\" fill=\"#7aa6d8\"/><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"7\" y2=\"7\" stroke=\"#123\" stroke-width=\"2\"/></svg>",
        g("mean") * 1.6,
        g("lo") * 1.6,
        g("hi") * 1.6
    )
}

/// The report as one self-contained HTML page (no script, no external asset).
pub fn html(r: &Value) -> String {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>flywheel eval</title><style>body{font:14px system-ui,sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.sig{color:#06603a;font-weight:600}.ns{color:#666}pre{white-space:pre-wrap;max-width:40em;margin:0}</style></head><body>");
    h.push_str("<h1>flywheel eval</h1>");
    let models = r["models"].as_array().cloned().unwrap_or_default();
    h.push_str(&format!(
        "<p>Test set <code>{}</code>: {} items, {} scored. ",
        esc(r["set"]["path"].as_str().unwrap_or("")),
        r["set"]["items"],
        r["set"]["scored"]
    ));
    for m in &models {
        h.push_str(&format!(
            "{}: <code>{}</code> (sha256 {}…). ",
            esc(m["role"].as_str().unwrap_or("")),
            esc(m["model"].as_str().unwrap_or("")),
            esc(&m["sha256"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(12)
                .collect::<String>())
        ));
    }
    h.push_str("</p>");
    if let Some(c) = r["contamination"].as_object() {
        let flagged = c["flagged"].as_array().map_or(0, Vec::len);
        h.push_str(&format!(
            "<h2>Contamination</h2><p>{} of the test items overlap the training blend <code>{}</code> ({} records): {} by a shared 13-word window, {} by embedding similarity. They are left out of every score.</p>",
            flagged,
            esc(c["train"].as_str().unwrap_or("")),
            c["train_records"],
            c["by_ngram"],
            c["by_embedding"]
        ));
        if flagged > 0 {
            h.push_str(
                "<table><tr><th>test item</th><th>found by</th><th>training record</th></tr>",
            );
            for f in c["flagged"].as_array().into_iter().flatten() {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(f["id"].as_str().unwrap_or("")),
                    esc(f["by"].as_str().unwrap_or("")),
                    esc(f["train_record"].as_str().unwrap_or(""))
                ));
            }
            h.push_str("</table>");
        }
    }
    h.push_str("<h2>Results</h2><table><tr><th>metric</th><th>n</th><th>base (95% CI)</th><th>tuned (95% CI)</th><th>tuned − base (95% CI)</th><th>sign test p</th><th>verdict</th></tr>");
    for m in r["metrics"].as_array().into_iter().flatten() {
        let ci = |e: &Value| format!("{} [{}, {}]", f3(&e["mean"]), f3(&e["lo"]), f3(&e["hi"]));
        let sig = m["significant"].as_bool().unwrap_or(false);
        let mut name = esc(m["metric"].as_str().unwrap_or(""));
        if let Some(d) = m["position_disagreement"].as_f64() {
            name.push_str(&format!(
                "<br><small>orders disagree on {:.0}% of items</small>",
                d * 100.0
            ));
        }
        h.push_str(&format!(
            "<tr><td>{name}<br><small>{}</small></td><td>{}</td><td>{}<br>{}</td><td>{}<br>{}</td><td>{}</td><td>{:.3}</td><td class=\"{}\">{}</td></tr>",
            esc(m["kind"].as_str().unwrap_or("")),
            m["n"],
            ci(&m["base"]),
            bar(&m["base"]),
            ci(&m["tuned"]),
            bar(&m["tuned"]),
            ci(&m["diff"]),
            m["p_sign"].as_f64().unwrap_or(1.0),
            if sig { "sig" } else { "ns" },
            if sig { "significant" } else { "not significant" }
        ));
    }
    h.push_str("</table><ul>");
    for w in r["summary"].as_array().into_iter().flatten() {
        h.push_str(&format!("<li>{}</li>", esc(w.as_str().unwrap_or(""))));
    }
    h.push_str("</ul>");
    let mut cats = String::new();
    for m in r["metrics"].as_array().into_iter().flatten() {
        for c in m["categories"].as_array().into_iter().flatten() {
            cats.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(m["metric"].as_str().unwrap_or("")),
                esc(c["category"].as_str().unwrap_or("")),
                c["n"],
                f3(&c["base"]["mean"]),
                f3(&c["tuned"]["mean"]),
                f3(&c["diff"]["mean"])
            ));
        }
    }
    if !cats.is_empty() {
        h.push_str("<h2>By category</h2><table><tr><th>metric</th><th>category</th><th>n</th><th>base</th><th>tuned</th><th>tuned − base</th></tr>");
        h.push_str(&cats);
        h.push_str("</table>");
    }
    h.push_str("<h2>Where the models differ most</h2><table><tr><th>prompt</th><th>base</th><th>tuned</th><th>scores (base → tuned)</th></tr>");
    for d in r["largest_differences"].as_array().into_iter().flatten() {
        let scores: Vec<String> = d["scores"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{}: {} → {}", esc(k), f3(&v["base"]), f3(&v["tuned"])))
            .collect();
        h.push_str(&format!(
            "<tr><td><pre>{}</pre>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td>{}</td></tr>",
            esc(d["prompt"].as_str().unwrap_or("")),
            d["reference"].as_str().map_or(String::new(), |a| format!("<small>reference: {}</small>", esc(a))),
            esc(d["base"].as_str().unwrap_or("")),
            esc(d["tuned"].as_str().unwrap_or("")),
            scores.join("<br>")
        ));
    }
    h.push_str("</table><p><small>Intervals: percentile bootstrap over items. p: exact two-sided sign test on paired items. The pairwise judge sees each pair in both orders; its score is the tuned model's win probability averaged over the two.</small></p></body></html>");
    h
}

/// Writes `eval.json` and `eval.html`, each atomically.
pub fn write(dir: &Path, r: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(r)
        .map_err(|e| Error::Internal(format!("eval report: {e}")))?;
    crate::store::write_atomic(&dir.join("eval.json"), text.as_bytes())?;
    crate::store::write_atomic(&dir.join("eval.html"), html(r).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_every_text_from_items_and_models() {
        let evil = "<script>alert(1)</script><img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">x</a>";
        let r = json!({
            "set": {"path": evil, "items": 1, "scored": 1},
            "models": [{"role": "base", "model": evil, "sha256": evil}],
            "contamination": {"train": evil, "train_records": 1, "by_ngram": 1, "by_embedding": 0,
                "flagged": [{"id": evil, "by": "13-gram", "train_record": evil}]},
            "metrics": [{"metric": evil, "kind": evil, "n": 1, "base": {"mean": 0.5, "lo": 0.1, "hi": 0.9},
                "tuned": {"mean": 0.5, "lo": 0.1, "hi": 0.9}, "diff": {"mean": 0.0, "lo": 0.0, "hi": 0.0},
                "p_sign": 1.0, "significant": false,
                "categories": [{"category": evil, "n": 1, "base": {"mean": 1.0}, "tuned": {"mean": 0.0}, "diff": {"mean": -1.0}}]}],
            "summary": [evil],
            "largest_differences": [{"prompt": evil, "reference": evil, "base": evil, "tuned": evil,
                "scores": {evil: {"base": 1.0, "tuned": 0.0}}}],
        });
        let h = html(&r);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(!h.contains("<a href"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // A `javascript:` URL survives only as inert, escaped text.
        assert!(h.contains("href=&quot;javascript:alert(3)&quot;"));
    }
}
