//! A BERT encoder over packed sequences (see the module doc of [`super`] for why packed).

use crate::cpu;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The fields of a Hugging Face BERT `config.json` that the forward needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    pub fn load(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let c: BertConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Model(format!("{}: not a BERT config: {e}", path.display())))?;
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::Model(format!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                c.hidden_size,
                c.num_attention_heads
            )));
        }
        if !matches!(
            c.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return Err(Error::Model(format!(
                "{}: hidden_act {:?} is not supported (gelu, gelu_new)",
                path.display(),
                c.hidden_act
            )));
        }
        Ok(c)
    }
}

struct Layer {
    /// Query, key and value fused into one `[hidden, 3·hidden]` matrix: one matmul, not three.
    qkv_w: Tensor,
    qkv_b: Tensor,
    o_w: Tensor,
    o_b: Tensor,
    ln1: (Tensor, Tensor),
    i_w: Tensor,
    i_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
    ln2: (Tensor, Tensor),
}

/// BERT weights on a device; linear weights are stored transposed (`[in, out]`, contiguous).
pub struct BertEncoder {
    cfg: BertConfig,
    device: Device,
    word: Tensor,
    pos: Tensor,
    type0: Tensor,
    emb_ln: (Tensor, Tensor),
    layers: Vec<Layer>,
    /// The slice-based CPU forward ([`super::bert_cpu`]); `None` on other devices.
    cpu: Option<super::bert_cpu::CpuBert>,
    /// Use the candle ops even on CPU (the reference the fast path is tested against).
    pub candle_on_cpu: bool,
    /// With candle ops, use the padded attention (the GPU path) even on CPU.
    pub padded_attention: bool,
}

/// Borrowed weights, for building the CPU fast path.
pub(super) struct WeightRefs<'a> {
    pub word: &'a Tensor,
    pub pos: &'a Tensor,
    pub type0: &'a Tensor,
    pub emb_ln: (&'a Tensor, &'a Tensor),
    /// Per layer: qkv_w, qkv_b, o_w, o_b, ln1 w/b, i_w, i_b, out_w, out_b, ln2 w/b.
    pub layers: Vec<[&'a Tensor; 12]>,
}

