//! Tasks written as `[[task.step]]` run end to end on the tiny Qwen3 fixture (fast: a few
//! tokens per step): sampler → LLM → sampler → LLM → expression → json, records assembled
//! with `meta.steps`, failures recorded with their reason, byte-identical records at batch
//! 1 and 8 (a plain task in the same spec included), kill -9 during step 2, and a resume
//! from a partial `steps.jsonl` that recomputes nothing it has.

mod common;

use common::{flywheel, run, stderr, stdout};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const SPEC: &str = r#"[run]
name = "s"
seed = 3
out_dir = "OUT_DIR"

[teacher]
model = "MODEL"
max_new_tokens = 6
batch_size = 4

[teacher.sampling]
temperature = 0.9

[seeds]
topic = ["tides", "volcanoes", "rain", "snow", "wind"]

[[task]]
name = "qa"
samples_per_prompt = 2

  [[task.step]]
  name = "mood"
  sampler = { choice = ["calm", "angry"], weights = [1, 2] }

  [[task.step]]
  name = "question"
  template = "A {{mood}} question about {{topic}}."
  system = "Be brief."

  [[task.step]]
  name = "n"
  sampler = { int = [1, 5] }

  [[task.step]]
  name = "answer"
  template = "{{question}}"
  max_new_tokens = 4

  [[task.step]]
  name = "card"
  expression = '{"title": "{{topic}}", "n": {{n}}}'

  [[task.step]]
  name = "title"
  json = { from = "card", path = "title" }

[[task]]
name = "plain"
template = "Say {{topic}}."

[[task]]
name = "refine"

  [[task.step]]
  name = "draft"
  template = "Describe {{topic}} for a child."
  system = "Be brief."

  [[task.step]]
  name = "better"
  continues = "draft"
  template = "Make it shorter."

[[task]]
name = "missing"

  [[task.step]]
  name = "x"
  expression = '{"a": "{{topic}}"}'

  [[task.step]]
  name = "y"
  json = { from = "x", path = "b" }

  [task.messages]
  user = "x"
  assistant = "y"

[[task]]
name = "invalid"

  [[task.step]]
  name = "x"
  expression = "no json about {{topic}}"

  [[task.step]]
  name = "y"
  json = { from = "x", path = "a" }

  [task.messages]
  user = "x"
  assistant = "y"
"#;

