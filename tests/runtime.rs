//! One `flywheel run` loads each model once: the embedder serves dedup, audit and report;
//! the teacher's weights serve generation, the judge and the canary test.

mod common;

use common::{flywheel, model_file, run, stderr, stdout};

#[test]
fn run_loads_each_model_once() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/real/anchor.jsonl"),
        dir.path().join("anchor.jsonl"),
    )
    .unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[run]
name = "m"
out_dir = "{}"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 8

[seeds]
topic = ["tides", "magnets"]

[[task]]
name = "explain"
template = "Explain {{{{topic}}}}."

[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct."

[filter]
require = []
# 8-token answers keep the test fast; truncation rejection has its own test.
allow_truncated = true

[dedup]
semantic = 0.92

[blend]
real = ["anchor.jsonl"]
"#,
            dir.path().join("runs").display()
        ),
    )
    .unwrap();
    let o = run(flywheel()
        .env("FLYWHEEL_LOG", "flywheel=info")
        .args(["run", "--canaries", "2"])
        .arg(&spec));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    let count = |needle: &str| err.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("loading model smollm2-135m-instruct"), 1, "{err}");
    assert_eq!(count("loading embedder all-minilm-l6-v2"), 1, "{err}");
    // And it was needed more than once: the cache served the other stages.
    assert!(count("reused (already loaded)") >= 3, "{err}");
}