impl BertEncoder {
    pub fn load(path: &Path, cfg: BertConfig, device: &Device) -> Result<BertEncoder> {
        let mut t: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
        // Checkpoints saved from `BertForX` prefix every name with `bert.`.
        let prefix = if t.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let mut take = |name: &str| -> Result<Tensor> {
            let key = format!("{prefix}{name}");
            let x = t.remove(&key).ok_or_else(|| {
                Error::Model(format!("{}: tensor {key} is missing", path.display()))
            })?;
            Ok(x.to_dtype(DType::F32)?.to_device(device)?)
        };
        let lin = |w: Tensor| -> Result<Tensor> { Ok(w.t()?.contiguous()?) };
        let word = take("embeddings.word_embeddings.weight")?;
        let pos = take("embeddings.position_embeddings.weight")?;
        let type0 = take("embeddings.token_type_embeddings.weight")?.get(0)?;
        let emb_ln = (
            take("embeddings.LayerNorm.weight")?,
            take("embeddings.LayerNorm.bias")?,
        );
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let q = take(&format!("{p}attention.self.query.weight"))?;
            let k = take(&format!("{p}attention.self.key.weight"))?;
            let v = take(&format!("{p}attention.self.value.weight"))?;
            let qb = take(&format!("{p}attention.self.query.bias"))?;
            let kb = take(&format!("{p}attention.self.key.bias"))?;
            let vb = take(&format!("{p}attention.self.value.bias"))?;
            layers.push(Layer {
                qkv_w: lin(Tensor::cat(&[q, k, v], 0)?)?,
                qkv_b: Tensor::cat(&[qb, kb, vb], 0)?,
                o_w: lin(take(&format!("{p}attention.output.dense.weight"))?)?,
                o_b: take(&format!("{p}attention.output.dense.bias"))?,
                ln1: (
                    take(&format!("{p}attention.output.LayerNorm.weight"))?,
                    take(&format!("{p}attention.output.LayerNorm.bias"))?,
                ),
                i_w: lin(take(&format!("{p}intermediate.dense.weight"))?)?,
                i_b: take(&format!("{p}intermediate.dense.bias"))?,
                out_w: lin(take(&format!("{p}output.dense.weight"))?)?,
                out_b: take(&format!("{p}output.dense.bias"))?,
                ln2: (
                    take(&format!("{p}output.LayerNorm.weight"))?,
                    take(&format!("{p}output.LayerNorm.bias"))?,
                ),
            });
        }
        let mut enc = BertEncoder {
            cfg,
            device: device.clone(),
            word,
            pos,
            type0,
            emb_ln,
            layers,
            cpu: None,
            candle_on_cpu: false,
            padded_attention: false,
        };
        if device.is_cpu() {
            enc.cpu = Some(super::bert_cpu::CpuBert::from_encoder(&enc)?);
        }
        Ok(enc)
    }

    pub(super) fn weights(&self) -> WeightRefs<'_> {
        WeightRefs {
            word: &self.word,
            pos: &self.pos,
            type0: &self.type0,
            emb_ln: (&self.emb_ln.0, &self.emb_ln.1),
            layers: self
                .layers
                .iter()
                .map(|l| {
                    [
                        &l.qkv_w, &l.qkv_b, &l.o_w, &l.o_b, &l.ln1.0, &l.ln1.1, &l.i_w, &l.i_b,
                        &l.out_w, &l.out_b, &l.ln2.0, &l.ln2.1,
                    ]
                })
                .collect(),
        }
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    fn ln(&self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            w,
            b,
            self.cfg.layer_norm_eps as f32,
        )?)
    }

    fn act(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.cfg.hidden_act == "gelu" {
            x.gelu_erf()?
        } else {
            x.gelu()?
        })
    }

    /// Mean-pooled, L2-normalized embeddings of token sequences (each at most the window).
    pub fn embed_packed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        if ids.is_empty() {
            return Ok(vec![vec![0.0; self.cfg.hidden_size]; seqs.len()]);
        }
        if let Some(&l) = lens
            .iter()
            .max()
            .filter(|&&l| l > self.cfg.max_position_embeddings)
        {
            return Err(Error::Model(format!(
                "sequence of {l} tokens exceeds the model's {} positions",
                self.cfg.max_position_embeddings
            )));
        }
        let vocab = self.word.dim(0)?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Model(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let hidden = match &self.cpu {
            Some(cpu) if !self.candle_on_cpu => cpu.forward(&ids, &lens),
            _ => self.forward_candle(ids, &lens)?,
        };
        Ok(pool(&hidden, &lens, self.cfg.hidden_size))
    }

    /// The forward with candle ops: the GPU path, and the reference on CPU.
    fn forward_candle(&self, ids: Vec<u32>, lens: &[usize]) -> Result<Vec<f32>> {
        let positions: Vec<u32> = lens.iter().flat_map(|&l| 0..l as u32).collect();
        let t = ids.len();
        let ids = Tensor::from_vec(ids, t, &self.device)?;
        let positions = Tensor::from_vec(positions, t, &self.device)?;
        let x = self
            .word
            .index_select(&ids, 0)?
            .add(&self.pos.index_select(&positions, 0)?)?
            .broadcast_add(&self.type0)?;
        let mut x = self.ln(&x, &self.emb_ln)?;
        for l in &self.layers {
            let qkv = x.matmul(&l.qkv_w)?.broadcast_add(&l.qkv_b)?;
            let a = if self.device.is_cpu() && !self.padded_attention {
                self.attention_packed(&qkv, lens)?
            } else {
                self.attention_padded(&qkv, lens)?
            };
            let h = a.matmul(&l.o_w)?.broadcast_add(&l.o_b)?.add(&x)?;
            x = self.ln(&h, &l.ln1)?;
            let i = self.act(&x.matmul(&l.i_w)?.broadcast_add(&l.i_b)?)?;
            let h = i.matmul(&l.out_w)?.broadcast_add(&l.out_b)?.add(&x)?;
            x = self.ln(&h, &l.ln2)?;
        }
        Ok(x.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Bidirectional attention per sequence on raw slices, sequences in parallel: no padding.
    fn attention_packed(&self, qkv: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let qkv = qkv.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; qkv.len() / 3];
        attention_cpu(&qkv, &mut out, lens, h, self.cfg.num_attention_heads);
        Ok(Tensor::from_vec(
            out,
            (qkv.len() / (3 * h), h),
            &Device::Cpu,
        )?)
    }

    /// The same attention on a padded `[batch, heads, max_len, head_dim]` block with a key
    /// mask: what runs on GPUs, where one big batched matmul beats many small ones.
    fn attention_padded(&self, qkv: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (h, nh) = (self.cfg.hidden_size, self.cfg.num_attention_heads);
        let d = h / nh;
        let b = lens.len();
        let lmax = lens.iter().copied().max().unwrap_or(0);
        // Gather index: padded slot → packed row (padding reads row 0 and is masked out).
        let mut gather = Vec::with_capacity(b * lmax);
        let mut scatter = Vec::with_capacity(qkv.dim(0)?);
        let mut mask = Vec::with_capacity(b * lmax);
        let mut off = 0u32;
        for (s, &len) in lens.iter().enumerate() {
            for j in 0..lmax {
                gather.push(if j < len { off + j as u32 } else { 0 });
                mask.push(if j < len { 0f32 } else { f32::NEG_INFINITY });
            }
            scatter.extend((0..len).map(|j| (s * lmax + j) as u32));
            off += len as u32;
        }
        let dev = &self.device;
        let gather = Tensor::from_vec(gather, b * lmax, dev)?;
        let scatter = Tensor::from_vec(scatter, off as usize, dev)?;
        let mask = Tensor::from_vec(mask, (b, 1, 1, lmax), dev)?;
        let padded = qkv.index_select(&gather, 0)?.reshape((b, lmax, 3, nh, d))?;
        let part = |i: usize| -> Result<Tensor> {
            Ok(padded
                .narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(&mask)?;
        let p = candle_nn::ops::softmax_last_dim(&scores)?;
        let o = p
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * lmax, h))?;
        Ok(o.index_select(&scatter, 0)?)
    }
}

