//! `report.html`: one self-contained page (inline CSS and SVG, no network, no CDN), so it
//! opens the same in an air-gapped room. Every number shown carries `data-k` (its path in
//! `report.json`) and the page checks itself against the JSON embedded in it on load,
//! setting `data-check` on `<html>`; the Chromium test reads that.

use serde_json::Value;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number from the report at `path`, formatted as `fmt` (`i`, `f3`, `p1`).
fn num(v: &Value, path: &str, fmt: &str) -> String {
    let mut x = v;
    for k in path.split('.') {
        x = match k.parse::<usize>() {
            Ok(i) if x.is_array() => &x[i],
            _ => &x[k],
        };
    }
    let shown = format_like_js(x.as_f64(), fmt);
    format!(
        "<span data-k=\"{}\" data-fmt=\"{fmt}\">{shown}</span>",
        esc(path)
    )
}

/// A number as the page's own check formats it (`fmt` in [`JS`]), digit for digit: the
/// page compares its text with this, so Rust must round exactly as JavaScript does.
pub fn format_like_js(x: Option<f64>, fmt: &str) -> String {
    match (fmt, x) {
        (_, None) => "–".to_string(),
        ("i", Some(f)) => format!("{}", js_math_round(f) as i64),
        ("p1", Some(f)) => format!("{}%", js_to_fixed(f * 100.0, 1)),
        (_, Some(f)) => js_to_fixed(f, 3),
    }
}

/// `Math.round`: halves go up (towards +∞); Rust's `round` takes them away from zero.
fn js_math_round(x: f64) -> f64 {
    let r = x.round();
    if x < 0.0 && r - x == -0.5 {
        r + 1.0
    } else {
        r
    }
}

/// `Number.prototype.toFixed`: the exact value of `x` rounded to `digits` decimals, an
/// exact tie going away from zero. Rust's `{:.N}` also rounds the exact value but sends ties
/// to even, so 0.3125 would read 31.2 % here and 31.3 % in the browser.
fn js_to_fixed(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let x = if x == 0.0 { 0.0 } else { x }; // (-0).toFixed() has no sign
    let a = x.abs();
    if !is_exact_tie(a, digits) {
        return format!("{x:.digits$}");
    }
    // The next double above a tie is above it by less than any other rounding boundary.
    let up = f64::from_bits(a.to_bits() + 1);
    let sign = if x < 0.0 { "-" } else { "" };
    format!("{sign}{up:.digits$}")
}

/// Whether `a` (finite, ≥ 0) lies exactly halfway between two multiples of 10^-digits,
/// i.e. whether a·10^digits·2 is an odd integer. With a = m·2^e (m an integer) that is
/// m·5^digits·2^(e+digits+1), odd exactly when m's lowest set bit cancels the power of two.
fn is_exact_tie(a: f64, digits: usize) -> bool {
    let bits = a.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    m != 0 && m.trailing_zeros() as i64 + e + digits as i64 + 1 == 0
}

const W: f64 = 560.0;

/// A histogram as SVG bars; `series` are (label, counts, colour) sharing the edges.
fn hist_svg(edges: &[f64], series: &[(&str, Vec<f64>, &str)], xlabel: &str) -> String {
    if edges.len() < 2 {
        return "<p>No data.</p>".into();
    }
    let bins = edges.len().saturating_sub(1).max(1);
    let h = 160.0;
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().cloned())
        .fold(1.0, f64::max);
    let bw = W / bins as f64;
    // Bars start below a 16 px legend row.
    let top = 16.0;
    let mut s = format!(
        "<svg viewBox=\"0 0 {W} {}\" width=\"{W}\" role=\"img\">",
        h + top + 40.0
    );
    let k = series.len().max(1) as f64;
    for (si, (label, counts, colour)) in series.iter().enumerate() {
        for (i, &c) in counts.iter().enumerate() {
            let bh = h * c / max;
            let x = i as f64 * bw + si as f64 * bw / k;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{label}: {c} in [{:.2}, {:.2})</title></rect>",
                top + h - bh,
                (bw / k - 1.0).max(1.0),
                edges[i],
                edges[i + 1]
            );
        }
    }
    for i in [0, bins / 2, bins] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            (i as f64 * bw).clamp(12.0, W - 12.0),
            top + h + 14.0,
            trim(edges[i])
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
        W / 2.0,
        top + h + 32.0,
        esc(xlabel)
    );
    let mut lx = W - 150.0;
    for (label, _, colour) in series {
        let _ = write!(s, "<rect x=\"{lx}\" y=\"2\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"11\" font-size=\"11\">{}</text>", lx + 14.0, esc(label));
        lx += 75.0;
    }
    s.push_str("</svg>");
    s
}

