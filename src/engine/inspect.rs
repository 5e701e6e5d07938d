//! `flywheel models inspect`: whether a model file or folder will load, and why not,
//! before a long run finds out. Every check the loader makes on metadata runs here
//! (architecture, shapes, rope variant, tokenizer, chat template); reading every tensor
//! is optional (`load`), since for a 7B model that takes a while.

use super::model::{Config, Decoder, Precision};
use crate::error::Result;
use crate::models::{Checkpoint, ResolvedModel};
use candle_core::Device;
use std::collections::BTreeMap;
use std::fmt;

/// What inspecting a model found; `Display` is the report.
pub struct Inspection {
    pub id: String,
    pub path: String,
    pub format: &'static str,
    /// The architecture as the file names it.
    pub arch: Option<String>,
    /// Shapes and constants, when the architecture is supported and its config valid.
    pub config: Option<Config>,
    /// Tensor count by stored type (`Q4_K: 169`).
    pub tensor_types: BTreeMap<String, usize>,
    /// (name, sha256) of a folder's files.
    pub files: Vec<(String, String)>,
    /// One line per piece checked: ("tokenizer", "ok: 151665 tokens").
    pub checks: Vec<(String, String)>,
    /// The first reason it will not load.
    pub problem: Option<String>,
}

impl Inspection {
    pub fn loads(&self) -> bool {
        self.problem.is_none()
    }

    fn check<T>(&mut self, what: &str, r: Result<T>, ok: impl FnOnce(&T) -> String) -> Option<T> {
        match r {
            Ok(v) => {
                self.checks.push((what.into(), format!("ok: {}", ok(&v))));
                Some(v)
            }
            Err(e) => {
                self.checks.push((what.into(), format!("FAILS: {e}")));
                self.problem.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }
}

/// Inspects a resolved model; `load` also reads every tensor (on the CPU, as Q8_0) and
/// runs one forward step.
pub fn inspect(m: &ResolvedModel, load: bool) -> Inspection {
    let main = m.main_file();
    let mut r = Inspection {
        id: m.id.clone(),
        path: main.path.display().to_string(),
        format: if main.path.is_dir() {
            "Hugging Face folder (safetensors)"
        } else {
            "GGUF"
        },
        arch: None,
        config: None,
        tensor_types: BTreeMap::new(),
        files: m
            .folder_files()
            .iter()
            .map(|f| (f.name.clone(), f.sha256.clone()))
            .collect(),
        checks: Vec::new(),
        problem: None,
    };
    let Some(ckpt) = r.check("file", Checkpoint::open(&main.path), |_| "readable".into()) else {
        return r;
    };
    r.arch = ckpt.arch_name().ok();
    r.tensor_types = tensor_types(&ckpt);
    let cfg = match &ckpt {
        Checkpoint::Gguf(g) => Config::from_gguf(g),
        Checkpoint::Hf(f) => Config::from_hf(f),
    };
    r.config = r.check("architecture", cfg, |c| {
        format!("{} is supported", c.arch.name())
    });
    let tok = super::open_tokenizer(&ckpt);
    if let Some(tok) = r.check("tokenizer", tok, |t| format!("{} tokens", t.vocab_size())) {
        let tmpl = super::chat_template_of(&ckpt, m, None, &tok);
        if let Some(t) = r.check("chat template", tmpl, |t| t.provenance()) {
            // A template that raises on a plain conversation would fail every prompt.
            let msgs = [crate::models::chat::Message::new("user", "Hello")];
            r.check("chat render", t.render(&msgs, false), |p| {
                format!("{} characters for one user turn", p.to_string().len())
            });
        }
    }
    if load && r.problem.is_none() {
        let t0 = std::time::Instant::now();
        let d = Decoder::load(&ckpt, &Device::Cpu, Precision::Q8_0).and_then(|d| {
            let mut cache = d.new_cache(1)?;
            d.forward(&mut [super::model::Segment {
                cache: &mut cache,
                tokens: &[0],
            }])?;
            Ok(d)
        });
        r.check("weights", d, |d| {
            format!(
                "every tensor read, one forward step run ({:.1}s; {})",
                t0.elapsed().as_secs_f64(),
                d.weight_format
            )
        });
    } else if r.problem.is_none() {
        r.checks.push((
            "weights".into(),
            "not read (pass --load to read every tensor and run one step)".into(),
        ));
    }
    r
}

/// Tensor counts by stored type, from the file's index (no tensor is read).
fn tensor_types(ckpt: &Checkpoint) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    match ckpt {
        Checkpoint::Gguf(g) => {
            for info in g.content.tensor_infos.values() {
                *out.entry(format!("{:?}", info.ggml_dtype)).or_insert(0) += 1;
            }
        }
        Checkpoint::Hf(f) => {
            // SAFETY: read-only map of files flywheel does not write, used for headers.
            if let Ok(st) = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&f.shards) }
            {
                for (_, view) in st.tensors() {
                    *out.entry(format!("{:?}", view.dtype()).to_uppercase())
                        .or_insert(0) += 1;
                }
            }
        }
    }
    out
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model:   {}", self.id)?;
        writeln!(f, "path:    {}", self.path)?;
        writeln!(f, "format:  {}", self.format)?;
        if let Some(a) = &self.arch {
            writeln!(f, "arch:    {a}")?;
        }
        if let Some(c) = &self.config {
            writeln!(
                f,
                "shape:   {} layers, hidden {}, {} heads ({} KV) of {}, ffn {}, context {}{}{}",
                c.n_layers,
                c.hidden,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                c.ffn,
                c.context,
                c.sliding_window
                    .map_or(String::new(), |w| format!(", sliding window {w}")),
                if c.rope_divisors.is_some() {
                    ", scaled rope"
                } else {
                    ""
                }
            )?;
        }
        if !self.tensor_types.is_empty() {
            let t: Vec<String> = self
                .tensor_types
                .iter()
                .map(|(k, v)| format!("{k} × {v}"))
                .collect();
            writeln!(f, "tensors: {}", t.join(", "))?;
        }
        for (name, sha) in &self.files {
            writeln!(f, "file:    {sha}  {name}")?;
        }
        for (what, status) in &self.checks {
            writeln!(f, "{what:<14} {status}")?;
        }
        match &self.problem {
            None => write!(f, "verdict: will load"),
            Some(p) => write!(f, "verdict: will NOT load: {p}"),
        }
    }
}
