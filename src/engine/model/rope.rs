//! Rotary position embeddings: cos/sin tables built once at load, gathered per step at
//! each row's position (rows of one step sit at different positions of different
//! sequences), and applied in the layout the family's weights expect.

use super::config::Config;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};

/// Cos and sin tables `[positions, head_dim / 2]`.
pub(super) struct RopeTables {
    global: (Tensor, Tensor),
    /// Gemma 3's sliding layers use their own base frequency.
    local: Option<(Tensor, Tensor)>,
}

/// The tables gathered at one step's positions, `[rows, 1, head_dim / 2]` each.
pub(super) struct StepRope {
    global: (Tensor, Tensor),
    local: Option<(Tensor, Tensor)>,
    interleaved: bool,
}

impl RopeTables {
    /// `freq_divisors` (Llama 3.1+'s scaled rope, from `rope_freqs.weight`) divide the
    /// global layers' frequencies one by one.
    pub(super) fn new(
        cfg: &Config,
        freq_divisors: Option<&[f32]>,
        device: &Device,
    ) -> Result<RopeTables> {
        let table = |theta, div| table(cfg.head_dim, theta, div, cfg.context, device);
        Ok(RopeTables {
            global: table(cfg.rope_theta, freq_divisors)?,
            local: cfg
                .rope_local_theta
                .map(|theta| table(theta, None))
                .transpose()?,
        })
    }

    /// The rows of the tables at `positions` (u32, one per row of the step).
    pub(super) fn at(&self, cfg: &Config, positions: &Tensor) -> Result<StepRope> {
        let (t, half) = (positions.dim(0)?, cfg.head_dim / 2);
        let gather = |tab: &(Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
            Ok((
                tab.0.index_select(positions, 0)?.reshape((t, 1, half))?,
                tab.1.index_select(positions, 0)?.reshape((t, 1, half))?,
            ))
        };
        Ok(StepRope {
            global: gather(&self.global)?,
            local: self.local.as_ref().map(gather).transpose()?,
            interleaved: cfg.rope_interleaved,
        })
    }
}

impl StepRope {
    /// Rotates `x` (`[rows, heads, 1, head_dim]`) with the local tables on a sliding layer
    /// that has them, else the global ones.
    pub(super) fn apply(&self, x: &Tensor, local: bool) -> Result<Tensor> {
        let (cos, sin) = match (&self.local, local) {
            (Some(l), true) => l,
            _ => &self.global,
        };
        Ok(if self.interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)?
        })
    }
}

fn table(
    head_dim: usize,
    theta: f32,
    divisors: Option<&[f32]>,
    max_pos: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim / 2)
        .map(|i| {
            let f = 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32);
            divisors.map_or(f, |d| f / d[i])
        })
        .collect();
    let inv = Tensor::from_vec(inv, (1, head_dim / 2), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, max_pos as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((max_pos, 1))?;
    let freqs = pos.matmul(&inv)?;
    Ok((
        freqs.cos()?.to_device(device)?,
        freqs.sin()?.to_device(device)?,
    ))
}
