//! Nothing stale reaches the dataset: a stage is up to date only while all its outputs are
//! there and were made from exactly its current inputs. Each test is a way a user (or an
//! attacker) once got wrong data with exit code 0: a deleted intermediate file, an edited
//! rubric, an edited seed list, two runs at once, another precision; and plans that could
//! not be bounded.

mod common;

use common::{flywheel, model_file, run, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A small fast spec: `topics` × 2 audiences, 8 new tokens, no semantic dedup or distance check.
/// `judge` adds a judge with these criteria; `extra` is appended.
fn spec(dir: &Path, topics: &[&str], template: &str, judge: Option<&str>, extra: &str) -> PathBuf {
    let t: Vec<String> = topics.iter().map(|s| format!("{s:?}")).collect();
    let judge = judge
        .map(|c| {
            format!(
                "[[judge]]\nname = \"quality\"\nmodel = \"smollm2-135m-instruct\"\ncriteria = {c:?}\nbatch_size = 8\n"
            )
        })
        .unwrap_or_default();
    let text = format!(
        r#"[run]
name = "f"
seed = 5
out_dir = "{out}"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 8
batch_size = 8

[seeds]
topic = [{topics}]
audience = ["a child", "an expert"]

[[task]]
name = "explain"
template = {template:?}

{judge}
[filter]
require = []
# 8-token answers keep the test fast; truncation rejection has its own test.
allow_truncated = true

[dedup]
semantic = false

[privacy]
embedder = "none"

{extra}
"#,
        out = dir.join("runs").display(),
        topics = t.join(", "),
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn models() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(o), stderr(o));
    stdout(o)
}

/// The line `flywheel run` printed for `stage`.
fn stage_line(out: &str, stage: &str) -> String {
    out.lines()
        .find(|l| l.contains(&format!("] {stage}:")))
        .unwrap_or_else(|| panic!("no {stage} line in {out}"))
        .to_string()
}

#[test]
fn deleting_an_output_reruns_its_stage_and_blend_never_reads_around_the_audit() {
    models();
    let dir = tempfile::tempdir().unwrap();
    // Every prompt carries an email address, and the audit drops PII: nothing synthetic
    // may reach the dataset.
    let p = spec(
        dir.path(),
        &["tides", "magnets"],
        "Write to jane.roe@example.com about {{topic}} for {{audience}}.",
        None,
        "[blend]\nreal = [\"real.jsonl\"]\n",
    );
    std::fs::write(
        dir.path().join("real.jsonl"),
        r#"{"messages":[{"role":"user","content":"What is rain?"},{"role":"assistant","content":"Water falling from clouds."}]}"#
            .to_string()
            + "\n",
    )
    .unwrap();
    let p = {
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replace("[privacy]\n", "[privacy]\npii = \"drop\"\n");
        std::fs::write(&p, t).unwrap();
        p
    };
    let rd = dir.path().join("runs/f");
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(stage_line(&out, "audit").contains("4 dropped"), "{out}");
    let no_pii = |rd: &Path| {
        for r in lines(&rd.join("dataset.jsonl")) {
            assert!(
                !r.to_string().contains("jane.roe"),
                "PII in the dataset: {r}"
            );
            assert_eq!(r["source"], "real", "{r}");
        }
    };
    no_pii(&rd);

    std::fs::remove_file(rd.join("audited.jsonl")).unwrap();
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    let audit = stage_line(&out, "audit");
    assert!(
        !audit.contains("up to date"),
        "audit skipped with its output gone: {out}"
    );
    assert!(audit.contains("4 dropped"), "{out}");
    no_pii(&rd);
    assert!(rd.join("audited.jsonl").exists());

    // Standalone blend reads the audit's output or nothing.
    std::fs::remove_file(rd.join("audited.jsonl")).unwrap();
    let o = run(flywheel().arg("blend").arg(&p));
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("audited.jsonl does not exist"),
        "{}",
        stderr(&o)
    );
    no_pii(&rd);

    // An output edited by hand is not "up to date" either.
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(!stage_line(&out, "audit").contains("up to date"), "{out}");
    // The audit made the same (empty) file again: blend's inputs and outputs are as they
    // were, so blend is rightly up to date.
    assert!(stage_line(&out, "blend").contains("up to date"), "{out}");
    std::fs::write(rd.join("dataset.jsonl"), "").unwrap();
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(!stage_line(&out, "blend").contains("up to date"), "{out}");
    assert_eq!(lines(&rd.join("dataset.jsonl")).len(), 1);
}