/// Mean over each sequence's rows of `hidden` (`[tokens, h]`), then L2 normalization.
fn pool(hidden: &[f32], lens: &[usize], h: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(lens.len());
    let mut off = 0;
    for &len in lens {
        let mut v = vec![0f32; h];
        for row in hidden[off * h..(off + len) * h].chunks_exact(h) {
            v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        if len > 0 {
            v.iter_mut().for_each(|a| *a /= len as f32);
        }
        super::normalize(&mut v);
        out.push(v);
        off += len;
    }
    out
}

/// Multi-head attention over packed sequences. `qkv` is `[tokens, 3·hidden]` (queries, keys,
/// values side by side), `out` is `[tokens, hidden]`; `lens` splits the tokens into sequences.
/// Each token sees every token of its own sequence (bidirectional), through the one CPU
/// attention the engine uses too.
pub fn attention_cpu(qkv: &[f32], out: &mut [f32], lens: &[usize], hidden: usize, heads: usize) {
    let mut rows = Vec::with_capacity(qkv.len() / (3 * hidden));
    let mut off = 0;
    for &len in lens {
        rows.extend((0..len).map(|_| cpu::QueryRow {
            kv: 0,
            first: off,
            end: off + len,
        }));
        off += len;
    }
    let kv = cpu::KvView {
        k: &qkv[hidden..],
        v: &qkv[2 * hidden..],
        stride: 3 * hidden,
    };
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    cpu::attention(qkv, 3 * hidden, &rows, &[kv], (heads, heads, d), scale, out);
}
