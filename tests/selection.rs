//! Best-of-n and preference data on the shipped math example with the real SmolLM2:
//! `[filter] per_prompt` keeps the best (or first) passing sample of each problem, the
//! report's pass rates and pass@k agree with the verdicts, and the DPO/KTO exports read
//! back as pairs and labels that the verdicts justify.

mod common;

use common::{flywheel, model_file, run, stderr, stdout};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn read(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn prompt(r: &Value) -> String {
    format!("{}|{}", r["meta"]["task"], r["meta"]["vars"])
}

fn passed(r: &Value) -> bool {
    r["scores"]["verifiers"]["math_answer"]["pass"] == true
        && r["provenance"]["finish_reason"] != "length"
}

fn judge(r: &Value) -> f64 {
    r["scores"]["judge_combined"]["score"].as_f64().unwrap()
}

#[test]
fn best_of_n_pass_at_k_and_preference_pairs() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
    for f in ["math-verified.toml", "seeds/math-problems.jsonl"] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let go = || {
        let o = run(flywheel().current_dir(dir.path()).args([
            "run",
            "-q",
            "--device",
            "cpu",
            "math-verified.toml",
        ]));
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    };
    go();
    let rd = dir.path().join("runs/math-verified");
    let verified = read(&rd.join("verified.jsonl"));
    assert_eq!(verified.len(), 32);
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &verified {
        by.entry(prompt(r)).or_default().push(r);
    }
    assert_eq!(by.len(), 8);

    // per_prompt = "best": one record per solved prompt, the passing one the judge likes most.
    let kept = read(&rd.join("kept.jsonl"));
    let mut seen = std::collections::BTreeSet::new();
    for k in &kept {
        assert!(
            seen.insert(prompt(k)),
            "two records of one prompt kept: {k}"
        );
        assert!(passed(k), "{k}");
        let best = by[&prompt(k)]
            .iter()
            .filter(|r| passed(r))
            .map(|r| judge(r))
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(judge(k), best, "{k}");
    }
    let solved = by.values().filter(|g| g.iter().any(|r| passed(r))).count();
    assert_eq!(
        kept.len(),
        solved,
        "exact dedup could only lower this; here it must not"
    );

    // The report's pass rates, recomputed from the verdicts (the verifier's, without the
    // truncation rule: pass@k measures the verifier).
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("report.json")).unwrap()).unwrap();
    let row = &report["pass_rates"][0];
    let v = |r: &&&Value| r["scores"]["verifiers"]["math_answer"]["pass"] == true;
    let c: Vec<usize> = by.values().map(|g| g.iter().filter(v).count()).collect();
    assert_eq!(row["samples"], 32);
    assert_eq!(
        row["passed"].as_u64().unwrap() as usize,
        c.iter().sum::<usize>()
    );
    let p1 = c.iter().map(|&c| c as f64 / 4.0).sum::<f64>() / 8.0;
    assert!(
        (row["pass_at_1"].as_f64().unwrap() - p1).abs() < 1e-12,
        "{row}"
    );
    let pn = c.iter().filter(|&&c| c > 0).count() as f64 / 8.0;
    assert!(
        (row["pass_at_n"].as_f64().unwrap() - pn).abs() < 1e-12,
        "{row}"
    );
    assert_eq!(
        row["unsolved_prompts"].as_u64().unwrap() as usize,
        c.iter().filter(|&&c| c == 0).count()
    );
    eprintln!("math-verified: {row}");

    // DPO pairs, read back.
    let pairs = dir.path().join("pairs.jsonl");
    let o = run(flywheel()
        .arg("export")
        .arg(&rd)
        .args(["--format", "dpo", "--output"])
        .arg(&pairs));
    assert!(o.status.success(), "{}", stderr(&o));
    let id = |x: &Value| -> Value {
        verified
            .iter()
            .find(|r| r["id"] == *x)
            .cloned()
            .unwrap_or_else(|| panic!("unknown id {x}"))
    };
    let rows = read(&pairs);
    for p in &rows {
        let (ch, rj) = (id(&p["chosen_id"]), id(&p["rejected_id"]));
        assert_eq!(prompt(&ch), prompt(&rj));
        assert!(passed(&ch), "chosen must be verified: {ch}");
        assert!(!passed(&rj) || judge(&ch) - judge(&rj) >= 0.1, "{p}");
        assert_eq!(p["prompt"][0]["content"], ch["messages"][0]["content"]);
        assert_eq!(p["chosen"][0]["content"], ch["messages"][1]["content"]);
        assert_eq!(p["rejected"][0]["content"], rj["messages"][1]["content"]);
        assert_eq!(p["chosen"][0]["role"], "assistant");
    }
    // A prompt with a passing and a failing sample always gives a pair.
    let mixed = by
        .values()
        .filter(|g| g.iter().any(|r| passed(r)) && g.iter().any(|r| !passed(r)))
        .count();
    assert_eq!(rows.len(), mixed);
    let card = std::fs::read_to_string(dir.path().join("pairs.md")).unwrap();
    assert!(card.contains("chosen = the best sample"), "{card}");

    // KTO labels: every sample, labeled by its verdict.
    let kto = dir.path().join("kto.jsonl");
    let o = run(flywheel()
        .arg("export")
        .arg(&rd)
        .args(["--format", "kto", "--output"])
        .arg(&kto));
    assert!(o.status.success(), "{}", stderr(&o));
    let labels = read(&kto);
    assert_eq!(labels.len(), 32);
    for l in &labels {
        assert_eq!(l["label"], passed(&id(&l["id"])), "{l}");
    }

    // Unscored samples are no evidence: pairs from generated.jsonl are refused, naming
    // the lines, and nothing is written.
    let none = dir.path().join("none.jsonl");
    let o = run(flywheel()
        .arg("export")
        .arg(rd.join("generated.jsonl"))
        .args(["--format", "dpo", "--output"])
        .arg(&none));
    assert!(
        !o.status.success() && stderr(&o).contains("not scored"),
        "{}",
        stderr(&o)
    );
    assert!(!none.exists());

    // first_passing: the filter reruns (its settings changed) and keeps the lowest
    // sample index of each solved prompt.
    let spec = dir.path().join("math-verified.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("per_prompt = \"best\"", "per_prompt = \"first_passing\""),
    )
    .unwrap();
    go();
    let kept = read(&rd.join("kept.jsonl"));
    assert_eq!(kept.len(), solved);
    for k in &kept {
        let first = by[&prompt(k)]
            .iter()
            .filter(|r| passed(r))
            .map(|r| r["meta"]["sample_index"].as_u64().unwrap())
            .min()
            .unwrap();
        assert_eq!(k["meta"]["sample_index"].as_u64().unwrap(), first, "{k}");
    }
}
