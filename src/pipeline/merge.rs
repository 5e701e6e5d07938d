//! Shards and `flywheel merge`: a spec run as N shard processes (`--shard i/N`, or a Slurm
//! array / Kubernetes Indexed Job) each generate and verify their share of the plan in
//! `runs/<name>/shards/<i>-of-<N>/`; the merge checks they add up to the whole plan, made
//! the same way, then runs the global stages (dedup, audit, blend, report) over all of
//! them in `runs/<name>/`, exactly as a single process would.
//!
//! The result is the same bytes as one process: records are made per id (seeded by id,
//! batch-invariant on the CPU's Q8_0 path), and the global stages read a run's records in
//! id order (`DedupOptions::id_order`), so neither the shard count nor the order records
//! finished in reaches the dataset.

use super::{run_stages, stages, Ctx, RunOptions, Stage, StageOutcome};
use crate::error::{Error, Result};
use crate::spec::{Shard, Spec};
use crate::store::manifest::StageStatus;
use crate::store::{Manifest, RunDir};
use std::collections::HashMap;
use std::path::PathBuf;

/// Shard `shard` of `spec`: generate and verify its records in its own directory.
pub fn run_shard(
    spec: &Spec,
    shard: Shard,
    opts: &RunOptions,
    on_stage: impl FnMut(&StageOutcome),
) -> Result<Vec<StageOutcome>> {
    let s = spec.for_shard(shard);
    let rd = RunDir::new(s.run_dir());
    let _lock = crate::store::create_run_dir(rd.path())?;
    let cx = Ctx {
        spec: &s,
        dir: &rd,
        opts,
    };
    let all = stages();
    let index = super::stages::Index;
    let mut refs: Vec<&dyn Stage> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| matches!(s.name(), "generate" | "verify"))
        .collect();
    refs.push(&index);
    let out = run_stages(&refs, &cx, on_stage)?;
    // Where the shard's models ran: the merge refuses shards that ran differently. And the
    // spec text it is now up to date with: every stage above is fresh for this text (an
    // edit that touched none of them, a [dedup] threshold say, left them skipped), so the
    // merge's same-spec check holds after a rerun.
    let mut m = Manifest::load(rd.path())?.unwrap_or_default();
    m.spec_sha256 = spec.sha256();
    m.spec_path = spec.path.display().to_string();
    for stage in ["generate", "verify"] {
        if let Some(st) = m.stages.get_mut(stage) {
            st.extra
                .insert("runtime".into(), opts.runtime.to_string().into());
        }
    }
    m.save(rd.path())?;
    Ok(out)
}

/// `flywheel dedup SPEC --shard I/N` (and `embed SPEC --shard I/N` with `embed_only`):
/// the dedup index of the shard's verified records, which the merge's dedup starts from.
/// Through the stage contract (a fresh index is left alone); `embed_only` makes just the
/// embedding part. Returns the line to print.
pub fn index_shard(spec: &Spec, opts: &RunOptions, embed_only: bool) -> Result<String> {
    let rd = RunDir::new(spec.run_dir());
    let what = match spec.shard {
        Some(s) => format!("verify {} --shard {s}", spec.path.display()),
        None => format!("verify {}", spec.path.display()),
    };
    RunDir::input(None, rd.verified(), &what)?;
    let _lock = crate::store::create_run_dir(rd.path())?;
    let cx = Ctx {
        spec,
        dir: &rd,
        opts,
    };
    if embed_only {
        let o = super::stages::Index::options(&cx);
        if !o.needs_embedder() {
            return Err(Error::Spec(format!(
                "{}: [dedup] has no semantic dedup or semantic decontamination, so nothing is embedded for it",
                spec.path.display()
            )));
        }
        let secs = crate::dedup::stage::build_index(&rd.verified(), &rd.index(), &o, true)?;
        return Ok(format!(
            "embeddings of {} → {} in {secs:.1}s",
            rd.verified().display(),
            rd.index().display()
        ));
    }
    let out = run_stages(&[&super::stages::Index], &cx, |_| {})?;
    Ok(out
        .first()
        .map(|o| format!("{} → {}: {}", o.stage, rd.index().display(), o.line))
        .unwrap_or_default())
}

