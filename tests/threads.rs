//! The README's claim, tested: a record's text does not depend on the thread count (each
//! record samples with its own seed; the CPU's Q8_0 kernels sum in a fixed order).

mod common;

use common::{flywheel, model_file, records_by_id, run, stderr, write_spec};

#[test]
fn thread_count_does_not_change_records() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 3, 24, 0.9);
    let mut files = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("t{threads}"));
        let o = run(flywheel()
            .args(["--threads", threads, "generate"])
            .arg(&spec)
            .args(["--batch-size", "4", "--out"])
            .arg(&out));
        assert!(o.status.success(), "{}", stderr(&o));
        files.push(records_by_id(&out.join("generated.jsonl")));
    }
    assert_eq!(files[0].len(), 6);
    assert_eq!(files[0], files[1], "records differ between 1 and 2 threads");
}
