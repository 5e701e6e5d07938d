//! `flywheel eval`: the factory's last gate. Two models (the base and the one fine-tuned on
//! the blend) answer the same real, held-out test set; the answers are scored with the
//! factory's own verifiers and judges; each metric gets both models' means with bootstrap
//! intervals and the paired difference with a sign test, overall and per category.
//!
//! Everything expensive is journaled in the output directory (`answers.jsonl`,
//! `scores.jsonl`) under keys that name exactly what made it (model sha256, generation
//! settings, judge and rubric), so a killed eval resumes where it stopped and an edited one
//! recomputes only what changed.

pub mod report;
pub mod set;
pub mod stats;

use crate::engine::{GenParams, Precision, Request};
use crate::error::{Error, Result};
use crate::models::{resolve, FetchPolicy};
use crate::spec::{Rubric, Sampling};
use crate::store::JsonlWriter;
use crate::verify::judge::{Judge, JudgeItem};
use crate::verify::verifiers::{Input, Verifier};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub use set::Item;

/// What `flywheel eval` was asked.
pub struct EvalOptions {
    /// Exactly two: the base model first, then the tuned one (ids, GGUF files or HF folders).
    pub models: Vec<String>,
    pub set: PathBuf,
    /// Where the journal and the report go.
    pub out: PathBuf,
    /// The judge model and rubric; `None`: no judge metrics.
    pub judge: Option<(String, Rubric)>,
    /// Verifiers applied to every answer, with their names (from `--spec` and `--verifier`).
    pub verifiers: Vec<Box<dyn Verifier>>,
    /// Their configuration, for the journal keys and the report.
    pub verifier_specs: Vec<Value>,
    pub device: Device,
    pub precision: Precision,
    pub fetch: FetchPolicy,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    /// Significance level (default 0.05) and bootstrap resamples.
    pub alpha: f64,
    pub resamples: usize,
    pub seed: u64,
    /// The training blend to check the test set against, and the cosine at or above which
    /// a test prompt counts as a near-copy of a training text.
    pub train: Option<PathBuf>,
    pub contamination_cosine: f32,
    pub embedder: String,
    pub progress: bool,
}

/// One journaled answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnswerLine {
    key: String,
    id: String,
    text: String,
    finish: String,
    completion_tokens: usize,
}

/// One journaled judge score (pointwise, or one order of a pairwise comparison).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScoreLine {
    key: String,
    id: String,
    score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A model under test, resolved.
struct Candidate {
    name: String,
    model: crate::models::ResolvedModel,
    /// Names exactly how its answers were made: the journal key.
    key: String,
}

fn sha(v: &Value) -> String {
    crate::models::checksum::sha256_bytes(v.to_string().as_bytes())[..24].to_string()
}

/// Greedy: an eval measures the model, not the sampler.
fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        repetition_penalty: 1.0,
        stop: Vec::new(),
    }
}