/// Bars for a few integer categories (turns, difficulty levels), each labelled under its
/// bar: a histogram's edges would read "2.5" where a count of turns is meant.
fn bars_svg(labels: &[String], counts: &[f64], colour: &str, xlabel: &str) -> String {
    if labels.is_empty() {
        return "<p>No data.</p>".into();
    }
    let h = 120.0;
    let max = counts.iter().cloned().fold(1.0, f64::max);
    let bw = (W / labels.len() as f64).min(60.0);
    let mut s = format!(
        "<svg viewBox=\"0 0 {W} {}\" width=\"{W}\" role=\"img\">",
        h + 50.0
    );
    for (i, (label, &c)) in labels.iter().zip(counts).enumerate() {
        let bh = h * c / max;
        let x = i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}: {c}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h - bh,
            (bw - 2.0).max(1.0),
            esc(label),
            x + bw / 2.0,
            h + 14.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">{}</text></svg>",
        h + 32.0,
        esc(xlabel)
    );
    s
}

/// `(labels, counts)` of a report list such as `[{"turns": 3, "count": 5}]`.
fn categories(v: &Value, key: &str) -> (Vec<String>, Vec<f64>) {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                x[key].as_u64().map_or("?".into(), |n| n.to_string()),
                x["count"].as_f64().unwrap_or(0.0),
            )
        })
        .unzip()
}

/// The per-step funnel of tasks with steps: reached, failed (by reason) and passed.
fn step_funnel(b: &mut String, r: &Value) {
    let Some(tasks) = r["step_funnel"].as_array() else {
        return;
    };
    b.push_str("<h3>Steps: where records were lost, and why</h3>");
    for (t, task) in tasks.iter().enumerate() {
        let _ = write!(
            b,
            "<p><b>{}</b>: {} records started, {} finished every step.</p><table><tr><th>step</th><th>reached</th><th>failed</th><th>passed</th><th>why it failed</th></tr>",
            esc(task["task"].as_str().unwrap_or("")),
            num(r, &format!("step_funnel.{t}.started"), "i"),
            num(r, &format!("step_funnel.{t}.finished"), "i"),
        );
        for (s, step) in task["steps"].as_array().into_iter().flatten().enumerate() {
            let p = format!("step_funnel.{t}.steps.{s}");
            let why: Vec<String> = step["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, x)| {
                    format!(
                        "<code>{}</code> {}",
                        esc(x["reason"].as_str().unwrap_or("")),
                        num(r, &format!("{p}.reasons.{i}.count"), "i")
                    )
                })
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(step["step"].as_str().unwrap_or("")),
                num(r, &format!("{p}.reached"), "i"),
                num(r, &format!("{p}.failed"), "i"),
                num(r, &format!("{p}.passed"), "i"),
                if why.is_empty() {
                    "–".to_string()
                } else {
                    why.join(", ")
                }
            );
        }
        b.push_str("</table>");
    }
}

/// Constrained tasks: how many answers match their schema, regex, choices or grammar.
fn structured(b: &mut String, r: &Value) {
    let Some(rows) = r["structured"].as_array() else {
        return;
    };
    b.push_str("<h3>Structured output</h3><p>Answers decoded under a constraint; one that ran out of tokens before its grammar was complete is rejected (<code>truncated_in_grammar</code>).</p><table><tr><th>task</th><th>constraint</th><th>records</th><th>valid</th><th>cut off</th></tr>");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(row["task"].as_str().unwrap_or("")),
            esc(row["constraint"].as_str().unwrap_or("")),
            num(r, &format!("structured.{i}.records"), "i"),
            num(r, &format!("structured.{i}.valid"), "i"),
            num(r, &format!("structured.{i}.truncated_in_grammar"), "i"),
        );
    }
    b.push_str("</table>");
}

