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
mod global;
pub mod index;
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

/// What ranks the texts being deduplicated, without their texts: each one's id (named in
/// `dup_of`) and priority. Index order is input order; it breaks ties.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub ids: Vec<String>,
    pub scores: Vec<Option<f64>>,
}

impl Keys {
    pub fn of(items: &[Item]) -> Keys {
        Keys {
            ids: items.iter().map(|i| i.id.clone()).collect(),
            scores: items.iter().map(|i| i.score).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Order of preference within a cluster: best score first, then input order.
    fn better(&self, a: usize, b: usize) -> bool {
        let (sa, sb) = (
            self.scores[a].unwrap_or(f64::NEG_INFINITY),
            self.scores[b].unwrap_or(f64::NEG_INFINITY),
        );
        sa > sb || (sa == sb && a < b)
    }
}

/// Cluster → best member, then a reason for every other member. `uf` is over positions in
/// `alive` (global indices, increasing); `reason` gets positions too.
fn resolve_clusters(
    keys: &Keys,
    alive: &[usize],
    uf: &mut UnionFind,
    mut reason: impl FnMut(usize, usize) -> Reason,
    out: &mut [Option<Reason>],
) {
    let mut best: HashMap<usize, usize> = HashMap::new();
    for k in 0..alive.len() {
        let r = uf.find(k);
        match best.get(&r) {
            Some(&b) if !keys.better(alive[k], alive[b]) => {}
            _ => {
                best.insert(r, k);
            }
        }
    }
    for k in 0..alive.len() {
        let b = best[&uf.find(k)];
        if b != k {
            out[alive[k]] = Some(reason(k, b));
        }
    }
}

/// The exact-dedup key of a text: a 128-bit prefix of the sha256 of its normalized form
/// ([`text::normalize_exact`]), or `None` when nothing visible is left (an empty text).
pub fn exact_key(t: &str) -> Option<u128> {
    use sha2::{Digest, Sha256};
    let norm = text::normalize_exact(t);
    // Empty means nothing visible: "🎉🎉" has no words but is an answer, and exact dedup
    // still compares it.
    if norm.is_empty() {
        return None;
    }
    let h = Sha256::digest(norm.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    Some(u128::from_le_bytes(b))
}

/// Exact duplicates of normalized text ([`text::normalize_exact`]); empty texts are removed.
pub fn exact(items: &[Item], out: &mut [Option<Reason>]) {
    use rayon::prelude::*;
    let keys: Vec<Option<u128>> = items.par_iter().map(|i| exact_key(&i.text)).collect();
    exact_by_key(&Keys::of(items), &keys, out);
}

/// [`exact`] from precomputed [`exact_key`]s.
pub fn exact_by_key(keys: &Keys, hashes: &[Option<u128>], out: &mut [Option<Reason>]) {
    let mut alive = Vec::new();
    for i in 0..keys.len() {
        if out[i].is_some() {
            continue;
        }
        match hashes[i] {
            None => out[i] = Some(Reason::Empty),
            Some(_) => alive.push(i),
        }
    }
    let mut uf = UnionFind::new(alive.len());
    let mut first: HashMap<u128, usize> = HashMap::new();
    for (k, &i) in alive.iter().enumerate() {
        if let Some(h) = hashes[i] {
            match first.get(&h) {
                Some(&f) => {
                    uf.union(f, k);
                }
                None => {
                    first.insert(h, k);
                }
            }
        }
    }
    resolve_clusters(
        keys,
        &alive,
        &mut uf,
        |_, b| Reason::Exact {
            of: keys.ids[alive[b]].clone(),
        },
        out,
    );
}

/// Near-duplicates by MinHash-LSH; candidates are confirmed against the threshold.
pub fn minhash(items: &[Item], opts: &MinHashOptions, out: &mut [Option<Reason>]) {
    let hasher = minhash::MinHasher::new(opts.num_perm, opts.shingle, opts.seed);
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let sigs = hasher.signatures(&texts);
    let blank: Vec<bool> = texts.iter().map(|t| t.trim().is_empty()).collect();
    let sets: Option<Vec<Vec<u64>>> = opts.exact_jaccard.then(|| {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| text::shingle_hashes(t, opts.shingle))
            .collect()
    });
    let jaccard = sets
        .as_ref()
        .map(|s| move |a: usize, b: usize| minhash::jaccard(&s[a], &s[b]));
    minhash_by_sig(
        &Keys::of(items),
        |i| sigs[i].as_deref(),
        |i| blank[i],
        jaccard.as_ref().map(|f| f as &dyn Fn(usize, usize) -> f32),
        opts,
        out,
    );
}

/// [`minhash`] from precomputed signatures (`sig(i)`: `None` when text i has no shingles;
/// `blank(i)`: it has nothing but whitespace). With `jaccard`, candidates are confirmed by
/// that exact similarity instead of the signature estimate.
pub fn minhash_by_sig<'a>(
    keys: &Keys,
    sig: impl Fn(usize) -> Option<&'a [u32]> + Sync,
    blank: impl Fn(usize) -> bool,
    jaccard: Option<&dyn Fn(usize, usize) -> f32>,
    opts: &MinHashOptions,
    out: &mut [Option<Reason>],
) {
    let mut alive = Vec::new();
    for (i, o) in out.iter_mut().enumerate().take(keys.len()) {
        if o.is_some() {
            continue;
        }
        // No shingles: blank (already removed by exact dedup when it ran), or only symbols
        // such as emoji, which have no words to shingle and simply stay unpaired here.
        if sig(i).is_none() && blank(i) {
            *o = Some(Reason::Empty);
        } else {
            alive.push(i);
        }
    }
    let sim = |a: usize, b: usize| -> f32 {
        let (ga, gb) = (alive[a], alive[b]);
        match jaccard {
            Some(j) => j(ga, gb),
            None => match (sig(ga), sig(gb)) {
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
    minhash::candidate_pairs_by(
        alive.len(),
        |k| sig(alive[k]),
        bands,
        rows,
        |a, b| {
            if uf.find(a) == uf.find(b) {
                return true;
            }
            if sim(a, b) >= opts.threshold {
                uf.union(a, b);
                true
            } else {
                false
            }
        },
    );
    // Texts without a signature are in no cluster but their own, and stay.
    resolve_clusters(
        keys,
        &alive,
        &mut uf,
        |k, b| Reason::MinHash {
            of: keys.ids[alive[b]].clone(),
            sim: sim(k, b),
        },
        out,
    );
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
    let dim = vectors.iter().map(Vec::len).max().unwrap_or(0);
    semantic_by_vector(
        &Keys::of(items),
        |i| Some(vectors[i].as_slice()).filter(|v| v.len() == dim),
        dim,
        opts,
        device,
        out,
    )
}

/// Rows of `vector(i)` for the texts still in the running.
struct Alive<'a, F> {
    vector: &'a F,
    alive: &'a [usize],
}

impl<'a, 'v: 'a, F: Fn(usize) -> Option<&'v [f32]> + Sync> semantic::Rows for Alive<'a, F> {
    fn len(&self) -> usize {
        self.alive.len()
    }
    fn row(&self, k: usize) -> &[f32] {
        (self.vector)(self.alive[k]).unwrap_or(&[])
    }
}

/// [`semantic_on`] from vectors given by `vector(i)` (`dim` floats, or `None` where text i
/// has none), wherever they live: the large-N path reads them in place.
pub fn semantic_by_vector<'v>(
    keys: &Keys,
    vector: impl Fn(usize) -> Option<&'v [f32]> + Sync,
    dim: usize,
    opts: &SemanticOptions,
    device: &candle_core::Device,
    out: &mut [Option<Reason>],
) -> Result<()> {
    use semantic::Rows;
    let mut alive = Vec::new();
    for (i, o) in out.iter_mut().enumerate().take(keys.len()) {
        if o.is_some() {
            continue;
        }
        match vector(i) {
            Some(v) if v.iter().all(|x| x.is_finite()) => alive.push(i),
            _ => *o = Some(Reason::BadEmbedding),
        }
    }
    if alive.is_empty() || dim == 0 {
        return Ok(());
    }
    let rows = Alive {
        vector: &vector,
        alive: &alive,
    };
    let pairs = if alive.len() <= opts.exact_up_to {
        let flat = rows.gather(0..alive.len());
        match device {
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(d) => cuda::pairs(d, &flat, None, dim, opts.threshold)?,
            _ => semantic::self_pairs(&flat, dim, opts.threshold),
        }
    } else {
        semantic::pairs_clustered_rows(&rows, dim, opts.threshold, opts.cluster_size, opts.seed)
    };
    let mut uf = UnionFind::new(alive.len());
    for p in &pairs {
        uf.union(p.i as usize, p.j as usize);
    }
    let cos = |a: usize, b: usize| -> f32 {
        rows.row(a)
            .iter()
            .zip(rows.row(b))
            .map(|(x, y)| x * y)
            .sum()
    };
    resolve_clusters(
        keys,
        &alive,
        &mut uf,
        |k, b| Reason::Semantic {
            of: keys.ids[alive[b]].clone(),
            sim: cos(k, b),
        },
        out,
    );
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
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    clusters_by_id(&ids, out)
}

/// [`clusters`] from the ids alone.
pub fn clusters_by_id(ids: &[&str], out: &[Option<Reason>]) -> Vec<usize> {
    let pos: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    (0..ids.len())
        .map(|i| {
            let mut cur = i;
            // Follow dup_of links to the final survivor (chains are short).
            for _ in 0..ids.len() {
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
