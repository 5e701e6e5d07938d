//! Tiny random-weight GGUF decoders (a few hundred KB, written by the test itself) and a
//! naive f64 forward of the same weights, written from the family's reference modeling code
//! rather than from ours: how an architecture gets a logit test without a download or torch.
//! A new family adds its tensors in [`TinyModel::new`] and its differences in
//! [`TinyModel::reference_logits`].

use candle_core::quantized::gguf_file::{write, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// 2 layers, GQA (4 query heads over 2 KV heads), head_dim 16 (not a multiple of 32),
/// hidden 64 (not a multiple of 256: the Q8_0 path pads it).
const LAYERS: usize = 2;
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 96;
pub(super) const VOCAB: usize = 101;
const EPS: f64 = 1e-6;
const THETA: f64 = 10_000.0;

/// Weights by GGUF tensor name: shape (`[out, in]` for matrices) and row-major values.
pub(super) struct TinyModel {
    arch: &'static str,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TinyModel {
    /// Seeded random weights for `arch` (`"qwen2"` or `"qwen3"`); `tied` leaves out `output.weight`, so
    /// the LM head is the embedding table.
    pub(super) fn new(arch: &'static str, tied: bool, seed: u64) -> TinyModel {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        let mut add = |name: String, shape: Vec<usize>, center: f32, spread: f32| {
            let n = shape.iter().product();
            let v = (0..n)
                .map(|_| center + spread * (rng.random::<f32>() - 0.5))
                .collect();
            tensors.insert(name, (shape, v));
        };
        let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
        add("token_embd.weight".into(), vec![VOCAB, HIDDEN], 0.0, 2.0);
        add("output_norm.weight".into(), vec![HIDDEN], 1.0, 0.4);
        if !tied {
            add("output.weight".into(), vec![VOCAB, HIDDEN], 0.0, 0.6);
        }
        for l in 0..LAYERS {
            let n = |s: &str| format!("blk.{l}.{s}");
            add(n("attn_norm.weight"), vec![HIDDEN], 1.0, 0.4);
            add(n("attn_q.weight"), vec![q, HIDDEN], 0.0, 0.5);
            add(n("attn_k.weight"), vec![kv, HIDDEN], 0.0, 0.5);
            add(n("attn_v.weight"), vec![kv, HIDDEN], 0.0, 0.5);
            if arch == "qwen2" {
                add(n("attn_q.bias"), vec![q], 0.0, 1.0);
                add(n("attn_k.bias"), vec![kv], 0.0, 1.0);
                add(n("attn_v.bias"), vec![kv], 0.0, 1.0);
            }
            if arch == "qwen3" {
                add(n("attn_q_norm.weight"), vec![HEAD_DIM], 1.0, 0.8);
                add(n("attn_k_norm.weight"), vec![HEAD_DIM], 1.0, 0.8);
            }
            add(n("attn_output.weight"), vec![HIDDEN, q], 0.0, 0.4);
            add(n("ffn_norm.weight"), vec![HIDDEN], 1.0, 0.4);
            add(n("ffn_gate.weight"), vec![FFN, HIDDEN], 0.0, 0.5);
            add(n("ffn_up.weight"), vec![FFN, HIDDEN], 0.0, 0.5);
            add(n("ffn_down.weight"), vec![HIDDEN, FFN], 0.0, 0.4);
        }
        TinyModel { arch, tensors }
    }

    /// Adds Llama 3.1-style rope frequency divisors (`rope_freqs.weight`): low frequencies
    /// slowed down by up to 8×, as `rope_scaling = llama3` does.
    pub(super) fn with_rope_freqs(mut self) -> TinyModel {
        let d: Vec<f32> = (0..HEAD_DIM / 2)
            .map(|i| 1.0 + 7.0 * i as f32 / (HEAD_DIM / 2 - 1).max(1) as f32)
            .collect();
        self.tensors
            .insert("rope_freqs.weight".into(), (vec![HEAD_DIM / 2], d));
        self
    }

    /// Drops one tensor (to test what a broken file does).
    pub(super) fn without(mut self, name: &str) -> TinyModel {
        self.tensors.remove(name);
        self
    }

    /// Writes the model as a GGUF file with F32 tensors and the family's metadata keys.
    pub(super) fn write(&self, path: &Path) {
        let a = self.arch;
        let key = |k: &str| format!("{a}.{k}");
        let u = |x: usize| Value::U32(x as u32);
        let meta: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(a.into())),
            (key("block_count"), u(LAYERS)),
            (key("context_length"), u(128)),
            (key("embedding_length"), u(HIDDEN)),
            (key("feed_forward_length"), u(FFN)),
            (key("attention.head_count"), u(HEADS)),
            (key("attention.head_count_kv"), u(KV_HEADS)),
            (
                key("attention.layer_norm_rms_epsilon"),
                Value::F32(EPS as f32),
            ),
            (key("rope.freq_base"), Value::F32(THETA as f32)),
        ];
        let tensors: Vec<(&str, QTensor)> = self
            .tensors
            .iter()
            .map(|(name, (shape, v))| {
                let t = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap();
                (
                    name.as_str(),
                    QTensor::quantize(&t, GgmlDType::F32).unwrap(),
                )
            })
            .collect();
        let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (*k, t)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        write(&mut f, &meta_refs, &tensor_refs).unwrap();
    }

    fn w(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }

    /// `W x` for a GGUF matrix `[out, in]`, plus its bias if the file has one.
    fn linear(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let w = self.w(&format!("{name}.weight"));
        let mut y: Vec<f64> = w
            .chunks_exact(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum())
            .collect();
        if let Some((_, b)) = self.tensors.get(&format!("{name}.bias")) {
            y.iter_mut().zip(b).for_each(|(y, b)| *y += *b as f64);
        }
        y
    }

    /// Qwen3's q/k norm: an RMSNorm over each head on its own, when the file has one.
    fn head_norm(&self, name: &str, x: Vec<f64>) -> Vec<f64> {
        if !self.tensors.contains_key(name) {
            return x;
        }
        x.chunks_exact(HEAD_DIM)
            .flat_map(|h| self.rms_norm(name, h))
            .collect()
    }

    fn rms_norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let inv = 1.0 / (ms + EPS).sqrt();
        x.iter()
            .zip(self.w(name))
            .map(|(v, g)| v * inv * *g as f64)
            .collect()
    }

    /// The logits at every position of `tokens`, as Hugging Face's `Qwen2ForCausalLM` /
    /// `Qwen3ForCausalLM` compute them: pre-norm blocks, q/k/v with bias (Qwen2) or a
    /// per-head RMSNorm of q and k (Qwen3), rotate-half rope, causal GQA attention, SwiGLU,
    /// a final norm, and the LM head (the embedding table when tied).
    pub(super) fn reference_logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let emb = self.w("token_embd.weight");
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                emb[t as usize * HIDDEN..][..HIDDEN]
                    .iter()
                    .map(|v| *v as f64)
                    .collect()
            })
            .collect();
        for l in 0..LAYERS {
            let n = |s: &str| format!("blk.{l}.{s}");
            let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
            for (pos, xt) in x.iter().enumerate() {
                let h = self.rms_norm(&n("attn_norm.weight"), xt);
                let q = self.head_norm(&n("attn_q_norm.weight"), self.linear(&n("attn_q"), &h));
                let k = self.head_norm(&n("attn_k_norm.weight"), self.linear(&n("attn_k"), &h));
                let div = self
                    .tensors
                    .get("rope_freqs.weight")
                    .map(|t| t.1.as_slice());
                qs.push(rope(q, pos, div));
                ks.push(rope(k, pos, div));
                vs.push(self.linear(&n("attn_v"), &h));
            }
            for (pos, xt) in x.iter_mut().enumerate() {
                let o = attend(&qs[pos], &ks[..=pos], &vs[..=pos]);
                add(xt, &self.linear(&n("attn_output"), &o));
                let h = self.rms_norm(&n("ffn_norm.weight"), xt);
                let (g, u) = (
                    self.linear(&n("ffn_gate"), &h),
                    self.linear(&n("ffn_up"), &h),
                );
                let act: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                add(xt, &self.linear(&n("ffn_down"), &act));
            }
        }
        let head = if self.tensors.contains_key("output.weight") {
            "output"
        } else {
            "token_embd"
        };
        x.iter()
            .map(|xt| self.linear(head, &self.rms_norm("output_norm.weight", xt)))
            .collect()
    }
}