#[test]
fn editing_the_rubric_rescores_every_record() {
    models();
    let dir = tempfile::tempdir().unwrap();
    let p = spec(
        dir.path(),
        &["tides", "magnets"],
        "Explain {{topic}} to {{audience}}.",
        Some("The answer is correct."),
        "",
    );
    let rd = dir.path().join("runs/f");
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(stage_line(&out, "verify").contains("4 scored"), "{out}");
    let before = lines(&rd.join("verified.jsonl"));
    assert_eq!(before.len(), 4);

    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("The answer is correct.", "The answer is written in French.");
    std::fs::write(&p, t).unwrap();
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    let v = stage_line(&out, "verify");
    assert!(
        v.contains("0 already done") && v.contains("4 scored"),
        "stale scores kept: {out}"
    );
    let after = lines(&rd.join("verified.jsonl"));
    assert_eq!(after.len(), 4, "one scored record per generated record");
    for b in &before {
        let a = after.iter().find(|a| a["id"] == b["id"]).unwrap();
        assert_ne!(a["scores"]["fingerprint"], b["scores"]["fingerprint"]);
        assert_ne!(
            a["scores"]["judge"]["quality"]["score"], b["scores"]["judge"]["quality"]["score"],
            "another criterion, the same score to the last digit?"
        );
    }

    // `flywheel judge --output EXISTING` with other criteria scores again too.
    let scored = dir.path().join("scored.jsonl");
    let judge = |criteria: &str| {
        run(flywheel()
            .args(["judge", "--criteria", criteria, "--input"])
            .arg(rd.join("generated.jsonl"))
            .arg("--output")
            .arg(&scored))
    };
    assert!(ok(&judge("Correct.")).contains("4 written"));
    assert!(ok(&judge("Correct.")).contains("4 already done, 0 written"));
    let out = ok(&judge("Polite."));
    assert!(out.contains("0 already done, 4 written"), "{out}");
    assert_eq!(lines(&scored).len(), 4);
}

