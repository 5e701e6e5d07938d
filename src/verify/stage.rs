//! The verify stage: any JSONL of records in → the same records with `scores` attached
//! out. Every input record is written (a record the judges cannot read gets
//! `scores.errors` instead), batches are appended as they finish, and a rerun skips ids
//! already in the output.

use super::judge::{combine, Combine, Judge, JudgeItem, JudgeScore};
use super::verifiers::{self, answers_equal, extract_answer, Input, Verdict, Verifier};
use crate::engine::{device, Llm, Runtime};
use crate::error::{Error, Result};
use crate::models::{resolve, FetchPolicy};
use crate::record::lines::{self, BadLine};
use crate::record::{read_input, View};
use crate::spec::{JudgeSpec, Scope, Spec, VerifierSpec};
use crate::store::manifest::{ModelEntry, StageStatus};
use crate::store::{JsonlWriter, Manifest, RunDir};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Command-line settings for a verify run.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Device and matmul precision of the judges.
    pub runtime: Runtime,
    /// Overrides every judge's batch size.
    pub batch_size: Option<usize>,
    pub limit: Option<usize>,
    pub progress: bool,
    pub fetch: FetchPolicy,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            runtime: Runtime::default(),
            batch_size: None,
            limit: None,
            progress: false,
            fetch: FetchPolicy::from_env(),
        }
    }
}

/// What a verify run did.
#[derive(Debug, Clone, Default)]
pub struct VerifySummary {
    pub output: PathBuf,
    pub records: usize,
    pub already_done: usize,
    pub written: usize,
    /// Records the judges could not read (no prompt/response); written with `scores.errors`.
    pub unreadable: usize,
    /// Input lines that are not JSON records; written as `bad_input` records with
    /// `scores.errors`, so nothing is lost.
    pub bad_lines: Vec<BadLine>,
    /// (record id, why) for records a judge could not score (a prompt longer than its
    /// window); written with `scores.errors`.
    pub not_judged: Vec<(String, String)>,
    pub judge_items: usize,
    pub judge_seconds: f64,
    pub wall_seconds: f64,
    /// Pearson correlation of normalized scores for each pair of judges, over the
    /// records scored in this run (how much the judges agree across the dataset).
    pub judge_agreement: Vec<(String, String, f64)>,
    /// The judge models used, as resolved (for the manifest).
    pub models: Vec<ModelEntry>,
}

/// What `flywheel verify` and `flywheel judge` print: the counts, rate and file, then how
/// much each pair of judges agrees.
impl std::fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.judge_seconds > 0.0 {
            format!(
                ", judged {:.2} items/s",
                self.judge_items as f64 / self.judge_seconds
            )
        } else {
            String::new()
        };
        write!(
            f,
            "verify: {} records, {} already done, {} written ({} unreadable, {} bad input lines, {} not judged; kept with scores.errors) in {:.1}s{rate} → {}",
            self.records,
            self.already_done,
            self.written,
            self.unreadable,
            self.bad_lines.len(),
            self.not_judged.len(),
            self.wall_seconds,
            self.output.display()
        )?;
        for (a, b, r) in &self.judge_agreement {
            write!(
                f,
                "\njudge agreement {a} ~ {b}: Pearson r = {r:.3} over the records scored now"
            )?;
        }
        Ok(())
    }
}

impl VerifySummary {
    /// The line `flywheel run` prints after `[2/6] verify:`.
    pub fn run_line(&self) -> String {
        let mut line = format!(
            "{} records, {} already done, {} scored in {:.1}s",
            self.records, self.already_done, self.written, self.wall_seconds
        );
        if !self.bad_lines.is_empty() || !self.not_judged.is_empty() {
            line.push_str(&format!(
                " ({} bad input lines, {} not judged: kept with scores.errors)",
                self.bad_lines.len(),
                self.not_judged.len()
            ));
        }
        line
    }
}

/// What to score with: the judges, the verifiers, and how judges combine.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    pub judges: &'a [JudgeSpec],
    pub verifiers: &'a [VerifierSpec],
    pub combine: Combine,
    /// What of a multi-turn record is scored.
    pub scope: Scope,
    /// Where verifier files (schemas, word lists) resolve from.
    pub base_dir: &'a Path,
}

