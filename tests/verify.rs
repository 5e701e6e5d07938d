//! Verification end to end on the real SmolLM2 judge: valid probabilities, batch
//! invariance, good answers outscoring obviously bad ones, the verify stage on generated
//! records with resume, and clear handling of bad input.
mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/judge_labeled.jsonl")
}

fn read(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn judge_run(out: &Path, batch: &str, scale: &str) -> Vec<Value> {
    let o = run(flywheel()
        .args([
            "judge",
            "--criteria",
            "The answer is correct, on topic, complete and clearly written.",
            "--scale",
            scale,
            "--batch-size",
            batch,
            "--input",
        ])
        .arg(fixture())
        .arg("--output")
        .arg(out));
    assert!(o.status.success(), "{}", stderr(&o));
    read(out)
}

fn auroc(pos: &[f64], neg: &[f64]) -> f64 {
    let s: f64 = pos
        .iter()
        .flat_map(|p| {
            neg.iter().map(move |n| {
                if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    s / (pos.len() * neg.len()) as f64
}

#[test]
fn judge_probabilities_are_valid_batch_invariant_and_rank_obvious_failures() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    for scale in ["yes-no", "1-5"] {
        let one = judge_run(&dir.path().join(format!("b1-{scale}.jsonl")), "1", scale);
        let many = judge_run(&dir.path().join(format!("b8-{scale}.jsonl")), "8", scale);
        assert_eq!(one.len(), 40, "every record is written");
        let (mut pos, mut neg) = (vec![], vec![]);
        let mut margin = vec![];
        for (a, b) in one.iter().zip(&many) {
            assert_eq!(a["id"], b["id"]);
            let ja = &a["scores"]["judge"]["judge"];
            let jb = &b["scores"]["judge"]["judge"];
            let probs: Vec<f64> = ja["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert!(
                (probs.iter().sum::<f64>() - 1.0).abs() < 1e-9
                    && probs.iter().all(|p| (0.0..=1.0).contains(p))
            );
            let mass = ja["label_mass"].as_f64().unwrap();
            assert!(mass > 0.0 && mass <= 1.0 + 1e-9, "label mass {mass}");
            let s = ja["normalized"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&s));
            // Batched scores equal batch-1 scores (the engine is batch-invariant).
            assert!(
                (s - jb["normalized"].as_f64().unwrap()).abs() < 1e-4,
                "batch 1 vs 8: {ja} vs {jb}"
            );
            if a["label"] == 1 {
                pos.push(s)
            } else {
                neg.push(s)
            }
        }
        // Obviously bad answers (off-topic, refusals) score below the good answer to the same question.
        let good: std::collections::HashMap<&str, f64> = one
            .iter()
            .filter(|r| r["label"] == 1)
            .map(|r| {
                (
                    r["prompt"].as_str().unwrap(),
                    r["scores"]["judge"]["judge"]["normalized"]
                        .as_f64()
                        .unwrap(),
                )
            })
            .collect();
        for r in one
            .iter()
            .filter(|r| matches!(r["kind"].as_str(), Some("off-topic") | Some("refusal")))
        {
            margin.push(
                good[r["prompt"].as_str().unwrap()]
                    - r["scores"]["judge"]["judge"]["normalized"]
                        .as_f64()
                        .unwrap(),
            );
        }
        let mean_margin = margin.iter().sum::<f64>() / margin.len() as f64;
        let a = auroc(&pos, &neg);
        eprintln!("{scale}: AUROC over the 40-item labeled set {a:.3}; mean margin on off-topic/refusal pairs {mean_margin:.3}");
        // SmolLM2-135M measures 0.575 (yes-no) and 0.650 (1-5) here (README; 0.675 and 0.552
        // before the model's own chat template was used). With 20 good and 20 bad items the
        // AUROC's standard error is about 0.09, so a floor near the measured value is noise:
        // these floors only say the judge beats one that returns a constant (exactly 0.5).
        // The pairwise check below (the good answer outscores an off-topic one or a refusal
        // to the same question) is the sharper test of a working judge.
        let floor = 0.53;
        assert!(
            a >= floor,
            "{scale}: AUROC {a:.3} below {floor}: the judge no longer separates good from bad"
        );
        if scale == "yes-no" {
            assert!(
                mean_margin > 0.03,
                "good answers must outscore off-topic answers and refusals on average: {margin:?}"
            );
        }
    }
}

#[test]
fn verify_stage_scores_generated_records_and_resumes() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 2, 24, 0.7);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(
        r#"
[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."

[[judge]]
name = "quality5"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."
scale = "1-5"

[verify]
combine = "min"

[[verifier]]
kind = "length"
unit = "words"
min = 3

[[verifier]]
kind = "language"

[[verifier]]
kind = "refusal"

[[verifier]]
kind = "repetition"
"#,
    );
    std::fs::write(&spec, text).unwrap();
    let out = dir.path().join("r");
    let o = run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    // --out moved the run dir; point verify at the files explicitly.
    let verified = out.join("verified.jsonl");
    let o = run(flywheel()
        .arg("verify")
        .arg(&spec)
        .arg("--input")
        .arg(out.join("generated.jsonl"))
        .arg("--output")
        .arg(&verified));
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = read(&verified);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        let s = &r["scores"];
        for j in ["quality", "quality5"] {
            assert!(s["judge"][j]["probs"].is_array(), "{s}");
        }
        let (q, q5) = (
            s["judge"]["quality"]["normalized"].as_f64().unwrap(),
            s["judge"]["quality5"]["normalized"].as_f64().unwrap(),
        );
        assert!(
            (s["judge_combined"]["score"].as_f64().unwrap() - q.min(q5)).abs() < 1e-12,
            "combine = min"
        );
        for v in ["length", "language", "refusal", "repetition"] {
            assert!(s["verifiers"][v]["pass"].is_boolean(), "{v}: {s}");
        }
        assert_eq!(r["source"], "synthetic", "the record itself is kept");
    }
    let o = run(flywheel()
        .arg("verify")
        .arg(&spec)
        .arg("--input")
        .arg(out.join("generated.jsonl"))
        .arg("--output")
        .arg(&verified));
    assert!(
        stdout(&o).contains("4 already done, 0 written"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_verify_input_is_reported_not_dropped() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.jsonl");
    let long = "word ".repeat(3000);
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n{}\n",
            serde_json::json!({"id": "ok", "prompt": "What is 2+2?", "response": "4"}),
            serde_json::json!({"id": "nofields", "text": "just text"}),
            serde_json::json!({"id": "long", "prompt": "Say a lot.", "response": long}),
        ) + &format!(
            "{}\n",
            serde_json::json!({"id": "empty", "prompt": "Say something.", "response": " "})
        ),
    )
    .unwrap();
    let out = d.join("out.jsonl");
    let o = run(flywheel()
        .args([
            "judge",
            "--criteria",
            "Correct.",
            "--max-tokens",
            "256",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 unreadable"), "{}", stdout(&o));
    let recs = read(&out);
    assert_eq!(recs.len(), 4, "no record is dropped");
    // An empty answer is not judged (a score would read like a verdict on it).
    assert_eq!(
        recs[3]["scores"]["errors"][0],
        "the response is empty: nothing to judge"
    );
    assert!(recs[3]["scores"].get("judge").is_none());
    assert!(recs[1]["scores"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("neither"));
    assert_eq!(recs[2]["scores"]["judge"]["judge"]["truncated"], true);
    assert!(
        recs[2]["scores"]["judge"]["judge"]["prompt_tokens"]
            .as_u64()
            .unwrap()
            <= 256
    );

    // A scale whose labels are not single tokens, a regex that does not compile, an
    // invalid schema, a malformed input line: each a clear error.
    let o = run(flywheel()
        .args(["judge", "--criteria", "x", "--scale", "1-10", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(d.join("x.jsonl")));
    assert!(
        !o.status.success() && stderr(&o).contains("one digit"),
        "{}",
        stderr(&o)
    );
    let spec = write_spec(d, 1, 8, 0.0);
    let base = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{base}\n[[verifier]]\nkind = \"regex\"\nmust_match = [\"(unclosed\"]\n"),
    )
    .unwrap();
    let o = run(flywheel()
        .arg("verify")
        .arg(&spec)
        .arg("--input")
        .arg(&input));
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains("spec.toml:")
            && e.contains("verifier[0]")
            && e.contains("does not compile"),
        "{e}"
    );
    std::fs::write(d.join("schema.json"), "{\"type\": 12}").unwrap();
    std::fs::write(
        &spec,
        format!("{base}\n[[verifier]]\nkind = \"json\"\nschema = \"schema.json\"\n"),
    )
    .unwrap();
    let o = run(flywheel()
        .arg("verify")
        .arg(&spec)
        .arg("--input")
        .arg(&input));
    assert!(
        !o.status.success() && stderr(&o).contains("not a valid JSON Schema"),
        "{}",
        stderr(&o)
    );
}

/// Good records around one of each kind of bad line (lines 2–5).
fn hostile(path: &Path) {
    let mut f = Vec::new();
    f.extend_from_slice(b"{\"id\":\"ok1\",\"prompt\":\"What is 2+2?\",\"response\":\"4\"}\n");
    f.extend_from_slice(b"not json\n");
    f.extend_from_slice(b"{\"id\":\"latin1\",\"prompt\":\"caf\xe9\",\"response\":\"x\"}\n");
    f.extend_from_slice(b"{\"id\":\"sur\",\"prompt\":\"\\ud800\",\"response\":\"a\"}\n");
    f.extend_from_slice(&b"[".repeat(10_000));
    f.extend_from_slice(&b"]".repeat(10_000));
    f.extend_from_slice(
        b"\n{\"id\":\"ok2\",\"prompt\":\"Name a color.\",\"response\":\"Blue.\"}\n",
    );
    std::fs::write(path, f).unwrap();
}

/// verify and judge record every bad line (output + stderr, with its line number) and go
/// on; `--strict` fails on the first one, naming it.
#[test]
fn bad_lines_are_recorded_and_the_rest_scored_or_strict_fails() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("hostile.jsonl");
    hostile(&input);
    let spec = write_spec(d, 1, 8, 0.0);
    let base = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{base}\n[[verifier]]\nkind = \"length\"\nunit = \"words\"\nmin = 1\n"),
    )
    .unwrap();
    let judge = |out: &Path, strict: bool| {
        let mut c = flywheel();
        c.args(["judge", "--criteria", "Correct.", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(out);
        if strict {
            c.arg("--strict");
        }
        run(&mut c)
    };
    let verify = |out: &Path, strict: bool| {
        let mut c = flywheel();
        c.arg("verify")
            .arg(&spec)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(out);
        if strict {
            c.arg("--strict");
        }
        run(&mut c)
    };
    for (name, out, o, scored) in [
        (
            "judge",
            d.join("j.jsonl"),
            judge(&d.join("j.jsonl"), false),
            "/scores/judge/judge/score",
        ),
        (
            "verify",
            d.join("v.jsonl"),
            verify(&d.join("v.jsonl"), false),
            "/scores/verifiers/length/pass",
        ),
    ] {
        let e = stderr(&o);
        assert!(o.status.success(), "{name}: {e}");
        for line in 2..=5 {
            assert!(
                e.contains(&format!("hostile.jsonl:{line}: bad_input:")),
                "{name}: line {line} not named: {e}"
            );
        }
        assert!(
            stdout(&o).contains("4 bad input lines"),
            "{name}: {}",
            stdout(&o)
        );
        let recs = read(&out);
        assert_eq!(recs.len(), 6, "{name}: every line is carried to the output");
        for (i, r) in recs.iter().enumerate() {
            if i == 0 || i == 5 {
                assert!(
                    r.pointer(scored).is_some(),
                    "{name}: valid record not scored: {r}"
                );
            } else {
                assert_eq!(r["bad_input"]["line"], i as u64 + 1, "{name}: {r}");
                assert!(
                    r["scores"]["errors"][0]
                        .as_str()
                        .unwrap()
                        .starts_with("bad_input:"),
                    "{r}"
                );
            }
        }
        assert_eq!(
            recs[1]["bad_input"]["raw"], "not json",
            "the raw line is kept"
        );
    }
    for (name, o) in [
        ("judge", judge(&d.join("js.jsonl"), true)),
        ("verify", verify(&d.join("vs.jsonl"), true)),
    ] {
        assert!(!o.status.success(), "{name} --strict succeeded");
        assert!(
            stderr(&o).contains("hostile.jsonl:2:"),
            "{name}: {}",
            stderr(&o)
        );
    }
}

/// A user prompt longer than the judge's window costs that record its judge score (with
/// the reason in `scores.errors`), not the run.
#[test]
fn a_prompt_longer_than_the_judge_window_is_an_error_on_that_record_only() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n{}\n",
            serde_json::json!({"id": "a", "prompt": "What is 2+2?", "response": "4"}),
            serde_json::json!({"id": "huge", "prompt": "word ".repeat(3000), "response": "ok"}),
            serde_json::json!({"id": "b", "prompt": "Name a color.", "response": "Blue."}),
        ),
    )
    .unwrap();
    let out = d.join("out.jsonl");
    let o = run(flywheel()
        .args([
            "judge",
            "--criteria",
            "Correct.",
            "--max-tokens",
            "256",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("record huge:"), "{}", stderr(&o));
    let recs = read(&out);
    assert_eq!(recs.len(), 3);
    let why = recs[1]["scores"]["errors"][0].as_str().unwrap();
    assert!(
        why.contains("prompt_too_long") && why.contains("256"),
        "{why}"
    );
    assert!(recs[1]["scores"].get("judge_combined").is_none());
    for i in [0, 2] {
        assert!(
            recs[i]["scores"]["judge"]["judge"]["score"].is_f64(),
            "{}",
            recs[i]
        );
    }
}

/// `--rationale`: the judge writes one line of reasons, then a verdict held to the scale by
/// a grammar; the score is still read from the logits. Same at batch 1 and 4.
#[test]
fn a_rationale_judge_writes_reasons_then_a_label_of_its_scale() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("six.jsonl");
    let six: String = std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .take(6)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&input, six).unwrap();
    let go = |scale: &str, batch: &str| -> Vec<Value> {
        let out = dir.path().join(format!("r-{scale}-{batch}.jsonl"));
        let o = run(flywheel()
            .args([
                "judge",
                "--rationale",
                "--criteria",
                "The answer is correct.",
            ])
            .args(["--scale", scale, "--batch-size", batch, "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out));
        assert!(o.status.success(), "{}", stderr(&o));
        read(&out)
    };
    for (scale, labels) in [
        ("yes-no", vec!["yes", "no"]),
        ("1-5", vec!["1", "2", "3", "4", "5"]),
    ] {
        let one = go(scale, "1");
        let four = go(scale, "4");
        assert_eq!(one.len(), 6);
        for (a, b) in one.iter().zip(&four) {
            let j = &a["scores"]["judge"]["judge"];
            assert_eq!(j, &b["scores"]["judge"]["judge"], "batch 1 vs 4");
            let why = j["rationale"].as_str().unwrap();
            assert!(
                !why.is_empty() && !why.contains('\n') && why.chars().count() <= 300,
                "{j}"
            );
            assert!(labels.contains(&j["verdict"].as_str().unwrap()), "{j}");
            let p: f64 = j["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .sum();
            assert!((p - 1.0).abs() < 1e-9, "{j}");
        }
    }
}
