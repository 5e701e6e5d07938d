//! Out-of-memory back-off, exercised without a GPU: `FLYWHEEL_FAULT_OOM_ABOVE=N` makes any
//! step over N sequences fail as CUDA does when memory runs out. Generation and judging
//! must cut their batch and carry on, with the same records and scores as a run that never
//! ran out; at one sequence the error must say what to do, not panic.

mod common;

use common::{flywheel, model_file, records_by_id, run, stderr, write_spec};

#[test]
fn generate_and_judge_back_off_and_give_identical_results() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 5, 24, 0.8);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("\n[[judge]]\nname = \"ok\"\nmodel = \"smollm2-135m-instruct\"\ncriteria = \"The answer is clear.\"\n");
    std::fs::write(&spec, text).unwrap();
    let (a, b) = (dir.path().join("faulty"), dir.path().join("clean"));

    let o = run(flywheel()
        .args(["generate"])
        .arg(&spec)
        .args(["--batch-size", "8", "--out"])
        .arg(&a)
        .env("FLYWHEEL_FAULT_OOM_ABOVE", "3"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("out of memory stepping"),
        "the back-off must say so: {}",
        stderr(&o)
    );
    let o = run(flywheel()
        .args(["generate"])
        .arg(&spec)
        .args(["--batch-size", "3", "--out"])
        .arg(&b));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ra, rb) = (
        records_by_id(&a.join("generated.jsonl")),
        records_by_id(&b.join("generated.jsonl")),
    );
    assert_eq!(ra.len(), 10);
    assert_eq!(
        ra, rb,
        "records after the back-off differ from a run that never ran out"
    );

    // The judge: same scores with and without running out.
    let va = a.join("verified.jsonl");
    let o = run(flywheel()
        .args(["verify"])
        .arg(&spec)
        .arg("--input")
        .arg(a.join("generated.jsonl"))
        .arg("--output")
        .arg(&va)
        .args(["--batch-size", "8"])
        .env("FLYWHEEL_FAULT_OOM_ABOVE", "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("out of memory with"), "{}", stderr(&o));
    let vb = b.join("verified.jsonl");
    let o = run(flywheel()
        .args(["verify"])
        .arg(&spec)
        .arg("--input")
        .arg(b.join("generated.jsonl"))
        .arg("--output")
        .arg(&vb)
        .args(["--batch-size", "2"]));
    assert!(o.status.success());
    let score = |p: &std::path::Path| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["scores"]["judge"]["ok"]["score"].as_f64().unwrap(),
                )
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    assert_eq!(score(&va), score(&vb));

    // Out of memory even at one sequence: a clear error, exit 1, records so far kept.
    let c = dir.path().join("none");
    let o = run(flywheel()
        .args(["generate"])
        .arg(&spec)
        .arg("--out")
        .arg(&c)
        .env("FLYWHEEL_FAULT_OOM_ABOVE", "0"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("out of memory even with one sequence"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));
}