/// `flywheel verify SPEC`: `<run>/generated.jsonl` (or `input`) → `<run>/verified.jsonl` (or `output`).
/// Bad input lines are recorded and skipped (see [`run_spec_with`]).
pub fn run_spec(
    spec: &Spec,
    input: Option<&Path>,
    output: Option<&Path>,
    opts: &VerifyOptions,
) -> Result<VerifySummary> {
    run_spec_with(spec, input, output, opts, false)
}

/// [`run_spec`]; with `strict`, the first bad input line is an error naming `file:line`.
pub fn run_spec_with(
    spec: &Spec,
    input: Option<&Path>,
    output: Option<&Path>,
    opts: &VerifyOptions,
    strict: bool,
) -> Result<VerifySummary> {
    if spec.judges.is_empty() && spec.verifiers.is_empty() {
        return Err(Error::Spec(format!(
            "{}: nothing to verify with: add a [[judge]] (model + criteria) or a [[verifier]] section",
            spec.path.display()
        )));
    }
    let dir = RunDir::new(spec.run_dir());
    let run_dir = dir.path();
    let input = RunDir::input(
        input,
        dir.generated(),
        &format!("generate {}", spec.path.display()),
    )?;
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.verified());
    let base = spec.path.parent().unwrap_or(Path::new("."));
    // Writing into the run directory: one writer at a time there.
    let _lock = if output.parent() == Some(run_dir) {
        Some(crate::store::create_run_dir(run_dir)?)
    } else {
        None
    };
    let checks = Checks {
        judges: &spec.judges,
        verifiers: &spec.verifiers,
        combine: spec.verify.combine,
        scope: spec.verify.scope,
        base_dir: base,
    };
    let summary = run(&input, &output, &checks, opts, strict)?;
    if output.parent() == Some(run_dir) {
        record_in_manifest(run_dir, spec, &summary)?;
    }
    Ok(summary)
}

fn record_in_manifest(run_dir: &Path, spec: &Spec, s: &VerifySummary) -> Result<()> {
    let mut st = StageStatus {
        status: "done".into(),
        planned: s.records,
        done: s.already_done + s.written,
        written_this_run: s.written,
        wall_seconds: s.wall_seconds,
        ..Default::default()
    };
    st.extra.insert("unreadable".into(), s.unreadable.into());
    st.extra
        .insert("bad_input".into(), s.bad_lines.len().into());
    st.extra
        .insert("not_judged".into(), s.not_judged.len().into());
    if !s.judge_agreement.is_empty() {
        let pairs: Vec<Value> = s
            .judge_agreement
            .iter()
            .map(|(a, b, r)| json!({"judges": [a, b], "pearson": r}))
            .collect();
        st.extra
            .insert("judge_agreement".into(), Value::Array(pairs));
    }
    st.extra.insert(
        "judge_items_per_s".into(),
        json!(if s.judge_seconds > 0.0 {
            s.judge_items as f64 / s.judge_seconds
        } else {
            0.0
        }),
    );
    let mut judges = Vec::new();
    for j in &spec.judges {
        if let Ok(r) = resolve(&j.model, FetchPolicy::Offline) {
            judges.push(ModelEntry {
                role: format!("judge:{}", j.name),
                id: r.id.clone(),
                file: r.main_file().path.display().to_string(),
                sha256: r.main_file().sha256.clone(),
            });
        }
    }
    Manifest::mark_stage(run_dir, (&spec.path, spec.sha256()), "verify", st, &judges)
}

