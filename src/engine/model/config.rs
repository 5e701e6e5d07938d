//! What differs between model families: [`Arch`] names the family and answers the few
//! questions the shared decoder asks (norms, activation, which layers slide); [`Config`]
//! holds the shapes and constants, read from GGUF metadata or a Hugging Face
//! `config.json`. A new family adds an `Arch` variant, its names in both formats here,
//! and an answer in each hook. Fused or separate q/k/v and gate/up, and biases, are
//! found from the tensors present (see `weights`), not declared per family.

use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use crate::models::hf::HfFolder;
use serde_json::Value;

/// The model families this decoder implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
    /// Qwen2 and Qwen2.5: llama's block with biases on q, k and v, and half-split rope.
    Qwen2,
    /// Qwen3 (dense): Qwen2's block without the q/k/v biases, with an RMSNorm over each
    /// head of q and k before rope.
    Qwen3,
    /// Mistral: llama's block, every layer within `sliding_window` when the config sets
    /// one. (Its GGUF files say `llama`.)
    Mistral,
    /// Phi-3: llama's block with q/k/v and gate/up stored fused, sliding window from the
    /// config.
    Phi3,
}

/// What `flywheel models list` shows: each family, its names in GGUF and config.json,
/// and what sets it apart.
pub const ARCHITECTURES: &[(&str, &str, &str)] = &[
    (
        "llama",
        "llama / llama",
        "Llama 2/3.x, SmolLM2; llama3 and linear rope scaling",
    ),
    (
        "mistral",
        "llama / mistral",
        "sliding window on every layer when set",
    ),
    (
        "qwen2",
        "qwen2 / qwen2",
        "Qwen2, Qwen2.5: q/k/v biases, tied or untied",
    ),
    ("qwen3", "qwen3 / qwen3", "dense Qwen3: per-head q/k norm"),
    (
        "phi3",
        "phi3 / phi3",
        "Phi-3(.5) mini: fused qkv and gate_up (not LongRoPE 128k)",
    ),
    (
        "gemma3",
        "gemma3 / -",
        "Gemma 3 (GGUF only): 5 local : 1 global layers",
    ),
];

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Gelu,
}

impl Arch {
    /// GGUF `general.architecture` names this decoder runs.
    pub const SUPPORTED: &'static [&'static str] = &["llama", "gemma3", "qwen2", "qwen3", "phi3"];

    /// Hugging Face `config.json` `model_type`s this decoder runs.
    pub const SUPPORTED_HF: &'static [&'static str] =
        &["llama", "mistral", "qwen2", "qwen3", "phi3"];

    fn from_gguf_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "gemma3" => Some(Arch::Gemma3),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }

    fn from_hf_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "mistral" => Some(Arch::Mistral),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }

    /// The family's name, as GGUF and config.json spell it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Mistral => "mistral",
            Arch::Phi3 => "phi3",
        }
    }

    /// Gemma scales token embeddings by √hidden before the first layer.
    pub fn scales_embedding(self) -> bool {
        self == Arch::Gemma3
    }

    pub fn activation(self) -> Activation {
        match self {
            Arch::Gemma3 => Activation::Gelu,
            _ => Activation::Silu,
        }
    }

    /// Qwen2 adds a bias to the q, k and v projections (`blk.N.attn_{q,k,v}.bias`).
    pub fn has_qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }

    /// Gemma 3 and Qwen3 normalize each head of q and k (`blk.N.attn_{q,k}_norm`) before
    /// rope. Qwen3's are required; Gemma's files have always been read as they come.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Arch::Gemma3 | Arch::Qwen3)
    }

    /// Gemma 3 also has norms after attention and the feed-forward.
    pub fn has_extra_norms(self) -> bool {
        self == Arch::Gemma3
    }

    /// Whether layer `i` attends only to the last `sliding_window` positions when the
    /// model has a window: Gemma 3's every sixth layer is global and the others slide;
    /// Mistral's and Phi-3's window covers every layer.
    pub fn is_local_layer(self, i: usize) -> bool {
        match self {
            Arch::Gemma3 => !(i + 1).is_multiple_of(6),
            _ => true,
        }
    }
}

