//! Dedup on real models and the real CLI: the stage on generated + verified records, the
//! semantic method on a labeled handful of paraphrases, and semantic P/R/F1 on the corpus.

mod common;

use common::{flywheel, model_file, run, stderr, stdout, write_spec};
use flywheel::dedup::corpus::{self, CorpusSpec};
use flywheel::dedup::{self, Item, MinHashOptions, SemanticOptions};
use flywheel::embed::Embedder;
use flywheel::models::source::FetchPolicy;
use serde_json::Value;

fn embedder() -> Embedder {
    let w = model_file("all-minilm-l6-v2");
    Embedder::load(
        w.parent().unwrap().to_str().unwrap(),
        FetchPolicy::Offline,
        &candle_core::Device::Cpu,
    )
    .expect("embedder")
}

fn items(texts: &[&str]) -> Vec<Item> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Item {
            id: format!("t{i}"),
            text: t.to_string(),
            score: None,
        })
        .collect()
}

/// Paraphrases (same meaning, different words) and same-topic different-meaning pairs.
const PARAPHRASES: &[(&str, &str)] = &[
    (
        "How do I reset my password?",
        "What are the steps to change a forgotten password?",
    ),
    (
        "The meeting has been moved to Friday afternoon.",
        "We rescheduled the meeting for Friday after lunch.",
    ),
    (
        "Drink plenty of water when you exercise in hot weather.",
        "Stay well hydrated while working out in the heat.",
    ),
    (
        "The capital of France is Paris.",
        "Paris is France's capital city.",
    ),
    (
        "Photosynthesis lets plants turn sunlight into chemical energy.",
        "Plants use photosynthesis to convert light from the sun into chemical energy.",
    ),
    (
        "Please close the window, it is cold in here.",
        "Could you shut the window? It's chilly in this room.",
    ),
];
const SAME_TOPIC: &[(&str, &str)] = &[
    ("How do I reset my password?", "How do I delete my account?"),
    (
        "The meeting has been moved to Friday afternoon.",
        "The meeting was cancelled because the manager is ill.",
    ),
    (
        "Drink plenty of water when you exercise in hot weather.",
        "Running in cold weather burns more calories.",
    ),
    (
        "The capital of France is Paris.",
        "The capital of Germany is Berlin.",
    ),
    (
        "Photosynthesis lets plants turn sunlight into chemical energy.",
        "Plants absorb water and minerals through their roots.",
    ),
    (
        "Please close the window, it is cold in here.",
        "Please open the window, it is too hot in here.",
    ),
];

/// MinHash (surface overlap) finds none of the paraphrases; semantic dedup at its default
/// threshold finds the close ones and merges none of the same-topic, different-meaning pairs.
#[test]
fn semantic_finds_paraphrases_that_minhash_misses() {
    let emb = embedder();
    let default = SemanticOptions::default().threshold;
    let mut found = 0;
    for (label, pairs) in [("paraphrase", PARAPHRASES), ("same topic", SAME_TOPIC)] {
        for (a, b) in pairs {
            let its = items(&[a, b]);
            let mut mh = vec![None; 2];
            dedup::minhash(&its, &MinHashOptions::default(), &mut mh);
            assert_eq!(mh[1], None, "MinHash should not match {a:?} / {b:?}");
            let v: Vec<Vec<f32>> = emb
                .embed(&[a, b], |_| {})
                .unwrap()
                .into_iter()
                .map(|e| e.vector)
                .collect();
            let mut out = vec![None; 2];
            dedup::semantic(&its, &v, &SemanticOptions::default(), &mut out).unwrap();
            let cos: f32 = v[0].iter().zip(&v[1]).map(|(x, y)| x * y).sum();
            eprintln!(
                "{label:<10} cos {cos:.3} {}: {a} | {b}",
                if out[1].is_some() { "DUP " } else { "kept" }
            );
            if label == "paraphrase" {
                found += out[1].is_some() as usize;
            } else {
                assert_eq!(
                    out[1], None,
                    "same-topic pair merged at {default}: {a:?} / {b:?} (cos {cos})"
                );
            }
        }
    }
    assert!(
        found >= 2,
        "semantic dedup found only {found} of {} paraphrases",
        PARAPHRASES.len()
    );
}

/// Semantic dedup on the seeded corpus (5% word edits, template-sibling hard negatives) at
/// the default threshold: F1 ≥ 0.95.
#[test]
fn semantic_f1_on_seeded_corpus() {
    let emb = embedder();
    let c = corpus::build(CorpusSpec {
        bases: 150,
        edit_rate: 0.05,
        ..Default::default()
    });
    let texts: Vec<&str> = c.texts.iter().map(String::as_str).collect();
    let its = items(&texts);
    let vecs: Vec<Vec<f32>> = emb
        .embed(&texts, |_| {})
        .unwrap()
        .into_iter()
        .map(|e| e.vector)
        .collect();
    let mut out = vec![None; its.len()];
    dedup::semantic(&its, &vecs, &SemanticOptions::default(), &mut out).unwrap();
    let s = corpus::score(&c.group, &dedup::clusters(&its, &out));
    eprintln!(
        "semantic at {}: {s:?}",
        SemanticOptions::default().threshold
    );
    assert!(s.f1 >= 0.95, "{s:?}");
}

