//! Blend: mix the synthetic survivors with real data at a deliberate ratio, seeded, and
//! write the dataset (`dataset.jsonl`, `dataset.parquet`) with a dataset card
//! (`README.md`, Hugging Face datasets layout) that says what share is synthetic and how
//! it was made.
//!
//! Real data anchors a synthetic set against collapse; the ratio is the user's decision,
//! so when the survivors cannot meet it we write what keeps the ratio exact, say how many
//! records are missing, and exit with a distinct code.

pub mod card;
pub mod parquet_out;

use crate::error::{Error, Result};
use crate::record::read::for_each_record;
use crate::spec::{BlendOrder, BlendSection, Spec};
use crate::store::manifest::StageStatus;
use crate::store::{write_atomic, write_jsonl, AtomicWriter, Manifest, RunDir};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a blend did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlendSummary {
    pub synthetic_available: usize,
    pub real_available: usize,
    pub real_bad_rows: usize,
    pub synthetic: usize,
    pub real: usize,
    pub total: usize,
    /// Records the spec asked for that the survivors could not supply.
    pub missing_synthetic: usize,
    pub missing_real: usize,
    /// What reviews did (`flywheel review`): rejected records left out, edits taken in.
    pub review_rejected: usize,
    pub review_accepted: usize,
    pub review_edited: usize,
    /// Candidates in the review queue no one has decided yet.
    pub awaiting_review: usize,
    /// Unreviewed candidates left out because `[review] required = true`.
    pub held_back: usize,
    /// Decisions made on an earlier text of their record (no longer applied).
    pub stale_decisions: usize,
    pub wall_seconds: f64,
    #[serde(skip)]
    pub dataset: PathBuf,
}

/// What `flywheel blend` prints.
impl std::fmt::Display for BlendSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blend: {} (+ dataset.parquet, README.md)",
            self.run_line()
        )
    }
}

impl BlendSummary {
    /// The line `flywheel run` prints after `[5/6] blend:`.
    pub fn run_line(&self) -> String {
        let mut review = String::new();
        if self.review_accepted + self.review_edited + self.review_rejected + self.held_back > 0 {
            review = format!(
                " (review: {} accepted, {} edited, {} rejected, {} awaiting)",
                self.review_accepted,
                self.review_edited,
                self.review_rejected,
                self.awaiting_review
            );
        }
        format!(
            "{} synthetic + {} real = {} records → {}{review}",
            self.synthetic,
            self.real,
            self.total,
            self.dataset.display()
        )
    }
}

/// How many of each to take: (real, synthetic, missing real, missing synthetic).
pub fn counts(b: &BlendSection, real: usize, syn: usize) -> (usize, usize, usize, usize) {
    match (b.real_share, b.max_synthetic) {
        (_, Some(max)) => (real, syn.min(max), 0, 0),
        (Some(r), None) => match b.total {
            Some(t) => {
                let want_r = ((r * t as f64).round() as usize).min(t);
                let want_s = t - want_r;
                if want_r <= real && want_s <= syn {
                    return (want_r, want_s, 0, 0);
                }
                let (nr, ns) = keep_ratio(r, real.min(want_r), syn.min(want_s));
                (
                    nr,
                    ns,
                    want_r.saturating_sub(real),
                    want_s.saturating_sub(syn),
                )
            }
            None => {
                let (nr, ns) = keep_ratio(r, real, syn);
                (nr, ns, 0, 0)
            }
        },
        // No ratio: everything (real data, if any, plus all synthetic).
        (None, None) => (real, syn, 0, 0),
    }
}

/// The largest (real, synthetic) within the caps at real share `r`: one pool whole, the
/// other at the count that keeps the ratio (round(s·r/(1−r)) real for s synthetic). Fitting
/// a rounded total instead can drift (6 synthetic at 50 % gave 7 real, 53.8 %).
fn keep_ratio(r: f64, cap_r: usize, cap_s: usize) -> (usize, usize) {
    if r <= 0.0 {
        return (0, cap_s);
    }
    if r >= 1.0 {
        return (cap_r, 0);
    }
    let real_for_syn = ((cap_s as f64) * r / (1.0 - r)).round() as usize;
    if real_for_syn <= cap_r {
        return (real_for_syn, cap_s);
    }
    let syn_for_real = ((cap_r as f64) * (1.0 - r) / r).round() as usize;
    (cap_r, syn_for_real.min(cap_s))
}

