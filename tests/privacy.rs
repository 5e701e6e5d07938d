//! The privacy audit through the real CLI: PII found and redacted in every record shape and
//! every field that reaches the dataset, findings that locate the text without repeating
//! it, and bad input lines reported (never their text) instead of aborting the audit.
mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A spec whose audit needs no model: no embedder, no real data.
fn audit_spec(dir: &Path, privacy: &str) -> PathBuf {
    let spec = write_spec(dir, 1, 8, 0.0);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(&format!("\n[privacy]\nembedder = \"none\"\n{privacy}\n"));
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Good records around one of each kind of bad line (lines 2–5).
fn hostile(good: &[Value]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(format!("{}\n", good[0]).as_bytes());
    f.extend_from_slice(b"not json, call 555-234-5678\n");
    f.extend_from_slice(b"{\"id\":\"latin1\",\"text\":\"caf\xe9\"}\n");
    f.extend_from_slice(b"{\"id\":\"sur\",\"prompt\":\"\\ud800\",\"response\":\"a\"}\n");
    f.extend_from_slice(b"{\"a\":");
    f.extend_from_slice(&b"[".repeat(10_000));
    f.extend_from_slice(&b"]".repeat(10_000));
    f.extend_from_slice(b"}\n");
    for g in &good[1..] {
        f.extend_from_slice(format!("{g}\n").as_bytes());
    }
    f
}

#[test]
fn audit_redacts_every_shape_locates_findings_and_survives_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = audit_spec(d, "pii = \"redact\"");
    let good = [
        json!({"id": "chat", "messages": [
            {"role": "system", "content": "Forward complaints to ops@corp.example.com."},
            {"role": "user", "content": "My SSN is 123-45-6789, help."},
            {"role": "assistant", "content": "Call 5552345678 and quote deadbeef::1."}]}),
        json!({"id": "pr", "prompt": "Is 4111 1111 1111 1111 valid?", "response": "Ask jane.doe@example.com."}),
        json!({"id": "alpaca", "instruction": "Ping 10.1.2.3", "input": "IBAN GB82 WEST 1234 5698 7654 32", "output": "Done."}),
    ];
    let input = d.join("hostile.jsonl");
    std::fs::write(&input, hostile(&good)).unwrap();
    let o = run(flywheel()
        .arg("audit")
        .arg(&spec)
        .arg("--input")
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("3 records → 3 passed"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("4 bad input lines left out"),
        "{}",
        stdout(&o)
    );
    for line in 2..=5 {
        assert!(
            stderr(&o).contains(&format!("hostile.jsonl:{line}: bad_input:")),
            "line {line} not named: {}",
            stderr(&o)
        );
    }

    let rd = d.join("runs/t");
    let report = std::fs::read_to_string(rd.join("privacy.json")).unwrap();
    let audited = std::fs::read_to_string(rd.join("audited.jsonl")).unwrap();
    for secret in [
        "ops@corp",
        "123-45-6789",
        "6789",
        "5552345678",
        "4111",
        "jane.doe",
        "10.1.2.3",
        "GB82",
        "555-234-5678",
        "caf",
    ] {
        assert!(!report.contains(secret), "privacy.json repeats {secret:?}");
    }
    for secret in [
        "ops@corp",
        "123-45-6789",
        "5552345678",
        "4111 1111",
        "jane.doe",
        "10.1.2.3",
        "GB82",
    ] {
        assert!(
            !audited.contains(secret),
            "audited.jsonl keeps {secret:?}:\n{audited}"
        );
    }
    // A hex word is not an IPv6 address; bad lines are not passed on.
    assert!(audited.contains("deadbeef::1"), "{audited}");
    assert_eq!(audited.lines().count(), 3);

    let p: Value = serde_json::from_str(&report).unwrap();
    let lines: Vec<u64> = p["bad_input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5]);
    assert_eq!(p["summary"]["bad_input"], 4);
    let fields: Vec<(String, String)> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["start"].is_u64() && f["end"].is_u64(), "{f}");
            (
                f["id"].as_str().unwrap().to_string(),
                f["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, field) in [
        ("chat", "/messages/0/content"),
        ("chat", "/messages/1/content"),
        ("chat", "/messages/2/content"),
        ("pr", "/prompt"),
        ("pr", "/response"),
        ("alpaca", "/instruction"),
        ("alpaca", "/input"),
    ] {
        assert!(
            fields.contains(&(id.to_string(), field.to_string())),
            "no finding at {id} {field}: {fields:?}"
        );
    }

    // --strict: the first bad line is an error naming it.
    let o = run(flywheel()
        .arg("audit")
        .arg(&spec)
        .arg("--input")
        .arg(&input)
        .arg("--strict"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hostile.jsonl:2:"), "{}", stderr(&o));
}

#[test]
fn drop_policy_reaches_non_chat_records() {
    let dir = tempfile::tempdir().unwrap();
    let spec = audit_spec(dir.path(), "pii = \"drop\"");
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            json!({"id": "a", "instruction": "x", "input": "", "output": "reach me at +44 20 7946 0958"}),
            json!({"id": "b", "prompt": "q", "response": "fine"}),
        ),
    )
    .unwrap();
    let o = run(flywheel()
        .arg("audit")
        .arg(&spec)
        .arg("--input")
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let rd = dir.path().join("runs/t");
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("privacy.json")).unwrap()).unwrap();
    assert_eq!(p["dropped"][0]["id"], "a");
    assert_eq!(p["dropped"][0]["reasons"][0], "pii:phone");
    let audited = std::fs::read_to_string(rd.join("audited.jsonl")).unwrap();
    assert_eq!(audited.lines().count(), 1);
}
