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