/// Runs the eval and writes `eval.json` and `eval.html` into `opts.out`; returns the report.
pub fn run(opts: &EvalOptions) -> Result<Value> {
    if opts.models.len() != 2 {
        return Err(Error::Spec(format!(
            "eval compares two models: give --model BASE --model TUNED ({} given)",
            opts.models.len()
        )));
    }
    let _lock = crate::store::create_run_dir(&opts.out)?;
    let (items, set_sha) = set::load(&opts.set)?;
    eprintln!(
        "eval: {} test items from {} · models: {} (base) vs {} (tuned)",
        items.len(),
        opts.set.display(),
        opts.models[0],
        opts.models[1]
    );

    // Contamination first: a score on a leaked item is not evidence.
    let contamination = match &opts.train {
        Some(t) => Some(report::contamination(opts, &items, t)?),
        None => None,
    };
    let flagged: std::collections::HashSet<String> = contamination
        .as_ref()
        .map(|c| c.flagged.iter().map(|f| f.id.clone()).collect())
        .unwrap_or_default();
    if let Some(c) = &contamination {
        eprintln!(
            "contamination: {} of {} test items overlap the training blend ({} by 13-gram, {} by embedding ≥ {}); they are left out of every score below",
            c.flagged.len(),
            items.len(),
            c.by_ngram,
            c.by_embedding,
            opts.contamination_cosine
        );
    }
    let scored: Vec<&Item> = items.iter().filter(|i| !flagged.contains(&i.id)).collect();
    if scored.is_empty() {
        return Err(Error::Spec(format!(
            "every test item in {} overlaps the training blend: nothing left to score",
            opts.set.display()
        )));
    }

    let gen = json!({"max_new_tokens": opts.max_new_tokens, "sampling": greedy(),
        "precision": opts.precision.name(), "device": crate::engine::device::name(&opts.device)});
    let mut cands = Vec::new();
    for (i, m) in opts.models.iter().enumerate() {
        let model = resolve(m, opts.fetch)?;
        let key = sha(&json!({"model_sha256": model.main_file().sha256, "gen": gen}));
        cands.push(Candidate {
            name: if i == 0 {
                "base".into()
            } else {
                "tuned".into()
            },
            model,
            key,
        });
    }
    if cands[0].key == cands[1].key {
        eprintln!("note: both --model values are the same weights; the difference will be zero");
    }

    let answers = answer_all(opts, &cands, &scored)?;
    let mut metrics = verifier_metrics(opts, &cands, &scored, &answers)?;
    if let Some((judge_model, rubric)) = &opts.judge {
        metrics.extend(judge_metrics(
            opts,
            judge_model,
            rubric,
            &cands,
            &scored,
            &answers,
        )?);
    }

    let r = report::build(
        opts,
        &items,
        &scored,
        &cands_summary(&cands, &answers, &scored),
        &metrics,
        contamination.as_ref(),
        &set_sha,
    )?;
    report::write(&opts.out, &r)?;
    Ok(r)
}

/// Journaled answers: `(candidate key, item key)` → answer.
type Answers = HashMap<(String, String), AnswerLine>;

/// Each candidate's answer to every scored item: read from `answers.jsonl`, the missing
/// ones generated (greedy, batched) and appended as they finish.
fn answer_all(opts: &EvalOptions, cands: &[Candidate], scored: &[&Item]) -> Result<Answers> {
    let answers_path = opts.out.join("answers.jsonl");
    let (mut journal, _) = JsonlWriter::open(&answers_path)?;
    let mut answers: HashMap<(String, String), AnswerLine> = HashMap::new();
    for a in crate::store::read_jsonl::<AnswerLine>(&answers_path)? {
        answers.insert((a.key.clone(), a.id.clone()), a);
    }
    for c in cands {
        let todo: Vec<&Item> = scored
            .iter()
            .copied()
            .filter(|i| !answers.contains_key(&(c.key.clone(), i.key.clone())))
            .collect();
        eprintln!(
            "{}: {} answers journaled, {} to generate",
            c.name,
            scored.len() - todo.len(),
            todo.len()
        );
        if todo.is_empty() {
            continue;
        }
        let llm = crate::runtime::llm(&c.model, &opts.device, opts.precision, None)?;
        let mut reqs = Vec::with_capacity(todo.len());
        for it in &todo {
            reqs.push(Request::new(
                it.key.clone(),
                llm.prompt_ids(&it.messages)?,
                0,
            ));
        }
        let params = GenParams {
            sampling: greedy(),
            max_new_tokens: opts.max_new_tokens,
            batch_size: opts.batch_size.max(1),
            stop: Vec::new(),
        };
        let pb = crate::progress::bar(todo.len(), opts.progress, &format!("eval {}", c.name));
        llm.generate(reqs, &params, |o| {
            let line = AnswerLine {
                key: c.key.clone(),
                id: o.id.clone(),
                text: o.text.trim().to_string(),
                finish: format!("{:?}", o.finish).to_lowercase(),
                completion_tokens: o.tokens.len(),
            };
            journal.append(&line)?;
            journal.sync()?;
            answers.insert((c.key.clone(), o.id), line);
            pb.inc(1);
            Ok(())
        })?;
        pb.finish_and_clear();
    }
    Ok(answers)
}