/// Verifier pass rates per task, with pass@1 and pass@n.
fn pass_rates(b: &mut String, r: &Value) {
    let Some(rows) = r["pass_rates"].as_array() else {
        return;
    };
    b.push_str("<h3>Verified samples</h3><p>Samples that passed every verifier they were checked with; pass@k is the unbiased estimate over prompts (n samples each).</p><table><tr><th>task</th><th>samples</th><th>passed</th><th>pass rate</th><th>pass@1</th><th>n</th><th>pass@n</th><th>prompts unsolved</th></tr>");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td></tr>",
            esc(row["task"].as_str().unwrap_or("")),
            num(r, &format!("pass_rates.{i}.samples"), "i"),
            num(r, &format!("pass_rates.{i}.passed"), "i"),
            num(r, &format!("pass_rates.{i}.pass_rate"), "f3"),
            num(r, &format!("pass_rates.{i}.pass_at_1"), "f3"),
            num(r, &format!("pass_rates.{i}.n"), "i"),
            num(r, &format!("pass_rates.{i}.pass_at_n"), "f3"),
            num(r, &format!("pass_rates.{i}.unsolved_prompts"), "i"),
            num(r, &format!("pass_rates.{i}.prompts"), "i"),
        );
    }
    b.push_str("</table>");
}

/// People's decisions (`flywheel review`): how much was reviewed, accept rates, reject
/// reasons, reviewer agreement and how well the judge ranks records as people do.
fn review(b: &mut String, r: &Value) {
    let v = &r["review"];
    if v.is_null() {
        return;
    }
    let _ = write!(
        b,
        "<h2>Human review</h2><p>{} of {} candidates reviewed ({}); {} decisions undone. The judge's AUROC against the human labels (accepted as is vs rejected or edited) is {} over {} judged records: 0.5 is chance, 1 is a judge that ranks every good record above every bad one.</p>",
        num(r, "review.reviewed", "i"),
        num(r, "review.candidates", "i"),
        num(r, "review.reviewed_share", "p1"),
        num(r, "review.undone", "i"),
        num(r, "review.judge.auroc", "f3"),
        num(r, "review.judge.n", "i"),
    );
    if !v["sample"].is_null() {
        let _ = write!(
            b,
            "<p class=\"lead\">Audit sample: {} of {} sampled records reviewed; {} not good as is: an estimated error rate of {} (95% interval {} to {}) for all {} records.</p>",
            num(r, "review.sample.reviewed", "i"),
            num(r, "review.sample.size", "i"),
            num(r, "review.sample.not_good", "i"),
            num(r, "review.sample.error_rate", "p1"),
            num(r, "review.sample.ci95.0", "p1"),
            num(r, "review.sample.ci95.1", "p1"),
            num(r, "review.sample.population", "i"),
        );
    }
    b.push_str("<table><tr><th>task</th><th>reviewed</th><th>accepted</th><th>edited</th><th>rejected</th><th>accept rate</th></tr>");
    for (i, t) in v["by_task"].as_array().into_iter().flatten().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(t["task"].as_str().unwrap_or("")),
            num(r, &format!("review.by_task.{i}.reviewed"), "i"),
            num(r, &format!("review.by_task.{i}.accepted"), "i"),
            num(r, &format!("review.by_task.{i}.edited"), "i"),
            num(r, &format!("review.by_task.{i}.rejected"), "i"),
            num(r, &format!("review.by_task.{i}.accept_rate"), "p1"),
        );
    }
    b.push_str("</table>");
    if let Some(reasons) = v["reject_reasons"].as_array().filter(|a| !a.is_empty()) {
        b.push_str("<h3>Reject reasons</h3><table><tr><th>reason</th><th>records</th></tr>");
        for (i, x) in reasons.iter().enumerate() {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(x["reason"].as_str().unwrap_or("")),
                num(r, &format!("review.reject_reasons.{i}.count"), "i"),
            );
        }
        b.push_str("</table>");
    }
    if let Some(pairs) = v["agreement"].as_array().filter(|a| !a.is_empty()) {
        let _ = write!(b, "<h3>Reviewer agreement</h3><p>Cohen's κ on the records both reviewed (accept / edit / reject); {} records have differing decisions (filter <code>disagreed</code> in <code>flywheel review</code> to settle them).</p><table><tr><th>reviewers</th><th>both reviewed</th><th>agreed</th><th>κ</th></tr>", num(r, "review.disagreed", "i"));
        for (i, x) in pairs.iter().enumerate() {
            let _ = write!(
                b,
                "<tr><td>{} · {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(x["a"].as_str().unwrap_or("")),
                esc(x["b"].as_str().unwrap_or("")),
                num(r, &format!("review.agreement.{i}.both"), "i"),
                num(r, &format!("review.agreement.{i}.agreed"), "i"),
                num(r, &format!("review.agreement.{i}.kappa"), "f3"),
            );
        }
        b.push_str("</table>");
    }
}