fn write_spec(dir: &Path) -> PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen3/hf");
    let text = SPEC
        .replace("OUT_DIR", &dir.join("runs").display().to_string())
        .replace("MODEL", &model.display().to_string());
    let p = dir.join("steps.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn generate(spec: &Path, out: &Path, batch: &str) -> String {
    let o = run(flywheel()
        .arg("generate")
        .arg(spec)
        .args(["--device", "cpu", "--batch-size", batch, "--out"])
        .arg(out));
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The lines sorted: plain tasks write records as they finish, so only the set of lines
/// (each byte-identical) is fixed, as in tests/cli.rs.
fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(p).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    read(p)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every `(id, step)` once.
fn assert_no_duplicate_steps(p: &Path) {
    let mut seen = HashSet::new();
    for v in json_lines(p) {
        let k = (
            v["id"].as_str().unwrap().to_string(),
            v["step"].as_str().unwrap().to_string(),
        );
        assert!(seen.insert(k.clone()), "{k:?} computed twice");
    }
}

#[test]
fn steps_run_batch_invariant_resumable_and_failures_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let b1 = dir.path().join("b1");
    let b8 = dir.path().join("b8");
    let s1 = generate(&spec, &b1, "1");
    assert!(
        s1.contains("30 planned, 0 already done, 20 written"),
        "{s1}"
    );
    assert!(s1.contains("10 records failed a step"), "{s1}");
    let m: serde_json::Value = serde_json::from_str(&read(&b1.join("manifest.json"))).unwrap();
    assert_eq!(m["stages"]["generate"]["done"], 30, "{m}");
    assert_eq!(
        m["stages"]["generate"]["extra"]["steps_rejected"], 10,
        "{m}"
    );
    assert!(m["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["role"] == "step qa/answer"));
    generate(&spec, &b8, "8");
    let gen1 = sorted_lines(&b1.join("generated.jsonl"));
    assert_eq!(
        gen1,
        sorted_lines(&b8.join("generated.jsonl")),
        "records differ between batch 1 and 8"
    );
    // Records of tasks with steps are written in plan order: those bytes match in order.
    let steps_part = |p: &Path| -> Vec<String> {
        read(p)
            .lines()
            .filter(|l| !l.contains("\"task\":\"plain\""))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        steps_part(&b1.join("generated.jsonl")),
        steps_part(&b8.join("generated.jsonl"))
    );
    assert_eq!(
        read(&b1.join("steps_rejected.jsonl")),
        read(&b8.join("steps_rejected.jsonl"))
    );

    // The records: every step's value, the default turns of the last LLM step.
    let all = json_lines(&b1.join("generated.jsonl"));
    assert_eq!(all.len(), 20);
    // A step that continues another's chat: the record is the whole chat, and its
    // prompt reused the first call's KV rows (the batch-8 and resumed runs above and
    // below must still give the same bytes).
    let (refine, all): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|r| r["meta"]["task"] == "refine");
    assert_eq!(refine.len(), 5);
    for r in &refine {
        let steps = &r["meta"]["steps"];
        let roles: Vec<&str> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant"],
            "{r}"
        );
        assert_eq!(r["messages"][0]["content"], "Be brief.");
        assert_eq!(r["messages"][2]["content"], steps["draft"], "{r}");
        assert_eq!(r["messages"][3]["content"], "Make it shorter.");
        assert_eq!(r["messages"][4]["content"], steps["better"], "{r}");
    }
    // A plain task beside steps tasks runs as before: no `meta.steps`.
    let (plain, recs): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|r| r["meta"]["task"] == "plain");
    assert_eq!(plain.len(), 5);
    assert!(plain.iter().all(|r| r["meta"].get("steps").is_none()));
    assert_eq!(recs.len(), 10);
    for r in &recs {
        let m = &r["meta"];
        assert_eq!(m["task"], "qa");
        let steps = m["steps"].as_object().unwrap();
        let names: Vec<&str> = steps.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["answer", "card", "mood", "n", "question", "title"],
            "{r}"
        );
        assert!(["calm", "angry"].contains(&steps["mood"].as_str().unwrap()));
        let n: i64 = steps["n"].as_str().unwrap().parse().unwrap();
        assert!((1..=5).contains(&n));
        assert_eq!(steps["title"], m["vars"]["topic"]);
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{r}");
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[0]["content"], steps["question"]);
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"], steps["answer"]);
        let p = &r["provenance"];
        assert_eq!(p["sampling"]["max_new_tokens"], 4);
        assert!(p["completion_tokens"].as_u64().unwrap() <= 4);
        assert_eq!(p["generator"]["arch"], "qwen3", "{p}");
    }
    // Different records draw differently (seeded per record and step).
    let moods: HashSet<&str> = recs
        .iter()
        .map(|r| r["meta"]["steps"]["mood"].as_str().unwrap())
        .collect();
    assert_eq!(moods.len(), 2, "{moods:?}");

    // Failures: each with its step and reason, none in generated.jsonl.
    let rej = json_lines(&b1.join("steps_rejected.jsonl"));
    assert_eq!(rej.len(), 10);
    for r in &rej {
        let want = match r["task"].as_str().unwrap() {
            "missing" => "json_missing:y",
            "invalid" => "json_invalid:y",
            t => panic!("unexpected rejection in task {t}: {r}"),
        };
        assert_eq!(r["reason"], want);
        assert_eq!(r["step"], "y");
    }

    // A rerun has nothing to do, and recomputes nothing.
    let steps_before = read(&b1.join("steps.jsonl"));
    let s = generate(&spec, &b1, "4");
    assert!(s.contains("30 already done, 0 written"), "{s}");
    assert_eq!(read(&b1.join("steps.jsonl")), steps_before);
    assert_eq!(sorted_lines(&b1.join("generated.jsonl")), gen1);
    assert_no_duplicate_steps(&b1.join("steps.jsonl"));

    // Resume at step granularity: keep the first third of the step values (as a kill
    // would), lose the records and the rejections; the rerun computes only what is
    // missing and writes the same records.
    let part = dir.path().join("part");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::copy(b8.join("manifest.json"), part.join("manifest.json")).unwrap();
    let all_steps: Vec<&str> = steps_before.lines().collect();
    let kept = all_steps.len() / 3;
    let mut head = all_steps[..kept].join("\n");
    head.push('\n');
    // A torn last line too.
    head.push_str("{\"id\":\"torn");
    std::fs::write(part.join("steps.jsonl"), &head).unwrap();
    generate(&spec, &part, "8");
    assert_eq!(sorted_lines(&part.join("generated.jsonl")), gen1);
    let resumed = read(&part.join("steps.jsonl"));
    assert!(resumed.starts_with(&all_steps[..kept].join("\n")));
    assert_eq!(resumed.lines().count(), all_steps.len());
    assert_no_duplicate_steps(&part.join("steps.jsonl"));

    // Step values made with other settings are not reused: with no record written yet
    // (only steps.jsonl), changed sampling is still a conflict, and --force moves the
    // step values aside with the records.
    std::fs::remove_file(part.join("generated.jsonl")).unwrap();
    let text = read(&spec).replace("temperature = 0.9", "temperature = 0.7");
    std::fs::write(&spec, text).unwrap();
    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .arg("--out")
        .arg(&part));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("different settings"), "{}", stderr(&o));
    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .args(["--force", "--out"])
        .arg(&part));
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("steps.") && n.ends_with(".replaced.jsonl")),
        "{names:?}"
    );
    assert_ne!(sorted_lines(&part.join("generated.jsonl")), gen1);
    assert_no_duplicate_steps(&part.join("steps.jsonl"));
}

