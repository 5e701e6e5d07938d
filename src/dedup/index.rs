//! The dedup index: what the global dedup needs of each record, made once, where the
//! records are. A shard makes its own (`run --shard`, `dedup --shard`, `embed --shard`);
//! the merge joins the shards' indexes row for row, as it joins their records; a single
//! run makes one for its whole file. The global dedup then never holds a text: it ranks
//! ids and scores, and reads keys, signatures and vectors from here, in place.
//!
//! Two parts, each fresh on its own (a MinHash edit does not re-embed):
//! - `signatures.bin`: per line of the source, the id's hash, the exact-dedup key
//!   ([`super::exact_key`]), flags, and the MinHash signature;
//! - `embeddings.bin`: per line, the unit vector, the id's hash, tokens and truncated tokens.
//!
//! Row `k` is the `k`-th non-blank line of the source. Each part has a `.json` meta naming
//! the source's sha256, the settings, and the row count: a part is used only when all three
//! match (and the file has exactly that many rows), so an index can never describe other
//! records than the ones being deduplicated. The `.bin` files are little-endian u32/f32
//! words, memory-mapped on read.

use super::minhash::MinHasher;
use super::Shingle;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped when a row layout changes: an older index is then stale, never misread.
const VERSION: u32 = 1;
/// Lines per parallel batch while building.
const CHUNK: usize = 4096;

const HAS_TEXT: u32 = 1;
const HAS_KEY: u32 = 2;
const HAS_SIG: u32 = 4;
const BLANK: u32 = 8;

/// What the signature part depends on (besides the source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigSettings {
    /// Which text ([`crate::record::View::text`]).
    pub field: String,
    /// 0: exact keys only.
    pub num_perm: usize,
    pub shingle: String,
    pub seed: u64,
}

/// What the embedding part depends on (besides the source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbSettings {
    pub field: String,
    /// The embedder as the spec names it (a registry id or a folder).
    pub model: String,
    /// Where it ran: another device gives other floats.
    pub device: String,
}

/// A part's meta file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta<S> {
    pub version: u32,
    pub source_sha256: String,
    pub rows: u64,
    /// sha256 of the `.bin`: a damaged or edited index is made again, never read.
    #[serde(default)]
    pub bin_sha256: String,
    /// u32 words per row.
    pub row_words: usize,
    pub settings: S,
    /// The embedder's id and weights sha256 (embeddings only), for provenance.
    #[serde(default)]
    pub model_id: String,
    #[serde(default)]
    pub model_sha256: String,
    #[serde(default)]
    pub dim: usize,
    /// Seconds it took to build.
    #[serde(default)]
    pub seconds: f64,
}

/// The two parts' file names.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Signatures,
    Embeddings,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Signatures => "signatures",
            Part::Embeddings => "embeddings",
        }
    }
    pub fn bin(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.bin", self.name()))
    }
    pub fn meta(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.name()))
    }
}

/// The hash that ties a row to its record's id (0: a record without an id).
pub fn id_hash(v: &serde_json::Value) -> u64 {
    match v.get("id") {
        Some(serde_json::Value::String(s)) => super::text::hash_bytes(s.as_bytes()) | 1,
        Some(serde_json::Value::Number(n)) => super::text::hash_bytes(n.to_string().as_bytes()) | 1,
        _ => 0,
    }
}

/// A line's text to index: `None` for a line that is not a record, one verify could not
/// read (`bad_input`), or one without that text: the global pass never compares those.
fn text_of(raw: &[u8], field: &str) -> (u64, Option<String>) {
    match crate::record::lines::parse_line(raw) {
        Ok(v) if v.get("bad_input").is_none() => {
            (id_hash(&v), crate::record::View::new(&v).text(field))
        }
        Ok(v) => (id_hash(&v), None),
        Err(_) => (0, None),
    }
}