#[test]
fn records_the_plan_no_longer_makes_are_moved_aside_not_blended() {
    models();
    let dir = tempfile::tempdir().unwrap();
    let mk = |topics: &[&str], template: &str| spec(dir.path(), topics, template, None, "");
    let p = mk(
        &["tides", "magnets", "clouds"],
        "Explain {{topic}} to {{audience}}.",
    );
    let rd = dir.path().join("runs/f");
    ok(&run(flywheel().arg("run").arg(&p)));
    assert_eq!(lines(&rd.join("generated.jsonl")).len(), 6);

    // One seed value removed: its two records leave the pipeline, with a note.
    let p = mk(&["tides", "magnets"], "Explain {{topic}} to {{audience}}.");
    let o = run(flywheel().arg("run").arg(&p));
    let out = ok(&o);
    assert!(
        stderr(&o).contains("moved 2 records that the current plan no longer makes"),
        "{}",
        stderr(&o)
    );
    let gen = lines(&rd.join("generated.jsonl"));
    assert_eq!(gen.len(), 4, "{out}");
    for f in [
        "generated.jsonl",
        "verified.jsonl",
        "kept.jsonl",
        "dataset.jsonl",
    ] {
        for r in lines(&rd.join(f)) {
            assert_ne!(
                r["meta"]["vars"]["topic"], "clouds",
                "{f} kept an old record"
            );
        }
    }
    let aside: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("not-in-plan"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the old records are kept aside, not deleted"
    );
    assert_eq!(lines(&aside[0].path()).len(), 2);
    let report: Value =
        serde_json::from_slice(&std::fs::read(rd.join("report.json")).unwrap()).unwrap();
    assert_eq!(lines(&rd.join("dataset.jsonl")).len(), 4);
    let planned = report["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["stage"] == "planned")
        .unwrap()["count"]
        .clone();
    assert_eq!(planned, 4, "{report}");

    // A changed template: every record is another prompt now.
    let p = mk(
        &["tides", "magnets"],
        "Describe {{topic}} for {{audience}}.",
    );
    ok(&run(flywheel().arg("run").arg(&p)));
    let gen = lines(&rd.join("generated.jsonl"));
    assert_eq!(gen.len(), 4);
    for r in gen.iter().chain(lines(&rd.join("dataset.jsonl")).iter()) {
        let user = r["messages"][0]["content"].as_str().unwrap();
        assert!(
            user.starts_with("Describe"),
            "an old prompt survived: {user}"
        );
    }

    // --limit plans fewer records, but the rest of the plan is not "outside the plan".
    let o = run(flywheel().arg("generate").arg(&p).args(["--limit", "1"]));
    ok(&o);
    assert!(!stderr(&o).contains("moved"), "{}", stderr(&o));
    assert_eq!(lines(&rd.join("generated.jsonl")).len(), 4);
}

#[test]
fn a_second_run_on_the_same_directory_is_refused_naming_the_holder() {
    models();
    let dir = tempfile::tempdir().unwrap();
    let topics: Vec<String> = (0..12).map(|i| format!("topic number {i}")).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let p = spec(
        dir.path(),
        &topics,
        "Explain {{topic}} to {{audience}}.",
        None,
        "",
    );
    let t = std::fs::read_to_string(&p).unwrap().replace(
        "max_new_tokens = 8\nbatch_size = 8",
        "max_new_tokens = 48\nbatch_size = 1",
    );
    std::fs::write(&p, t).unwrap();
    let rd = dir.path().join("runs/f");
    let mut first = flywheel()
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while lines_in(&rd.join("generated.jsonl")) < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "first run wrote nothing"
        );
        if let Ok(Some(st)) = first.try_wait() {
            panic!("first run ended early ({st})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(flywheel().arg("run").arg(&p));
    let still_running = first.try_wait().unwrap().is_none();
    assert_eq!(second.status.code(), Some(1), "{}", stdout(&second));
    assert!(
        stderr(&second).contains(&format!("pid {}", first.id())),
        "the holder is named: {}",
        stderr(&second)
    );
    assert!(
        still_running,
        "the check must happen while the first run holds the lock"
    );
    // Standalone stages on the same directory are refused too.
    let gen = run(flywheel().arg("generate").arg(&p));
    assert_eq!(gen.status.code(), Some(1), "{}", stderr(&gen));
    assert!(stderr(&gen).contains("in use by another flywheel process"));
    assert!(first.wait().unwrap().success());
    let ids = common::records_by_id(&rd.join("generated.jsonl"));
    assert_eq!(ids.len(), 24, "every record once");
    // The lock went with the first process: a rerun is up to date.
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(stage_line(&out, "generate").contains("up to date"), "{out}");
}

fn lines_in(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn another_precision_or_device_is_not_up_to_date() {
    models();
    let dir = tempfile::tempdir().unwrap();
    let p = spec(
        dir.path(),
        &["tides"],
        "Explain {{topic}} to {{audience}}.",
        None,
        "",
    );
    ok(&run(flywheel().arg("run").arg(&p)));
    // `run` agrees with `generate`: records of another precision are not mixed in.
    let o = run(flywheel().args(["--dtype", "f32", "run"]).arg(&p));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("weights"), "{}", stderr(&o));
    let o = run(flywheel()
        .args(["--dtype", "f32", "run", "--force"])
        .arg(&p));
    let out = ok(&o);
    assert!(
        !stage_line(&out, "generate").contains("up to date"),
        "{out}"
    );
    let gen = lines(&dir.path().join("runs/f/generated.jsonl"));
    assert!(gen.iter().all(|r| r["provenance"]["generator"]["weights"]
        .as_str()
        .unwrap()
        .starts_with("F32")));
    let out = ok(&run(flywheel().args(["--dtype", "f32", "run"]).arg(&p)));
    assert!(stage_line(&out, "generate").contains("up to date"), "{out}");
}

#[test]
fn plans_are_bounded_and_built_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let base = spec(
        dir.path(),
        &["tides"],
        "Explain {{topic}} to {{audience}}.",
        None,
        "",
    );
    let text = std::fs::read_to_string(&base).unwrap();
    let refuse = |edit: &dyn Fn(&str) -> String, needles: &[&str]| {
        std::fs::write(&base, edit(&text)).unwrap();
        let t0 = Instant::now();
        let o = run(flywheel().arg("generate").arg(&base).args(["--limit", "1"]));
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        for n in needles {
            assert!(stderr(&o).contains(n), "{n:?} not in {}", stderr(&o));
        }
        // Refused at validation, before any work: no model, no plan.
        assert!(t0.elapsed() < Duration::from_secs(20));
    };
    refuse(
        &|t| t.replace("template =", "samples_per_prompt = 1000000000\ntemplate ="),
        &["spec.toml:", "task[0].samples_per_prompt", "more than"],
    );
    refuse(
        &|t| {
            t.replace(
                "template =",
                "samples_per_prompt = 10000000000000000000\ntemplate =",
            )
        },
        &["spec.toml:", "samples_per_prompt"],
    );
    refuse(
        &|t| t.replace("max_new_tokens = 8", "max_new_tokens = 1000000000"),
        &["teacher.max_new_tokens", "more than"],
    );
    refuse(
        &|t| t.replace("topic = [\"tides\"]", "topic = { file = \"/dev/zero\" }"),
        &["seeds.topic", "larger than"],
    );
    // 2000 × 2000 × 2 audiences × 50 samples = 4·10^8 records: over the bound.
    let many = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("\"v{i}\"")).collect();
        format!("[{}]", v.join(", "))
    };
    let big = many(2000);
    refuse(
        &|t| {
            t.replace(
                "topic = [\"tides\"]",
                &format!("topic = {big}\nsub = {big}"),
            )
            .replace(
                "template = \"Explain",
                "samples_per_prompt = 50\ntemplate = \"{{sub}} Explain",
            )
        },
        &["task[0].template", "sample = N"],
    );
    // Just under the bound (2000 × 2000 × 2 × 12 = 9.6·10^7): --limit 1 takes one record
    // without building the plan.
    model_file("smollm2-135m-instruct");
    std::fs::write(
        &base,
        text.replace(
            "topic = [\"tides\"]",
            &format!("topic = {big}\nsub = {big}"),
        )
        .replace(
            "template = \"Explain",
            "samples_per_prompt = 12\ntemplate = \"{{sub}} Explain",
        ),
    )
    .unwrap();
    let o = run(flywheel().arg("generate").arg(&base).args(["--limit", "1"]));
    let out = ok(&o);
    assert!(
        out.contains("1 planned") || out.contains("1 written"),
        "{out}"
    );
    assert_eq!(lines_in(&dir.path().join("runs/f/generated.jsonl")), 1);
}

