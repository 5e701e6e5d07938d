//! Model breadth through the product: every architecture's tiny model (made with Hugging
//! Face transformers by scripts/make_tiny_models.py) from a safetensors folder and from
//! GGUF, through the engine's prompt path, `flywheel bench generate`, `flywheel models
//! inspect`, the hub cache by repo id, and a whole `flywheel run` with a safetensors
//! teacher.

mod common;

use common::{flywheel, run, stderr, stdout};
use flywheel::engine::{Llm, Precision};
use flywheel::models::chat::Message;
use flywheel::models::{resolve, FetchPolicy};
use std::path::{Path, PathBuf};

const ARCHES: &[&str] = &["qwen2", "qwen3", "llama3", "mistral", "phi3"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/{name}"))
}

fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The model's own chat template (chat_template.jinja in the folder, tokenizer.chat_template
/// in the GGUF) rendered and tokenized by us gives the ids transformers'
/// `apply_chat_template(..., tokenize=True)` gives; and generation stops where the model's
/// files say (generation_config.json's `eos_token_id` list included).
#[test]
fn chat_prompt_ids_and_stop_tokens_match_transformers() {
    for name in ARCHES {
        let r = reference(name);
        let msgs: Vec<Message> = r["chat_messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let want: Vec<u32> = serde_json::from_value(r["chat_ids"].clone()).unwrap();
        let eos: Vec<u32> = match &r["eos_token_ids"] {
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            x => vec![x.as_u64().unwrap() as u32],
        };
        for source in [fixture(name).join("hf"), fixture(name).join("model.gguf")] {
            let m = resolve(source.to_str().unwrap(), FetchPolicy::Offline).unwrap();
            let llm = Llm::load(&m, &candle_core::Device::Cpu, Precision::F32, None).unwrap();
            assert!(
                llm.info.chat_template.starts_with("jinja"),
                "{name} {}: template {}",
                source.display(),
                llm.info.chat_template
            );
            let got = llm.prompt_ids(&msgs).unwrap();
            assert_eq!(
                got,
                want,
                "{name} {}: prompt ids differ from transformers'\nours:  {:?}\nwant:  {:?}",
                source.display(),
                llm.tokenizer.decode(&got).unwrap_or_default(),
                r["chat_prompt"]
            );
            if source.is_dir() {
                for id in &eos {
                    assert!(
                        llm.stop_ids.contains(id),
                        "{name}: stop ids {:?} lack {id}",
                        llm.stop_ids
                    );
                }
                // Every file of the folder is in provenance, each with its sha256.
                for f in ["config.json", "tokenizer.json", "generation_config.json"] {
                    assert_eq!(llm.info.files[f].len(), 64, "{name}: {f}");
                }
            }
        }
    }
}

/// `flywheel bench generate` runs every architecture from both formats.
#[test]
fn bench_generate_runs_every_architecture_from_both_formats() {
    for name in ARCHES {
        for source in [
            fixture(name).join("hf"),
            fixture(name).join("model-q8_0.gguf"),
        ] {
            let o = run(flywheel()
                .args(["bench", "generate", "--device", "cpu", "--model"])
                .arg(&source)
                .args([
                    "--batch-sizes",
                    "1,3",
                    "--tokens",
                    "4",
                    "--prompt-tokens",
                    "16",
                    "--runs",
                    "1",
                ]));
            assert!(
                o.status.success(),
                "{name} {}: {}",
                source.display(),
                stderr(&o)
            );
            let out = stdout(&o);
            let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap())
                .unwrap_or_else(|e| panic!("{name}: last line is not JSON ({e}): {out}"));
            let rows = json["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 3, "{name}: prefill + two decode rows: {out}");
            for r in rows {
                let share = r["share_of_bound"].as_f64().unwrap();
                assert!(share > 0.0 && share.is_finite(), "{name}: {r}");
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn inspect(target: &Path) -> (bool, String) {
    let o = run(flywheel().args(["models", "inspect", "--load"]).arg(target));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!text.contains("panicked"), "{text}");
    (o.status.success(), text)
}

/// `flywheel models inspect` says "will load" for every fixture, and for broken ones
/// says exactly why not (exit 1, never a panic).
#[test]
fn inspect_says_whether_a_model_loads_and_why_not() {
    for name in ARCHES {
        for source in [fixture(name).join("hf"), fixture(name).join("model.gguf")] {
            let (ok, text) = inspect(&source);
            assert!(ok, "{text}");
            assert!(text.contains("verdict: will load"), "{text}");
            assert!(text.contains("every tensor read"), "{text}");
        }
    }
    let tmp = tempfile::tempdir().unwrap();

    // A sharded folder missing a shard names the file.
    let d = tmp.path().join("mistral");
    copy_dir(&fixture("mistral").join("hf"), &d);
    std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).unwrap();
    let o = run(flywheel().args(["models", "inspect"]).arg(&d));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("model-00002-of-00003.safetensors is missing"),
        "{}",
        stderr(&o)
    );

    // An unsupported architecture is named, with the supported ones.
    let d = tmp.path().join("neox");
    copy_dir(&fixture("qwen2").join("hf"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"model_type\": \"qwen2\"", "\"model_type\": \"gpt_neox\""),
    )
    .unwrap();
    let (ok, text) = inspect(&d);
    assert!(!ok, "{text}");
    assert!(
        text.contains("\"gpt_neox\" is not supported yet")
            && text.contains("llama, mistral, qwen2, qwen3, phi3"),
        "{text}"
    );

    // A template that raises shows the template's own message.
    let d = tmp.path().join("raises");
    copy_dir(&fixture("phi3").join("hf"), &d);
    std::fs::write(
        d.join("chat_template.jinja"),
        "{{ raise_exception('this template only takes tools') }}",
    )
    .unwrap();
    let (ok, text) = inspect(&d);
    assert!(!ok, "{text}");
    assert!(text.contains("this template only takes tools"), "{text}");

    // No tokenizer.json: says so, and what to do.
    let d = tmp.path().join("notok");
    copy_dir(&fixture("qwen3").join("hf"), &d);
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let (ok, text) = inspect(&d);
    assert!(!ok, "{text}");
    assert!(text.contains("no tokenizer.json"), "{text}");

    // Llama 3 rope scaling of a kind the engine lacks is refused, not run unscaled.
    let d = tmp.path().join("yarn");
    copy_dir(&fixture("llama3").join("hf"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""),
    )
    .unwrap();
    let (ok, text) = inspect(&d);
    assert!(!ok, "{text}");
    assert!(text.contains("rope_scaling type \"yarn\""), "{text}");
}

/// A repo id resolves from the Hugging Face hub cache (`$HF_HOME/hub`), offline, to its
/// snapshot; an id that is not cached says where it looked and that nothing is downloaded.
#[test]
fn repo_id_resolves_from_the_hub_cache_offline() {
    let hf = tempfile::tempdir().unwrap();
    let repo = hf.path().join("hub/models--tiny-org--tiny-qwen3");
    let snap = repo.join("snapshots/0123abcd");
    copy_dir(&fixture("qwen3").join("hf"), &snap);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let o = run(flywheel()
        .env("HF_HOME", hf.path())
        .env_remove("HF_HUB_CACHE")
        .env("FLYWHEEL_OFFLINE", "1")
        .args(["models", "inspect", "tiny-org/tiny-qwen3"]));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("model:   tiny-org/tiny-qwen3"), "{out}");
    assert!(out.contains("snapshots/0123abcd"), "{out}");
    assert!(out.contains("config.json"), "{out}");

    let o = run(flywheel()
        .env("HF_HOME", hf.path())
        .env_remove("HF_HUB_CACHE")
        .args(["models", "inspect", "tiny-org/not-cached"]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("not in the Hugging Face cache")
            && err.contains("models--tiny-org--not-cached")
            && err.contains("never downloads"),
        "{err}"
    );
}

/// A spec whose teacher is a safetensors folder runs end to end, and every record names
/// each of the folder's files with its sha256.
#[test]
fn a_safetensors_teacher_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[run]
name = "st"
seed = 3
out_dir = "{out}"

[teacher]
model = "{model}"
max_new_tokens = 12
batch_size = 4

[seeds]
topic = ["rivers", "numbers", "foxes"]

[[task]]
name = "poem"
system = "You write short poems."
template = "Write a poem about {{{{topic}}}}."
"#,
            out = dir.path().join("runs").display(),
            model = fixture("qwen2").join("hf").display()
        ),
    )
    .unwrap();
    let o = run(flywheel().arg("run").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    let gen = std::fs::read_to_string(dir.path().join("runs/st/generated.jsonl")).unwrap();
    let lines: Vec<&str> = gen.lines().collect();
    assert_eq!(lines.len(), 3, "{gen}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let g = &v["provenance"]["generator"];
        assert_eq!(g["arch"], "qwen2", "{v}");
        assert!(
            g["chat_template"].as_str().unwrap().starts_with("jinja"),
            "{g}"
        );
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            assert_eq!(g["files"][f].as_str().map(str::len), Some(64), "{f}: {g}");
        }
    }
    // A second run is fresh: nothing is redone.
    let o = run(flywheel().arg("run").arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("runs/st/generated.jsonl")).unwrap(),
        gen
    );
}