/// A share as a percentage with at most one decimal (`30%`, `33.3%`, `53.8%`).
pub fn percent(share: f64) -> String {
    let s = format!("{:.1}", share * 100.0);
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

/// `flywheel blend SPEC`: `<run>/audited.jsonl` (or `input`) + `[blend].real` →
/// `<run>/dataset.jsonl`, `dataset.parquet`, `README.md`.
pub fn run_spec(spec: &Spec, input: Option<&Path>) -> Result<BlendSummary> {
    let dir = RunDir::new(spec.run_dir());
    // Only the audit's output: never an earlier stage's file, which the audit has not
    // cleared (a missing audited.jsonl means the audit must run, not be skipped).
    let input = RunDir::input(
        input,
        dir.audited(),
        &format!("audit {}", spec.path.display()),
    )?;
    let _lock = crate::store::create_run_dir(dir.path())?;
    let started = Instant::now();
    let input_copy = crate::record::lines::Rereadable::new(&input)?;
    let input = input_copy.path();
    // People's decisions first: rejected records never reach the ratio, edits replace
    // their originals, and `[review] required` keeps out what no one accepted. The
    // candidates are streamed twice (what review needs from all of them, then each
    // decision), never held.
    let log = crate::review::Log::load(&dir.review())?;
    for b in &log.bad_lines {
        eprintln!("warning: {} (skipped)", b.describe(&dir.review()));
    }
    let mut first = crate::review::Reviewer::first_pass(&spec.review, &log);
    for_each_record(input, |r| {
        first.see(&r);
        Ok(())
    })?;
    let reviewer = first.finish(spec.run.seed);
    // The candidates blend may take, then the real records, spilled to one scratch file:
    // only their places are held.
    let mut pool = Pool::create(dir.path())?;
    let mut reviewed = crate::review::Applied::default();
    for_each_record(input, |r| match reviewer.decide(&r, &mut reviewed) {
        Some(mut r) => {
            if let Some(o) = r.as_object_mut() {
                o.insert("source".into(), "synthetic".into());
                o.remove("decision");
            }
            pool.push(&r)
        }
        None => Ok(()),
    })?;
    if reviewed.stale > 0 {
        eprintln!(
            "warning: {} records were reviewed on an earlier text (they changed since): those decisions no longer apply and the records are back in the review queue",
            reviewed.stale
        );
    }
    if dir.review().exists() || spec.review.required {
        write_jsonl(&dir.review_rejected(), &reviewed.rejected)?;
    }
    let n_syn = pool.len();
    let mut bad = Vec::new();
    for f in &spec.blend.real {
        crate::record::real::for_each(
            &spec.resolve(f),
            spec.blend.strict,
            |r| pool.push(&r),
            |b| bad.push(b),
        )?;
    }
    let n_real = pool.len() - n_syn;
    for b in &bad {
        eprintln!(
            "warning: real data: {b} (skipped; --strict or [blend] strict = true fails instead)"
        );
    }
    if !spec.blend.real.is_empty() && n_real == 0 {
        return Err(Error::Spec(format!(
            "{}: blend.real: the real data files hold no readable records ({} bad rows)",
            spec.path.display(),
            bad.len()
        )));
    }
    let (nr, ns, miss_r, miss_s) = counts(&spec.blend, n_real, n_syn);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.run.seed ^ 0xb1e4d);
    let mut syn_idx: Vec<usize> = (0..n_syn).collect();
    syn_idx.shuffle(&mut rng);
    let mut real_idx: Vec<usize> = (0..n_real).collect();
    real_idx.shuffle(&mut rng);
    // Places in the pool: synthetic ones are below `n_syn`.
    let mut rows: Vec<usize> = syn_idx[..ns].to_vec();
    rows.extend(real_idx[..nr].iter().map(|&i| n_syn + i));
    // A seeded shuffle of the whole set, so training order mixes the sources.
    rows.shuffle(&mut rng);
    if spec.blend.order == BlendOrder::Curriculum {
        curriculum(&mut rows, |i| (i < n_syn).then(|| pool.difficulty[i]));
    }

    let dataset = dir.dataset();
    let flagged = pool.write(&rows, &dataset, &dir.dataset_parquet())?;
    let synthetic_available = n_syn;
    let real_available = n_real;
    let summary = BlendSummary {
        synthetic_available,
        real_available,
        real_bad_rows: bad.len(),
        synthetic: ns,
        real: nr,
        total: nr + ns,
        missing_synthetic: miss_s,
        missing_real: miss_r,
        review_rejected: reviewed.rejected.len(),
        review_accepted: reviewed.accepted,
        review_edited: reviewed.edited,
        awaiting_review: reviewed.awaiting,
        held_back: reviewed.held_back,
        stale_decisions: reviewed.stale,
        wall_seconds: started.elapsed().as_secs_f64(),
        dataset: dataset.clone(),
    };
    let m = Manifest::load(dir.path())?.unwrap_or_default();
    let card = card::render(spec, &m, &summary, flagged);
    write_atomic(&dir.card(), card.as_bytes())?;
    let short = miss_r + miss_s > 0 || (spec.review.required && reviewed.awaiting > 0);
    let mut st = StageStatus {
        status: if short { "short" } else { "done" }.into(),
        planned: nr + ns + miss_r + miss_s,
        done: nr + ns,
        written_this_run: nr + ns,
        wall_seconds: summary.wall_seconds,
        ..Default::default()
    };
    st.extra.insert("real".into(), nr.into());
    st.extra.insert("synthetic".into(), ns.into());
    st.extra.insert("missing_real".into(), miss_r.into());
    st.extra.insert("missing_synthetic".into(), miss_s.into());
    st.extra.insert("real_bad_rows".into(), bad.len().into());
    if dir.review().exists() || spec.review.required {
        let mut by_reason: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &reviewed.rejected {
            let why = r["decision"]["reason"].as_str().unwrap_or("").to_string();
            *by_reason.entry(why).or_default() += 1;
        }
        st.extra.insert(
            "review".into(),
            serde_json::json!({
                "rejected": by_reason, "accepted": reviewed.accepted, "edited": reviewed.edited,
                "awaiting": reviewed.awaiting, "held_back": reviewed.held_back,
                "stale": reviewed.stale, "required": spec.review.required,
                "sample": spec.review.sample, "seed": spec.run.seed,
            }),
        );
    }
    // What was asked, so the report can say how far short the blend fell.
    if let Some(t) = spec.blend.total {
        st.extra.insert("asked_total".into(), t.into());
    }
    if let Some(r) = spec.blend.real_share {
        st.extra.insert("asked_real_share".into(), r.into());
    }
    Manifest::mark_stage(dir.path(), (&spec.path, spec.sha256()), "blend", st, &[])?;
    Ok(summary)
}