/// Records that hit `max_new_tokens`, per task.
fn truncation(b: &mut String, r: &Value) {
    let Some(rows) = r["truncation"].as_array() else {
        return;
    };
    b.push_str("<h3>Cut off at max_new_tokens</h3><p>Answers that ran out of tokens stop mid-sentence; the filter rejects them as <code>truncated</code> unless <code>[filter] allow_truncated = true</code>. Many here: raise <code>max_new_tokens</code> or ask for shorter answers.</p><table><tr><th>task</th><th>records</th><th>hit max_new_tokens</th><th>rejected</th></tr>");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(row["task"].as_str().unwrap_or("")),
            num(r, &format!("truncation.{i}.records"), "i"),
            num(r, &format!("truncation.{i}.hit_max_new_tokens"), "i"),
            num(r, &format!("truncation.{i}.rejected_truncated"), "i"),
        );
    }
    b.push_str("</table>");
}

/// Conversations' turn counts and evolved records' difficulty levels.
fn programs(b: &mut String, r: &Value) {
    let t = &r["turns"];
    if !t.is_null() {
        let _ = write!(
            b,
            "<h2>Conversation turns</h2><p>{} conversations in <code>{}</code>, {} assistant turns on average.</p>",
            num(r, "turns.n", "i"),
            esc(t["set"].as_str().unwrap_or("")),
            num(r, "turns.mean", "f3")
        );
        let (labels, counts) = categories(&t["histogram"], "turns");
        b.push_str(&bars_svg(&labels, &counts, "#4a7bd0", "assistant turns"));
    }
    let d = &r["difficulty"];
    if !d.is_null() {
        let _ = write!(
            b,
            "<h2>Evolution difficulty</h2><p>{} evolved records in <code>{}</code>, {} rounds on average (a record keeps its last good instruction when a round fails).</p>",
            num(r, "difficulty.n", "i"),
            esc(d["set"].as_str().unwrap_or("")),
            num(r, "difficulty.mean", "f3")
        );
        let (labels, counts) = categories(&d["levels"], "level");
        b.push_str(&bars_svg(
            &labels,
            &counts,
            "#d07a4a",
            "difficulty (rounds that succeeded)",
        ));
        let _ = write!(
            b,
            "<table><tr><th>failed round: reason</th><th>rounds</th></tr><tr><td>all</td><td>{}</td></tr>",
            num(r, "difficulty.failed_rounds", "i")
        );
        for (i, f) in d["failures"].as_array().into_iter().flatten().enumerate() {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(f["reason"].as_str().unwrap_or("")),
                num(r, &format!("difficulty.failures.{i}.count"), "i")
            );
        }
        b.push_str("</table><table><tr><th>operator</th><th>rounds succeeded</th><th>rounds failed</th></tr>");
        for (i, o) in d["operators"].as_array().into_iter().flatten().enumerate() {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(o["operator"].as_str().unwrap_or("")),
                num(r, &format!("difficulty.operators.{i}.succeeded"), "i"),
                num(r, &format!("difficulty.operators.{i}.failed"), "i")
            );
        }
        b.push_str("</table>");
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn counts(h: &Value) -> Vec<f64> {
    h["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_f64())
        .collect()
}
fn edges(h: &Value) -> Vec<f64> {
    h["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_f64())
        .collect()
}

/// The page.
pub fn render(r: &Value) -> String {
    let mut b = String::new();
    let name = r["run"]["name"].as_str().unwrap_or("run");
    let _ = write!(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — flywheel dataset report</title><style>{CSS}</style></head><body>", esc(name));
    let _ = write!(b, "<h1>{} <small>dataset report</small></h1>", esc(name));
    if !r["dataset"].is_null() {
        let _ = write!(
            b,
            "<p class=\"lead\">{} records: {} synthetic ({}) and {} real.</p>",
            num(r, "dataset.total", "i"),
            num(r, "dataset.synthetic", "i"),
            num(r, "dataset.synthetic_share", "p1"),
            num(r, "dataset.real", "i")
        );
        if !r["dataset"]["short"].is_null() {
            let _ = write!(
                b,
                "<p class=\"warn\">⚠ Short of the spec: it asked for {} records ({} real); the survivors allowed {} ({} real). {} synthetic and {} real records are missing.</p>",
                num(r, "dataset.short.asked_total", "i"),
                num(r, "dataset.short.asked_real_share", "p1"),
                num(r, "dataset.total", "i"),
                num(r, "dataset.real_share", "p1"),
                num(r, "dataset.short.missing_synthetic", "i"),
                num(r, "dataset.short.missing_real", "i")
            );
        }
    }
    for w in r["diversity"]["warnings"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<p class=\"warn\">⚠ {}</p>",
            esc(w.as_str().unwrap_or(""))
        );
    }

    // Funnel.
    b.push_str("<h2>Funnel</h2>");
    let funnel = r["funnel"].as_array().cloned().unwrap_or_default();
    let top = funnel
        .iter()
        .filter_map(|f| f["count"].as_f64())
        .fold(1.0, f64::max);
    let _ = write!(
        b,
        "<svg viewBox=\"0 0 {W} {}\" width=\"{W}\" role=\"img\">",
        funnel.len() * 26
    );
    for (i, f) in funnel.iter().enumerate() {
        let c = f["count"].as_f64().unwrap_or(0.0);
        let w = (W - 200.0) * c / top;
        let y = i * 26;
        let _ = write!(b, "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"140\" y=\"{}\" width=\"{w:.1}\" height=\"18\" fill=\"#4a7bd0\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{c}</text>",
            y + 14, esc(f["stage"].as_str().unwrap_or("")), y + 2, 146.0 + w, y + 14);
    }
    b.push_str("</svg><table><tr><th>stage</th><th>count</th></tr>");
    for (i, f) in funnel.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(f["stage"].as_str().unwrap_or("")),
            num(r, &format!("funnel.{i}.count"), "i")
        );
    }
    b.push_str("</table><h3>Where records were lost, and why</h3><table><tr><th>stage</th><th>reason</th><th>records</th></tr>");
    let losses = r["losses"].as_array().cloned().unwrap_or_default();
    if losses.is_empty() {
        b.push_str("<tr><td colspan=3>none</td></tr>");
    }
    for (i, l) in losses.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(l["stage"].as_str().unwrap_or("")),
            esc(l["reason"].as_str().unwrap_or("")),
            num(r, &format!("losses.{i}.count"), "i")
        );
    }
    b.push_str("</table>");
    step_funnel(&mut b, r);
    structured(&mut b, r);
    truncation(&mut b, r);
    pass_rates(&mut b, r);
    review(&mut b, r);

    // Judges.
    b.push_str("<h2>Judge scores</h2>");
    let judges = r["judges"].as_object().cloned().unwrap_or_default();
    if judges.is_empty() {
        b.push_str("<p>No judge scores in this run.</p>");
    }
    for (name, j) in &judges {
        let h = &j["histogram"];
        let _ = write!(
            b,
            "<h3>{} <small>mean {} over {} records</small></h3>",
            esc(name),
            num(r, &format!("judges.{name}.mean"), "f3"),
            num(r, &format!("judges.{name}.n"), "i")
        );
        b.push_str(&hist_svg(
            &edges(h),
            &[(name, counts(h), "#4a7bd0")],
            "normalized score (0–1)",
        ));
    }
    for (i, a) in r["judge_agreement"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let _ = write!(
            b,
            "<p>Agreement {} ~ {}: Pearson r = {} over {} records.</p>",
            esc(a["a"].as_str().unwrap_or("")),
            esc(a["b"].as_str().unwrap_or("")),
            num(r, &format!("judge_agreement.{i}.pearson"), "f3"),
            num(r, &format!("judge_agreement.{i}.n"), "i")
        );
    }

    // Similarity.
    b.push_str("<h2>Similarity</h2>");
    if r["similarity"].is_null() {
        b.push_str("<p>Not computed (no embedder, or fewer than two synthetic records).</p>");
    } else {
        let h = &r["similarity"]["histogram"];
        let _ = write!(
            b,
            "<p>{}; median {}.</p>",
            esc(r["similarity"]["what"].as_str().unwrap_or("")),
            num(r, "similarity.median", "f3")
        );
        b.push_str(&hist_svg(
            &edges(h),
            &[("synthetic", counts(h), "#d07a4a")],
            "nearest-neighbour cosine",
        ));
    }

    // Lengths.
    let l = &r["lengths"];
    let _ = write!(
        b,
        "<h2>Response lengths</h2><p>Median {} words synthetic, {} real.</p>",
        num(r, "lengths.synthetic_median", "i"),
        num(r, "lengths.real_median", "i")
    );
    b.push_str(&hist_svg(
        &edges(&l["synthetic"]),
        &[
            ("synthetic", counts(&l["synthetic"]), "#d07a4a"),
            ("real", counts(&l["real"]), "#5aa05a"),
        ],
        "words in the response",
    ));
    programs(&mut b, r);

    // Diversity.
    b.push_str("<h2>Diversity and collapse signals</h2><table><tr><th>metric</th><th>synthetic</th><th>real anchor</th><th>reads as</th></tr>");
    for (k, what) in [
        ("n", "records"),
        ("distinct_1", "unique words / words (higher = more varied)"),
        ("distinct_2", "unique word pairs / pairs"),
        ("distinct_3", "unique word triples / triples"),
        (
            "self_bleu",
            "BLEU-4 of each against the rest (lower = more varied)",
        ),
        (
            "mean_pairwise_distance",
            "mean embedding distance, 1 − cosine (higher = wider)",
        ),
        (
            "near_neighbour_share",
            "share with a near-twin, cosine ≥ 0.9 (lower is better)",
        ),
    ] {
        let fmt = if k == "n" { "i" } else { "f3" };
        let _ = write!(
            b,
            "<tr><td>{k}</td><td>{}</td><td>{}</td><td>{what}</td></tr>",
            num(r, &format!("diversity.synthetic.{k}"), fmt),
            num(r, &format!("diversity.real.{k}"), fmt)
        );
    }
    let _ = write!(b, "</table><p class=\"foot\">Word-based metrics are measured on {} records from each side (distinct-n falls as a set grows).</p>", num(r, "diversity.text_metrics_sample", "i"));

    // Privacy.
    b.push_str("<h2>Privacy audit</h2>");
    let p = &r["privacy"];
    if p.is_null() {
        b.push_str("<p class=\"warn\">No privacy audit in this run.</p>");
    } else {
        b.push_str("<table><tr><th>check</th><th>records</th></tr>");
        for (k, label) in [
            ("records", "audited"),
            ("passed", "passed into the blend"),
            ("dropped", "dropped"),
            ("redacted", "redacted (PII replaced)"),
            ("flagged", "flagged (kept, finding attached)"),
            ("copies", "copy a run of real text"),
            ("dcr_flagged", "too close to a real record"),
        ] {
            let _ = write!(
                b,
                "<tr><td>{label}</td><td>{}</td></tr>",
                num(r, &format!("privacy.summary.{k}"), "i")
            );
        }
        for (kind, _) in p["summary"]["pii_by_kind"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let _ = write!(
                b,
                "<tr><td>PII: {}</td><td>{}</td></tr>",
                esc(kind),
                num(r, &format!("privacy.summary.pii_by_kind.{kind}"), "i")
            );
        }
        b.push_str("</table>");
        if !p["summary"]["dcr"].is_null() {
            let _ = write!(b, "<p>Distance to closest record: the median synthetic record's nearest real record is at cosine {}, a held-back real record's at {}; {} of synthetic records are closer to the real data than the median real record is, {} closer than 95% of real records are.</p>",
                num(r, "privacy.summary.dcr.synthetic_median", "f3"), num(r, "privacy.summary.dcr.holdout_median", "f3"),
                num(r, "privacy.summary.dcr.share_closer_than_real_median", "p1"), num(r, "privacy.summary.dcr.share_closer_than_real_p95", "p1"));
        }
        if !p["summary"]["canary"].is_null() {
            let _ = write!(b, "<p>Canary test: {} planted, {} resurfaced in full, {} in part; {} control canaries found (false alarms).</p>",
                num(r, "privacy.summary.canary.planted", "i"), num(r, "privacy.summary.canary.resurfaced_full", "i"),
                num(r, "privacy.summary.canary.resurfaced_partial", "i"), num(r, "privacy.summary.canary.control_found", "i"));
        }
    }

    // Models and settings.
    b.push_str(
        "<h2>Models and settings</h2><table><tr><th>role</th><th>model</th><th>sha256</th></tr>",
    );
    for m in r["models"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(m["role"].as_str().unwrap_or("")),
            esc(m["id"].as_str().unwrap_or("")),
            esc(m["sha256"].as_str().unwrap_or(""))
        );
    }
    let _ = write!(
        b,
        "</table><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&r["settings"]).unwrap_or_default())
    );
    let _ = write!(
        b,
        "<p class=\"foot\">spec sha256 <code>{}</code> · flywheel {}</p>",
        esc(r["run"]["spec_sha256"].as_str().unwrap_or("")),
        esc(r["run"]["flywheel"].as_str().unwrap_or(""))
    );

    // The data and the self-check.
    // `<` escaped as JSON allows, so no text in the data can open or close a tag.
    let data = serde_json::to_string(r)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    let _ = write!(b, "<script type=\"application/json\" id=\"report-data\">{data}</script><script>{JS}</script></body></html>");
    b
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#222}h1 small,h3 small{color:#777;font-weight:normal}table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em}.lead{font-size:1.15em}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}.foot{color:#777}svg{display:block;margin:.5em 0}";

