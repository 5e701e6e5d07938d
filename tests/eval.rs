//! `flywheel eval` end to end with two real models (SmolLM2-135M as the base, Gemma 3 270M
//! as the "tuned" one) on a small held-out set written for this test
//! (tests/fixtures/eval/test.jsonl: arithmetic with answers, short factual questions),
//! with the contamination guard against a training file that leaks two of its items, a
//! rerun that resumes everything, and a kill -9 mid-answers that resumes to the same report.

mod common;

use common::{flywheel, model_file, run, stderr, stdout};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

fn eval_cmd(out: &Path) -> std::process::Command {
    let mut c = flywheel();
    c.arg("eval")
        .args(["--model", "smollm2-135m-instruct", "--model", "gemma3-270m"])
        .arg("--set")
        .arg(fixture("test.jsonl"))
        .arg("--train")
        .arg(fixture("train.jsonl"))
        .args([
            "--max-new-tokens",
            "40",
            "--device",
            "cpu",
            "--resamples",
            "1000",
        ])
        .arg("--out")
        .arg(out);
    c
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn eval_compares_two_real_models_guards_contamination_and_resumes() {
    model_file("smollm2-135m-instruct");
    model_file("gemma3-270m");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e1");
    let o = run(&mut eval_cmd(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    eprintln!("{text}");
    let r: serde_json::Value = serde_json::from_str(&read(&out.join("eval.json"))).unwrap();

    // The guard: the two leaked items are found (the Red Planet question verbatim, the
    // Romeo and Juliet one inside a longer training prompt) and left out of every score.
    let flagged: Vec<&str> = r["contamination"]["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        flagged.contains(&"sci-3") && flagged.contains(&"lit-1"),
        "{flagged:?}"
    );
    assert!(!flagged.contains(&"add-1"), "{flagged:?}");
    let scored = r["set"]["scored"].as_u64().unwrap() as usize;
    assert_eq!(r["set"]["items"], 20);
    assert_eq!(scored, 20 - flagged.len());
    assert!(
        stderr(&o).contains("overlap the training blend"),
        "{}",
        stderr(&o)
    );

    // Every metric: both models' means inside their intervals, the paired difference
    // inside its own, a p-value, and the verdict consistent with it.
    let metrics = r["metrics"].as_array().unwrap();
    let names: Vec<&str> = metrics
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["verifier:answer", "judge:pointwise", "judge:pairwise"],
        "{r}"
    );
    for m in metrics {
        for k in ["base", "tuned", "diff"] {
            let e = &m[k];
            let (lo, mean, hi) = (
                e["lo"].as_f64().unwrap(),
                e["mean"].as_f64().unwrap(),
                e["hi"].as_f64().unwrap(),
            );
            assert!(lo <= mean + 1e-12 && mean <= hi + 1e-12, "{k} of {m}");
        }
        let p = m["p_sign"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{m}");
        assert_eq!(m["significant"].as_bool().unwrap(), p < 0.05, "{m}");
        let d = m["diff"]["mean"].as_f64().unwrap();
        let want = m["tuned"]["mean"].as_f64().unwrap() - m["base"]["mean"].as_f64().unwrap();
        assert!((d - want).abs() < 1e-9, "{m}");
        assert!(m["verdict"]
            .as_str()
            .unwrap()
            .contains(if m["significant"] == true {
                "significant at"
            } else {
                "not significant"
            }));
        // Both categories broken out.
        let cats: Vec<&str> = m["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["category"].as_str().unwrap())
            .collect();
        assert_eq!(cats, ["arithmetic", "facts"], "{m}");
    }
    // The answer check scores every scored item that carries an answer (all of them).
    assert_eq!(metrics[0]["n"].as_u64().unwrap() as usize, scored);
    let pw = &metrics[2];
    let dis = pw["position_disagreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&dis), "{pw}");
    assert!(text.contains("the two orders disagree on"), "{text}");
    // Where they differ most: real answers of both models.
    let diffs = r["largest_differences"].as_array().unwrap();
    assert!(!diffs.is_empty() && diffs.len() <= 10);
    assert!(diffs
        .iter()
        .all(|d| d["base"].is_string() && d["tuned"].is_string()));
    assert_eq!(r["models"][0]["model"], "smollm2-135m-instruct");
    assert_eq!(r["models"][1]["model"], "gemma3-270m");
    let html = read(&out.join("eval.html"));
    assert!(html.contains("<h1>flywheel eval</h1>") && html.contains("By category"));
    assert!(!html.contains("<script"), "the page runs no script");

    // A rerun resumes: nothing generated or judged again, the same report.
    let report = read(&out.join("eval.json"));
    let answers = read(&out.join("answers.jsonl"));
    let scores = read(&out.join("scores.jsonl"));
    let o2 = run(&mut eval_cmd(&out));
    assert!(o2.status.success(), "{}", stderr(&o2));
    for who in ["base", "tuned"] {
        assert!(
            stderr(&o2).contains(&format!("{who}: {scored} answers journaled, 0 to generate")),
            "{}",
            stderr(&o2)
        );
    }
    assert_eq!(read(&out.join("answers.jsonl")), answers);
    assert_eq!(read(&out.join("scores.jsonl")), scores);
    assert_eq!(read(&out.join("eval.json")), report);

    // kill -9 while answers are being written, then rerun: the same report, no answer
    // written twice.
    let out2 = dir.path().join("e2");
    let mut child = eval_cmd(&out2)
        .args(["--batch-size", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = out2.join("answers.jsonl");
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 3 || t0.elapsed().as_secs() > 300 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let kept: Vec<serde_json::Value> = read(&journal)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let before = kept.len();
    assert!(
        before >= 3 && before < 2 * scored,
        "killed after {before} answers"
    );
    // The base model answers first; its lines share the first line's key.
    let base_done = kept.iter().filter(|l| l["key"] == kept[0]["key"]).count();
    let o3 = run(&mut eval_cmd(&out2));
    assert!(o3.status.success(), "{}", stderr(&o3));
    assert!(
        stderr(&o3).contains(&format!("base: {base_done} answers journaled")),
        "{}",
        stderr(&o3)
    );
    let lines: Vec<serde_json::Value> = read(&journal)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: std::collections::HashSet<(String, String)> = lines
        .iter()
        .map(|l| (l["key"].to_string(), l["id"].to_string()))
        .collect();
    assert_eq!(keys.len(), lines.len(), "an answer was journaled twice");
    assert_eq!(lines.len(), 2 * scored);
    // Greedy answers on the CPU's Q8_0 path do not depend on the batch: the same report.
    assert_eq!(read(&out2.join("eval.json")), read(&out.join("eval.json")));

    // An item edited under the same id is answered again, not served a stale answer.
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        read(&fixture("test.jsonl")).replace("What is 8 + 5?", "What is 8 + 6?"),
    )
    .unwrap();
    let o4 = run(flywheel()
        .arg("eval")
        .args([
            "--model",
            "smollm2-135m-instruct",
            "--model",
            "gemma3-270m",
            "--set",
        ])
        .arg(&edited)
        .arg("--train")
        .arg(fixture("train.jsonl"))
        .args([
            "--max-new-tokens",
            "40",
            "--device",
            "cpu",
            "--no-judge",
            "--out",
        ])
        .arg(&out));
    assert!(o4.status.success(), "{}", stderr(&o4));
    for who in ["base", "tuned"] {
        assert!(
            stderr(&o4).contains(&format!(
                "{who}: {} answers journaled, 1 to generate",
                scored - 1
            )),
            "{}",
            stderr(&o4)
        );
    }
}

#[test]
fn eval_refuses_bad_input_with_the_line_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("bad.jsonl");
    std::fs::write(&set, "{\"prompt\": \"ok\"}\n{\"answer\": 1}\n").unwrap();
    let o = run(flywheel()
        .arg("eval")
        .args([
            "--model",
            "smollm2-135m-instruct",
            "--model",
            "gemma3-270m",
            "--set",
        ])
        .arg(&set)
        .arg("--out")
        .arg(dir.path().join("o")));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bad.jsonl:2: no `prompt`"),
        "{}",
        stderr(&o)
    );
    let o = run(flywheel()
        .arg("eval")
        .args(["--model", "smollm2-135m-instruct", "--set"])
        .arg(fixture("test.jsonl")));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("give exactly two models"),
        "{}",
        stderr(&o)
    );
    let o = run(flywheel()
        .arg("eval")
        .args(["--model", "a", "--model", "b", "--verifier", "sql", "--set"])
        .arg(fixture("test.jsonl")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--verifier sql"), "{}", stderr(&o));
}