/// Scores `input` into `output` with the given judges and verifiers. A line that is not a
/// JSON record is written as a `bad_input` record with `scores.errors` (or, with `strict`,
/// is an error naming `file:line`).
pub fn run(
    input: &Path,
    output: &Path,
    checks: &Checks<'_>,
    opts: &VerifyOptions,
    strict: bool,
) -> Result<VerifySummary> {
    let Checks {
        judges,
        verifiers: verifier_specs,
        combine: how,
        scope,
        base_dir,
    } = *checks;
    let started = Instant::now();
    let (mut records, bad_lines) = read_input(input, strict)?;
    // What a score is made from: the record as read, and everything that scores it. A
    // record in the output counts as done only while both are unchanged; edit the rubric,
    // swap the judge's weights or regenerate the record, and it is scored again.
    let scoring = scoring_key(judges, verifier_specs, how, scope, base_dir, opts)?;
    let expected: HashMap<String, String> = records
        .iter()
        .map(|r| (id_of(r).to_string(), record_fingerprint(&scoring, r)))
        .collect();
    let moved = crate::store::move_aside(output, "rescored", |v| match expected.get(id_of(v)) {
        None => Some("not in the input".into()),
        Some(fp) if v["scores"]["fingerprint"].as_str() != Some(fp.as_str()) => {
            Some("scored from another input or with other judges, rubric or verifiers".into())
        }
        Some(_) => None,
    })?;
    if let Some(to) = &moved.to {
        eprintln!(
            "note: moved {} records of {} to {}: {}; they are scored again",
            moved.count(),
            output.display(),
            to.display(),
            moved.describe()
        );
    }
    if let Some(l) = opts.limit {
        records.truncate(l);
    }
    // Here rather than in the CLI, so `flywheel run` names them too.
    lines::warn(input, &bad_lines, "written with scores.errors");
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
    }
    let (mut writer, existing) = JsonlWriter::open(output)?;
    let mut summary = VerifySummary {
        output: output.to_path_buf(),
        records: records.len(),
        bad_lines,
        ..Default::default()
    };

    // Verifiers, with duplicate kinds numbered so no result overwrites another.
    let mut verifiers: Vec<(String, Box<dyn Verifier>)> = Vec::new();
    let mut consistency = false;
    for spec in verifier_specs {
        if let VerifierSpec::MathAnswer {
            self_consistency: true,
            ..
        } = spec
        {
            consistency = true;
        }
        if let Some(v) = verifiers::build(spec, base_dir).map_err(Error::Spec)? {
            let base = v.name().to_string();
            let n = verifiers
                .iter()
                .filter(|(k, _)| k == &base || k.starts_with(&format!("{base}#")))
                .count();
            let key = if n == 0 {
                base
            } else {
                format!("{base}#{}", n + 1)
            };
            verifiers.push((key, v));
        }
    }
    let extracted: Vec<std::result::Result<(String, String), String>> = records
        .iter()
        .map(|r| View::new(r).prompt_response_in(scope))
        .collect();
    let majority = if consistency {
        majorities(&extracted)
    } else {
        HashMap::new()
    };

    let pending: Vec<usize> = (0..records.len())
        .filter(|&i| !existing.ids.contains(id_of(&records[i])))
        .collect();
    summary.already_done = records.len() - pending.len();
    if pending.is_empty() {
        summary.wall_seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // Load each judge model once, then the judges.
    let (dev, precision) = (&opts.runtime.device, opts.runtime.precision);
    let mut llms: HashMap<&str, (std::rc::Rc<Llm>, String)> = HashMap::new();
    for j in judges {
        if !llms.contains_key(j.model.as_str()) {
            let m = resolve(&j.model, opts.fetch)?;
            let file = m.main_file().path.display().to_string();
            llms.insert(
                j.model.as_str(),
                (crate::runtime::llm(&m, dev, precision, None)?, file),
            );
        }
        let (llm, file) = &llms[j.model.as_str()];
        summary.models.push(ModelEntry {
            role: format!("judge:{}", j.name),
            id: llm.info.model.clone(),
            file: file.clone(),
            sha256: llm.info.file_sha256.clone(),
        });
    }
    let loaded: Vec<(Judge<'_>, usize)> = judges
        .iter()
        .map(|j| {
            Ok((
                Judge::new(
                    &j.name,
                    &llms[j.model.as_str()].0,
                    j.rubric.clone(),
                    j.max_tokens,
                )?,
                opts.batch_size.unwrap_or(j.batch_size),
            ))
        })
        .collect::<Result<_>>()?;
    let chunk = loaded.iter().map(|(_, b)| *b).max().unwrap_or(64).max(1);

    let pb = crate::progress::bar(pending.len(), opts.progress, "verify");
    let mut by_judge: Vec<Vec<f64>> = vec![Vec::new(); loaded.len()];
    for idxs in pending.chunks(chunk) {
        if crate::engine::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let readable: Vec<usize> = idxs
            .iter()
            .copied()
            .filter(|&i| extracted[i].is_ok())
            .collect();
        let items: Vec<JudgeItem> = readable
            .iter()
            .map(|&i| {
                let (p, r) = extracted[i].as_ref().expect("filtered to readable");
                JudgeItem {
                    prompt: p.clone(),
                    response: r.clone(),
                }
            })
            .collect();
        let mut per_judge: Vec<Vec<std::result::Result<JudgeScore, String>>> = Vec::new();
        let t0 = Instant::now();
        for (judge, batch) in &loaded {
            per_judge.push(judge.score_each(&items, *batch)?);
        }
        if !loaded.is_empty() {
            summary.judge_items += items.len();
            summary.judge_seconds += t0.elapsed().as_secs_f64();
        }
        // Verifier verdicts for the chunk's readable records, each verifier over all of
        // them at once (those that run code run them in parallel).
        let inputs: Vec<Input<'_>> = readable
            .iter()
            .map(|&i| {
                let (p, r) = extracted[i].as_ref().expect("filtered to readable");
                Input {
                    prompt: p,
                    response: r,
                    record: &records[i],
                }
            })
            .collect();
        let mut verdicts: Vec<Vec<Verdict>> = verifiers
            .iter()
            .map(|(_, v)| v.check_many(&inputs))
            .collect();
        for &i in idxs {
            let mut rec = records[i].clone();
            let mut scores: Map<String, Value> = rec
                .get("scores")
                .and_then(|s| s.as_object())
                .cloned()
                .unwrap_or_default();
            match &extracted[i] {
                Err(e) => {
                    if rec.get("bad_input").is_none() {
                        summary.unreadable += 1;
                    }
                    scores.insert("errors".into(), json!([e]));
                }
                Ok((prompt, response)) => {
                    let pos = readable.iter().position(|&r| r == i).expect("readable");
                    if !loaded.is_empty() {
                        let mut mine: Vec<JudgeScore> = Vec::new();
                        let mut errors: Vec<String> = Vec::new();
                        for v in &per_judge {
                            match &v[pos] {
                                Ok(s) => mine.push(s.clone()),
                                Err(why) => errors.push(why.clone()),
                            }
                        }
                        let mut jmap = Map::new();
                        for s in &mine {
                            jmap.insert(
                                s.judge.clone(),
                                serde_json::to_value(s).unwrap_or(Value::Null),
                            );
                        }
                        scores.insert("judge".into(), Value::Object(jmap));
                        if errors.is_empty() {
                            for (k, s) in mine.iter().enumerate() {
                                by_judge[k].push(s.normalized);
                            }
                            if let Some((score, agreement)) = combine(&mine, how) {
                                scores.insert("judge_combined".into(), json!({"score": score, "agreement": agreement, "combine": how, "judges": mine.len()}));
                            }
                        } else {
                            // No combined score from some of the judges: a keep-rule on it
                            // then rejects the record as `judge:missing`, never passes it.
                            summary
                                .not_judged
                                .push((id_of(&records[i]).to_string(), errors.join("; ")));
                            scores.insert("errors".into(), json!(errors));
                        }
                    }
                    let mut vmap = Map::new();
                    for ((key, _), vs) in verifiers.iter().zip(verdicts.iter_mut()) {
                        let v = std::mem::replace(&mut vs[pos], Verdict::pass());
                        vmap.insert(key.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
                    }
                    if consistency {
                        vmap.insert(
                            "math_consistency".into(),
                            serde_json::to_value(consistency_verdict(prompt, response, &majority))
                                .unwrap_or(Value::Null),
                        );
                    }
                    if !vmap.is_empty() {
                        scores.insert("verifiers".into(), Value::Object(vmap));
                    }
                }
            }
            if let Some(fp) = expected.get(id_of(&records[i])) {
                scores.insert("fingerprint".into(), fp.clone().into());
            }
            if let Some(o) = rec.as_object_mut() {
                o.insert("scores".into(), Value::Object(scores));
            }
            writer.append(&rec)?;
            summary.written += 1;
            pb.inc(1);
        }
        writer.sync()?;
        if summary.judge_seconds > 0.0 {
            pb.set_message(format!(
                "{:.1} items/s",
                summary.judge_items as f64 / summary.judge_seconds
            ));
        }
    }
    pb.finish_and_clear();
    for (id, why) in &summary.not_judged {
        eprintln!("warning: record {id}: {why} (written with scores.errors)");
    }
    for a in 0..loaded.len() {
        for b in a + 1..loaded.len() {
            if let Some(r) = pearson(&by_judge[a], &by_judge[b]) {
                summary.judge_agreement.push((
                    loaded[a].0.name.clone(),
                    loaded[b].0.name.clone(),
                    r,
                ));
            }
        }
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Bumped when the judge's prompt or scoring changes in a way that changes scores.
pub const SCORING_REVISION: u32 = 2;

/// Everything that decides a record's scores except the record: the judges (weights by
/// sha256, rubric, window), the verifiers, how scores combine, the device and precision.
fn scoring_key(
    judges: &[JudgeSpec],
    verifier_specs: &[VerifierSpec],
    how: Combine,
    scope: Scope,
    base_dir: &Path,
    opts: &VerifyOptions,
) -> Result<String> {
    let mut js = Vec::new();
    let mut runtime = Value::Null;
    if !judges.is_empty() {
        let rt = &opts.runtime;
        runtime = json!({"device": device::name(&rt.device), "dtype": rt.precision.name()});
    }
    for j in judges {
        let m = resolve(&j.model, opts.fetch)?;
        let mut entry = json!({
            "name": j.name,
            "model_sha256": m.main_file().sha256,
            "rubric": format!("{:?}", j.rubric),
            "max_tokens": j.max_tokens,
        });
        if let Some(c) = crate::engine::model::changed_outputs(&m.main_file().path) {
            entry["engine_changed"] = json!(c);
        }
        js.push(entry);
    }
    // A verifier's files are part of it: edit the schema or the database and the verdicts
    // are stale.
    let files: Vec<String> = verifier_files(verifier_specs)
        .iter()
        .map(|f| {
            let p = base_dir.join(f);
            std::fs::read(&p)
                .map(|b| crate::models::checksum::sha256_bytes(&b))
                .unwrap_or_else(|_| "<absent>".into())
        })
        .collect();
    let key = json!({
        "revision": SCORING_REVISION,
        "verifier_files": files,
        "judges": js,
        "verifiers": format!("{verifier_specs:?}"),
        "combine": format!("{how:?}"),
        "runtime": runtime,
        "scope": scope,
    });
    Ok(key.to_string())
}

/// The files the verifiers read (JSON Schemas, SQL databases), relative to the spec.
pub fn verifier_files(verifier_specs: &[VerifierSpec]) -> Vec<&str> {
    verifier_specs
        .iter()
        .filter_map(|v| match v {
            VerifierSpec::Json { schema: Some(f) } => Some(f.as_str()),
            VerifierSpec::Sql { database, .. } => Some(database.as_str()),
            _ => None,
        })
        .collect()
}

/// The fingerprint stored in `scores.fingerprint`: the scoring key and the record as read.
fn record_fingerprint(scoring: &str, record: &Value) -> String {
    let mut r = record.clone();
    // An input that was scored before carries its old fingerprint: not part of its content.
    if let Some(s) = r.get_mut("scores").and_then(|s| s.as_object_mut()) {
        s.remove("fingerprint");
    }
    let body = format!("{scoring}\n{r}");
    crate::models::checksum::sha256_bytes(body.as_bytes())[..32].to_string()
}

/// Pearson correlation; `None` with fewer than 3 points or no variance.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let (mx, my) = (
        x[..n].iter().sum::<f64>() / n as f64,
        y[..n].iter().sum::<f64>() / n as f64,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (x[i] - mx, y[i] - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn id_of(v: &Value) -> &str {
    View::new(v).id().unwrap_or("")
}

/// Majority final answer per prompt (only prompts with two or more answers).
fn majorities(
    extracted: &[std::result::Result<(String, String), String>],
) -> HashMap<String, (String, usize, usize)> {
    let mut groups: HashMap<&str, Vec<String>> = HashMap::new();
    for (p, r) in extracted.iter().flatten() {
        if let Some(a) = extract_answer(r) {
            groups.entry(p.as_str()).or_default().push(a);
        }
    }
    let mut out = HashMap::new();
    for (p, answers) in groups {
        if answers.len() < 2 {
            continue;
        }
        // Count equal answers (numerically equal ones too); ties go to the earliest.
        let mut best: Option<(usize, &String)> = None;
        for a in &answers {
            let n = answers.iter().filter(|b| answers_equal(a, b)).count();
            if best.is_none_or(|(m, _)| n > m) {
                best = Some((n, a));
            }
        }
        if let Some((n, a)) = best {
            out.insert(p.to_string(), (a.clone(), n, answers.len()));
        }
    }
    out
}

fn consistency_verdict(
    prompt: &str,
    response: &str,
    majority: &HashMap<String, (String, usize, usize)>,
) -> Verdict {
    let Some(mine) = extract_answer(response) else {
        return Verdict::fail("no final answer found");
    };
    match majority.get(prompt) {
        None => Verdict::fail(
            "fewer than two samples of this prompt have an answer; nothing to agree with",
        ),
        Some((m, n, k)) if answers_equal(&mine, m) => Verdict {
            reason: Some(format!(
                "agrees with the majority answer {m:?} ({n} of {k})"
            )),
            ..Verdict::pass()
        },
        Some((m, n, k)) => Verdict::fail(format!(
            "answer {mine:?} differs from the majority {m:?} ({n} of {k})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(r: &Value) -> std::result::Result<(String, String), String> {
        View::new(r).prompt_response()
    }

    #[test]
    fn extract_handles_the_three_shapes_and_says_why_not() {
        let chat = json!({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]});
        assert_eq!(extract(&chat).unwrap(), ("Q".into(), "A".into()));
        assert_eq!(
            extract(&json!({"prompt": "Q", "response": "A"})).unwrap().1,
            "A"
        );
        assert_eq!(
            extract(&json!({"instruction": "Q", "input": "x", "output": "A"}))
                .unwrap()
                .0,
            "Q\n\nx"
        );
        assert!(
            extract(&json!({"messages": [{"role": "user", "content": "Q"}]}))
                .unwrap_err()
                .contains("no assistant")
        );
        for empty in [
            json!({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " \n"}]}),
            json!({"prompt": "Q", "response": ""}),
            json!({"instruction": "Q", "output": "\t"}),
        ] {
            assert_eq!(
                extract(&empty).unwrap_err(),
                "the response is empty: nothing to judge"
            );
        }
        assert_eq!(
            extract(&json!({"prompt": "Q", "response": "🎉"}))
                .unwrap()
                .1,
            "🎉"
        );
        assert!(extract(&json!({"text": "hi"}))
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn pearson_basics() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
        assert!(pearson(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn self_consistency_majority() {
        let recs: Vec<std::result::Result<(String, String), String>> = vec![
            Ok(("2+2".into(), "it is 4".into())),
            Ok(("2+2".into(), "\\boxed{4.0}".into())),
            Ok(("2+2".into(), "the answer is 5".into())),
            Ok(("3+3".into(), "6".into())),
        ];
        let m = majorities(&recs);
        assert!(consistency_verdict("2+2", "4", &m).pass);
        assert!(!consistency_verdict("2+2", "5", &m).pass);
        assert!(
            !consistency_verdict("3+3", "6", &m).pass,
            "a single sample has nothing to agree with"
        );
    }
}