fn read(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The stage through the CLI on records generated and verified by the real models, with
/// injected duplicates, a failing verifier, eval-set contamination and unreadable lines.
#[test]
fn dedup_stage_on_generated_and_verified_records() {
    model_file("smollm2-135m-instruct");
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 3, 32, 0.7);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(
        r#"
[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."

[[verifier]]
kind = "length"
unit = "words"
min = 1

[filter]
min_judge = 0.0
allow_truncated = true

[dedup]
minhash = 0.8
semantic = 0.97
against = ["eval.txt"]
"#,
    );
    std::fs::write(&spec, text).unwrap();
    let o = run(flywheel().arg("generate").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(flywheel().arg("verify").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    let run_dir = dir.path().join("runs/t");
    let verified = run_dir.join("verified.jsonl");
    let recs = read(&verified);
    assert_eq!(recs.len(), 6);
    let answer = |r: &Value| r["messages"][2]["content"].as_str().unwrap().to_string();
    let id = |r: &Value| r["id"].as_str().unwrap().to_string();

    // Injected records.
    let mut exact = recs[0].clone();
    exact["id"] = "copy-exact".into();
    exact["messages"][2]["content"] = format!("  {}  ", answer(&recs[0]).to_uppercase()).into();
    let mut near = recs[1].clone();
    near["id"] = "copy-near".into();
    near["messages"][2]["content"] = format!("{} Indeed.", answer(&recs[1])).into();
    let mut failing = recs[3].clone();
    failing["id"] = "fails-length".into();
    failing["scores"]["verifiers"]["length"]["pass"] = false.into();
    let mut bytes = std::fs::read(&verified).unwrap();
    for r in [&exact, &near, &failing] {
        bytes.extend(serde_json::to_vec(r).unwrap());
        bytes.push(b'\n');
    }
    bytes.extend(b"{\"id\": \"latin1\", \"text\": \"caf\xe9\"}\n");
    bytes.extend(b"{not json\n");
    std::fs::write(&verified, bytes).unwrap();
    // recs[2]'s answer is in the eval set.
    std::fs::write(
        dir.path().join("eval.txt"),
        format!(
            "unrelated question about tides and the moon\n{}\n",
            answer(&recs[2]).replace('\n', " ")
        ),
    )
    .unwrap();

    let o = run(flywheel().arg("dedup").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("{}", stdout(&o));
    let kept = read(&run_dir.join("kept.jsonl"));
    let rejected = read(&run_dir.join("rejected.jsonl"));
    assert_eq!(
        kept.len() + rejected.len(),
        11,
        "every input line lands in one file"
    );
    let reason = |rid: &str| -> String {
        rejected
            .iter()
            .find(|r| r["id"] == rid)
            .map(|r| r["decision"]["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{rid} not rejected"))
    };
    assert_eq!(
        reason("copy-exact"),
        format!("dup_of:{} (exact)", id(&recs[0]))
    );
    assert!(
        reason("copy-near").starts_with(&format!("dup_of:{} (minhash 0.", id(&recs[1]))),
        "{}",
        reason("copy-near")
    );
    assert_eq!(reason("fails-length"), "verifier:length");
    assert_eq!(reason(&id(&recs[2])), "contaminated:eval.txt:line2");
    let bad: Vec<&Value> = rejected
        .iter()
        .filter(|r| r["decision"]["stage"] == "input")
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(bad
        .iter()
        .any(|r| r["decision"]["reason"] == "bad_input:not_utf8" && r["line"] == 10));
    assert!(bad.iter().any(|r| r["decision"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("bad_input:invalid_json")
        && r["line"] == 11));
    for r in &kept {
        assert_eq!(r["decision"]["kept"], true);
        assert_eq!(r["decision"]["embedding"]["model"], "all-minilm-l6-v2");
        assert!(
            r["scores"]["judge"]["quality"].is_object(),
            "scores travel with the record"
        );
    }
    for k in [&recs[0], &recs[1]] {
        assert!(
            kept.iter().any(|r| r["id"] == k["id"]),
            "the original survives its copy"
        );
    }
    // Any other rejection of an original is a duplicate of a kept record: its match, or
    // the survivor its chain of matches ends at.
    for r in &rejected {
        if let Some(of) = r["decision"]["dup_of"].as_str() {
            let last = r["decision"]["survivor"].as_str().unwrap_or(of);
            assert!(
                kept.iter().any(|k| k["id"] == last),
                "{last} must name a kept record"
            );
        }
    }
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["stages"]["dedup"]["status"], "done");
    assert_eq!(m["stages"]["dedup"]["extra"]["kept"], kept.len());
    assert!(m["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["role"] == "embedder"));

    // A rerun gives the same files, byte for byte, from the index the first run made: the
    // records are not embedded again.
    let before = std::fs::read(run_dir.join("kept.jsonl")).unwrap();
    assert!(stdout(&o).contains("embedded "), "{}", stdout(&o));
    let o = run(flywheel().arg("dedup").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(before, std::fs::read(run_dir.join("kept.jsonl")).unwrap());
    assert!(
        stdout(&o).contains("embeddings from the dedup index (made earlier)"),
        "{}",
        stdout(&o)
    );
    // A damaged index is made again, never read: the same files.
    let sig = run_dir.join("index/signatures.bin");
    let mut b = std::fs::read(&sig).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    std::fs::write(&sig, b).unwrap();
    let o = run(flywheel().arg("dedup").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(before, std::fs::read(run_dir.join("kept.jsonl")).unwrap());

    // Stand-alone mode on the same file, and bad input errors.
    let o = run(flywheel()
        .args(["dedup", "--exact", "--input"])
        .arg(&verified)
        .arg("--output")
        .arg(dir.path().join("k.jsonl")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r2 = read(&dir.path().join("k.rejected.jsonl"));
    assert!(r2.iter().any(|r| r["id"] == "copy-exact"));
    assert!(
        r2.iter().any(|r| r["id"] == "fails-length"),
        "exact copy of recs[3] (no filter flags given)"
    );
    let o = run(flywheel()
        .args(["dedup", "--input"])
        .arg(&verified)
        .arg("--output")
        .arg(dir.path().join("k2.jsonl"))
        .arg("--against")
        .arg(dir.path().join("missing-eval.jsonl")));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing-eval.jsonl"), "{}", stderr(&o));
    let o = run(flywheel()
        .args(["dedup", "--minhash", "1.5", "--input"])
        .arg(&verified)
        .arg("--output")
        .arg(dir.path().join("k3.jsonl")));
    assert!(
        !o.status.success() && stderr(&o).contains("--minhash"),
        "{}",
        stderr(&o)
    );
}

/// Exact dedup matches b to a, then MinHash matches a to the better-scored c: b's `dup_of`
/// still names the record it matched (a, removed), and `survivor` names the kept one.
#[test]
fn a_chain_across_methods_names_its_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let a = "The quick brown fox jumps over the lazy dog near the quiet river bank on a sunny day.";
    let rec = |id: &str, text: String, score: f64| {
        serde_json::json!({"id": id, "text": text, "scores": {"judge_combined": {"score": score}}})
            .to_string()
            + "\n"
    };
    let rows = rec("a", a.into(), 0.5)
        + &rec("b", a.to_uppercase(), 0.4)
        + &rec("c", format!("{a} Indeed."), 0.9)
        + &rec("e", "🎉🎉".into(), 0.5);
    std::fs::write(&input, rows).unwrap();
    let o = run(flywheel()
        .args(["dedup", "--exact", "--minhash", "0.8", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("k.jsonl")));
    assert!(o.status.success(), "{}", stderr(&o));
    let kept = read(&dir.path().join("k.jsonl"));
    let ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c", "e"], "an emoji-only answer is kept, not 'empty'");
    let rej = read(&dir.path().join("k.rejected.jsonl"));
    let d = |id: &str| rej.iter().find(|r| r["id"] == id).unwrap()["decision"].clone();
    assert_eq!(d("a")["dup_of"], "c");
    assert!(d("a").get("survivor").is_none(), "a's match is kept");
    assert_eq!(d("b")["reason"], "dup_of:a (exact)");
    assert_eq!(d("b")["survivor"], "c");
}

/// `flywheel embed` writes .npy rows for readable lines and names the others.
#[test]
fn embed_command_writes_npy_and_ids() {
    model_file("all-minilm-l6-v2");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = "word ".repeat(400);
    std::fs::write(
        &input,
        format!("{{\"id\":\"a\",\"text\":\"hello world\"}}\n{{\"id\":\"b\",\"text\":\"{long}\"}}\n{{\"id\":\"c\"}}\n{{\"id\":\"d\",\"text\":\"\"}}\n"),
    )
    .unwrap();
    let out = dir.path().join("v.npy");
    let o = run(flywheel()
        .args(["embed", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(":3: skipped"), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 truncated"), "{}", stdout(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'shape': (3, 384)"), "{header}");
    assert_eq!((bytes.len() - 10 - hlen) % 64, 0);
    assert_eq!(bytes.len() - 10 - hlen, 3 * 384 * 4);
    let ids = std::fs::read_to_string(dir.path().join("v.npy.ids")).unwrap();
    assert_eq!(ids, "a\nb\nd\n");
    let o = run(flywheel()
        .args(["embed", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("v.txt")));
    assert!(!o.status.success() && stderr(&o).contains(".npy or .safetensors"));
}