fn load_meta<S: for<'de> Deserialize<'de>>(part: Part, dir: &Path) -> Option<Meta<S>> {
    let b = std::fs::read(part.meta(dir)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Writes a part: rows to a temporary file, then the `.bin` and the meta, each atomically.
struct PartWriter {
    part: Part,
    dir: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    rows: u64,
    sha: Sha256,
}

impl PartWriter {
    fn new(part: Part, dir: &Path) -> Result<PartWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        // A stale meta goes first: a crash mid-build leaves no part, never a mismatched one.
        let _ = std::fs::remove_file(part.meta(dir));
        let tmp = part.bin(dir).with_extension("bin.tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot write", &tmp, e))?;
        Ok(PartWriter {
            part,
            dir: dir.to_path_buf(),
            w: std::io::BufWriter::with_capacity(1 << 20, f),
            rows: 0,
            sha: Sha256::new(),
        })
    }

    fn row(&mut self, words: &[u32]) -> Result<()> {
        self.rows += 1;
        self.sha.update(bytemuck::cast_slice::<u32, u8>(words));
        self.w
            .write_all(bytemuck::cast_slice(words))
            .map_err(|e| Error::io("cannot write", self.part.bin(&self.dir), e))
    }

    fn finish<S: Serialize>(self, mut meta: Meta<S>) -> Result<Meta<S>> {
        let tmp = self.part.bin(&self.dir).with_extension("bin.tmp");
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io("cannot write", &tmp, e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        let bin = self.part.bin(&self.dir);
        std::fs::rename(&tmp, &bin).map_err(|e| Error::io("cannot replace", &bin, e))?;
        meta.rows = self.rows;
        meta.bin_sha256 = format!("{:x}", self.sha.finalize());
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::Internal(format!("index meta: {e}")))?;
        crate::store::write_atomic(&self.part.meta(&self.dir), &json)?;
        Ok(meta)
    }
}