const JS: &str = r#"(function(){var d=JSON.parse(document.getElementById('report-data').textContent);
function get(o,p){return p.split('.').reduce(function(x,k){return x==null?undefined:x[k]},o)}
function fmt(v,f){if(typeof v!=='number')return '–';if(f==='i')return String(Math.round(v));if(f==='p1')return (v*100).toFixed(1)+'%';return v.toFixed(3)}
var bad=[],n=0;document.querySelectorAll('[data-k]').forEach(function(e){n++;if(e.textContent!==fmt(get(d,e.dataset.k),e.dataset.fmt))bad.push(e.dataset.k)});
document.documentElement.dataset.check=bad.length?'mismatch:'+bad.join(','):'ok:'+n;})();"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_carry_their_paths_and_text_is_escaped() {
        let r = json!({"a": {"b": [1.23456, 7]}, "s": 0.256});
        assert_eq!(
            num(&r, "a.b.0", "f3"),
            "<span data-k=\"a.b.0\" data-fmt=\"f3\">1.235</span>"
        );
        assert_eq!(
            num(&r, "a.b.1", "i"),
            "<span data-k=\"a.b.1\" data-fmt=\"i\">7</span>"
        );
        assert_eq!(
            num(&r, "s", "p1"),
            "<span data-k=\"s\" data-fmt=\"p1\">25.6%</span>"
        );
        assert!(num(&r, "missing.x", "i").contains(">–<"));
        // Exact ties round away from zero as JavaScript's toFixed does (5/16 = 31.25 %).
        assert_eq!(
            num(&json!({"s": 0.3125}), "s", "p1"),
            "<span data-k=\"s\" data-fmt=\"p1\">31.3%</span>"
        );
        let page = render(
            &json!({"run": {"name": "<x>"}, "funnel": [], "diversity": {"warnings": ["</script>"]}}),
        );
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
        assert!(
            !page.contains("\"</script>\""),
            "embedded JSON must not close its script tag"
        );
    }

    #[test]
    fn rounding_matches_javascript() {
        // Expected strings are what V8 prints for (x).toFixed(d) and Math.round(x).
        for (x, d, js) in [
            (31.25, 1, "31.3"),
            (-31.25, 1, "-31.3"),
            (0.0625, 3, "0.063"),
            (0.3125, 3, "0.313"),
            (2.5, 0, "3"),
            (0.125, 1, "0.1"),  // 0.125 is no tie at one decimal
            (1.005, 2, "1.00"), // the double is just below 1.005
            (0.15, 1, "0.1"),   // …and this one just below 0.15
            (0.35, 1, "0.3"),
            (0.45, 1, "0.5"), // …and this one just above 0.45
            (-0.0, 1, "0.0"),
            (7.0, 3, "7.000"),
        ] {
            assert_eq!(js_to_fixed(x, d), js, "({x}).toFixed({d})");
        }
        for (x, js) in [
            (2.5, "3"),
            (-2.5, "-2"),
            (-0.4, "0"),
            (-3.5, "-3"),
            (0.49, "0"),
        ] {
            assert_eq!(format_like_js(Some(x), "i"), js, "Math.round({x})");
        }
        assert_eq!(format_like_js(Some(0.3125), "p1"), "31.3%");
        assert_eq!(format_like_js(Some(0.0625), "f3"), "0.063");
    }
}