/// The shard count to merge and what is wrong with its shards, one line each (empty: they
/// can be merged), plus notes. Shards of several counts (the run was split another way
/// before) are fine: the largest count whose shards are complete and consistent is merged,
/// and the others are named in a note.
pub fn check_shards(spec: &Spec) -> Result<(usize, Vec<String>, Vec<String>)> {
    let root = spec.run_dir().join("shards");
    let mut counts: Vec<usize> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            if let Some(s) = e.file_name().to_str().and_then(Shard::from_dir_name) {
                if !counts.contains(&s.count) {
                    counts.push(s.count);
                }
            }
        }
    }
    counts.sort_unstable();
    match counts.as_slice() {
        [] => Err(Error::MissingInput {
            path: root,
            run_first: format!("flywheel run {} --shard 0/N", spec.path.display()),
            or: " for each shard",
        }),
        [n] => Ok((*n, check_count(spec, *n)?, Vec::new())),
        many => {
            let mut checked = Vec::new();
            for &n in many.iter().rev() {
                let p = check_count(spec, n)?;
                if p.is_empty() {
                    let others: Vec<String> = many
                        .iter()
                        .filter(|&&m| m != n)
                        .map(|m| format!("of-{m}"))
                        .collect();
                    return Ok((
                        n,
                        p,
                        vec![format!(
                            "{} holds shards of several counts: merging the {n} complete ones, ignoring {}",
                            root.display(),
                            others.join(", ")
                        )],
                    ));
                }
                checked.push((n, p));
            }
            Err(Error::RunConflict(format!(
                "{} holds shards of different counts ({}) and none is complete:\n  {}",
                root.display(),
                many.iter()
                    .map(|n| format!("of-{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                checked
                    .iter()
                    .map(|(n, p)| format!(
                        "of-{n}: {}",
                        p.first().map(String::as_str).unwrap_or("")
                    ))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )))
        }
    }
}

/// What is wrong with the `n` shards of `spec`, one line each.
fn check_count(spec: &Spec, n: usize) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let spec_sha = spec.sha256();
    let mut first: Option<(usize, Manifest)> = None;
    let mut owner_of: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let sh = Shard { index: i, count: n };
        let dir = RunDir::new(spec.for_shard(sh).run_dir());
        let name = format!("shard {}", sh.dir_name());
        let Some(m) = Manifest::load(dir.path())? else {
            problems.push(format!(
                "{name}: missing ({} does not exist or has no manifest): run it with --shard {sh}",
                dir.path().display()
            ));
            continue;
        };
        for stage in ["generate", "verify"] {
            let st = m.stages.get(stage).map(|s| s.status.as_str());
            if st != Some("done") {
                problems.push(format!(
                    "{name}: {stage} is {} (run the shard again with --shard {sh}; it resumes)",
                    st.unwrap_or("not started")
                ));
            }
        }
        if m.spec_sha256 != spec_sha {
            problems.push(format!(
                "{name}: made from another spec text (sha256 {}…, this spec {}…): run it again with this spec",
                &m.spec_sha256.get(..12).unwrap_or(""),
                &spec_sha[..12]
            ));
        }
        if let Some((j, f)) = &first {
            if f.generation_fingerprint != m.generation_fingerprint {
                problems.push(format!(
                    "{name}: generated with other settings than shard {j}-of-{n} (model, device, precision or sampling): {} vs {}",
                    m.generation_fingerprint.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    f.generation_fingerprint.as_ref().map(|v| v.to_string()).unwrap_or_default()
                ));
            }
            let models = |m: &Manifest| {
                let mut v: Vec<(String, String)> = m
                    .models
                    .iter()
                    .map(|e| (e.role.clone(), e.sha256.clone()))
                    .collect();
                v.sort();
                v
            };
            if models(f) != models(&m) {
                problems.push(format!(
                    "{name}: used other models than shard {j}-of-{n}: {:?} vs {:?}",
                    models(&m),
                    models(f)
                ));
            }
            let runtime = |m: &Manifest| {
                m.stages
                    .get("verify")
                    .and_then(|s| s.extra.get("runtime").cloned())
            };
            if runtime(f) != runtime(&m) {
                problems.push(format!(
                    "{name}: verified on another device or precision than shard {j}-of-{n}"
                ));
            }
        } else {
            first = Some((i, m.clone()));
        }
        // Every record the shard holds is its own and in the plan, once.
        for (file, what) in [
            (dir.verified(), "verified"),
            (dir.steps_rejected(), "failed a step"),
        ] {
            if !file.exists() {
                continue;
            }
            crate::record::lines::for_each_raw(
                &file,
                |_| {},
                |line, _, raw| {
                    let Ok(value) = crate::record::lines::parse_line(raw) else {
                        return Ok(());
                    };
                    let Some(id) = value["id"].as_str() else {
                        return Ok(());
                    };
                    if !sh.owns(id) {
                        problems.push(format!(
                            "{name}: {}:{line}: record {id} belongs to shard {}-of-{n}",
                            file.display(),
                            Shard::of(id, n)
                        ));
                    } else if let Some(prev) = owner_of.insert(id.to_string(), i) {
                        if prev == i {
                            problems.push(format!("{name}: record {id} is there twice ({what})"));
                        }
                    }
                    Ok(())
                },
            )?;
        }
    }
    problems.extend(coverage(spec, n, &owner_of));
    Ok(problems)
}