/// What a verifier sees for an answer: the item's fields, the answer as `response`, and
/// the fields again under `meta.vars` and `meta.steps`, where a spec's verifiers read
/// their references on generated records (`gold = "meta.steps.gold"`).
fn item_record(it: &Item, response: &str) -> Value {
    let mut r = it.raw.clone();
    if r.get("meta").is_none() {
        r["meta"] = json!({"vars": it.raw, "steps": it.raw});
    }
    r["response"] = Value::String(response.to_string());
    r
}

/// The answer of candidate `c` to the item with key `key`.
fn answer<'a>(answers: &'a Answers, c: &Candidate, key: &str) -> Result<&'a AnswerLine> {
    answers
        .get(&(c.key.clone(), key.to_string()))
        .ok_or_else(|| Error::Internal(format!("no answer of {} for item {key}", c.name)))
}

/// Pass rates: the answer check where items carry `answer`, and the verifiers asked for.
fn verifier_metrics(
    opts: &EvalOptions,
    cands: &[Candidate],
    scored: &[&Item],
    answers: &Answers,
) -> Result<Vec<report::Metric>> {
    let mut metrics: Vec<report::Metric> = Vec::new();
    // Verifiers: the math/exact answer check where items carry `answer`, and those asked for.
    let mut checks: Vec<(&str, &dyn Verifier, bool)> = Vec::new();
    if scored.iter().any(|i| i.answer.is_some()) {
        checks.push(("answer", &AnswerCheck, true));
    }
    for v in &opts.verifiers {
        checks.push((v.name(), v.as_ref(), false));
    }
    for (name, v, needs_answer) in checks {
        let subset: Vec<&Item> = scored
            .iter()
            .copied()
            .filter(|i| !needs_answer || i.answer.is_some())
            .collect();
        let mut per_model = Vec::new();
        for c in cands {
            let mut recs = Vec::new();
            for it in &subset {
                recs.push(item_record(it, &answer(answers, c, &it.key)?.text));
            }
            let inputs: Vec<Input<'_>> = subset
                .iter()
                .zip(&recs)
                .map(|(it, r)| Input {
                    prompt: &it.prompt,
                    response: r["response"].as_str().unwrap_or(""),
                    record: r,
                })
                .collect();
            let verdicts = v.check_many(&inputs);
            per_model.push(
                verdicts
                    .iter()
                    .map(|d| if d.pass { 1.0 } else { 0.0 })
                    .collect::<Vec<f64>>(),
            );
        }
        metrics.push(report::Metric {
            name: format!("verifier:{name}"),
            kind: "pass rate".into(),
            ids: subset.iter().map(|i| i.id.clone()).collect(),
            a: per_model[0].clone(),
            b: per_model[1].clone(),
            disagreement: None,
        });
    }

    Ok(metrics)
}

