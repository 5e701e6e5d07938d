//! The global dedup pass, streamed: the index (made or reused), one read of the records
//! keeping a [`Row`] each, the decisions over ids, scores, keys, signatures and vectors,
//! and a write pass that reads each record back by its offset. Every dedup runs it: a
//! single run, a merge (from the shards' joined indexes), `flywheel dedup --input`.

use super::decontam::EvalIndex;
use super::index;
use super::stage::{filter_reason, load_eval, priority, DedupOptions, DedupSummary};
use super::Reason;
use crate::error::{Error, Result};
use crate::spec::FilterSection;
use crate::store::manifest::ModelEntry;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn sample_index(v: &Value) -> u64 {
    v.pointer("/meta/sample_index")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// `[filter] per_prompt`: the passing samples that are not selected, as (row, reason)
/// (`per_prompt:not_best`, `per_prompt:not_first`). `order`: rows in processing order.
fn per_prompt(rows: &[Row], order: &[u32], f: &FilterSection) -> HashMap<u32, &'static str> {
    use crate::spec::PerPrompt;
    let reason = match f.per_prompt {
        PerPrompt::All | PerPrompt::AllPassing => return HashMap::new(),
        PerPrompt::Best => "per_prompt:not_best",
        PerPrompt::FirstPassing => "per_prompt:not_first",
    };
    let mut groups: HashMap<u128, Vec<u32>> = HashMap::new();
    for &k in order {
        let r = &rows[k as usize];
        if let (None, Some(key)) = (&r.pre, r.prompt) {
            groups.entry(key).or_default().push(k);
        }
    }
    let mut out = HashMap::new();
    for (_, mut g) in groups {
        // Best first: the highest combined judge score, then the lowest sample index
        // (stable: then processing order).
        g.sort_by(|&a, &b| {
            let (a, b) = (&rows[a as usize], &rows[b as usize]);
            let (sa, sb) = (
                a.score.unwrap_or(f64::NEG_INFINITY),
                b.score.unwrap_or(f64::NEG_INFINITY),
            );
            let by_score = if f.per_prompt == PerPrompt::Best {
                sb.total_cmp(&sa)
            } else {
                std::cmp::Ordering::Equal
            };
            by_score.then(a.sample.cmp(&b.sample))
        });
        for k in g.into_iter().skip(1) {
            out.insert(k, reason);
        }
    }
    out
}

/// One input line, as the global pass keeps it: where it is and what decides its fate, but
/// not its text (about 100 bytes a line, so ten million lines fit in about a gigabyte).
struct Row {
    offset: u64,
    len: u32,
    line: u32,
    /// The record's id (repeated ids get `@line:N`); empty for a line that is not a record.
    id: Box<str>,
    /// Why it is out before dedup: unreadable, no text, a keep-rule.
    pre: Option<Box<str>>,
    score: Option<f64>,
    /// Its prompt's group, for `[filter] per_prompt`.
    prompt: Option<u128>,
    sample: u64,
    /// The eval item it shares an n-gram with (file, id).
    contaminated: Option<Box<(String, String)>>,
}

fn prompt_hash(key: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    u128::from_le_bytes(b)
}

/// Reads one line's bytes back by offset (the write pass, and exact Jaccard).
struct Source {
    file: std::fs::File,
    path: PathBuf,
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        Ok(Source {
            file: std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?,
            path: path.to_path_buf(),
        })
    }

    fn bytes(&self, r: &Row) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; r.len as usize];
        self.file
            .read_exact_at(&mut b, r.offset)
            .map_err(|e| Error::io("cannot read", &self.path, e))?;
        Ok(b)
    }
}

/// The index parts this dedup needs for `input`, fresh: reused when they were made from
/// these very bytes with these settings (a shard's, joined by the merge), else made here.
fn index_for(
    input: &Path,
    dir: &Path,
    sha: &str,
    opts: &DedupOptions,
    summary: &mut DedupSummary,
) -> Result<(index::Signatures, Option<index::Embeddings>, bool)> {
    let st = sig_settings(opts);
    let mut built = false;
    let sigs = match index::Signatures::fresh(dir, sha, &st)? {
        Some(s) => s,
        None => {
            built = true;
            index::build_signatures(input, dir, &st, opts.progress)?;
            index::Signatures::fresh(dir, sha, &st)?.ok_or_else(|| changed(input))?
        }
    };
    let embs = match emb_settings(opts) {
        None => None,
        Some(st) => Some(match index::Embeddings::fresh(dir, sha, &st)? {
            Some(e) => e,
            None => {
                built = true;
                let emb = crate::runtime::embedder(&opts.embedder, opts.fetch, &opts.device)?;
                let m = index::build_embeddings(input, dir, &st, &emb, opts.progress)?;
                summary.embed_seconds = m.seconds;
                index::Embeddings::fresh(dir, sha, &st)?.ok_or_else(|| changed(input))?
            }
        }),
    };
    Ok((sigs, embs, built))
}

