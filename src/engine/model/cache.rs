//! The ragged batched KV cache: one cache per sequence, and a step's [`Segment`]s (each
//! sequence's new tokens, with its cache).

use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// One sequence's KV cache: per layer, keys and values `[capacity, n_kv_heads, head_dim]`
/// (token-major, so appending a step's rows is one contiguous copy).
pub struct SeqCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    /// Positions filled so far.
    pub len: usize,
    pub capacity: usize,
}

impl SeqCache {
    /// Copies the first `n` positions of another cache (a shared prompt prefix computed
    /// once). Rows are computed independently, so this equals prefilling them here.
    pub fn copy_prefix_from(&mut self, other: &SeqCache, n: usize) -> Result<()> {
        if n > other.len || n > self.capacity || self.k.len() != other.k.len() {
            return Err(Error::Internal(format!(
                "cannot copy {n} cached positions ({} available)",
                other.len
            )));
        }
        for l in 0..self.k.len() {
            self.k[l].slice_set(&other.k[l].narrow(0, 0, n)?, 0, 0)?;
            self.v[l].slice_set(&other.v[l].narrow(0, 0, n)?, 0, 0)?;
        }
        self.len = n;
        Ok(())
    }
}

/// One sequence's share of a forward step.
pub struct Segment<'a> {
    pub cache: &'a mut SeqCache,
    pub tokens: &'a [u32],
}

/// Every query row of a step as (segment, query position, first visible key): the new
/// tokens sit at `len..len + tokens` of their cache, and see keys `first..=position`
/// (all earlier ones, or the last `window`).
pub(crate) fn step_rows(segs: &[Segment<'_>], window: Option<usize>) -> Vec<(usize, usize, usize)> {
    let mut rows = Vec::new();
    for (si, s) in segs.iter().enumerate() {
        for i in 0..s.tokens.len() {
            let qp = s.cache.len + i;
            rows.push((si, qp, window.map_or(0, |w| (qp + 1).saturating_sub(w))));
        }
    }
    rows
}

/// Writes a step's new keys and values (`[rows, kv_heads, head_dim]`, segment after
/// segment) into each segment's cache at layer `li`, after the positions it holds.
pub(super) fn store_step(
    segs: &[Segment<'_>],
    li: usize,
    k: &Tensor,
    v: &Tensor,
    dtype: DType,
) -> Result<()> {
    let mut off = 0;
    for s in segs {
        let n = s.tokens.len();
        s.cache.k[li].slice_set(&k.narrow(0, off, n)?.to_dtype(dtype)?, 0, s.cache.len)?;
        s.cache.v[li].slice_set(&v.narrow(0, off, n)?.to_dtype(dtype)?, 0, s.cache.len)?;
        off += n;
    }
    Ok(())
}
