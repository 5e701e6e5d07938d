//! Generation programs beyond chained steps (issue #15): simulated conversations, evolved
//! instructions, self-instruct from examples. Run on the tiny Qwen3 fixture where only
//! the mechanics matter (batch invariance, resume after kill -9, transcript shape), and
//! on the real SmolLM2 where the model's behaviour is the point (the copy check).

mod common;

use common::{flywheel, run, stderr, stdout};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    read(p)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(p).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen3/hf")
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

/// A conversation task (2–4 turns, an opening template on one task, the simulated user
/// writing it on the other) and a 3-LLM-step task, `n` topics.
fn programs_spec(dir: &Path, n: usize) -> PathBuf {
    let topics: Vec<String> = (0..n).map(|i| format!("\"topic {i}\"")).collect();
    let text = format!(
        r#"[run]
name = "p"
seed = 5
out_dir = "{out}"

[teacher]
model = "{model}"
max_new_tokens = 6
batch_size = 4

[teacher.sampling]
temperature = 0.9

[seeds]
topic = [{topics}]

[[task]]
name = "chat"
  [[task.step]]
  name = "mood"
  sampler = {{ choice = ["angry", "confused"] }}

  [[task.step]]
  name = "dialogue"
  system = "You help with {{{{topic}}}}."
    [task.step.conversation]
    turns = [2, 4]
    user_system = "You are {{{{mood}}}} about {{{{topic}}}}."
    user_max_new_tokens = 5

[[task]]
name = "opened"
  [[task.step]]
  name = "dialogue"
  system = "You help with {{{{topic}}}}."
    [task.step.conversation]
    turns = 3
    user_system = "You ask about {{{{topic}}}}."
    opening = "Tell me about {{{{topic}}}}."

[[task]]
name = "three"
  [[task.step]]
  name = "question"
  template = "A question about {{{{topic}}}}."

  [[task.step]]
  name = "answer"
  template = "{{{{question}}}}"

  [[task.step]]
  name = "critique"
  system = "You critique answers."
  template = "Q: {{{{question}}}} A: {{{{answer}}}}"
  max_new_tokens = 4

  [task.messages]
  user = "question"
  assistant = "answer"
"#,
        out = dir.join("runs").display(),
        model = tiny_model().display(),
        topics = topics.join(", ")
    );
    let p = dir.join("programs.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The shape every conversation record must have: an optional system turn, then user and
/// assistant alternating, ending on the assistant; `meta.turns` = assistant turns.
fn check_transcript(r: &serde_json::Value) -> usize {
    let msgs = r["messages"].as_array().unwrap();
    let body: Vec<&serde_json::Value> = msgs.iter().filter(|m| m["role"] != "system").collect();
    assert!(msgs.len() - body.len() <= 1, "{r}");
    assert_eq!(msgs[0]["role"], "system", "{r}");
    assert!(!body.is_empty() && body.len().is_multiple_of(2), "{r}");
    for (i, m) in body.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        assert_eq!(m["role"], want, "{r}");
        assert!(!m["content"].as_str().unwrap().trim().is_empty(), "{r}");
    }
    let turns = body.len() / 2;
    assert_eq!(r["meta"]["turns"], turns, "{r}");
    // The transcript is also the step's value, for later steps.
    let text = r["meta"]["steps"]["dialogue"].as_str().unwrap();
    assert!(text.starts_with("User: "), "{text}");
    assert_eq!(text.matches("Assistant: ").count(), turns, "{text}");
    turns
}

#[test]
fn conversations_and_three_steps_are_batch_invariant_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let spec = programs_spec(dir.path(), 6);
    let b1 = dir.path().join("b1");
    let b8 = dir.path().join("b8");
    let s = generate(&spec, &b1, "1");
    assert!(s.contains("18 planned"), "{s}");
    generate(&spec, &b8, "8");
    // Steps tasks write in plan order: the files are byte-identical, not just the sets.
    assert_eq!(
        read(&b1.join("generated.jsonl")),
        read(&b8.join("generated.jsonl")),
        "records differ between batch 1 and 8"
    );
    assert_eq!(
        read(&b1.join("steps_rejected.jsonl")),
        read(&b8.join("steps_rejected.jsonl"))
    );
    let recs = json_lines(&b1.join("generated.jsonl"));
    let rejected = json_lines(&b1.join("steps_rejected.jsonl"));
    assert_eq!(
        recs.len() + rejected.len(),
        18,
        "every record is written or has a reason"
    );
    for r in &rejected {
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("empty_turn:") || reason.starts_with("prompt_too_long:"),
            "{r}"
        );
    }
    let mut turn_counts = HashSet::new();
    for r in &recs {
        match r["meta"]["task"].as_str().unwrap() {
            "chat" => {
                let t = check_transcript(r);
                assert!((1..=4).contains(&t), "{r}");
                turn_counts.insert(t);
            }
            "opened" => {
                let t = check_transcript(r);
                assert!(t <= 3, "{r}");
                let topic = r["meta"]["vars"]["topic"].as_str().unwrap();
                assert_eq!(
                    r["messages"][1]["content"],
                    format!("Tell me about {topic}."),
                    "the opening template is the first user turn: {r}"
                );
            }
            "three" => {
                let steps = r["meta"]["steps"].as_object().unwrap();
                assert!(steps.contains_key("critique"), "{r}");
                assert_eq!(r["messages"][1]["content"], steps["answer"]);
                assert!(r["meta"].get("turns").is_none());
            }
            t => panic!("unexpected task {t}"),
        }
    }
    assert!(
        turn_counts.iter().any(|&t| t >= 2),
        "no conversation reached 2 turns: {turn_counts:?}"
    );
    // Per-turn values are journaled under `<step>#<turn>.<role>`.
    let journal = read(&b1.join("steps.jsonl"));
    assert!(
        journal.contains("\"step\":\"dialogue#2.assistant\""),
        "{journal}"
    );
    assert!(journal.contains("\"step\":\"dialogue#1.user\""));
    assert_no_duplicate_steps(&b1.join("steps.jsonl"));

    // kill -9 while conversations are in their second turn, then resume: the records
    // are byte-identical to the uninterrupted run's and no turn is computed twice.
    let big = tempfile::tempdir().unwrap();
    let spec = programs_spec(big.path(), 30);
    let out = big.path().join("killed");
    let steps = out.join("steps.jsonl");
    let mut child = flywheel()
        .arg("generate")
        .arg(&spec)
        .args(["--device", "cpu", "--batch-size", "8", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !read(&steps).contains("#2.user\"") {
        assert!(t0.elapsed().as_secs() < 240, "turn 2 never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(read(&out.join("generated.jsonl")), "");
    let before = read(&steps);
    let s = generate(&spec, &out, "3");
    assert!(s.contains("90 planned"), "{s}");
    let kept: Vec<&str> = before.lines().filter(|l| l.ends_with('}')).collect();
    assert!(read(&steps).starts_with(&kept.join("\n")));
    assert_no_duplicate_steps(&steps);
    let clean = big.path().join("clean");
    generate(&spec, &clean, "1");
    assert_eq!(
        read(&out.join("generated.jsonl")),
        read(&clean.join("generated.jsonl"))
    );
    assert_eq!(
        sorted_lines(&out.join("steps_rejected.jsonl")),
        sorted_lines(&clean.join("steps_rejected.jsonl"))
    );
}

/// Self-instruct's copy check on the real SmolLM2: asked a one-word question whose answer
/// is one of the examples shown, the model writes that example back (often with the list
/// number), and the record is dropped as `copies_example`; a free sentence is kept.
#[test]
fn self_instruct_drops_near_copies_of_its_examples() {
    common::model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("examples.txt"), "Yes\nNo\nParis\n\nParis\n").unwrap();
    let spec = dir.path().join("si.toml");
    std::fs::write(
        &spec,
        r#"[run]
name = "si"
seed = 1

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 24
batch_size = 4

[teacher.sampling]
temperature = 0.0

[seeds]
q = [
  "What is the capital of France? Answer with one word.",
  "Is water wet? Answer with one word, Yes or No.",
  "Write one long sentence about the sea and its waves.",
  "Describe a forest at night in one long sentence.",
]

[[task]]
name = "copy"
  [[task.step]]
  name = "instruction"
  template = "Possible answers:\n{{examples}}\n\n{{q}}"
  stop = ["\n"]
    [task.step.few_shot]
    file = "examples.txt"
    k = 3
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let s = generate(&spec, &out, "4");
    assert!(s.contains("4 planned"), "{s}");
    let rejected = json_lines(&out.join("steps_rejected.jsonl"));
    let recs = json_lines(&out.join("generated.jsonl"));
    assert_eq!(recs.len() + rejected.len(), 4);
    assert!(!rejected.is_empty(), "no copy caught");
    for r in &rejected {
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with("copies_example:instruction"),
            "{r}"
        );
    }
    // What was kept is not an example, and the sentences were kept.
    assert!(recs.len() >= 2, "{recs:?}");
    for r in &recs {
        let v = r["meta"]["steps"]["instruction"].as_str().unwrap();
        assert!(v.split_whitespace().count() > 3, "{v}");
        // The record's user turn is the prompt the model saw, examples included.
        let user = r["messages"][0]["content"].as_str().unwrap();
        assert!(user.starts_with("Possible answers:\n1. "), "{user}");
    }
    // Same spec, same seed: the same examples are drawn again (a rerun does nothing).
    let s = generate(&spec, &out, "1");
    assert!(s.contains("4 already done, 0 written"), "{s}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "runs" {
                copy_dir(&p, &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The four example specs of configs/ run end to end (`flywheel run`: generate → … →
/// report) with the real SmolLM2, each showing what it is for in its records and report.
#[test]
fn example_specs_run_end_to_end() {
    common::model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("configs");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"), &cfg);
    let mut reports = std::collections::BTreeMap::new();
    for name in [
        "qa-two-step",
        "support-conversations",
        "evol",
        "self-instruct",
    ] {
        let o = run(flywheel()
            .current_dir(&cfg)
            .args(["run", "-q", "--device", "cpu"])
            .arg(format!("{name}.toml")));
        assert!(o.status.success(), "{name}: {}\n{}", stdout(&o), stderr(&o));
        let run_dir = cfg.join("runs").join(name);
        let report: serde_json::Value =
            serde_json::from_str(&read(&run_dir.join("report.json"))).unwrap();
        assert!(run_dir.join("report.html").exists());
        let dataset = json_lines(&run_dir.join("dataset.jsonl"));
        assert!(
            dataset.iter().any(|r| r["source"] == "synthetic"),
            "{name}: no synthetic record in the dataset"
        );
        // The per-step funnel: every record planned either finished or failed at a step.
        let f = &report["step_funnel"][0];
        assert_eq!(
            f["started"].as_u64().unwrap(),
            f["finished"].as_u64().unwrap()
                + f["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["failed"].as_u64().unwrap())
                    .sum::<u64>(),
            "{name}: {f}"
        );
        reports.insert(name, (report, dataset));
    }

    let (_, qa) = &reports["qa-two-step"];
    for r in qa.iter().filter(|r| r["source"] == "synthetic") {
        let steps = &r["meta"]["steps"];
        assert_eq!(r["messages"][0]["content"], steps["question"], "{r}");
        assert_eq!(r["messages"][1]["content"], steps["answer"], "{r}");
    }

    let (report, support) = &reports["support-conversations"];
    let synthetic: Vec<_> = support
        .iter()
        .filter(|r| r["source"] == "synthetic")
        .collect();
    for r in &synthetic {
        let turns = r["meta"]["turns"].as_u64().unwrap();
        assert!((1..=6).contains(&turns), "{r}");
        let n = r["messages"].as_array().unwrap().len() as u64;
        assert_eq!(n, 1 + 2 * turns, "system + user/assistant pairs: {r}");
    }
    assert!(report["turns"].is_object(), "{}", report["turns"]);

    let (report, evol) = &reports["evol"];
    assert!(report["difficulty"].is_object(), "{}", report["difficulty"]);
    // The curriculum: synthetic records easiest first.
    let levels: Vec<u64> = evol
        .iter()
        .filter(|r| r["source"] == "synthetic")
        .map(|r| r["meta"]["difficulty"].as_u64().unwrap())
        .collect();
    assert!(
        levels.windows(2).all(|w| w[0] <= w[1]),
        "not easy to hard: {levels:?}"
    );
    for r in evol.iter().filter(|r| r["source"] == "synthetic") {
        let lineage = r["meta"]["lineage"].as_array().unwrap();
        assert_eq!(lineage[0]["operator"], "seed", "{r}");
        let ok = lineage.iter().skip(1).filter(|l| l.get("failed").is_none());
        assert_eq!(ok.count() as u64, r["meta"]["difficulty"].as_u64().unwrap());
        assert_eq!(r["messages"][0]["content"], r["meta"]["steps"]["harder"]);
    }

    let (_, si) = &reports["self-instruct"];
    for r in si.iter().filter(|r| r["source"] == "synthetic") {
        let user = r["messages"][0]["content"].as_str().unwrap();
        assert_eq!(user, r["meta"]["steps"]["instruction"], "{r}");
    }
}