fn add(x: &mut [f64], y: &[f64]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Rotate-half rope (GPT-NeoX layout) on every head of `v`, at position `pos`; each
/// frequency divided by its entry of `div` when there is one (Llama 3.1+ scaling).
fn rope(mut v: Vec<f64>, pos: usize, div: Option<&[f32]>) -> Vec<f64> {
    let half = HEAD_DIM / 2;
    for head in v.chunks_exact_mut(HEAD_DIM) {
        for i in 0..half {
            let d = div.map_or(1.0, |d| d[i] as f64);
            let angle = pos as f64 / THETA.powf(2.0 * i as f64 / HEAD_DIM as f64) / d;
            let (c, s) = (angle.cos(), angle.sin());
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * c - b * s;
            head[i + half] = b * c + a * s;
        }
    }
    v
}

/// Causal grouped-query attention of one query row over the keys up to its position.
fn attend(q: &[f64], ks: &[Vec<f64>], vs: &[Vec<f64>]) -> Vec<f64> {
    let mut out = vec![0.0; HEADS * HEAD_DIM];
    for h in 0..HEADS {
        let g = h / (HEADS / KV_HEADS);
        let qh = &q[h * HEAD_DIM..][..HEAD_DIM];
        let s: Vec<f64> = ks
            .iter()
            .map(|k| {
                let kh = &k[g * HEAD_DIM..][..HEAD_DIM];
                qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for (w, v) in e.iter().zip(vs) {
            let vh = &v[g * HEAD_DIM..][..HEAD_DIM];
            add(
                &mut out[h * HEAD_DIM..][..HEAD_DIM],
                &vh.iter().map(|x| w / z * x).collect::<Vec<_>>(),
            );
        }
    }
    out
}