/// `order = "curriculum"`: the places the shuffle gave synthetic records, refilled with
/// them from easy to hard (`meta.difficulty`, 0 when absent; ties keep the shuffled
/// order). Real records keep their places, so real data stays spread through the
/// curriculum instead of bunching at one end. `difficulty` is `None` for a real row.
fn curriculum<T: Copy>(rows: &mut [T], difficulty: impl Fn(T) -> Option<u64>) {
    let places: Vec<usize> = (0..rows.len())
        .filter(|&i| difficulty(rows[i]).is_some())
        .collect();
    let mut synthetic: Vec<T> = places.iter().map(|&i| rows[i]).collect();
    synthetic.sort_by_key(|&r| difficulty(r).unwrap_or(0));
    for (i, r) in places.into_iter().zip(synthetic) {
        rows[i] = r;
    }
}

/// Blend's records spilled to a scratch file in the run directory (removed when dropped),
/// each held only as its place: offset, length, difficulty and whether it carries a
/// privacy note. So a blend of millions of records holds a few bytes per record.
struct Pool {
    file: tempfile::NamedTempFile,
    out: std::io::BufWriter<std::fs::File>,
    at: Vec<(u64, u32)>,
    difficulty: Vec<u64>,
    privacy: Vec<bool>,
    end: u64,
}

