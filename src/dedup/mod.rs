//! Filter & dedup: exact, near-duplicate (MinHash-LSH) and semantic (embedding cosine)
//! duplicate removal, and decontamination against eval sets.
//!
//! Each method runs on the texts the previous one kept. Within a cluster of duplicates the
//! *best* text survives: the highest judge score, then the earliest in input order. Every
//! removed text gets a [`Reason`] naming the survivor it duplicates and how similar they are.

/// A seeded, labelled near-duplicate corpus. Not test-only: `flywheel bench dedup` measures
/// quality on it too, so it lives with the code it measures (the unit tests use it as well).
pub mod corpus;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decontam;
pub mod minhash;
pub mod semantic;
pub mod stage;
pub mod text;
pub(crate) mod unionfind;

use crate::error::{Error, Result};
/// MinHash takes the spec's shingle setting as it is.
pub use crate::spec::Shingle;
use std::collections::HashMap;
pub use unionfind::UnionFind;

/// Why a text was removed. `Display` gives the machine-readable reason string.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Nothing to compare (no visible characters).
    Empty,
    Exact {
        of: String,
    },
    MinHash {
        of: String,
        sim: f32,
    },
    Semantic {
        of: String,
        sim: f32,
    },
    Contaminated {
        file: String,
        id: String,
    },
    /// The embedding had NaN/inf values (a broken model or input).
    BadEmbedding,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Empty => write!(f, "empty"),
            Reason::Exact { of } => write!(f, "dup_of:{of} (exact)"),
            Reason::MinHash { of, sim } => write!(f, "dup_of:{of} (minhash {sim:.2})"),
            Reason::Semantic { of, sim } => write!(f, "dup_of:{of} (semantic {sim:.3})"),
            Reason::Contaminated { file, id } => write!(f, "contaminated:{file}:{id}"),
            Reason::BadEmbedding => write!(f, "embedding:not_finite"),
        }
    }
}

impl Reason {
    /// The method that removed the text: exact, minhash, semantic, decontam, empty, embedding.
    pub fn method(&self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Exact { .. } => "exact",
            Reason::MinHash { .. } => "minhash",
            Reason::Semantic { .. } => "semantic",
            Reason::Contaminated { .. } => "decontam",
            Reason::BadEmbedding => "embedding",
        }
    }

    /// The surviving duplicate's id and the similarity, for the record's `decision`.
    pub fn dup_of(&self) -> Option<(&str, Option<f32>)> {
        match self {
            Reason::Exact { of } => Some((of, None)),
            Reason::MinHash { of, sim } | Reason::Semantic { of, sim } => Some((of, Some(*sim))),
            _ => None,
        }
    }
}

/// One text to deduplicate.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub text: String,
    /// Higher survives within a cluster (the judge score); `None` ranks below any score.
    pub score: Option<f64>,
}

/// MinHash settings.
#[derive(Debug, Clone, Copy)]
pub struct MinHashOptions {
    pub threshold: f32,
    pub num_perm: usize,
    pub shingle: Shingle,
    /// Check each LSH candidate with the exact Jaccard of the shingle sets instead of the
    /// signature estimate (slower, no estimation noise).
    pub exact_jaccard: bool,
    pub seed: u64,
}

impl Default for MinHashOptions {
    fn default() -> Self {
        MinHashOptions {
            threshold: 0.8,
            num_perm: 128,
            shingle: Shingle::Char(5),
            exact_jaccard: false,
            seed: 1,
        }
    }
}

/// Semantic dedup settings.
#[derive(Debug, Clone, Copy)]
pub struct SemanticOptions {
    pub threshold: f32,
    /// Above this many texts, cluster with k-means first and compare within clusters.
    pub exact_up_to: usize,
    /// Target k-means cluster size on the large-N path.
    pub cluster_size: usize,
    pub seed: u64,
}

impl Default for SemanticOptions {
    fn default() -> Self {
        SemanticOptions {
            threshold: 0.92,
            exact_up_to: 50_000,
            cluster_size: 2_000,
            seed: 1,
        }
    }
}

/// Order of preference within a cluster: best score first, then input order.
fn better(items: &[Item], a: usize, b: usize) -> bool {
    let (sa, sb) = (
        items[a].score.unwrap_or(f64::NEG_INFINITY),
        items[b].score.unwrap_or(f64::NEG_INFINITY),
    );
    sa > sb || (sa == sb && a < b)
}

