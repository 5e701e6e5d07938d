//! `flywheel eval`: base vs tuned on a real held-out set.

use super::{install_ctrlc, Ctx, DeviceFlag, OfflineFlag};
use anyhow::{Context, Result};
use clap::Args;
use flywheel::eval::{self, EvalOptions};
use flywheel::spec::{Rubric, Spec, VerifierSpec};
use flywheel::verify::{judge, verifiers};
use std::path::{Path, PathBuf};

/// Arguments of `flywheel eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The models to compare, base first, then tuned: built-in ids, GGUF files or Hugging
    /// Face safetensors folders (as `teacher.model` takes them). Give it twice.
    #[arg(long = "model", required = true, num_args = 1)]
    models: Vec<String>,
    /// The held-out test set: JSONL with `prompt` (or chat `messages`), and optionally
    /// `answer` (checked by the math/exact answer verifier), `category`, `id`.
    #[arg(long)]
    set: PathBuf,
    /// Output directory: answers.jsonl and scores.jsonl (the journal a rerun resumes
    /// from), eval.json and eval.html. Default: runs/eval-<set file stem>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Judge model for the pointwise and pairwise judge metrics.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    judge: String,
    /// No judge metrics (verifiers only).
    #[arg(long, conflicts_with_all = ["rubric", "criteria"])]
    no_judge: bool,
    /// Rubric file for the pointwise judge (TOML: criteria, scale, optional system).
    #[arg(long, conflicts_with = "criteria")]
    rubric: Option<PathBuf>,
    /// The pointwise judge's criteria inline (scale yes-no).
    #[arg(long)]
    criteria: Option<String>,
    /// A verifier for every answer besides the automatic answer check: json or refusal.
    /// Anything configured (json schema, python_tests, sql, regex, …) comes from --spec.
    #[arg(long = "verifier")]
    verifiers: Vec<String>,
    /// A spec whose [[verifier]] sections apply to every answer (they read their
    /// references from the test item's fields) and whose first [[judge]] is the judge
    /// unless --judge/--rubric/--criteria say otherwise.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// The training blend (e.g. runs/<name>/dataset.jsonl): test items that share a
    /// 13-word window with it or embed close to one of its records are reported and left
    /// out of every score.
    #[arg(long)]
    train: Option<PathBuf>,
    /// Cosine at or above which a test prompt counts as a near-copy of a training record.
    #[arg(long, default_value_t = 0.9)]
    contamination_cosine: f32,
    /// Longest answer, in tokens (greedy decoding).
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Answers generated (and judge items scored) per forward pass. Does not change them.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Significance level of the paired test.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Seed of the bootstrap (the report is reproducible).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
}

const DEFAULT_CRITERIA: &str =
    "The answer is correct, answers exactly the question asked, and is clear and complete.";

pub fn eval(a: EvalArgs, cx: &Ctx) -> Result<()> {
    if a.models.len() != 2 {
        anyhow::bail!(
            "give exactly two models, base then tuned: --model BASE --model TUNED ({} given)",
            a.models.len()
        );
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        anyhow::bail!("--alpha {} must be between 0 and 1 (e.g. 0.05)", a.alpha);
    }
    let spec = a
        .spec
        .as_deref()
        .map(Spec::load)
        .transpose()
        .context("--spec")?;
    let mut verifier_specs: Vec<VerifierSpec> =
        spec.as_ref().map_or_else(Vec::new, |s| s.verifiers.clone());
    for v in &a.verifiers {
        verifier_specs.push(match v.as_str() {
            "json" => VerifierSpec::Json { schema: None },
            "refusal" => VerifierSpec::Refusal {},
            other => anyhow::bail!(
                "--verifier {other}: use json or refusal here; configure others (a schema, python_tests, sql, regex) in a spec's [[verifier]] and pass --spec"
            ),
        });
    }
    let base_dir = spec
        .as_ref()
        .and_then(|s| s.path.parent())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut built = Vec::new();
    for v in &verifier_specs {
        if let Some(b) = verifiers::build(v, &base_dir).map_err(anyhow::Error::msg)? {
            built.push(b);
        }
    }
    let spec_judge = spec.as_ref().and_then(|s| s.judges.first());
    let judge = if a.no_judge {
        None
    } else {
        let rubric = match (&a.rubric, &a.criteria, spec_judge) {
            (Some(f), _, _) => judge::load_rubric(f).map_err(anyhow::Error::msg)?,
            (None, Some(c), _) => Rubric {
                criteria: c.clone(),
                scale: "yes-no".into(),
                system: None,
                rationale: false,
            },
            (None, None, Some(j)) => j.rubric.clone(),
            (None, None, None) => Rubric {
                criteria: DEFAULT_CRITERIA.into(),
                scale: "yes-no".into(),
                system: None,
                rationale: false,
            },
        };
        let model = match spec_judge {
            Some(j) if a.judge == "smollm2-135m-instruct" => j.model.clone(),
            _ => a.judge.clone(),
        };
        Some((model, rubric))
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .set
            .file_stem()
            .map_or("set".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("runs").join(format!("eval-{stem}"))
    });
    let runtime = a.device.runtime(cx)?;
    install_ctrlc();
    let opts = EvalOptions {
        models: a.models,
        set: a.set,
        out: out.clone(),
        judge,
        verifiers: built,
        verifier_specs: verifier_specs
            .iter()
            .map(|v| serde_json::to_value(v).unwrap_or_default())
            .collect(),
        device: runtime.device,
        precision: runtime.precision,
        fetch: a.offline.policy(),
        batch_size: a.batch_size,
        max_new_tokens: a.max_new_tokens.max(1),
        alpha: a.alpha,
        resamples: a.resamples.max(100),
        seed: a.seed,
        train: a.train,
        contamination_cosine: a.contamination_cosine,
        embedder: "all-minilm-l6-v2".into(),
        progress: cx.progress,
    };
    let r = eval::run(&opts)?;
    println!("{}", table(&r));
    println!(
        "report: {} and {}",
        out.join("eval.html").display(),
        out.join("eval.json").display()
    );
    Ok(())
}

/// The results as a plain-text table, then the verdicts in words.
fn table(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.3}"));
    let ci =
        |e: &serde_json::Value| format!("{} [{}, {}]", f(&e["mean"]), f(&e["lo"]), f(&e["hi"]));
    let mut out = vec![
        format!("| metric | n | base | tuned | tuned − base | p (sign) | |"),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for m in r["metrics"].as_array().into_iter().flatten() {
        out.push(format!(
            "| {} | {} | {} | {} | {} | {:.4} | {} |",
            m["metric"].as_str().unwrap_or(""),
            m["n"],
            ci(&m["base"]),
            ci(&m["tuned"]),
            ci(&m["diff"]),
            m["p_sign"].as_f64().unwrap_or(1.0),
            if m["significant"].as_bool().unwrap_or(false) {
                "significant"
            } else {
                "not significant"
            }
        ));
    }
    for m in r["metrics"].as_array().into_iter().flatten() {
        if let Some(d) = m["position_disagreement"].as_f64() {
            out.push(format!(
                "pairwise judge: the two orders disagree on {:.0}% of items (position bias; both orders are averaged)",
                d * 100.0
            ));
        }
    }
    for w in r["summary"].as_array().into_iter().flatten() {
        out.push(w.as_str().unwrap_or("").to_string());
    }
    out.join("\n")
}
