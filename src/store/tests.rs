use super::*;

#[test]
fn torn_last_line_is_cut_and_ids_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    std::fs::write(&p, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"tex").unwrap();
    let (mut w, ex) = JsonlWriter::open(&p).unwrap();
    assert_eq!(ex.ids.len(), 2);
    assert!(ex.torn_bytes > 0);
    w.append(&serde_json::json!({"id": "d"})).unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"d\"}\n"
    );
}

#[test]
fn corrupt_middle_line_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    std::fs::write(&p, "{\"id\":\"a\"}\nnot json\n{\"id\":\"b\"}\n").unwrap();
    let Err(e) = JsonlWriter::open(&p) else {
        panic!("must fail")
    };
    let e = e.to_string();
    assert!(e.contains("r.jsonl:2"), "{e}");
}

#[test]
fn write_errors_name_the_file() {
    // /dev/full accepts opens and fails every write with ENOSPC.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("full.jsonl");
    std::os::unix::fs::symlink("/dev/full", &p).unwrap();
    let (mut w, _) = JsonlWriter::open(&p).unwrap();
    let e = w
        .append(&serde_json::json!({"id": "a"}))
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("full.jsonl") && e.contains("disk full"), "{e}");
}

#[test]
fn atomic_writes_use_one_temp_file_per_target() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (
        dir.path().join("report.json"),
        dir.path().join("report.html"),
    );
    assert_ne!(atomic_temp(&json), atomic_temp(&html));
    assert!(atomic_temp(&json)
        .to_string_lossy()
        .ends_with(&format!("report.json.{}.tmp", std::process::id())));
    // A stale temp of another target does not get in the way, and none is left behind.
    std::fs::create_dir(dir.path().join("report.tmp")).unwrap();
    write_atomic(&json, b"{}").unwrap();
    write_atomic(&html, b"<p>").unwrap();
    assert_eq!(std::fs::read(&json).unwrap(), b"{}");
    assert_eq!(std::fs::read(&html).unwrap(), b"<p>");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["report.html", "report.json", "report.tmp"]);
}

#[test]
fn a_streamed_atomic_file_appears_whole_at_commit_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dataset.jsonl");
    std::fs::write(&p, "old\n").unwrap();
    // Dropped part-way (an error mid-stream): the old file stays, no temp is left.
    {
        let mut w = AtomicWriter::create(&p).unwrap();
        w.write_all(b"half").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\n");
    }
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\n");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let mut w = AtomicWriter::create(&p).unwrap();
    for i in 0..3 {
        writeln!(w, "{i}").unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "old\n",
        "not before commit"
    );
    w.commit().unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "0\n1\n2\n");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