/// Reads `source` in batches of [`CHUNK`] lines, hashing every byte; returns the sha256.
fn for_each_chunk(source: &Path, mut f: impl FnMut(&[Vec<u8>]) -> Result<()>) -> Result<String> {
    let mut h = Sha256::new();
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
    crate::record::lines::for_each_raw(
        source,
        |b| h.update(b),
        |_, _, raw| {
            chunk.push(raw.to_vec());
            if chunk.len() == CHUNK {
                f(&chunk)?;
                chunk.clear();
            }
            Ok(())
        },
    )?;
    if !chunk.is_empty() {
        f(&chunk)?;
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The signature part of `source` in `dir`: exact keys, and signatures when
/// `settings.num_perm > 0`.
pub fn build_signatures(
    source: &Path,
    dir: &Path,
    settings: &SigSettings,
    progress: bool,
) -> Result<Meta<SigSettings>> {
    use rayon::prelude::*;
    let t0 = std::time::Instant::now();
    let shingle = Shingle::parse(&settings.shingle).ok_or_else(|| {
        Error::Spec(format!(
            "shingle {:?}: use char:N or word:N",
            settings.shingle
        ))
    })?;
    let hasher =
        (settings.num_perm > 0).then(|| MinHasher::new(settings.num_perm, shingle, settings.seed));
    let words = 7 + settings.num_perm;
    let mut w = PartWriter::new(Part::Signatures, dir)?;
    let pb = crate::progress::spinner(progress, "dedup index: signatures");
    let sha = for_each_chunk(source, |chunk| {
        let rows: Vec<Vec<u32>> = chunk
            .par_iter()
            .map(|raw| {
                let (id, text) = text_of(raw, &settings.field);
                let mut row = vec![0u32; words];
                row[0] = id as u32;
                row[1] = (id >> 32) as u32;
                if let Some(t) = text {
                    let mut flags = HAS_TEXT;
                    if t.trim().is_empty() {
                        flags |= BLANK;
                    }
                    if let Some(k) = super::exact_key(&t) {
                        flags |= HAS_KEY;
                        row[2..6].copy_from_slice(bytemuck::cast_slice(&k.to_le_bytes()));
                    }
                    if let Some(s) = hasher.as_ref().and_then(|h| h.signature(&t)) {
                        flags |= HAS_SIG;
                        row[7..].copy_from_slice(&s);
                    }
                    row[6] = flags;
                }
                row
            })
            .collect();
        for r in &rows {
            w.row(r)?;
        }
        pb.inc(rows.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    w.finish(Meta {
        version: VERSION,
        source_sha256: sha,
        bin_sha256: String::new(),
        rows: 0,
        row_words: words,
        settings: settings.clone(),
        model_id: String::new(),
        model_sha256: String::new(),
        dim: 0,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The embedding part of `source` in `dir`, with `emb`.
pub fn build_embeddings(
    source: &Path,
    dir: &Path,
    settings: &EmbSettings,
    emb: &Embedder,
    progress: bool,
) -> Result<Meta<EmbSettings>> {
    use rayon::prelude::*;
    let t0 = std::time::Instant::now();
    let dim = emb.dim();
    let words = dim + 5;
    let mut w = PartWriter::new(Part::Embeddings, dir)?;
    let pb = crate::progress::spinner(progress, "dedup index: embeddings");
    let sha = for_each_chunk(source, |chunk| {
        let parsed: Vec<(u64, Option<String>)> = chunk
            .par_iter()
            .map(|raw| text_of(raw, &settings.field))
            .collect();
        let texts: Vec<&str> = parsed.iter().filter_map(|p| p.1.as_deref()).collect();
        // Each vector depends on its text alone (packed, no padding: the same bits in any
        // batch on the CPU), so a shard's rows equal the single run's.
        let mut vecs = emb.embed(&texts, |_| {})?.into_iter();
        for (id, text) in &parsed {
            let mut row = vec![0u32; words];
            if text.is_some() {
                let e = vecs
                    .next()
                    .ok_or_else(|| Error::Internal("embedder returned fewer rows".into()))?;
                row[..dim].copy_from_slice(bytemuck::cast_slice(&e.vector));
                row[dim + 2] = e.tokens as u32;
                row[dim + 3] = e.truncated_tokens as u32;
                row[dim + 4] = HAS_TEXT;
            }
            row[dim] = *id as u32;
            row[dim + 1] = (*id >> 32) as u32;
            w.row(&row)?;
        }
        pb.inc(parsed.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    w.finish(Meta {
        version: VERSION,
        source_sha256: sha,
        bin_sha256: String::new(),
        rows: 0,
        row_words: words,
        settings: settings.clone(),
        model_id: emb.id.clone(),
        model_sha256: emb.weights_sha256.clone(),
        dim,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A part's rows, memory-mapped.
struct Mapped {
    map: Option<memmap2::Mmap>,
    words: usize,
    rows: usize,
}

impl Mapped {
    /// Maps a part whose meta says `rows` × `words`; `None` when the file disagrees.
    fn open(bin: &Path, rows: u64, words: usize, sha: &str) -> Result<Option<Mapped>> {
        let Ok(f) = std::fs::File::open(bin) else {
            return Ok(None);
        };
        let len = f
            .metadata()
            .map_err(|e| Error::io("cannot read", bin, e))?
            .len();
        if len != rows * words as u64 * 4 {
            return Ok(None);
        }
        if crate::models::checksum::sha256_stream(bin)? != sha {
            return Ok(None);
        }
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the file is this run's (its lock is held) and no one writes it in
            // place: a rebuild writes a new file and renames it over this one.
            Some(unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("cannot map", bin, e))?)
        };
        Ok(Some(Mapped {
            map,
            words,
            rows: rows as usize,
        }))
    }

    fn row(&self, i: usize) -> &[u32] {
        let all: &[u32] = self.map.as_deref().map_or(&[], bytemuck::cast_slice);
        &all[i * self.words..(i + 1) * self.words]
    }
}

/// The signature part, ready to read.
pub struct Signatures {
    m: Mapped,
    pub meta: Meta<SigSettings>,
}

impl Signatures {
    /// The part in `dir` when it was made from `source_sha256` with `settings`.
    pub fn fresh(dir: &Path, source_sha256: &str, settings: &SigSettings) -> Result<Option<Self>> {
        let Some(meta) = load_meta::<SigSettings>(Part::Signatures, dir) else {
            return Ok(None);
        };
        if meta.version != VERSION
            || meta.source_sha256 != source_sha256
            || &meta.settings != settings
            || meta.row_words != 7 + settings.num_perm
        {
            return Ok(None);
        }
        Ok(Mapped::open(
            &Part::Signatures.bin(dir),
            meta.rows,
            meta.row_words,
            &meta.bin_sha256,
        )?
        .map(|m| Signatures { m, meta }))
    }

    pub fn rows(&self) -> usize {
        self.m.rows
    }
    pub fn id_hash(&self, i: usize) -> u64 {
        let r = self.m.row(i);
        r[0] as u64 | (r[1] as u64) << 32
    }
    pub fn has_text(&self, i: usize) -> bool {
        self.m.row(i)[6] & HAS_TEXT != 0
    }
    pub fn blank(&self, i: usize) -> bool {
        self.m.row(i)[6] & BLANK != 0
    }
    pub fn exact(&self, i: usize) -> Option<u128> {
        let r = self.m.row(i);
        (r[6] & HAS_KEY != 0).then(|| {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytemuck::cast_slice(&r[2..6]));
            u128::from_le_bytes(b)
        })
    }
    pub fn sig(&self, i: usize) -> Option<&[u32]> {
        let r = self.m.row(i);
        (r[6] & HAS_SIG != 0).then(|| &r[7..])
    }
}

/// The embedding part, ready to read.
pub struct Embeddings {
    m: Mapped,
    pub meta: Meta<EmbSettings>,
}

impl Embeddings {
    /// The part in `dir` when it was made from `source_sha256` with `settings`.
    pub fn fresh(dir: &Path, source_sha256: &str, settings: &EmbSettings) -> Result<Option<Self>> {
        let Some(meta) = load_meta::<EmbSettings>(Part::Embeddings, dir) else {
            return Ok(None);
        };
        if meta.version != VERSION
            || meta.source_sha256 != source_sha256
            || &meta.settings != settings
            || meta.row_words != meta.dim + 5
        {
            return Ok(None);
        }
        Ok(Mapped::open(
            &Part::Embeddings.bin(dir),
            meta.rows,
            meta.row_words,
            &meta.bin_sha256,
        )?
        .map(|m| Embeddings { m, meta }))
    }

    pub fn dim(&self) -> usize {
        self.meta.dim
    }
    pub fn rows(&self) -> usize {
        self.m.rows
    }
    fn tail(&self, i: usize) -> &[u32] {
        &self.m.row(i)[self.meta.dim..]
    }
    pub fn id_hash(&self, i: usize) -> u64 {
        let t = self.tail(i);
        t[0] as u64 | (t[1] as u64) << 32
    }
    /// (tokens, truncated tokens) of row i.
    pub fn tokens(&self, i: usize) -> (usize, usize) {
        let t = self.tail(i);
        (t[2] as usize, t[3] as usize)
    }
    pub fn vector(&self, i: usize) -> Option<&[f32]> {
        let r = self.m.row(i);
        (r[self.meta.dim + 4] & HAS_TEXT != 0).then(|| bytemuck::cast_slice(&r[..self.meta.dim]))
    }
}

/// Joins the parts of several indexes (the shards', in the order their sources were
/// joined) into `out`, for a source whose sha256 is `joined_sha256`. A part is joined only
/// when every index has it fresh for its own source (`parts[i].1`) with the same settings;
/// otherwise it is left out (the global dedup then makes it itself) and the reason is
/// returned, one line per part.
pub fn join(parts: &[(PathBuf, String)], out: &Path, joined_sha256: &str) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for part in [Part::Signatures, Part::Embeddings] {
        // Whatever was here described other records.
        let _ = std::fs::remove_file(part.meta(out));
        let _ = std::fs::remove_file(part.bin(out));
        let metas: Vec<Option<Meta<serde_json::Value>>> =
            parts.iter().map(|(d, _)| load_meta(part, d)).collect();
        let mut why = None;
        for (k, ((dir, sha), m)) in parts.iter().zip(&metas).enumerate() {
            let problem = match m {
                None => Some("has none".to_string()),
                Some(m) if m.version != VERSION => Some("is of an older format".into()),
                Some(m) if &m.source_sha256 != sha => {
                    Some("was made from other records than it now holds".into())
                }
                Some(m) if Some(&m.settings) != metas[0].as_ref().map(|f| &f.settings) => {
                    Some("was made with other settings than the first shard's".into())
                }
                Some(m) if m.model_sha256 != metas[0].as_ref().map_or("", |f| &f.model_sha256) => {
                    Some("was made with another embedder".into())
                }
                Some(m) => match std::fs::metadata(part.bin(dir)) {
                    Ok(md) if md.len() == m.rows * m.row_words as u64 * 4 => None,
                    _ => Some("has a damaged or missing .bin".into()),
                },
            };
            if let Some(p) = problem {
                why = Some(format!(
                    "index {k} ({}): its {} part {p}",
                    dir.display(),
                    part.name()
                ));
                break;
            }
        }
        if let Some(w) = why {
            if metas.iter().any(Option::is_some) {
                notes.push(w);
            }
            continue;
        }
        let Some(Some(first)) = metas.first() else {
            continue;
        };
        std::fs::create_dir_all(out).map_err(|e| Error::io("cannot create", out, e))?;
        let tmp = part.bin(out).with_extension("bin.tmp");
        let mut w = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot write", &tmp, e))?;
        let mut rows = 0;
        let mut seconds: f64 = 0.0;
        let mut joined = Sha256::new();
        let mut damaged = None;
        for (k, ((dir, _), m)) in parts.iter().zip(&metas).enumerate() {
            use std::io::Read;
            let m = m
                .as_ref()
                .ok_or_else(|| Error::Internal("index part vanished".into()))?;
            let bin = part.bin(dir);
            let mut r = std::fs::File::open(&bin).map_err(|e| Error::io("cannot read", &bin, e))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| Error::io("cannot read", &bin, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                joined.update(&buf[..n]);
                w.write_all(&buf[..n])
                    .map_err(|e| Error::io("cannot write", &tmp, e))?;
            }
            if format!("{:x}", h.finalize()) != m.bin_sha256 {
                damaged = Some(format!(
                    "index {k} ({}): its {} part is damaged (its .bin is not what was written)",
                    dir.display(),
                    part.name()
                ));
                break;
            }
            rows += m.rows;
            seconds = seconds.max(m.seconds);
        }
        if let Some(d) = damaged {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
            notes.push(d);
            continue;
        }
        w.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        std::fs::rename(&tmp, part.bin(out)).map_err(|e| Error::io("cannot replace", out, e))?;
        let meta = Meta {
            source_sha256: joined_sha256.to_string(),
            bin_sha256: format!("{:x}", joined.finalize()),
            rows,
            seconds,
            ..first.clone()
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::Internal(format!("index meta: {e}")))?;
        crate::store::write_atomic(&part.meta(out), &json)?;
    }
    Ok(notes)
}

/// Writes an embedding part from vectors made elsewhere (`flywheel bench merge` plants
/// synthetic ones): row `k` is `rows`' `k`-th item, (id hash, unit vector or `None`), for
/// the source whose sha256 is `source_sha256`.
pub fn write_embeddings(
    dir: &Path,
    source_sha256: &str,
    settings: &EmbSettings,
    model_id: &str,
    dim: usize,
    rows: impl Iterator<Item = (u64, Option<Vec<f32>>)>,
) -> Result<Meta<EmbSettings>> {
    let mut w = PartWriter::new(Part::Embeddings, dir)?;
    let mut row = vec![0u32; dim + 5];
    for (id, v) in rows {
        row.fill(0);
        if let Some(v) = v {
            row[..dim].copy_from_slice(bytemuck::cast_slice(&v[..dim]));
            row[dim + 4] = HAS_TEXT;
        }
        row[dim] = id as u32;
        row[dim + 1] = (id >> 32) as u32;
        w.row(&row)?;
    }
    w.finish(Meta {
        version: VERSION,
        source_sha256: source_sha256.to_string(),
        bin_sha256: String::new(),
        rows: 0,
        row_words: dim + 5,
        settings: settings.clone(),
        model_id: model_id.to_string(),
        model_sha256: String::new(),
        dim,
        seconds: 0.0,
    })
}