/// Shapes and constants read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub eps: f64,
    /// Filled from the embedding table's rows at load.
    pub vocab: usize,
    /// Positions the rope tables cover: the model's context, at most 32768.
    pub context: usize,
    /// Gemma 3: layers that attend only to the last `sliding_window` positions.
    pub sliding_window: Option<usize>,
    /// Rope base frequency of global layers.
    pub rope_theta: f32,
    /// Gemma 3: rope base frequency of sliding (local) layers.
    pub rope_local_theta: Option<f32>,
    /// Rope pairs `2i, 2i+1` (GGUF llama: llama.cpp permutes q and k for it) rather than
    /// the two halves of each head (`i, i + head_dim/2`, every other case).
    pub rope_interleaved: bool,
    /// Per-frequency divisors of the global rope from `config.json`'s `rope_scaling`
    /// (GGUF files carry them as the `rope_freqs.weight` tensor instead).
    pub rope_divisors: Option<Vec<f32>>,
}

/// Longest context the rope tables are built for (memory: 2 × positions × head_dim/2 f32).
const MAX_POSITIONS: usize = 32768;

impl Config {
    /// Reads the decoder's shapes from GGUF metadata, rejecting unsupported families and
    /// shapes that would divide by zero later (zero heads, heads not a multiple of KV heads).
    pub fn from_gguf(g: &GgufFile) -> Result<Config> {
        let arch_name = g.arch()?;
        let arch = Arch::from_gguf_name(&arch_name).ok_or_else(|| {
            Error::Model(format!(
                "{}: architecture {arch_name:?} is not supported yet (supported: {})",
                g.path.display(),
                Arch::SUPPORTED.join(", ")
            ))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let n_heads = g.usize(&key("attention.head_count"))?;
        let hidden = g.usize(&key("embedding_length"))?;
        let n_kv_heads = g.usize(&key("attention.head_count_kv")).unwrap_or(n_heads);
        // Zero heads would divide by zero below and in attention (heads per KV head).
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::Model(format!(
                "{}: GGUF metadata gives {n_heads} attention heads and {n_kv_heads} KV heads; both must be positive and the first a multiple of the second",
                g.path.display()
            )));
        }
        let head_dim = g
            .usize(&key("attention.key_length"))
            .or_else(|_| g.usize(&key("rope.dimension_count")))
            .unwrap_or(hidden / n_heads);
        if head_dim == 0 {
            return Err(Error::Model(format!(
                "{}: GGUF metadata gives a head size of 0",
                g.path.display()
            )));
        }
        let gemma = arch == Arch::Gemma3;
        if g.content
            .tensor_infos
            .contains_key("rope_factors_long.weight")
        {
            return Err(Error::Model(format!(
                "{}: LongRoPE scaling (rope_factors_long.weight, Phi-3 128k) is not supported yet; use a 4k-context variant",
                g.path.display()
            )));
        }
        Ok(Config {
            arch,
            n_layers: g.usize(&key("block_count"))?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: g.usize(&key("feed_forward_length"))?,
            eps: g
                .f32(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5) as f64,
            vocab: 0,
            context: g
                .usize(&key("context_length"))
                .unwrap_or(4096)
                .min(MAX_POSITIONS),
            // Gemma's slides on five layers of six; other families' (Phi-3's, llama.cpp
            // writes it) on every layer.
            sliding_window: g.usize(&key("attention.sliding_window")).ok(),
            rope_theta: g.f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_local_theta: gemma
                .then(|| g.f32(&key("rope.local_freq_base")).unwrap_or(10_000.0)),
            rope_interleaved: arch == Arch::Llama,
            rope_divisors: None,
        })
    }