/// Cluster → best member, then a reason for every other member.
fn resolve_clusters(
    items: &[Item],
    alive: &[usize],
    uf: &mut UnionFind,
    mut reason: impl FnMut(usize, usize) -> Reason,
    out: &mut [Option<Reason>],
) {
    let mut best: HashMap<usize, usize> = HashMap::new();
    for &i in alive {
        let r = uf.find(i);
        match best.get(&r) {
            Some(&b) if !better(items, i, b) => {}
            _ => {
                best.insert(r, i);
            }
        }
    }
    for &i in alive {
        let b = best[&uf.find(i)];
        if b != i {
            out[i] = Some(reason(i, b));
        }
    }
}

/// Exact duplicates of normalized text ([`text::normalize_exact`]); empty texts are removed.
pub fn exact(items: &[Item], out: &mut [Option<Reason>]) {
    use sha2::{Digest, Sha256};
    let alive: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    let mut uf = UnionFind::new(items.len());
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    for &i in &alive {
        let norm = text::normalize_exact(&items[i].text);
        // Empty means nothing visible: "🎉🎉" has no words but is an answer, and exact
        // dedup still compares it.
        if norm.is_empty() {
            out[i] = Some(Reason::Empty);
            continue;
        }
        let h: [u8; 32] = Sha256::digest(norm.as_bytes()).into();
        match first.get(&h) {
            Some(&f) => {
                uf.union(f, i);
            }
            None => {
                first.insert(h, i);
            }
        }
    }
    let alive: Vec<usize> = alive.into_iter().filter(|&i| out[i].is_none()).collect();
    resolve_clusters(
        items,
        &alive,
        &mut uf,
        |_, b| Reason::Exact {
            of: items[b].id.clone(),
        },
        out,
    );
}

/// Near-duplicates by MinHash-LSH; candidates are confirmed against the threshold.
pub fn minhash(items: &[Item], opts: &MinHashOptions, out: &mut [Option<Reason>]) {
    let alive: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    let hasher = minhash::MinHasher::new(opts.num_perm, opts.shingle, opts.seed);
    let texts: Vec<&str> = alive.iter().map(|&i| items[i].text.as_str()).collect();
    let sigs = hasher.signatures(&texts);
    for (k, s) in sigs.iter().enumerate() {
        // No shingles: blank (already removed by exact dedup when it ran), or only symbols
        // such as emoji, which have no words to shingle and simply stay unpaired here.
        if s.is_none() && texts[k].trim().is_empty() {
            out[alive[k]] = Some(Reason::Empty);
        }
    }
    let sets: Option<Vec<Vec<u64>>> = opts.exact_jaccard.then(|| {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| text::shingle_hashes(t, opts.shingle))
            .collect()
    });
    let sim = |a: usize, b: usize| -> f32 {
        match &sets {
            Some(s) => minhash::jaccard(&s[a], &s[b]),
            None => match (&sigs[a], &sigs[b]) {
                (Some(x), Some(y)) => minhash::estimate(x, y),
                _ => 0.0,
            },
        }
    };
    let (bands, rows) = minhash::optimal_bands_weighted(
        opts.threshold as f64,
        opts.num_perm,
        minhash::RECALL_WEIGHT,
    );
    let mut uf = UnionFind::new(alive.len());
    minhash::candidate_pairs(&sigs, bands, rows, |a, b| {
        if uf.find(a) == uf.find(b) {
            return true;
        }
        if sim(a, b) >= opts.threshold {
            uf.union(a, b);
            true
        } else {
            false
        }
    });
    // Clusters over local indices → reasons on global ones.
    let local_items: Vec<Item> = alive.iter().map(|&i| items[i].clone()).collect();
    let live_local: Vec<usize> = (0..alive.len()).filter(|&k| sigs[k].is_some()).collect();
    let mut local_out: Vec<Option<Reason>> = vec![None; alive.len()];
    resolve_clusters(
        &local_items,
        &live_local,
        &mut uf,
        |i, b| Reason::MinHash {
            of: local_items[b].id.clone(),
            sim: sim(i, b),
        },
        &mut local_out,
    );
    for (k, r) in local_out.into_iter().enumerate() {
        if r.is_some() {
            out[alive[k]] = r;
        }
    }
}

