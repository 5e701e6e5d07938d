//! The whole factory through the real CLI on real small models: `flywheel run` end to end,
//! skipping what is up to date, kill -9 during generate and verify then resume, the canary
//! test, the PII audit, blend shortfalls and bad real data, exports, and the HTML report
//! checked in headless Chromium against report.json.

mod common;

use common::{flywheel, model_file, records_by_id, run, stderr, stdout};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn anchor() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/real/anchor.jsonl")
}

/// A small spec: `topics` × 2 audiences records, a judge, verifiers, privacy and blend.
fn spec(dir: &Path, topics: usize, batch: usize, extra: &str) -> PathBuf {
    std::fs::copy(anchor(), dir.join("anchor.jsonl")).unwrap();
    let all = [
        "tides",
        "volcanoes",
        "rainbows",
        "magnets",
        "earthquakes",
        "clouds",
        "lightning",
        "erosion",
    ];
    let t: Vec<String> = all.iter().take(topics).map(|s| format!("{s:?}")).collect();
    let text = format!(
        r#"[run]
name = "p"
seed = 11
out_dir = "{out}"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 40
batch_size = {batch}

[teacher.sampling]
temperature = 0.7
top_p = 0.9
top_k = 40

[seeds]
topic = [{topics}]
audience = ["a curious child", "a first-year student"]

[[task]]
name = "explain"
template = "Explain {{{{topic}}}} to {{{{audience}}}}."

[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."
batch_size = {batch}

[[verifier]]
kind = "length"
unit = "words"
min = 3

[filter]
require = []
# Short answers keep the test fast; truncation rejection has its own test.
allow_truncated = true

[dedup]
semantic = 0.92

{extra}
"#,
        out = dir.join("runs").display(),
        topics = t.join(", "),
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const BLEND: &str = "[blend]\nreal = [\"anchor.jsonl\"]\nreal_share = 0.3\n";

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The number shown in the page for `path`, as the page formats it.
fn expected(report: &Value, path: &str, fmt: &str) -> String {
    let mut x = report;
    for k in path.split('.') {
        x = match k.parse::<usize>() {
            Ok(i) if x.is_array() => &x[i],
            _ => &x[k],
        };
    }
    flywheel::report::html::format_like_js(x.as_f64(), fmt)
}

/// Renders report.html in headless Chromium: the page's own check must pass, and every
/// number in the rendered DOM must match report.json.
fn check_in_chromium(dir: &Path, min_numbers: usize) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("FLYWHEEL_REQUIRE_CHROMIUM").is_none(),
            "FLYWHEEL_REQUIRE_CHROMIUM is set but no chromium was found"
        );
        // Written past the test harness's capture, so a passing run still shows it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the Chromium check of {}: no chromium on PATH (apt-get install chromium; .ci/run installs it and sets FLYWHEEL_REQUIRE_CHROMIUM=1)",
            dir.display()
        );
        return;
    };
    let html = dir.join("report.html").canonicalize().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let check = dom
        .split("data-check=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "page did not run its check; chromium said {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(check.starts_with("ok:"), "page check: {check}");
    let report = json(&dir.join("report.json"));
    let re = regex::Regex::new(r#"data-k="([^"]+)" data-fmt="([^"]+)">([^<]*)<"#).unwrap();
    let mut n = 0;
    for c in re.captures_iter(&dom) {
        let path = c[1].replace("&amp;", "&");
        assert_eq!(&c[3], expected(&report, &path, &c[2]), "number at {path}");
        n += 1;
    }
    assert_eq!(check, format!("ok:{n}"));
    assert!(n >= min_numbers, "only {n} numbers on the page");
}

#[test]
fn whole_run_then_rerun_skips_then_partial_rerun() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let p = spec(dir.path(), 4, 8, BLEND);
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for s in [
        "[1/6] generate",
        "[2/6] verify",
        "[3/6] dedup",
        "[4/6] audit",
        "[5/6] blend",
        "[6/6] report",
    ] {
        assert!(out.contains(s), "{out}");
    }
    let rd = dir.path().join("runs/p");
    for f in [
        "generated.jsonl",
        "verified.jsonl",
        "kept.jsonl",
        "audited.jsonl",
        "privacy.json",
        "dataset.jsonl",
        "dataset.parquet",
        "README.md",
        "report.json",
        "report.html",
    ] {
        assert!(rd.join(f).exists(), "{f} missing");
    }
    // The dataset: ratio, sources, provenance, and the parquet twin.
    let ds = lines(&rd.join("dataset.jsonl"));
    let real = ds.iter().filter(|r| r["source"] == "real").count();
    let syn = ds.iter().filter(|r| r["source"] == "synthetic").count();
    assert_eq!(real + syn, ds.len());
    assert!(syn > 0 && real > 0);
    assert!(
        ((real as f64 / ds.len() as f64) - 0.3).abs() <= 0.5 / ds.len() as f64 + 1e-9,
        "{real}/{}",
        ds.len()
    );
    assert!(ds
        .iter()
        .filter(|r| r["source"] == "synthetic")
        .all(|r| r["provenance"]["generator"]["file_sha256"].is_string()));
    assert!(ds
        .iter()
        .filter(|r| r["source"] == "real")
        .all(|r| r["provenance"]["real"]["file"] == "anchor.jsonl"));
    let pq = flywheel::record::real::read(&rd.join("dataset.parquet"), true).unwrap();
    assert_eq!(pq.records.len(), ds.len());
    let card = std::fs::read_to_string(rd.join("README.md")).unwrap();
    assert!(card.starts_with("---\n") && card.contains("path: dataset.parquet"));
    assert!(
        card.contains(&format!(
            "{:.1}% synthetic",
            100.0 * syn as f64 / ds.len() as f64
        )),
        "{card}"
    );

    // The report agrees with the files.
    let rep = json(&rd.join("report.json"));
    let funnel: Vec<(String, u64)> = rep["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["stage"].as_str().unwrap().into(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let count = |s: &str| funnel.iter().find(|f| f.0 == s).unwrap().1 as usize;
    assert_eq!(count("planned"), 8);
    assert_eq!(count("generated"), lines(&rd.join("generated.jsonl")).len());
    assert_eq!(count("deduped"), lines(&rd.join("kept.jsonl")).len());
    assert_eq!(count("blended (synthetic)"), syn);
    assert_eq!(rep["dataset"]["total"].as_u64().unwrap() as usize, ds.len());
    let lost: u64 = rep["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        lost as usize,
        count("planned") - syn,
        "every loss has a reason: {}",
        rep["losses"]
    );
    assert!(rep["judges"]["quality"]["n"].as_u64().unwrap() == 8);
    assert!(
        rep["diversity"]["synthetic"]["distinct_2"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        rep["diversity"]["real"]["mean_pairwise_distance"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(rep["privacy"]["summary"]["records"].as_u64().is_some());
    let m = json(&rd.join("manifest.json"));
    for s in ["generate", "verify", "dedup", "audit", "blend", "report"] {
        assert_eq!(m["stages"][s]["status"], "done", "{s}: {}", m["stages"][s]);
    }
    check_in_chromium(&rd, 30);

    // Nothing changed: every stage is skipped, and says so.
    let before = std::fs::read(rd.join("dataset.jsonl")).unwrap();
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success());
    assert_eq!(
        stdout(&o)
            .matches("up to date (inputs unchanged), skipped")
            .count(),
        6,
        "{}",
        stdout(&o)
    );

    // Only the blend settings changed: generate … audit are skipped, blend and report rerun.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("real_share = 0.3", "real_share = 0.5");
    std::fs::write(&p, text).unwrap();
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.matches("skipped").count(), 4, "{out}");
    assert!(
        out.contains("[5/6] blend: ") && !out.contains("[5/6] blend: up to date"),
        "{out}"
    );
    assert_ne!(std::fs::read(rd.join("dataset.jsonl")).unwrap(), before);
    let ds = lines(&rd.join("dataset.jsonl"));
    let real = ds.iter().filter(|r| r["source"] == "real").count();
    assert!(((real as f64 / ds.len() as f64) - 0.5).abs() <= 0.5 / ds.len() as f64 + 1e-9);

    // Exports in the formats trainers read.
    for (fmt, key) in [
        ("openai", "messages"),
        ("alpaca", "instruction"),
        ("sharegpt", "conversations"),
        ("chatml", "text"),
    ] {
        let f = dir.path().join(format!("{fmt}.jsonl"));
        let o = run(flywheel()
            .args(["export"])
            .arg(&rd)
            .args(["--format", fmt, "--output"])
            .arg(&f));
        assert!(o.status.success(), "{fmt}: {}", stderr(&o));
        let rows = lines(&f);
        assert_eq!(rows.len(), ds.len());
        assert!(rows.iter().all(|r| r.get(key).is_some()), "{fmt}");
    }
    let o = run(flywheel()
        .args(["export"])
        .arg(&rd)
        .args(["--format", "openai", "--output"])
        .arg(dir.path().join("o.jsonl")));
    assert!(o.status.success());
    assert!(
        lines(&dir.path().join("o.jsonl"))
            .iter()
            .all(|r| r.as_object().unwrap().len() == 1),
        "openai rows hold only messages"
    );

    // Another spec pointed at the same run directory is refused.
    let other = dir.path().join("other.toml");
    std::fs::copy(&p, &other).unwrap();
    let o = run(flywheel().arg("run").arg(&other));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was made by another spec"),
        "{}",
        stderr(&o)
    );
}

/// Starts `flywheel run`, waits until `file` has `n` lines, then kills it with SIGKILL.
fn kill_when(spec: &Path, file: &Path, n: usize) {
    let mut child = flywheel()
        .arg("run")
        .arg(spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let have = std::fs::read_to_string(file)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if have >= n {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("run ended ({st}) before {} had {n} lines", file.display());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} had {have} of {n} lines after 300 s: no kill at the point under test",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed on the way out
    let st = child.wait().unwrap();
    // The process died of the signal: it did not finish or exit on its own first.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "run was not killed mid-stage ({st}); the test would prove nothing"
    );
}

#[test]
fn kill_9_during_generate_and_verify_then_run_completes() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    // Batch 1: records land one by one, so the kill falls between and inside writes.
    let p = spec(dir.path(), 6, 1, BLEND);
    let rd = dir.path().join("runs/p");
    kill_when(&p, &rd.join("generated.jsonl"), 3);
    let got = records_by_id(&rd.join("generated.jsonl"));
    assert!(
        got.len() < 12,
        "the kill came too late to test anything ({} of 12)",
        got.len()
    );
    kill_when(&p, &rd.join("verified.jsonl"), 2);
    let scored = records_by_id(&rd.join("verified.jsonl"));
    assert!(scored.len() < 12, "verify finished before the kill");
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let gen = records_by_id(&rd.join("generated.jsonl")); // panics on a duplicate id
    let ver = records_by_id(&rd.join("verified.jsonl"));
    assert_eq!(gen.len(), 12);
    assert_eq!(
        ver.keys().collect::<Vec<_>>(),
        gen.keys().collect::<Vec<_>>()
    );
    // Records written before the kills were kept, not redone.
    for (id, line) in &got {
        assert_eq!(&gen[id], line);
    }
    assert!(rd.join("report.html").exists());
    // A run without kills gives the same records.
    let dir2 = tempfile::tempdir().unwrap();
    let p2 = spec(dir2.path(), 6, 4, BLEND);
    assert!(run(flywheel().arg("run").arg(&p2)).status.success());
    let clean = records_by_id(&dir2.path().join("runs/p/generated.jsonl"));
    let strip = |m: &std::collections::BTreeMap<String, String>| -> Vec<Value> {
        m.values()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["messages"].clone())
            .collect()
    };
    assert_eq!(
        strip(&gen),
        strip(&clean),
        "resumed records differ from an uninterrupted run"
    );
}