/// A teacher folder and a `.jinja` template named relative to the spec are found beside
/// it whatever the working directory; editing the template after a run is not resumed
/// as if nothing changed: the next run refuses to mix records (exit ≠ 0) until --force.
#[test]
fn spec_relative_model_and_template_and_template_edits() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("qwen3").join("hf"), &dir.path().join("teacher"));
    std::fs::write(
        dir.path().join("tmpl.jinja"),
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("spec.toml"),
        r#"[run]
name = "rel"
seed = 5
out_dir = "runs"

[teacher]
model = "teacher"
chat_template = "tmpl.jinja"
max_new_tokens = 6

[seeds]
topic = ["rivers", "numbers"]

[[task]]
name = "poem"
template = "A poem about {{topic}}."
"#,
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let generate = || {
        run(flywheel()
            .current_dir(elsewhere.path())
            .arg("generate")
            .arg(dir.path().join("spec.toml")))
    };
    let o = generate();
    assert!(o.status.success(), "{}", stderr(&o));
    // out_dir is relative to the working directory (the spec's inputs are beside it).
    let out = elsewhere.path().join("runs/rel/generated.jsonl");
    let first = std::fs::read_to_string(&out).unwrap();
    assert_eq!(first.lines().count(), 2, "{first}");
    assert!(first.contains("\"arch\":\"qwen3\""), "{first}");

    std::fs::write(
        dir.path().join("tmpl.jinja"),
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\nSure:",
    )
    .unwrap();
    let o = generate();
    assert!(
        !o.status.success(),
        "an edited template must not resume silently"
    );
    assert!(stderr(&o).contains("chat_template"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first);
}

/// A GGUF whose tokenizer metadata is incomplete (no token list, or no merges for a BPE)
/// is refused with the key it lacks, never a panic.
#[test]
fn gguf_with_incomplete_tokenizer_metadata_is_refused_clearly() {
    use candle_core::quantized::gguf_file::{write, Content};
    let src = fixture("qwen2").join("model.gguf");
    let mut f = std::fs::File::open(&src).unwrap();
    let content = Content::read(&mut f).unwrap();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            let t = content
                .tensor(&mut f, n, &candle_core::Device::Cpu)
                .unwrap();
            (n.clone(), t)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for drop_key in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.model",
    ] {
        let meta: Vec<(&str, &candle_core::quantized::gguf_file::Value)> = content
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != drop_key)
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let tens: Vec<(&str, &candle_core::quantized::QTensor)> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let path = dir.path().join(format!("no-{drop_key}.gguf"));
        write(&mut std::fs::File::create(&path).unwrap(), &meta, &tens).unwrap();
        let (ok, text) = inspect(&path);
        assert!(!ok, "{drop_key}: {text}");
        assert!(
            text.contains("tokenizer") && text.contains(drop_key),
            "{drop_key}: {text}"
        );
    }
}