/// Semantic duplicates: cosine ≥ threshold between unit embeddings (`vectors[i]` for item i;
/// rows of removed items are ignored). On the CPU.
pub fn semantic(
    items: &[Item],
    vectors: &[Vec<f32>],
    opts: &SemanticOptions,
    out: &mut [Option<Reason>],
) -> Result<()> {
    semantic_on(items, vectors, opts, &candle_core::Device::Cpu, out)
}

/// [`semantic`] on a device: with a CUDA device (and the `cuda` feature) the exact all-pairs
/// search runs in `kernels/similarity.cu`; the k-means path stays on the CPU.
pub fn semantic_on(
    items: &[Item],
    vectors: &[Vec<f32>],
    opts: &SemanticOptions,
    device: &candle_core::Device,
    out: &mut [Option<Reason>],
) -> Result<()> {
    if vectors.len() != items.len() {
        return Err(Error::Model(format!(
            "{} vectors for {} texts",
            vectors.len(),
            items.len()
        )));
    }
    let mut alive = Vec::new();
    for i in 0..items.len() {
        if out[i].is_some() {
            continue;
        }
        if vectors[i].iter().any(|x| !x.is_finite()) {
            out[i] = Some(Reason::BadEmbedding);
        } else {
            alive.push(i);
        }
    }
    let Some(dim) = alive.first().map(|&i| vectors[i].len()) else {
        return Ok(());
    };
    let flat: Vec<f32> = alive
        .iter()
        .flat_map(|&i| vectors[i].iter().copied())
        .collect();
    let pairs = if alive.len() <= opts.exact_up_to {
        match device {
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(d) => cuda::pairs(d, &flat, None, dim, opts.threshold)?,
            _ => semantic::self_pairs(&flat, dim, opts.threshold),
        }
    } else {
        semantic::pairs_clustered(&flat, dim, opts.threshold, opts.cluster_size, opts.seed)
    };
    let mut uf = UnionFind::new(alive.len());
    for p in &pairs {
        uf.union(p.i as usize, p.j as usize);
    }
    let local_items: Vec<Item> = alive.iter().map(|&i| items[i].clone()).collect();
    let mut local_out: Vec<Option<Reason>> = vec![None; alive.len()];
    let cos = |a: usize, b: usize| -> f32 {
        flat[a * dim..(a + 1) * dim]
            .iter()
            .zip(&flat[b * dim..(b + 1) * dim])
            .map(|(x, y)| x * y)
            .sum()
    };
    let all: Vec<usize> = (0..alive.len()).collect();
    resolve_clusters(
        &local_items,
        &all,
        &mut uf,
        |i, b| Reason::Semantic {
            of: local_items[b].id.clone(),
            sim: cos(i, b),
        },
        &mut local_out,
    );
    for (k, r) in local_out.into_iter().enumerate() {
        if r.is_some() {
            out[alive[k]] = r;
        }
    }
    Ok(())
}

/// Marks texts sharing an n-gram with an eval item.
pub fn decontaminate(items: &[Item], index: &decontam::EvalIndex, out: &mut [Option<Reason>]) {
    use rayon::prelude::*;
    let hits: Vec<Option<Reason>> = items
        .par_iter()
        .enumerate()
        .map(|(i, it)| {
            if out[i].is_some() {
                return None;
            }
            index.find(&it.text).map(|e| Reason::Contaminated {
                file: e.file.clone(),
                id: e.id.clone(),
            })
        })
        .collect();
    for (i, h) in hits.into_iter().enumerate() {
        if h.is_some() {
            out[i] = h;
        }
    }
}

/// Cluster labels from the reasons: a removed text joins its survivor's cluster. For scoring.
pub fn clusters(items: &[Item], out: &[Option<Reason>]) -> Vec<usize> {
    let pos: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    (0..items.len())
        .map(|i| {
            let mut cur = i;
            // Follow dup_of links to the final survivor (chains are short).
            for _ in 0..items.len() {
                match out[cur].as_ref().and_then(|r| r.dup_of()) {
                    Some((of, _)) => cur = pos[of],
                    None => break,
                }
            }
            cur
        })
        .collect()
}

#[cfg(test)]
mod tests;