/// Every planned record, exactly once: what is missing (counted per shard) and what the
/// shards hold that the plan does not make. `owner_of`: each record id the shards hold.
fn coverage(spec: &Spec, n: usize, owner_of: &HashMap<String, usize>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut missing: Vec<(usize, String)> = Vec::new();
    let mut planned = 0usize;
    let whole = {
        let mut s = spec.clone();
        s.shard = None;
        s
    };
    let mut in_plan = std::collections::HashSet::new();
    for item in crate::generate::plan_iter(&whole) {
        planned += 1;
        if !owner_of.contains_key(&item.id) {
            missing.push((Shard::of(&item.id, n), item.id.clone()));
        }
        in_plan.insert(item.id);
    }
    if !missing.is_empty() {
        let mut per: std::collections::BTreeMap<usize, usize> = Default::default();
        for (s, _) in &missing {
            *per.entry(*s).or_default() += 1;
        }
        problems.push(format!(
            "{} of {planned} planned records are missing ({}), e.g. {}",
            missing.len(),
            per.iter()
                .map(|(s, c)| format!("{c} from shard {s}-of-{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            missing
                .iter()
                .take(3)
                .map(|m| m.1.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let extra = owner_of.keys().filter(|id| !in_plan.contains(*id)).count();
    if extra > 0 {
        problems.push(format!(
            "{extra} records in the shards are not in this spec's plan (the spec changed since they ran): run the shards again"
        ));
    }
    problems
}

/// What `flywheel merge` did before the global stages.
#[derive(Debug, Clone, Default)]
pub struct MergeSummary {
    pub shards: usize,
    pub records: usize,
    /// What the user should know: shards of other counts ignored, and why the shards'
    /// dedup indexes could not be used as they are (dedup then made the index of the
    /// joined records itself).
    pub notes: Vec<String>,
}

/// `flywheel merge`: checks the shards, gathers their records into `runs/<name>/`, and
/// runs dedup, audit, blend and report there.
pub fn merge(
    spec: &Spec,
    opts: &RunOptions,
    on_stage: impl FnMut(&StageOutcome),
) -> Result<(MergeSummary, Vec<StageOutcome>)> {
    let rd = RunDir::new(spec.run_dir());
    let _lock = crate::store::create_run_dir(rd.path())?;
    // No shard may change while it is checked and gathered: a shard process still running
    // (or started again) holds its directory's lock, and the merge says so and stops.
    let mut _shard_locks = Vec::new();
    if let Ok(entries) = std::fs::read_dir(rd.path().join("shards")) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(Shard::from_dir_name)
                    .is_some()
            })
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for d in dirs {
            _shard_locks.push(crate::store::RunLock::acquire(&d)?);
        }
    }
    let (n, problems, notes) = check_shards(spec)?;
    if !problems.is_empty() {
        const SHOWN: usize = 20;
        let more = problems.len().saturating_sub(SHOWN);
        let mut msg = format!(
            "cannot merge the {n} shards of {}:\n  {}",
            rd.path().display(),
            problems[..problems.len().min(SHOWN)].join("\n  ")
        );
        if more > 0 {
            msg.push_str(&format!("\n  … and {more} more"));
        }
        return Err(Error::RunConflict(msg));
    }
    // Gather: each file is the shards' files one after another (the global stages read a
    // run's records in id order, so this order does not reach the dataset).
    let dirs: Vec<RunDir> = (0..n)
        .map(|i| RunDir::new(spec.for_shard(Shard { index: i, count: n }).run_dir()))
        .collect();
    let mut records = 0;
    // Streamed, and hashed on the way: each shard's records as its index saw them, and the
    // joined file as the run's dedup will see it.
    let gather = |pick: fn(&RunDir) -> PathBuf| -> Result<Option<(usize, Vec<String>, String)>> {
        use sha2::Digest;
        let parts: Vec<PathBuf> = dirs.iter().map(pick).filter(|p| p.exists()).collect();
        if parts.is_empty() {
            return Ok(None);
        }
        let out = pick(&rd);
        let tmp = out.with_extension("jsonl.merge.tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot write", &tmp, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut joined = sha2::Sha256::new();
        let mut shas = Vec::new();
        let mut lines = 0;
        let mut write = |b: &[u8], joined: &mut sha2::Sha256| -> Result<()> {
            use std::io::Write;
            joined.update(b);
            w.write_all(b)
                .map_err(|e| Error::io("cannot write", &tmp, e))
        };
        for p in &parts {
            let mut part = sha2::Sha256::new();
            let mut last = b'\n';
            crate::record::lines::for_each_raw(
                p,
                |b| {
                    part.update(b);
                    if let Some(&c) = b.last() {
                        last = c;
                    }
                },
                |_, _, _| {
                    lines += 1;
                    Ok(())
                },
            )?;
            // Copy the bytes as they are (a second read, from the page cache).
            let mut r = std::fs::File::open(p).map_err(|e| Error::io("cannot read", p, e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                use std::io::Read;
                let k = r
                    .read(&mut buf)
                    .map_err(|e| Error::io("cannot read", p, e))?;
                if k == 0 {
                    break;
                }
                write(&buf[..k], &mut joined)?;
            }
            if last != b'\n' {
                write(b"\n", &mut joined)?;
            }
            shas.push(format!("{:x}", part.finalize()));
        }
        let f = w
            .into_inner()
            .map_err(|e| Error::io("cannot write", &tmp, e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        std::fs::rename(&tmp, &out).map_err(|e| Error::io("cannot replace", &out, e))?;
        Ok(Some((lines, shas, format!("{:x}", joined.finalize()))))
    };
    gather(RunDir::generated)?;
    let mut index_notes = notes;
    if let Some((v, shas, joined)) = gather(RunDir::verified)? {
        records = v;
        // The shards' dedup indexes, row for row as their records were joined. A shard
        // whose index is missing or stale costs time, not correctness: dedup then makes
        // the index of the joined records itself.
        let parts: Vec<(PathBuf, String)> = dirs.iter().map(|d| d.index()).zip(shas).collect();
        if parts.len() == dirs.len() {
            index_notes.extend(
                crate::dedup::index::join(&parts, &rd.index(), &joined)?
                    .into_iter()
                    .map(|w| format!("dedup made its index of the joined records itself: {w}")),
            );
        }
    }
    gather(RunDir::steps)?;
    gather(RunDir::steps_rejected)?;
    // The run's manifest says what made it: the shards' (identical) generation settings
    // and models, and generate/verify done by N shards.
    let first = Manifest::load(dirs[0].path())?.unwrap_or_default();
    let mut m = Manifest::load(rd.path())?.unwrap_or_default();
    m.flywheel = env!("CARGO_PKG_VERSION").into();
    m.spec_path = spec.path.display().to_string();
    m.spec_sha256 = spec.sha256();
    m.generation_fingerprint = first.generation_fingerprint.clone();
    m.models = first.models.clone();
    for stage in ["generate", "verify"] {
        let mut st = StageStatus {
            status: "done".into(),
            ..Default::default()
        };
        for d in &dirs {
            if let Some(s) = Manifest::load(d.path())?.and_then(|x| x.stages.get(stage).cloned()) {
                st.planned += s.planned;
                st.done += s.done;
                st.wall_seconds = st.wall_seconds.max(s.wall_seconds);
            }
        }
        st.extra.insert("shards".into(), n.into());
        m.stages.insert(stage.into(), st);
    }
    m.save(rd.path())?;
    let cx = Ctx {
        spec,
        dir: &rd,
        opts,
    };
    let all = stages();
    let refs: Vec<&dyn Stage> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| !matches!(s.name(), "generate" | "verify"))
        .collect();
    let out = run_stages(&refs, &cx, on_stage)?;
    Ok((
        MergeSummary {
            shards: n,
            records,
            notes: index_notes,
        },
        out,
    ))
}