impl Pool {
    fn create(dir: &Path) -> Result<Pool> {
        // A blend killed outright leaves its scratch file; the run lock is held, so any
        // found now is such a leftover.
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".blend-") && name.ends_with(".jsonl") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let file = tempfile::Builder::new()
            .prefix(".blend-")
            .suffix(".jsonl")
            .tempfile_in(dir)
            .map_err(|e| Error::io("cannot create a scratch file in", dir, e))?;
        let out = std::io::BufWriter::new(
            file.reopen()
                .map_err(|e| Error::io("cannot write", file.path(), e))?,
        );
        Ok(Pool {
            file,
            out,
            at: Vec::new(),
            difficulty: Vec::new(),
            privacy: Vec::new(),
            end: 0,
        })
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    fn push(&mut self, r: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(r)
            .map_err(|e| Error::Internal(format!("cannot serialize record: {e}")))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| Error::io("cannot write (is the disk full?)", self.file.path(), e))?;
        let len = u32::try_from(line.len())
            .map_err(|_| Error::Internal("a record of 4 GiB or more".into()))?;
        self.at.push((self.end, len));
        self.end += u64::from(len);
        self.difficulty
            .push(r["meta"]["difficulty"].as_u64().unwrap_or(0));
        self.privacy.push(r.get("privacy").is_some());
        Ok(())
    }

    /// Writes the rows at `places`, in that order, to `jsonl` and `parquet`; returns how
    /// many carry a privacy note.
    fn write(&mut self, places: &[usize], jsonl: &Path, parquet: &Path) -> Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write", self.file.path(), e))?;
        let src = self.file.path().to_path_buf();
        let mut f = std::fs::File::open(&src).map_err(|e| Error::io("cannot read", &src, e))?;
        let mut out = AtomicWriter::create(jsonl)?;
        let mut pq = parquet_out::Writer::create(parquet)?;
        let mut buf = Vec::new();
        let mut flagged = 0;
        let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = crate::progress::bar(places.len(), show, "blend: write");
        for &i in places {
            let (offset, len) = self.at[i];
            buf.resize(len as usize, 0);
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| Error::io("cannot read", &src, e))?;
            out.write_all(&buf)
                .map_err(|e| Error::io("cannot write", jsonl, e))?;
            let v: Value = serde_json::from_slice(&buf)
                .map_err(|e| Error::Internal(format!("blend scratch line: {e}")))?;
            pq.push(v)?;
            flagged += usize::from(self.privacy[i]);
            bar.inc(1);
        }
        bar.finish_and_clear();
        out.commit()?;
        pq.finish()?;
        Ok(flagged)
    }
}

/// The shortfall as an error (exit code 3) after everything possible was written.
pub fn shortfall(s: &BlendSummary, spec: &Spec) -> Option<Error> {
    if spec.review.required && s.awaiting_review > 0 {
        return Some(Error::Shortfall(format!(
            "blend: [review] required = true and {} records await review, so they are not in the dataset ({} accepted, {} edited, {} rejected so far). Wrote {} records to {}. Review them with `flywheel review {}`, then blend again",
            s.awaiting_review,
            s.review_accepted,
            s.review_edited,
            s.review_rejected,
            s.total,
            s.dataset.display(),
            spec.run_dir().display()
        )));
    }
    (s.missing_real + s.missing_synthetic > 0).then(|| {
        Error::Shortfall(format!(
            "blend: the spec asks for {} records ({} real) but the survivors allow {}: {} synthetic and {} real records are missing. Wrote {} records ({} synthetic + {} real, {} real) to {}. Generate more (raise samples_per_prompt or add seeds), add real data, or lower [blend].total",
            spec.blend.total.unwrap_or(0),
            percent(spec.blend.real_share.unwrap_or(0.0)),
            s.total,
            s.missing_synthetic,
            s.missing_real,
            s.total,
            s.synthetic,
            s.real,
            percent(s.real_share()),
            s.dataset.display()
        ))
    })
}

impl BlendSummary {
    /// The real share actually written (0 for an empty dataset).
    pub fn real_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.real as f64 / self.total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(share: Option<f64>, total: Option<usize>, max: Option<usize>) -> BlendSection {
        BlendSection {
            real_share: share,
            total,
            max_synthetic: max,
            ..Default::default()
        }
    }