#[test]
fn canary_test_catches_copied_canaries_and_controls_stay_silent() {
    model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[privacy]\nembedder = \"none\"\ncanary_template = \"Copy the following text exactly, word for word:\\n\\n{{{{example}}}}\"\n\n{BLEND}"
    );
    let p = spec(dir.path(), 1, 8, &extra);
    // Greedy decoding: the copy is the model's most likely output.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("temperature = 0.7", "temperature = 0.0")
        .replace("max_new_tokens = 40", "max_new_tokens = 64");
    std::fs::write(&p, text).unwrap();
    let rd = dir.path().join("runs/p");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(rd.join("kept.jsonl"), "").unwrap();
    let o = run(flywheel().args(["audit"]).arg(&p).args(["--canaries", "8"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = &json(&rd.join("privacy.json"))["canary"];
    assert_eq!(c["planted"], 8);
    assert!(
        c["resurfaced_full"].as_u64().unwrap() >= 1,
        "a copying prompt must bring canaries back: {c}"
    );
    assert_eq!(
        c["control_found"], 0,
        "never-shown canaries were 'found': {c}"
    );
    // Each finding names the output it came from (kept in canary_outputs.jsonl, not in
    // privacy.json, as it may repeat real text), and that output holds the secret.
    let outs: std::collections::BTreeMap<String, String> =
        std::fs::read_to_string(rd.join("canary_outputs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().into(),
                    v["output"].as_str().unwrap().into(),
                )
            })
            .collect();
    for d in c["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["found"] == "full")
    {
        assert!(
            d.get("output").is_none(),
            "privacy.json repeats an output: {d}"
        );
        let secret = d["canary"].as_str().unwrap();
        let out = outs[d["shown_in"].as_str().unwrap()].to_lowercase();
        assert!(secret.split('-').all(|w| out.contains(w)), "{d}");
    }
    assert!(stdout(&o).contains("canaries: 8 planted"));
    assert!(rd.join("canary_planted.jsonl").exists());

    // Clean data: the synthetic outputs of an ordinary run contain none of the canaries.
    let outputs: Vec<String> = outs.values().cloned().collect();
    let fresh = flywheel::privacy::canary::make(50, 999);
    let demo = std::fs::read_to_string(anchor()).unwrap();
    for k in &fresh {
        assert!(flywheel::privacy::canary::find(&demo, k).is_none());
        assert!(
            outputs
                .iter()
                .all(|o| flywheel::privacy::canary::find(o, k).is_none()),
            "false alarm for {}",
            k.secret
        );
    }
}

#[test]
fn audit_redacts_pii_drops_copies_and_never_repeats_the_pii() {
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!("[privacy]\nembedder = \"none\"\npii = \"redact\"\ncopy = \"drop\"\n\n{BLEND}");
    let p = spec(dir.path(), 1, 8, &extra);
    let input = dir.path().join("in.jsonl");
    let recs = [
        serde_json::json!({"id": "email", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Write to dr.lee@clinic.example.org or call (555) 123-4567."}]}),
        serde_json::json!({"id": "card", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Paid with 4111 1111 1111 1111; SSN 123-45-6789; from 10.1.2.3."}]}),
        serde_json::json!({"id": "copy", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Summary: the Moon pulls on the Earth's oceans a little, like a gentle magnet for water."}]}),
        serde_json::json!({"id": "clean", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Version 1.2.3.4.5 shipped in 1999-2004 to 300 users."}]}),
    ];
    std::fs::write(
        &input,
        recs.iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let o = run(flywheel()
        .args(["audit"])
        .arg(&p)
        .arg("--input")
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let rd = dir.path().join("runs/p");
    let pj = std::fs::read_to_string(rd.join("privacy.json")).unwrap();
    for secret in ["dr.lee@clinic", "4111 1111", "123-45-6789", "123-4567"] {
        assert!(!pj.contains(secret), "privacy.json repeats {secret}");
    }
    let v: Value = serde_json::from_str(&pj).unwrap();
    let by = &v["summary"]["pii_by_kind"];
    assert_eq!(
        (
            by["email"].as_u64(),
            by["phone"].as_u64(),
            by["credit_card"].as_u64(),
            by["us_ssn"].as_u64(),
            by["ipv4"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!(v["dropped"][0]["id"], "copy");
    let out = lines(&rd.join("audited.jsonl"));
    assert_eq!(
        out.iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["email", "card", "clean"]
    );
    assert_eq!(
        out[0]["messages"][1]["content"],
        "Write to [EMAIL] or call [PHONE]."
    );
    assert_eq!(
        out[1]["messages"][1]["content"],
        "Paid with [CREDIT_CARD]; SSN [US_SSN]; from [IPV4]."
    );
    assert!(
        out[2].get("privacy").is_none(),
        "version numbers and years are not PII"
    );
    assert!(
        stdout(&o).contains("1 dropped, 2 redacted"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn blend_shortfall_bad_real_rows_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.csv");
    std::fs::write(
        &real,
        "prompt,response\nQ1,A one\nQ2,\"A two, with a comma\"\nQ3\nQ4,A four\n",
    )
    .unwrap();
    let p = spec(
        dir.path(),
        1,
        8,
        "[blend]\nreal = [\"real.csv\"]\nreal_share = 0.5\ntotal = 40\n",
    );
    let rd = dir.path().join("runs/p");
    std::fs::create_dir_all(&rd).unwrap();
    let syn: String = (0..5)
        .map(|i| serde_json::json!({"id": format!("s{i}"), "source": "synthetic", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": format!("answer {i}")}]}).to_string() + "\n")
        .collect();
    std::fs::write(rd.join("audited.jsonl"), syn).unwrap();
    let o = run(flywheel().arg("blend").arg(&p));
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("real.csv:4:"), "bad row named: {err}");
    assert!(
        err.contains("15 synthetic and 17 real records are missing"),
        "{err}"
    );
    let ds = lines(&rd.join("dataset.jsonl"));
    assert_eq!(ds.len(), 6, "3 real + 3 synthetic keep the 50 % ratio");
    assert_eq!(ds.iter().filter(|r| r["source"] == "real").count(), 3);
    assert!(
        err.contains("Wrote 6 records (3 synthetic + 3 real, 50% real)"),
        "the message states what was written: {err}"
    );
    let m = json(&rd.join("manifest.json"));
    assert_eq!(m["stages"]["blend"]["status"], "short");
    // The report says the blend fell short, with the same numbers.
    let o = run(flywheel()
        .arg("report")
        .arg(&rd)
        .args(["--embedder", "none"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rep = json(&rd.join("report.json"));
    assert_eq!(
        rep["dataset"]["short"],
        serde_json::json!({"asked_total": 40, "asked_real_share": 0.5, "missing_synthetic": 15, "missing_real": 17})
    );
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(
        html.contains("Short of the spec"),
        "report.html names the shortfall"
    );
    check_in_chromium(&rd, 10);
    let o = run(flywheel().arg("blend").arg(&p).arg("--strict"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("real.csv:4:") && stderr(&o).contains("--strict"),
        "{}",
        stderr(&o)
    );
    // Empty real data is an error that says so, not an empty blend.
    std::fs::write(&real, "prompt,response\n").unwrap();
    let o = run(flywheel().arg("blend").arg(&p));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("hold no readable records"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn report_warns_in_plain_words_when_the_synthetic_set_collapses() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("collapsed");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(
        rd.join("manifest.json"),
        r#"{"flywheel":"0.1.0","spec_path":"x.toml","spec_sha256":"","models":[],"stages":{}}"#,
    )
    .unwrap();
    let mut rows = String::new();
    for i in 0..12 {
        // The same answer over and over, one word changed: a collapsed teacher.
        let syn = serde_json::json!({"id": format!("s{i}"), "source": "synthetic", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": format!("Tides are caused by the Moon pulling on the ocean water every day number {i}.")}]});
        rows.push_str(&(syn.to_string() + "\n"));
    }
    for line in std::fs::read_to_string(anchor()).unwrap().lines().take(12) {
        let mut r: Value = serde_json::from_str(line).unwrap();
        r["source"] = "real".into();
        rows.push_str(&(r.to_string() + "\n"));
    }
    std::fs::write(rd.join("dataset.jsonl"), rows).unwrap();
    let o = run(flywheel()
        .arg("report")
        .arg(&rd)
        .args(["--embedder", "none"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("warning: Synthetic wording is repetitive"),
        "{out}"
    );
    assert!(
        out.contains("warning: Synthetic records resemble each other"),
        "{out}"
    );
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(html.contains("class=\"warn\">⚠ Synthetic wording is repetitive"));
    let rep = json(&rd.join("report.json"));
    assert!(
        rep["diversity"]["synthetic"]["self_bleu"].as_f64().unwrap()
            > rep["diversity"]["real"]["self_bleu"].as_f64().unwrap() + 0.1
    );
    check_in_chromium(&rd, 15);

    // The real anchor against itself raises no warning.
    let mut rows = String::new();
    for (i, line) in std::fs::read_to_string(anchor())
        .unwrap()
        .lines()
        .enumerate()
    {
        let mut r: Value = serde_json::from_str(line).unwrap();
        r["source"] = if i % 2 == 0 { "real" } else { "synthetic" }.into();
        rows.push_str(&(r.to_string() + "\n"));
    }
    std::fs::write(rd.join("dataset.jsonl"), rows).unwrap();
    let o = run(flywheel()
        .arg("report")
        .arg(&rd)
        .args(["--embedder", "none"]));
    assert!(o.status.success());
    assert!(!stdout(&o).contains("warning"), "{}", stdout(&o));
}

/// A dataset whose synthetic share is an exact decimal tie (5 of 16 = 31.25 %): Rust's
/// formatting sends ties to even, JavaScript's `toFixed` away from zero, and the page's
/// self-check compares the two.
#[test]
fn report_page_agrees_with_its_own_check_on_exact_ties() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("ties");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(
        rd.join("manifest.json"),
        r#"{"flywheel":"0.1.0","spec_path":"x.toml","spec_sha256":"","models":[],"stages":{}}"#,
    )
    .unwrap();
    let rows: String = (0..16)
        .map(|i| {
            let source = if i < 5 { "synthetic" } else { "real" };
            serde_json::json!({"id": format!("r{i}"), "source": source, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": format!("answer number {i}")}]}).to_string() + "\n"
        })
        .collect();
    std::fs::write(rd.join("dataset.jsonl"), rows).unwrap();
    let o = run(flywheel()
        .arg("report")
        .arg(&rd)
        .args(["--embedder", "none"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&rd.join("report.json"))["dataset"]["synthetic_share"],
        0.3125
    );
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(html.contains(">31.3%<"), "5/16 shown as toFixed shows it");
    check_in_chromium(&rd, 5);
}

#[test]
fn ctrl_c_during_run_stops_after_the_batch_and_rerun_completes() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let p = spec(dir.path(), 6, 1, BLEND);
    let rd = dir.path().join("runs/p");
    let child = flywheel()
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(rd.join("generated.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 2
        && t0.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling a child process we spawned and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let m = json(&rd.join("manifest.json"));
    assert_eq!(m["stages"]["generate"]["status"], "interrupted");
    let kept = records_by_id(&rd.join("generated.jsonl"));
    assert!(!kept.is_empty() && kept.len() < 12);
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{} already done", kept.len())),
        "{}",
        stdout(&o)
    );
    assert_eq!(records_by_id(&rd.join("generated.jsonl")).len(), 12);
    assert!(rd.join("report.html").exists());
}

/// Answers that hit `max_new_tokens` stop mid-sentence: rejected as `truncated` by
/// default, counted per task in the report, and kept once `allow_truncated = true`
/// (which reruns the filter: it is part of the stage's settings).
#[test]
fn answers_cut_off_at_max_new_tokens_are_rejected_unless_allowed() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let p = spec(dir.path(), 3, 8, BLEND);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("allow_truncated = true\n", "")).unwrap();
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let rd = dir.path().join("runs/p");
    let generated = lines(&rd.join("generated.jsonl"));
    let cut: Vec<&Value> = generated
        .iter()
        .filter(|r| r["provenance"]["finish_reason"] == "length")
        .collect();
    assert!(!cut.is_empty(), "40-token answers: some must hit the limit");
    let rejected = lines(&rd.join("rejected.jsonl"));
    let dataset = lines(&rd.join("dataset.jsonl"));
    for r in &cut {
        let rj = rejected
            .iter()
            .find(|x| x["id"] == r["id"])
            .unwrap_or_else(|| panic!("a cut-off answer was not rejected: {r}"));
        assert_eq!(rj["decision"]["reason"], "truncated", "{rj}");
        assert!(dataset.iter().all(|d| d["id"] != r["id"]));
    }
    assert!(dataset
        .iter()
        .all(|d| d["provenance"]["finish_reason"] != "length"));
    let report = json(&rd.join("report.json"));
    let row = &report["truncation"][0];
    assert_eq!(row["task"], "explain");
    assert_eq!(row["records"].as_u64().unwrap() as usize, generated.len());
    assert_eq!(
        row["hit_max_new_tokens"].as_u64().unwrap() as usize,
        cut.len()
    );
    assert_eq!(
        row["rejected_truncated"].as_u64().unwrap() as usize,
        cut.len()
    );
    let losses = report["losses"].as_array().unwrap();
    assert!(
        losses
            .iter()
            .any(|l| l["reason"] == "truncated"
                && l["count"].as_u64().unwrap() as usize == cut.len()),
        "{losses:?}"
    );
    assert!(std::fs::read_to_string(rd.join("report.html"))
        .unwrap()
        .contains("Cut off at max_new_tokens"));
    // Allowed: the filter reruns and keeps them.
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("require = []\n", "require = []\nallow_truncated = true\n"),
    )
    .unwrap();
    let o = run(flywheel().arg("run").arg(&p));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let rejected = lines(&rd.join("rejected.jsonl"));
    assert!(rejected
        .iter()
        .all(|r| r["decision"]["reason"] != "truncated"));
    let report = json(&rd.join("report.json"));
    assert_eq!(report["truncation"][0]["rejected_truncated"], 0);
}
