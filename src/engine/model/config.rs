//! What differs between model families: [`Arch`] names the family and answers the few
//! questions the shared decoder asks (norms, rope layout, activation, which layers slide);
//! [`Config`] holds the shapes and constants read from GGUF metadata. A new family adds an
//! `Arch` variant, its metadata mapping here, and an answer in each hook.

use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;

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
}

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Gelu,
}

impl Arch {
    /// GGUF `general.architecture` names this decoder runs.
    pub const SUPPORTED: &'static [&'static str] = &["llama", "gemma3", "qwen2", "qwen3"];

    fn from_gguf_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "gemma3" => Some(Arch::Gemma3),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }

    /// Gemma scales token embeddings by √hidden before the first layer.
    pub fn scales_embedding(self) -> bool {
        self == Arch::Gemma3
    }

    /// GGUF llama weights are permuted for interleaved rope (pairs `2i, 2i+1`); the others
    /// rotate the two halves of each head (`i, i + head_dim/2`).
    pub fn rope_interleaved(self) -> bool {
        self == Arch::Llama
    }

    pub fn activation(self) -> Activation {
        match self {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => Activation::Silu,
            Arch::Gemma3 => Activation::Gelu,
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

    /// Whether layer `i` attends only to the last `sliding_window` positions (Gemma 3:
    /// every sixth layer is global, the others slide).
    pub fn is_local_layer(self, i: usize) -> bool {
        self == Arch::Gemma3 && !(i + 1).is_multiple_of(6)
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
            sliding_window: gemma
                .then(|| g.usize(&key("attention.sliding_window")).ok())
                .flatten(),
            rope_theta: g.f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_local_theta: gemma
                .then(|| g.f32(&key("rope.local_freq_base")).unwrap_or(10_000.0)),
        })
    }
}