/// The judge's metrics, journaled in `scores.jsonl`: pointwise on each answer, and
/// pairwise in both orders.
fn judge_metrics(
    opts: &EvalOptions,
    judge_model: &str,
    rubric: &Rubric,
    cands: &[Candidate],
    scored: &[&Item],
    answers: &Answers,
) -> Result<Vec<report::Metric>> {
    let mut metrics = Vec::new();
    let jm = resolve(judge_model, opts.fetch)?;
    let llm = crate::runtime::llm(&jm, &opts.device, opts.precision, None)?;
    let scores_path = opts.out.join("scores.jsonl");
    let (mut sj, _) = JsonlWriter::open(&scores_path)?;
    let mut done: HashMap<(String, String), ScoreLine> = HashMap::new();
    for s in crate::store::read_jsonl::<ScoreLine>(&scores_path)? {
        done.insert((s.key.clone(), s.id.clone()), s);
    }
    let jkey = json!({"judge_sha256": jm.main_file().sha256, "rubric": rubric,
            "precision": opts.precision.name()});
    let batch = opts.batch_size.max(1);
    // Scores `items` under `key`, reusing journaled ones.
    let mut score = |judge: &Judge<'_>,
                     key: &str,
                     items: Vec<(String, JudgeItem)>|
     -> Result<Vec<Option<f64>>> {
        let todo: Vec<&(String, JudgeItem)> = items
            .iter()
            .filter(|(id, _)| !done.contains_key(&(key.to_string(), id.clone())))
            .collect();
        for chunk in todo.chunks(batch * 4) {
            let ji: Vec<JudgeItem> = chunk.iter().map(|(_, j)| j.clone()).collect();
            let got = judge.score_each(&ji, batch)?;
            for ((id, _), g) in chunk.iter().zip(got) {
                let line = match g {
                    Ok(s) => ScoreLine {
                        key: key.into(),
                        id: id.clone(),
                        score: Some(s.normalized),
                        error: None,
                    },
                    Err(e) => ScoreLine {
                        key: key.into(),
                        id: id.clone(),
                        score: None,
                        error: Some(e),
                    },
                };
                sj.append(&line)?;
                done.insert((key.to_string(), id.clone()), line);
            }
            sj.sync()?;
        }
        Ok(items
            .iter()
            .map(|(id, _)| {
                done.get(&(key.to_string(), id.clone()))
                    .and_then(|l| l.score)
            })
            .collect())
    };
    let pointwise = Judge::new("eval", &llm, rubric.clone(), 1024)?;
    eprintln!(
        "judging {} answers pointwise, then {} pairs in both orders",
        2 * scored.len(),
        scored.len()
    );
    let mut per_model = Vec::new();
    for c in cands {
        let key = sha(&json!({"pointwise": jkey, "answers": c.key}));
        let items = scored
            .iter()
            .map(|it| {
                Ok((
                    it.key.clone(),
                    JudgeItem {
                        prompt: it.prompt.clone(),
                        response: answer(answers, c, &it.key)?.text.clone(),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        per_model.push(score(&pointwise, &key, items)?);
    }
    let pairwise = Judge::pairwise("eval-pairwise", &llm, &rubric.criteria, 1536)?;
    let mut orders = Vec::new();
    for (first, second) in [(0usize, 1usize), (1, 0)] {
        let key =
            sha(&json!({"pairwise": jkey, "first": cands[first].key, "second": cands[second].key}));
        let items = scored
            .iter()
            .map(|it| {
                let (x, y) = (
                    answer(answers, &cands[first], &it.key)?,
                    answer(answers, &cands[second], &it.key)?,
                );
                Ok((
                    it.key.clone(),
                    JudgeItem {
                        prompt: it.prompt.clone(),
                        response: Judge::pair(&x.text, &y.text, 1200),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        orders.push(score(&pairwise, &key, items)?);
    }
    // Items every judge call scored (one that could not be judged is left out, and
    // counted in the report).
    let keep: Vec<usize> = (0..scored.len())
        .filter(|&k| per_model.iter().chain(&orders).all(|v| v[k].is_some()))
        .collect();
    let pick = |v: &Vec<Option<f64>>| {
        keep.iter()
            .map(|&k| v[k].unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    };
    let ids: Vec<String> = keep.iter().map(|&k| scored[k].id.clone()).collect();
    metrics.push(report::Metric {
        name: "judge:pointwise".into(),
        kind: "normalized judge score".into(),
        ids: ids.clone(),
        a: pick(&per_model[0]),
        b: pick(&per_model[1]),
        disagreement: None,
    });
    let (wins, rate) = stats::swap_averaged(&pick(&orders[0]), &pick(&orders[1]));
    metrics.push(report::Metric {
        name: "judge:pairwise".into(),
        kind: "win probability (both orders averaged)".into(),
        ids,
        a: wins.iter().map(|w| 1.0 - w).collect(),
        b: wins,
        disagreement: Some(rate),
    });
    Ok(metrics)
}

/// Per model: its name, id, sha256, and every scored item's answer.
fn cands_summary(
    cands: &[Candidate],
    answers: &HashMap<(String, String), AnswerLine>,
    scored: &[&Item],
) -> Vec<report::ModelSummary> {
    cands
        .iter()
        .map(|c| report::ModelSummary {
            name: c.name.clone(),
            model: c.model.id.clone(),
            sha256: c.model.main_file().sha256.clone(),
            answers: scored
                .iter()
                .filter_map(|it| {
                    answers
                        .get(&(c.key.clone(), it.key.clone()))
                        .map(|a| (it.id.clone(), (a.text.clone(), a.finish.clone())))
                })
                .collect::<BTreeMap<_, _>>(),
        })
        .collect()
}

/// The test item's `answer` against the model's: as numbers when the reference is one
/// (the final answer extracted as the math verifier does: `\boxed{}`, "the answer is",
/// else the last number), else the reference's words appearing in order, whole, in the
/// answer (case and punctuation ignored): "Paris" passes "The capital is Paris.".
pub struct AnswerCheck;

impl Verifier for AnswerCheck {
    fn name(&self) -> &str {
        "answer"
    }
    fn check(&self, i: &Input<'_>) -> crate::verify::verifiers::Verdict {
        use crate::verify::verifiers::{answers_equal, extract_answer, Verdict};
        let want = match i.record.get("answer") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => return Verdict::fail("the item has no `answer`"),
            Some(v) => v.to_string(),
        };
        let numeric = want
            .trim()
            .trim_end_matches('.')
            .replace(',', "")
            .parse::<f64>()
            .is_ok();
        if numeric {
            return match extract_answer(i.response) {
                Some(got) if answers_equal(&got, &want) => Verdict::pass(),
                Some(got) => Verdict::fail(format!("answer {got:?} ≠ reference {want:?}")),
                None => Verdict::fail("no final answer found"),
            };
        }
        let words = |t: &str| -> Vec<String> {
            t.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (w, r) = (words(&want), words(i.response));
        if !w.is_empty() && r.windows(w.len()).any(|x| x == w.as_slice()) {
            Verdict::pass()
        } else {
            Verdict::fail(format!("reference {want:?} not in the answer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(answer: Value, response: &str) -> bool {
        let rec = json!({"answer": answer});
        AnswerCheck
            .check(&Input {
                prompt: "q",
                response,
                record: &rec,
            })
            .pass
    }

    /// A spec's verifiers find their references on a test item: configs/sql.toml's SQL
    /// verifier (`gold = "meta.steps.gold"`) on an item carrying `gold`.
    #[test]
    fn spec_verifiers_read_references_from_the_item() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let spec = crate::spec::Spec::load(&root.join("configs/sql.toml")).unwrap();
        let v = crate::verify::verifiers::build(&spec.verifiers[0], &root.join("configs"))
            .unwrap()
            .unwrap();
        let raw = json!({"prompt": "count the products", "gold": "SELECT COUNT(*) FROM products"});
        let it = Item {
            id: "q".into(),
            key: "q#0".into(),
            messages: vec![],
            prompt: "count the products".into(),
            answer: None,
            category: None,
            raw,
        };
        let verdict = |resp: &str| {
            let r = item_record(&it, resp);
            v.check(&Input {
                prompt: &it.prompt,
                response: resp,
                record: &r,
            })
        };
        let good = verdict("```sql\nSELECT count(*) FROM products;\n```");
        assert!(good.pass, "{good:?}");
        let bad = verdict("SELECT 1");
        assert!(
            !bad.pass && !bad.reason.clone().unwrap_or_default().contains("no gold"),
            "{bad:?}"
        );
    }

    #[test]
    fn answer_check_compares_numbers_and_whole_words() {
        assert!(check(json!(42), "17 + 25 = 42."));
        assert!(check(json!("42"), "The answer is 42"));
        assert!(!check(json!(42), "It is 41, not 42? No: 41"));
        assert!(check(json!("1,000"), "one thousand: 1000"));
        assert!(check(json!("Paris"), "The capital of France is Paris."));
        assert!(check(json!("New York"), "It is in new york, USA"));
        assert!(!check(json!("Paris"), "Parisian cafés"));
        assert!(!check(json!("Paris"), ""));
        assert!(!check(Value::Null, "Paris"));
    }
}