/// kill -9 while the second LLM step runs, then rerun: the first step is not computed
/// again, nothing is duplicated, and the records are those of an uninterrupted run.
#[test]
fn kill_9_in_step_2_then_resume_gives_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen3/hf");
    let topics: Vec<String> = (0..40).map(|i| format!("\"topic {i}\"")).collect();
    let text = format!(
        r#"[run]
name = "k"
out_dir = "{out}"

[teacher]
model = "{model}"
max_new_tokens = 24
batch_size = 8

[seeds]
topic = [{topics}]

[[task]]
name = "qa"
samples_per_prompt = 5

  [[task.step]]
  name = "question"
  template = "A question about {{{{topic}}}}."

  [[task.step]]
  name = "answer"
  template = "{{{{question}}}}"
"#,
        out = dir.path().join("runs").display(),
        model = model.display(),
        topics = topics.join(", ")
    );
    let spec = dir.path().join("k.toml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.path().join("killed");
    let steps = out.join("steps.jsonl");
    let mut child = flywheel()
        .arg("generate")
        .arg(&spec)
        .args(["--device", "cpu", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !read(&steps).contains("\"step\":\"answer\"") {
        assert!(
            t0.elapsed().as_secs() < 240,
            "step 2 never started: {}",
            read(&steps).lines().count()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = read(&steps);
    let answers = before.matches("\"step\":\"answer\"").count();
    assert!(answers < 200, "the kill landed after step 2 ended");
    assert_eq!(read(&out.join("generated.jsonl")), "");

    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .args(["--device", "cpu", "--out"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("200 written"), "{}", stdout(&o));
    let after = read(&steps);
    // What was on disk stays (a torn last line at most is cut and recomputed).
    let kept: Vec<&str> = before.lines().filter(|l| l.ends_with('}')).collect();
    assert!(after.starts_with(&kept.join("\n")));
    assert_eq!(after.lines().count(), 400);
    assert_no_duplicate_steps(&steps);

    let clean = dir.path().join("clean");
    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .args(["--device", "cpu", "--out"])
        .arg(&clean));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&out.join("generated.jsonl")),
        read(&clean.join("generated.jsonl"))
    );
}