#[test]
fn editing_a_verifiers_schema_file_rechecks_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[run]\nname = \"v\"\n\n[[verifier]]\nkind = \"json\"\nschema = \"schema.json\"\n",
    )
    .unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type": "object", "required": ["a"]}"#).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"r1\",\"prompt\":\"q\",\"response\":\"{\\\"a\\\": 1}\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let verify = || {
        run(flywheel()
            .arg("verify")
            .arg(&spec)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out))
    };
    let verdict = || lines(&out)[0]["scores"]["verifiers"]["json"]["pass"].clone();
    assert!(ok(&verify()).contains("0 already done, 1 written"));
    assert_eq!(verdict(), true);
    assert!(ok(&verify()).contains("1 already done, 0 written"));
    std::fs::write(&schema, r#"{"type": "object", "required": ["b"]}"#).unwrap();
    let o = verify();
    assert!(
        ok(&o).contains("0 already done, 1 written"),
        "{}",
        stderr(&o)
    );
    assert_eq!(lines(&out).len(), 1);
    assert_eq!(verdict(), false, "the verdict of the old schema survived");
}

/// The per-step funnel counts records that failed a step from `steps_rejected.jsonl`, a
/// generate output: deleting it makes generate run again (and write the same failures),
/// so a later report never counts them as gone.
#[test]
fn deleting_the_step_rejections_reruns_generate_and_the_funnel_keeps_its_failures() {
    models();
    let dir = tempfile::tempdir().unwrap();
    let p = spec(
        dir.path(),
        &["tides", "magnets", "rain", "wind"],
        "unused",
        None,
        "[blend]\nreal = []\n",
    );
    // The steps: a sampler that is JSON for some records and not for others, then a JSON
    // field of it (a deterministic failure, `json_invalid`), then an LLM answer.
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "template = \"unused\"\n",
        r#"  [[task.step]]
  name = "raw"
  sampler = { choice = ['{"t": "short"}', "not json"] }
  [[task.step]]
  name = "doc"
  expression = "{{raw}}"
  [[task.step]]
  name = "t"
  json = { from = "doc", path = "t" }
  [[task.step]]
  name = "answer"
  template = "Explain {{topic}} to {{audience}}, {{t}}."
  [task.messages]
  user = "doc"
  assistant = "answer"
"#,
    );
    std::fs::write(&p, text).unwrap();
    let rd = dir.path().join("runs/f");
    let failed = |rd: &Path| -> u64 {
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(rd.join("report.json")).unwrap())
                .unwrap();
        r["step_funnel"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["failed"].as_u64().unwrap())
            .sum()
    };
    ok(&run(flywheel().arg("run").arg(&p)));
    let rejected = std::fs::read_to_string(rd.join("steps_rejected.jsonl")).unwrap();
    let n = failed(&rd);
    assert!(
        n > 0 && n < 8,
        "want some records to fail the json step: {n}"
    );
    assert_eq!(n as usize, rejected.lines().count());

    std::fs::remove_file(rd.join("steps_rejected.jsonl")).unwrap();
    // An edit to [blend] makes the report run again too.
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[blend]\n", "[blend]\nmax_synthetic = 100\n");
    std::fs::write(&p, &t).unwrap();
    let out = ok(&run(flywheel().arg("run").arg(&p)));
    assert!(
        !stage_line(&out, "generate").contains("up to date"),
        "generate skipped with its step rejections gone: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(rd.join("steps_rejected.jsonl")).unwrap(),
        rejected
    );
    assert_eq!(failed(&rd), n, "the funnel lost its failures");
}