    #[test]
    fn counts_meet_the_ratio_or_say_what_is_missing() {
        assert_eq!(counts(&b(Some(0.3), Some(10), None), 40, 100), (3, 7, 0, 0));
        // Default total: the largest the pools allow at the ratio.
        assert_eq!(counts(&b(Some(0.3), None, None), 6, 100), (6, 14, 0, 0)); // 6/20: exactly 30 %
        assert_eq!(counts(&b(Some(0.3), None, None), 40, 14), (6, 14, 0, 0));
        // Asked for 100 at 30 % real with only 20 synthetic: keep the ratio, report the gap.
        assert_eq!(
            counts(&b(Some(0.3), Some(100), None), 40, 20),
            (9, 20, 0, 50) // round(20 · 0.3/0.7) = 9
        );
        // 6 synthetic at 50 % keep 6 real (not 7 of 13, 53.8 %).
        assert_eq!(counts(&b(Some(0.5), Some(30), None), 40, 6), (6, 6, 0, 9));
        assert_eq!(counts(&b(Some(0.5), Some(30), None), 3, 40), (3, 3, 12, 0));
        // A total that fits is met exactly, even where the ratio rounds.
        assert_eq!(counts(&b(Some(0.5), Some(5), None), 40, 40), (3, 2, 0, 0));
        assert_eq!(counts(&b(None, None, Some(5)), 12, 30), (12, 5, 0, 0));
        assert_eq!(counts(&b(None, None, Some(50)), 12, 30), (12, 30, 0, 0));
        assert_eq!(counts(&b(Some(0.0), None, None), 12, 30), (0, 30, 0, 0));
        assert_eq!(counts(&b(Some(1.0), None, None), 12, 30), (12, 0, 0, 0));
    }

    #[test]
    fn ratio_kept_for_every_pool_size() {
        for r in [0.1, 0.25, 0.3, 0.5, 0.7, 0.9] {
            for syn in 0..40 {
                for real in 0..40 {
                    let (nr, ns, mr, ms) = counts(&b(Some(r), Some(60), None), real, syn);
                    assert!(nr <= real && ns <= syn, "r {r}: {nr}/{ns} of {real}/{syn}");
                    if mr + ms > 0 {
                        // Short: within one record of the asked ratio on the binding side.
                        let exact_real = ns as f64 * r / (1.0 - r);
                        let exact_syn = nr as f64 * (1.0 - r) / r;
                        assert!(
                            (nr as f64 - exact_real).abs() <= 0.5
                                || (ns as f64 - exact_syn).abs() <= 0.5,
                            "r {r}: {nr} real + {ns} synthetic from {real}/{syn}"
                        );
                    }
                }
            }
        }
    }