fn changed(input: &Path) -> Error {
    Error::RunConflict(format!(
        "{} changed while dedup read it (another process is writing it?): run dedup again",
        input.display()
    ))
}

/// The signature settings of these options (0 permutations: exact keys only).
pub fn sig_settings(opts: &DedupOptions) -> index::SigSettings {
    let m = opts.minhash.unwrap_or_default();
    index::SigSettings {
        field: opts.field.clone(),
        num_perm: opts.minhash.map_or(0, |m| m.num_perm),
        shingle: m.shingle.name(),
        seed: m.seed,
    }
}

/// The embedding settings of these options, when they embed at all.
pub fn emb_settings(opts: &DedupOptions) -> Option<index::EmbSettings> {
    opts.needs_embedder().then(|| index::EmbSettings {
        field: opts.field.clone(),
        model: opts.embedder.clone(),
        device: crate::engine::device::name(&opts.device),
    })
}

/// Makes the index of `input` in `dir` (the shard side of a sharded run): the signature
/// part, and the embedding part when these options embed. Parts already fresh are kept.
/// Returns the seconds spent building.
pub fn build_index(input: &Path, dir: &Path, opts: &DedupOptions, embed_only: bool) -> Result<f64> {
    let t0 = Instant::now();
    let sha = crate::models::checksum::sha256_stream(input)?;
    if !embed_only {
        let st = sig_settings(opts);
        if index::Signatures::fresh(dir, &sha, &st)?.is_none() {
            index::build_signatures(input, dir, &st, opts.progress)?;
        }
    }
    if let Some(st) = emb_settings(opts) {
        if index::Embeddings::fresh(dir, &sha, &st)?.is_none() {
            let emb = crate::runtime::embedder(&opts.embedder, opts.fetch, &opts.device)?;
            index::build_embeddings(input, dir, &st, &emb, opts.progress)?;
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// One read of the records: a [`Row`] each, checked row for row against the index
/// (`None`: the index does not line up with them).
fn read_rows(
    input: &Path,
    sha: &str,
    sigs: &index::Signatures,
    embs: Option<&index::Embeddings>,
    opts: &DedupOptions,
    eval_index: Option<&EvalIndex>,
) -> Result<Option<Vec<Row>>> {
    let mut rows: Vec<Row> = Vec::new();
    let mut misaligned = false;
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut hasher = sha2::Sha256::default();
    let read = crate::record::lines::for_each_raw(
        input,
        |b| sha2::Digest::update(&mut hasher, b),
        |line, offset, raw| {
            let k = rows.len();
            let mut r = Row {
                offset,
                len: raw.len() as u32,
                line: line as u32,
                id: "".into(),
                pre: None,
                score: None,
                prompt: None,
                sample: u64::MAX,
                contaminated: None,
            };
            let value = match crate::record::lines::parse_line(raw) {
                Ok(v) => v,
                Err(why) => {
                    r.pre = Some(why.into());
                    rows.push(r);
                    return Ok(());
                }
            };
            let h = index::id_hash(&value);
            if k >= sigs.rows()
                || sigs.id_hash(k) != h
                || embs.is_some_and(|e| k >= e.rows() || e.id_hash(k) != h)
            {
                misaligned = true;
                return Err(Error::Interrupted);
            }
            let mut id = match value.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format!("line:{line}"),
            };
            // Ids name survivors in `dup_of`; a repeated id would make that ambiguous.
            let count = seen.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                id = format!("{id}@line:{line}");
            }
            r.id = id.into();
            r.score = priority(&value);
            r.sample = sample_index(&value);
            // A line verify could not read, carried to here with its reason.
            r.pre = if let Some(why) = value.pointer("/bad_input/reason").and_then(Value::as_str) {
                Some(why.into())
            } else if !sigs.has_text(k) {
                Some(format!("bad_input:no_text (no {:?} field to compare)", opts.field).into())
            } else {
                filter_reason(&value, &opts.filter).map(Into::into)
            };
            if r.pre.is_none() {
                r.prompt = crate::record::prompt_key(&value).map(|k| prompt_hash(&k));
                if let Some(idx) = eval_index {
                    let text = crate::record::View::new(&value)
                        .text(&opts.field)
                        .unwrap_or_default();
                    r.contaminated = idx
                        .find(&text)
                        .map(|e| Box::new((e.file.clone(), e.id.clone())));
                }
            }
            rows.push(r);
            Ok(())
        },
    );
    if misaligned {
        return Ok(None);
    }
    read?;
    if format!("{:x}", sha2::Digest::finalize(hasher)) != sha {
        return Err(changed(input));
    }
    if rows.len() != sigs.rows() || embs.is_some_and(|e| e.rows() != rows.len()) {
        return Ok(None);
    }
    Ok(Some(rows))
}

/// Filters and deduplicates `input` into `kept` and `rejected`; the index is made (or
/// found) in a temporary directory beside `kept`.
pub fn run(
    input: &Path,
    kept: &Path,
    rejected: &Path,
    opts: &DedupOptions,
) -> Result<DedupSummary> {
    let parent = kept
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".flywheel-index-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("cannot create a directory in", parent, e))?;
    run_indexed(input, tmp.path(), kept, rejected, opts)
}

/// Filters and deduplicates `input` into `kept` and `rejected`, with the index in
/// `index_dir`.
///
/// Streaming, in three passes: the index (per record, parallel; reused when fresh); one
/// read of the records keeping a [`Row`] each; the decisions over ids, scores, keys,
/// signatures and vectors (read in place); then a write pass that reads each record back
/// by offset. Memory holds no text: about 100 bytes per record plus the LSH band hashes.
pub fn run_indexed(
    input: &Path,
    index_dir: &Path,
    kept: &Path,
    rejected: &Path,
    opts: &DedupOptions,
) -> Result<DedupSummary> {
    let t0 = Instant::now();
    let input_copy = crate::record::lines::Rereadable::new(input)?;
    let input = input_copy.path();
    // Eval sets first: a missing file fails before any work.
    let mut eval = Vec::new();
    for p in &opts.against {
        if !p.is_file() {
            return Err(Error::Spec(format!(
                "eval set {} does not exist (from --against / dedup.against)",
                p.display()
            )));
        }
        eval.extend(load_eval(p)?);
    }
    let mut summary = DedupSummary {
        kept_path: kept.to_path_buf(),
        rejected_path: rejected.to_path_buf(),
        eval_items: eval.len(),
        ..Default::default()
    };
    let sha = crate::models::checksum::sha256_stream(input)?;
    let eval_index = (!eval.is_empty()).then(|| EvalIndex::build(eval.clone(), opts.ngram));
    summary.eval_skipped_short = eval_index.as_ref().map_or(0, |i| i.skipped);
    // An index whose rows do not line up with the records (edited, or from other records
    // of the same count) is made again, once; made here and still off, the input changed.
    let mut retried = false;
    let (sigs, embs, rows) = loop {
        let (sigs, embs, built) = index_for(input, index_dir, &sha, opts, &mut summary)?;
        match read_rows(input, &sha, &sigs, embs.as_ref(), opts, eval_index.as_ref())? {
            Some(rows) => break (sigs, embs, rows),
            None if !built && !retried => {
                retried = true;
                let _ = std::fs::remove_file(index::Part::Signatures.meta(index_dir));
                let _ = std::fs::remove_file(index::Part::Embeddings.meta(index_dir));
            }
            None => return Err(changed(input)),
        }
    };

    // Processing order: file order, or unreadable lines first (by line) then records by id.
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    if opts.id_order {
        order.sort_by(|&a, &b| {
            let (a, b) = (&rows[a as usize], &rows[b as usize]);
            (!a.id.is_empty(), &a.id, a.line).cmp(&(!b.id.is_empty(), &b.id, b.line))
        });
    }
    let not_selected = per_prompt(&rows, &order, &opts.filter);

    // The texts still in the running, in processing order.
    let mut keys = super::Keys::default();
    let mut item_row: Vec<u32> = Vec::new();
    let mut item_of: Vec<u32> = vec![u32::MAX; rows.len()];
    for &k in &order {
        let r = &rows[k as usize];
        if r.pre.is_none() && !not_selected.contains_key(&k) {
            item_of[k as usize] = item_row.len() as u32;
            item_row.push(k);
            keys.ids.push(r.id.to_string());
            keys.scores.push(r.score);
        }
    }
    let n = item_row.len();
    let row_of = |i: usize| item_row[i] as usize;
    let mut out: Vec<Option<Reason>> = vec![None; n];
    for (i, o) in out.iter_mut().enumerate() {
        if let Some(c) = &rows[row_of(i)].contaminated {
            *o = Some(Reason::Contaminated {
                file: c.0.clone(),
                id: c.1.clone(),
            });
        }
    }
    if opts.exact {
        let hashes: Vec<Option<u128>> = (0..n).map(|i| sigs.exact(row_of(i))).collect();
        super::exact_by_key(&keys, &hashes, &mut out);
    }
    if let Some(m) = &opts.minhash {
        let src = Source::open(input)?;
        let shingles = |i: usize| -> Vec<u64> {
            let r = &rows[row_of(i)];
            let text = src
                .bytes(r)
                .ok()
                .and_then(|b| crate::record::lines::parse_line(&b).ok())
                .and_then(|v| crate::record::View::new(&v).text(&opts.field))
                .unwrap_or_default();
            super::text::shingle_hashes(&text, m.shingle)
        };
        let jaccard = |a: usize, b: usize| super::minhash::jaccard(&shingles(a), &shingles(b));
        super::minhash_by_sig(
            &keys,
            |i| sigs.sig(row_of(i)),
            |i| sigs.blank(row_of(i)),
            m.exact_jaccard
                .then_some(&jaccard as &dyn Fn(usize, usize) -> f32),
            m,
            &mut out,
        );
    }

    let mut embed_info: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut embedder_id = String::new();
    if let Some(embs) = &embs {
        embedder_id = embs.meta.model_id.clone();
        summary.embedder = Some(ModelEntry {
            role: "embedder".into(),
            id: embs.meta.model_id.clone(),
            file: opts.embedder.clone(),
            sha256: embs.meta.model_sha256.clone(),
        });
        let alive: Vec<usize> = (0..n).filter(|&i| out[i].is_none()).collect();
        summary.embedded = alive.len();
        for &i in &alive {
            let t = embs.tokens(row_of(i));
            embed_info[i] = Some(t);
            summary.truncated += (t.1 > 0) as usize;
        }
        let dim = embs.dim();
        let vector = |i: usize| embs.vector(row_of(i));
        if let (Some(t), Some(_)) = (opts.against_semantic, &eval_index) {
            let emb = crate::runtime::embedder(&opts.embedder, opts.fetch, &opts.device)?;
            let b: Vec<f32> = emb
                .embed(
                    &eval.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
                    |_| {},
                )?
                .into_iter()
                .flat_map(|e| e.vector)
                .collect();
            let live: Vec<usize> = alive
                .iter()
                .copied()
                .filter(|&i| vector(i).is_some_and(|v| v.iter().all(|x| x.is_finite())))
                .collect();
            // In slices, so the vectors compared are never all in memory at once.
            for part in live.chunks(1 << 16) {
                let a: Vec<f32> = part
                    .iter()
                    .flat_map(|&i| vector(i).unwrap_or(&[]).iter().copied())
                    .collect();
                for p in super::semantic::cross_pairs(&a, &b, dim, t) {
                    let i = part[p.i as usize];
                    if out[i].is_none() {
                        let e = &eval[p.j as usize];
                        out[i] = Some(Reason::Contaminated {
                            file: e.file.clone(),
                            id: e.id.clone(),
                        });
                    }
                }
            }
        }
        if let Some(s) = &opts.semantic {
            super::semantic_by_vector(&keys, vector, dim, s, &opts.device, &mut out)?;
        }
    }

    write_outputs(
        input,
        kept,
        rejected,
        &Decided {
            rows: &rows,
            order: &order,
            not_selected: &not_selected,
            item_of: &item_of,
            keys: &keys,
            out: &out,
            embed_info: &embed_info,
            embedder_id: &embedder_id,
        },
        &mut summary,
    )?;
    summary.wall_seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// What the global pass decided, for the write pass.
struct Decided<'a> {
    rows: &'a [Row],
    /// Rows in processing order (the order both files are written in).
    order: &'a [u32],
    not_selected: &'a HashMap<u32, &'static str>,
    /// Row → item (`u32::MAX`: not an item).
    item_of: &'a [u32],
    keys: &'a super::Keys,
    out: &'a [Option<Reason>],
    embed_info: &'a [Option<(usize, usize)>],
    embedder_id: &'a str,
}

/// Writes kept and rejected in processing order, atomically, reading each record back by
/// its offset and adding its `decision`.
fn write_outputs(
    input: &Path,
    kept: &Path,
    rejected: &Path,
    d: &Decided<'_>,
    summary: &mut DedupSummary,
) -> Result<()> {
    let Decided {
        rows,
        order,
        not_selected,
        item_of,
        keys,
        out,
        embed_info,
        embedder_id,
    } = *d;
    // A record matched to one that a later method removed (exact, then MinHash…) names its
    // match in `dup_of` and, in `survivor`, the kept record at the end of that chain.
    let survivor = {
        let ids: Vec<&str> = keys.ids.iter().map(String::as_str).collect();
        super::clusters_by_id(&ids, out)
    };

    // Write both files in processing order, atomically, reading each record back.
    let src = Source::open(input)?;
    let tmp = |p: &Path| p.with_extension("jsonl.tmp");
    let open = |p: &Path| -> Result<std::io::BufWriter<std::fs::File>> {
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| Error::io("cannot create", d, e))?;
        }
        let f = std::fs::File::create(tmp(p)).map_err(|e| Error::io("cannot write", tmp(p), e))?;
        Ok(std::io::BufWriter::new(f))
    };
    let (mut kw, mut rw) = (open(kept)?, open(rejected)?);
    for &k in order {
        let r = &rows[k as usize];
        let raw = src.bytes(r)?;
        let (mut value, decision, keep) = match crate::record::lines::to_line(r.line as usize, &raw)
        {
            crate::record::lines::Line::Bad(b) => {
                *summary.by_method.entry("bad_input".into()).or_default() += 1;
                (
                    json!({"line": b.line, "raw": b.raw}),
                    json!({"kept": false, "reason": b.reason, "stage": "input"}),
                    false,
                )
            }
            crate::record::lines::Line::Record { value, .. } => {
                let mut d = serde_json::Map::new();
                let pre = r.pre.as_deref().or_else(|| not_selected.get(&k).copied());
                let item = item_of[k as usize];
                let keep = match pre {
                    Some(why) => {
                        let stage = if why.starts_with("bad_input") {
                            "input"
                        } else {
                            "filter"
                        };
                        *summary
                            .by_method
                            .entry(
                                if stage == "input" {
                                    "bad_input"
                                } else {
                                    "filter"
                                }
                                .into(),
                            )
                            .or_default() += 1;
                        d.insert("reason".into(), why.into());
                        d.insert("stage".into(), stage.into());
                        false
                    }
                    None if item == u32::MAX => false,
                    None => {
                        let i = item as usize;
                        if let Some((tokens, trunc)) = embed_info[i] {
                            d.insert(
                                "embedding".into(),
                                json!({"model": embedder_id, "tokens": tokens, "truncated_tokens": trunc, "handling": if trunc > 0 { "truncated" } else { "whole" }}),
                            );
                        }
                        match &out[i] {
                            None => {
                                d.insert("reason".into(), Value::Null);
                                true
                            }
                            Some(reason) => {
                                *summary.by_method.entry(reason.method().into()).or_default() += 1;
                                d.insert("reason".into(), reason.to_string().into());
                                d.insert("stage".into(), reason.method().into());
                                if let Some((of, sim)) = reason.dup_of() {
                                    d.insert("dup_of".into(), of.into());
                                    let last = &keys.ids[survivor[i]];
                                    if last != of {
                                        d.insert("survivor".into(), last.as_str().into());
                                    }
                                    if let Some(s) = sim {
                                        d.insert(
                                            "similarity".into(),
                                            json!((s as f64 * 1e4).round() / 1e4),
                                        );
                                    }
                                }
                                false
                            }
                        }
                    }
                };
                d.insert("kept".into(), keep.into());
                (value, Value::Object(d), keep)
            }
        };
        if let Some(o) = value.as_object_mut() {
            o.insert("decision".into(), decision);
        }
        summary.records += 1;
        let w = if keep {
            summary.kept += 1;
            &mut kw
        } else {
            &mut rw
        };
        serde_json::to_writer(&mut *w, &value)
            .map_err(|e| Error::Internal(format!("cannot serialize a record: {e}")))?;
        w.write_all(b"\n")
            .map_err(|e| Error::io("cannot write", tmp(kept), e))?;
    }
    for (w, p) in [(kw, kept), (rw, rejected)] {
        let f = w
            .into_inner()
            .map_err(|e| Error::io("cannot write", tmp(p), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", tmp(p), e))?;
        std::fs::rename(tmp(p), p).map_err(|e| Error::io("cannot replace", p, e))?;
    }
    Ok(())
}