    /// Reads the decoder's shapes from a Hugging Face `config.json`, refusing what this
    /// decoder would compute differently from the reference (rope variants it lacks,
    /// partial rotary, Qwen's layer-dependent window).
    pub fn from_hf(f: &HfFolder) -> Result<Config> {
        let file = f.dir.join("config.json");
        let bad = |m: String| Error::Model(format!("{}: {m}", file.display()));
        let model_type = f.model_type()?;
        let arch = Arch::from_hf_name(model_type).ok_or_else(|| {
            bad(format!(
                "model_type {model_type:?} is not supported yet (supported: {})",
                Arch::SUPPORTED_HF.join(", ")
            ))
        })?;
        let hidden = f.usize("hidden_size")?;
        let n_heads = f.usize("num_attention_heads")?;
        let n_kv_heads = f.usize("num_key_value_heads").unwrap_or(n_heads);
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(format!(
                "{n_heads} attention heads and {n_kv_heads} KV heads; both must be positive and the first a multiple of the second"
            )));
        }
        let head_dim = f.usize("head_dim").unwrap_or(hidden / n_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head size {head_dim} must be even and positive"
            )));
        }
        if let Some(p) = f.f64("partial_rotary_factor").filter(|p| *p != 1.0) {
            return Err(bad(format!(
                "partial_rotary_factor {p} is not supported yet (rope over the whole head only)"
            )));
        }
        // Qwen2/3 slide only above `max_window_layers` when `use_sliding_window` is set.
        let sliding_window = match arch {
            Arch::Qwen2 | Arch::Qwen3 => {
                if f.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
                    return Err(bad(
                        "use_sliding_window = true is not supported yet for qwen models".into(),
                    ));
                }
                None
            }
            _ => f.usize("sliding_window").ok(),
        };
        // transformers ≥ 5 folds rope_theta and rope_scaling into rope_parameters.
        let params = f.get("rope_parameters");
        let rope_theta = f
            .f64("rope_theta")
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0) as f32;
        let scaling = f.get("rope_scaling").or(params);
        let rope_divisors = match scaling {
            Some(s) => rope_divisors(s, rope_theta, head_dim).map_err(bad)?,
            None => None,
        };
        Ok(Config {
            arch,
            n_layers: f.usize("num_hidden_layers")?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: f.usize("intermediate_size")?,
            eps: f.f64("rms_norm_eps").unwrap_or(1e-6),
            vocab: 0,
            context: f
                .usize("max_position_embeddings")
                .unwrap_or(4096)
                .min(MAX_POSITIONS),
            sliding_window,
            rope_theta,
            rope_local_theta: None,
            rope_interleaved: false,
            rope_divisors,
        })
    }
}

/// Per-frequency divisors for a `rope_scaling` object: none for the default rope, one
/// factor for all under `linear`, and Llama 3's smooth low/high-frequency blend under
/// `llama3` (the values llama.cpp's converter stores as `rope_freqs.weight`). Other
/// variants are refused rather than run unscaled.
fn rope_divisors(
    s: &Value,
    theta: f32,
    head_dim: usize,
) -> std::result::Result<Option<Vec<f32>>, String> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str, default: Option<f64>| -> std::result::Result<f64, String> {
        s.get(k)
            .and_then(Value::as_f64)
            .or(default)
            .ok_or_else(|| format!("rope_scaling {kind:?} needs a number \"{k}\""))
    };
    let half = head_dim / 2;
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(vec![num("factor", None)? as f32; half])),
        "llama3" => {
            let factor = num("factor", None)?;
            let low = num("low_freq_factor", Some(1.0))?;
            let high = num("high_freq_factor", Some(4.0))?;
            let old = num("original_max_position_embeddings", Some(8192.0))?;
            if high <= low {
                return Err("rope_scaling: high_freq_factor must exceed low_freq_factor".into());
            }
            let (low_wl, high_wl) = (old / low, old / high);
            Ok(Some(
                (0..half)
                    .map(|i| {
                        let freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64);
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wl {
                            1.0
                        } else if wavelen > low_wl {
                            factor as f32
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                        }
                    })
                    .collect(),
            ))
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported yet (supported: default, linear, llama3)"
        )),
    }
}