    /// Records with these difficulties (`None`: no `meta.difficulty`), ids `s0`, `s1`, ….
    fn synthetic(difficulties: &[Option<u64>]) -> Vec<Value> {
        difficulties
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut meta = serde_json::json!({});
                if let Some(d) = d {
                    meta["difficulty"] = (*d).into();
                }
                serde_json::json!({
                    "id": format!("s{i}"),
                    "messages": [
                        {"role": "user", "content": format!("q{i}")},
                        {"role": "assistant", "content": format!("a{i}")}
                    ],
                    "meta": meta,
                })
            })
            .collect()
    }

    fn ids(rows: &[Value]) -> Vec<&str> {
        rows.iter().map(|r| r["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn curriculum_sorts_synthetic_places_by_difficulty_and_leaves_real_ones() {
        let mut rows = synthetic(&[Some(3), Some(1), None, Some(2), Some(1)]);
        for r in &mut rows {
            r["source"] = "synthetic".into();
        }
        let real = |id: &str| serde_json::json!({"id": id, "source": "real"});
        rows.insert(1, real("r0"));
        rows.insert(4, real("r1"));
        rows.push(real("r2"));
        assert_eq!(ids(&rows), ["s0", "r0", "s1", "s2", "r1", "s3", "s4", "r2"]);
        // The blend sorts places in its pool; here the places are the rows themselves.
        let mut places: Vec<usize> = (0..rows.len()).collect();
        curriculum(&mut places, |i| {
            (rows[i]["source"] == "synthetic")
                .then(|| rows[i]["meta"]["difficulty"].as_u64().unwrap_or(0))
        });
        let rows: Vec<Value> = places.iter().map(|&i| rows[i].clone()).collect();
        // No difficulty counts as 0; ties (s1, s4) keep their order.
        assert_eq!(ids(&rows), ["s2", "r0", "s1", "s4", "r1", "s3", "s0", "r2"]);
    }

    /// Blend's scratch file (its pool of candidates) never outlives the blend, whether it
    /// succeeds or stops on a bad real row.
    #[test]
    fn the_scratch_file_is_gone_after_a_blend_and_after_a_failed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let spec = format!(
            "[run]\nname = \"b\"\nout_dir = {:?}\nseed = 7\n[[task]]\nname = \"q\"\ntemplate = \"x\"\n[blend]\nreal = [\"real.jsonl\"]\nstrict = true\n",
            d.join("out").display().to_string()
        );
        std::fs::write(
            d.join("real.jsonl"),
            "{\"prompt\": \"p\", \"response\": \"y\"}\nnot json\n",
        )
        .unwrap();
        let spec = Spec::parse(&d.join("spec.toml"), spec).unwrap();
        std::fs::create_dir_all(spec.run_dir()).unwrap();
        write_jsonl(
            &RunDir::new(spec.run_dir()).audited(),
            &synthetic(&[Some(1), None, Some(2)]),
        )
        .unwrap();
        let scratch = || {
            std::fs::read_dir(spec.run_dir())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".blend-")
                })
                .count()
        };
        // A leftover of a blend killed outright goes at the next blend.
        std::fs::write(spec.run_dir().join(".blend-killed.jsonl"), "{}\n").unwrap();
        let e = run_spec(&spec, None).unwrap_err().to_string();
        assert!(e.contains("real.jsonl") && e.contains(":2"), "{e}");
        assert_eq!(scratch(), 0, "removed after the failed blend");
        assert!(!RunDir::new(spec.run_dir()).dataset().exists());
        std::fs::write(
            d.join("real.jsonl"),
            "{\"prompt\": \"p\", \"response\": \"y\"}\n",
        )
        .unwrap();
        let s = run_spec(&spec, None).unwrap();
        assert_eq!((s.synthetic, s.real), (3, 1));
        assert_eq!(scratch(), 0, "removed after the blend");
        let text = std::fs::read_to_string(&s.dataset).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().all(|l| !l.contains("\"decision\"")));
    }

    /// A run directory with `difficulties` as audited records and four real ones, blended
    /// with `[blend]` plus `extra`; the dataset's bytes.
    fn blend_with(extra: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let spec = format!(
            "[run]\nname = \"b\"\nout_dir = {:?}\nseed = 7\n[[task]]\nname = \"q\"\ntemplate = \"x\"\n[blend]\nreal = [\"real.jsonl\"]\n{extra}",
            d.join("out").display().to_string()
        );
        let real: Vec<Value> = (0..4)
            .map(|i| serde_json::json!({"id": format!("r{i}"), "prompt": format!("p{i}"), "response": format!("y{i}")}))
            .collect();
        write_jsonl(&d.join("real.jsonl"), &real).unwrap();
        let spec = Spec::parse(&d.join("spec.toml"), spec).unwrap();
        let syn = synthetic(&[
            Some(3),
            Some(1),
            Some(2),
            None,
            Some(1),
            Some(5),
            Some(0),
            Some(2),
        ]);
        std::fs::create_dir_all(spec.run_dir()).unwrap();
        write_jsonl(&RunDir::new(spec.run_dir()).audited(), &syn).unwrap();
        let s = run_spec(&spec, None).unwrap();
        std::fs::read_to_string(s.dataset).unwrap()
    }

    fn dataset_ids(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn shuffled_is_the_old_order_and_curriculum_goes_easy_to_hard() {
        let shuffled = blend_with("");
        // The order the blend wrote before `order` existed (same records, same seed).
        assert_eq!(
            dataset_ids(&shuffled),
            ["s7", "s6", "s0", "s2", "s1", "s4", "r1", "r0", "s5", "r2", "r3", "s3"]
        );
        assert_eq!(blend_with("order = \"shuffled\"\n"), shuffled);
        let curriculum = blend_with("order = \"curriculum\"\n");
        // Real records where the shuffle put them; synthetic ones by difficulty
        // (s3 has none: 0), ties in shuffled order.
        assert_eq!(
            dataset_ids(&curriculum),
            ["s6", "s3", "s1", "s4", "s7", "s2", "r1", "r0", "s0", "r2", "r3", "s5"]
        );
        // The same records, only reordered.
        let mut a: Vec<&str> = shuffled.lines().collect();
        let mut b: Vec<&str> = curriculum.lines().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn percent_is_short_and_exact_where_it_can_be() {
        assert_eq!(percent(0.3), "30%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(7.0 / 13.0), "53.8%");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::review::content_sha256;
    use crate::review::log::{append, Action, Decision};

    /// A run with 6 audited records `s0`…`s5`, blended under `[review]` + `review`, after
    /// `decide` appended its actions; (summary, dataset, review_rejected, spec).
    fn blend_reviewed(
        review: &str,
        decide: impl Fn(&[Value]) -> Vec<Action>,
    ) -> (BlendSummary, Vec<Value>, Vec<Value>, Spec) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let spec = format!(
            "[run]\nname = \"b\"\nout_dir = {:?}\nseed = 3\n[[task]]\nname = \"q\"\ntemplate = \"x\"\n{review}",
            d.join("out").display().to_string()
        );
        let spec = Spec::parse(&d.join("spec.toml"), spec).unwrap();
        let syn: Vec<Value> = (0..6)
            .map(|i| serde_json::json!({"id": format!("s{i}"), "messages": [
                {"role": "user", "content": format!("q{i}")}, {"role": "assistant", "content": format!("a{i}")}],
                "provenance": {"model": "m"}}))
            .collect();
        std::fs::create_dir_all(spec.run_dir()).unwrap();
        let dir = RunDir::new(spec.run_dir());
        write_jsonl(&dir.audited(), &syn).unwrap();
        for a in decide(&syn) {
            append(&dir.review(), &a).unwrap();
        }
        let s = run_spec(&spec, None).unwrap();
        let read = |p: PathBuf| {
            crate::record::read::read_if_exists(&p)
                .unwrap()
                .unwrap_or_default()
        };
        // Read before `tmp` is dropped (and the directory with it).
        (s, read(dir.dataset()), read(dir.review_rejected()), spec)
    }

    fn act(who: &str, r: &Value, d: Decision) -> Action {
        Action::new(who, r["id"].as_str().unwrap(), d, &content_sha256(r))
    }

    #[test]
    fn rejected_records_leave_edits_replace_and_stale_decisions_do_not_count() {
        let (s, ds, rej, spec) = blend_reviewed("", |syn| {
            let mut r = act("ann", &syn[1], Decision::Reject);
            r.reason = Some("wrong".into());
            let mut e = act("ann", &syn[2], Decision::Edit);
            e.edited = Some("a2, corrected".into());
            // A decision on an earlier text of s3: it no longer applies.
            let mut old = syn[3].clone();
            old["messages"][1]["content"] = "an older answer".into();
            let mut stale = act("ann", &old, Decision::Reject);
            stale.reason = Some("wrong".into());
            vec![act("ann", &syn[0], Decision::Accept), r, e, stale]
        });
        assert_eq!(
            (s.review_accepted, s.review_edited, s.review_rejected),
            (1, 1, 1)
        );
        assert_eq!(s.stale_decisions, 1);
        assert_eq!(s.awaiting_review, 3, "s3, s4, s5");
        assert!(shortfall(&s, &spec).is_none(), "review is not required");
        let ids: std::collections::BTreeSet<&str> =
            ds.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["s0", "s2", "s3", "s4", "s5"]
        );
        let s2 = ds.iter().find(|r| r["id"] == "s2").unwrap();
        assert_eq!(s2["messages"][1]["content"], "a2, corrected");
        assert_eq!(s2["provenance"]["review"]["decision"], "edited");
        assert_eq!(
            s2["provenance"]["model"], "m",
            "provenance is kept, review added"
        );
        assert_eq!(rej.len(), 1);
        assert_eq!(rej[0]["decision"]["reason"], "review:rejected:wrong");
    }

    #[test]
    fn required_review_keeps_out_the_unreviewed_and_exits_short() {
        let (s, ds, _, spec) = blend_reviewed("[review]\nrequired = true\n", |syn| {
            vec![
                act("ann", &syn[0], Decision::Accept),
                act("bob", &syn[4], Decision::Accept),
            ]
        });
        assert_eq!(ds.len(), 2);
        assert_eq!(s.held_back, 4);
        let e = shortfall(&s, &spec)
            .expect("records await review")
            .to_string();
        assert!(
            e.contains("4 records await review") && e.contains("flywheel review"),
            "{e}"
        );
        // Nothing reviewed at all: an empty synthetic set, and the same refusal.
        let (s, ds, rej, spec) = blend_reviewed("[review]\nrequired = true\n", |_| vec![]);
        assert!(ds.is_empty() && rej.is_empty());
        assert!(shortfall(&s, &spec).is_some());
    }

    #[test]
    fn a_sample_review_queues_only_the_sample() {
        let (s, ds, _, spec) =
            blend_reviewed("[review]\nsample = 2\nrequired = true\n", |_| vec![]);
        assert_eq!(
            s.awaiting_review, 2,
            "only the sampled records are in the queue"
        );
        assert!(ds.is_empty());
        assert!(shortfall(&s, &spec).is_some());
    }
}
