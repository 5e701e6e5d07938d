//! The review queue: the candidates of a run (`audited.jsonl`, what blend would take)
//! indexed by byte offset, with what filters and orders need (task, judge score, flags,
//! content hash). A record's text is read from the file only when it is shown, so a
//! 100,000-record run costs a few megabytes here and one record per page view.

use super::{content_sha256, Log};
use crate::error::{Error, Result};
use crate::record::View;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Things a reviewer may want to look at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The answer hit `max_new_tokens`.
    Truncated,
    /// The audit found personal data (kept with a flag, or redacted).
    Pii,
    /// A near copy of a real record (audit), or the survivor of a near-duplicate cluster
    /// whose other members dedup dropped.
    NearDuplicate,
}

impl Flag {
    pub const ALL: [Flag; 3] = [Flag::Truncated, Flag::Pii, Flag::NearDuplicate];
    pub fn name(self) -> &'static str {
        match self {
            Flag::Truncated => "truncated",
            Flag::Pii => "pii",
            Flag::NearDuplicate => "near-duplicate",
        }
    }
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
    pub fn parse(s: &str) -> Option<Flag> {
        Flag::ALL
            .into_iter()
            .find(|f| f.name() == s || f.name().replace('-', "_") == s)
    }
}

/// One candidate.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub offset: u64,
    pub len: usize,
    pub task: String,
    /// The combined judge score, when judged.
    pub score: Option<f64>,
    flags: u8,
    pub sha: String,
}

impl Item {
    pub fn flags(&self) -> Vec<&'static str> {
        Flag::ALL
            .into_iter()
            .filter(|f| self.flags & f.bit() != 0)
            .map(Flag::name)
            .collect()
    }
    pub fn has(&self, f: Flag) -> bool {
        self.flags & f.bit() != 0
    }
}

/// The order records are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Lowest judge score first (the likeliest mistakes); unjudged records last.
    Score,
    /// A seeded shuffle: an unbiased look at the set.
    Random,
    /// As in the file.
    File,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "score" => Some(Order::Score),
            "random" => Some(Order::Random),
            "file" => Some(Order::File),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Order::Score => "score",
            Order::Random => "random",
            Order::File => "file",
        }
    }
}

/// What `/` filters on. Written as words: `task:NAME score:LO-HI flag:pii unreviewed
/// disagreed`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub task: Option<String>,
    pub score: Option<(f64, f64)>,
    pub flag: Option<Flag>,
    /// Not yet reviewed by this reviewer.
    pub unreviewed: bool,
    /// Reviewers' current decisions differ.
    pub disagreed: bool,
}

impl Filter {
    pub fn parse(q: &str) -> std::result::Result<Filter, String> {
        let mut f = Filter::default();
        for word in q.split_whitespace() {
            let (k, v) = word.split_once(':').unwrap_or((word, ""));
            match (k, v) {
                ("task", t) if !t.is_empty() => f.task = Some(t.to_string()),
                ("score", r) => {
                    let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                    let num = |s: &str, d: f64| {
                        if s.is_empty() {
                            Ok(d)
                        } else {
                            s.parse::<f64>().map_err(|_| {
                                format!("score:{r}: give a range like score:0-0.5")
                            })
                        }
                    };
                    f.score = Some((num(lo, 0.0)?, num(hi, 1.0)?));
                }
                ("flag", x) => {
                    f.flag = Some(Flag::parse(x).ok_or_else(|| {
                        format!("flag:{x}: flags are truncated, pii, near-duplicate")
                    })?)
                }
                ("unreviewed", "") => f.unreviewed = true,
                ("disagreed", "") => f.disagreed = true,
                _ => {
                    return Err(format!(
                        "{word:?}: filter with task:NAME, score:LO-HI, flag:truncated|pii|near-duplicate, unreviewed, disagreed"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// The candidates of one file, indexed.
pub struct Index {
    pub path: PathBuf,
    pub items: Vec<Item>,
    pub by_id: HashMap<String, usize>,
    /// Tasks in order of first appearance.
    pub tasks: Vec<String>,
    /// `[review] sample`: only these ids are in the queue.
    pub sample: Option<HashSet<String>>,
    /// (length, modification time) when indexed: a change means re-index.
    stamp: (u64, Option<std::time::SystemTime>),
    seed: u64,
}

fn stamp(path: &Path) -> (u64, Option<std::time::SystemTime>) {
    std::fs::metadata(path)
        .map(|m| (m.len(), m.modified().ok()))
        .unwrap_or((0, None))
}

/// Ids of records whose near-duplicates dedup dropped (from `rejected.jsonl`).
fn cluster_survivors(rejected: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    // A missing or unreadable file has no survivors to mark.
    let _ = crate::record::lines::for_each(rejected, false, |l| {
        if let crate::record::lines::Line::Record { value, .. } = l {
            let d = &value["decision"];
            for k in ["survivor", "dup_of"] {
                if let Some(s) = d[k].as_str() {
                    out.insert(s.to_string());
                }
            }
        }
        Ok(())
    });
    out
}

fn flags_of(r: &Value, survivors: &HashSet<String>, id: &str) -> u8 {
    let mut f = 0;
    if r.pointer("/provenance/finish_reason") == Some(&Value::from("length")) {
        f |= Flag::Truncated.bit();
    }
    let checks: Vec<&str> = r
        .pointer("/privacy/flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x["check"].as_str())
        .collect();
    if checks.contains(&"pii") || r.pointer("/privacy/redacted").is_some() {
        f |= Flag::Pii.bit();
    }
    if checks.iter().any(|c| *c == "copy" || *c == "dcr") || survivors.contains(id) {
        f |= Flag::NearDuplicate.bit();
    }
    f
}

impl Index {
    /// Indexes `path`; `rejected` (dedup's rejections) marks cluster survivors.
    pub fn build(path: &Path, rejected: &Path, sample: Option<usize>, seed: u64) -> Result<Index> {
        let st = stamp(path);
        let survivors = cluster_survivors(rejected);
        let mut items = Vec::new();
        let mut by_id = HashMap::new();
        let mut tasks: Vec<String> = Vec::new();
        let mut seen_tasks = HashSet::new();
        // Streamed: memory is the items, not the file.
        crate::record::lines::for_each_raw(
            path,
            |_| {},
            |lineno, offset, line| {
                // Candidates are records a stage wrote; a bad line is skipped here as every
                // stage skips it (the stage that wrote the file already reported it).
                let Ok(r) = crate::record::lines::parse_line(line) else {
                    return Ok(());
                };
                let r = crate::record::with_id(r);
                let id = View::new(&r).id().unwrap_or_default().to_string();
                if id.is_empty() || by_id.contains_key(&id) {
                    return Err(Error::BadInput {
                        path: path.to_path_buf(),
                        line: lineno,
                        reason: format!(
                            "{} record id",
                            if id.is_empty() { "no" } else { "a repeated" }
                        ),
                        advice: ": review needs one id per record",
                    });
                }
                let task = r
                    .pointer("/meta/task")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if seen_tasks.insert(task.clone()) {
                    tasks.push(task.clone());
                }
                by_id.insert(id.clone(), items.len());
                items.push(Item {
                    flags: flags_of(&r, &survivors, &id),
                    score: r
                        .pointer("/scores/judge_combined/score")
                        .and_then(Value::as_f64),
                    sha: content_sha256(&r),
                    task,
                    offset,
                    len: line.len(),
                    id,
                });
                Ok(())
            },
        )?;
        let sample = sample.map(|n| {
            let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
            super::sample_ids(&ids, n, seed)
        });
        Ok(Index {
            path: path.to_path_buf(),
            items,
            by_id,
            tasks,
            sample,
            stamp: st,
            seed,
        })
    }

    /// Whether the file changed since it was indexed (a stage rewrote it).
    pub fn is_stale(&self) -> bool {
        stamp(&self.path) != self.stamp
    }

    /// The records in the queue (the sample, or all).
    pub fn in_scope(&self, i: &Item) -> bool {
        self.sample.as_ref().is_none_or(|s| s.contains(&i.id))
    }

    /// Reads one record from the file.
    pub fn record(&self, i: usize) -> Result<Value> {
        let it = &self.items[i];
        let mut f =
            std::fs::File::open(&self.path).map_err(|e| Error::io("cannot read", &self.path, e))?;
        let mut buf = vec![0u8; it.len];
        f.seek(SeekFrom::Start(it.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| Error::io("cannot read", &self.path, e))?;
        let r = crate::record::lines::parse_line(&buf)
            .map(crate::record::with_id)
            .map_err(|e| Error::Review(format!("{}: {e}", self.path.display())))?;
        if View::new(&r).id() != Some(it.id.as_str()) {
            return Err(Error::RunConflict(format!(
                "{} changed while it was being reviewed; reload the page",
                self.path.display()
            )));
        }
        Ok(r)
    }

    /// Item positions in `order` that pass `filter`, for `reviewer` given the log.
    pub fn queue(&self, order: Order, filter: &Filter, log: &Log, reviewer: &str) -> Vec<usize> {
        let states = ReviewState::of(self, log);
        let mut v: Vec<usize> = (0..self.items.len())
            .filter(|&i| {
                let it = &self.items[i];
                self.in_scope(it)
                    && filter.task.as_ref().is_none_or(|t| &it.task == t)
                    && filter
                        .score
                        .is_none_or(|(lo, hi)| it.score.is_some_and(|s| s >= lo && s <= hi))
                    && filter.flag.is_none_or(|f| it.has(f))
                    && (!filter.unreviewed || !states.reviewed_by(i, reviewer))
                    && (!filter.disagreed || states.disagreed(i))
            })
            .collect();
        match order {
            Order::File => {}
            Order::Score => v.sort_by(|&a, &b| {
                let (x, y) = (self.items[a].score, self.items[b].score);
                match (x, y) {
                    (Some(x), Some(y)) => x.total_cmp(&y).then(a.cmp(&b)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.cmp(&b),
                }
            }),
            Order::Random => {
                // By a hash of (seed, id): stable whatever else is filtered out.
                let key = |i: usize| {
                    crate::models::checksum::sha256_bytes(
                        format!("{}:{}", self.seed, self.items[i].id).as_bytes(),
                    )
                };
                v.sort_by_cached_key(|&i| key(i));
            }
        }
        v
    }
}

/// Who decided what on the current content of each item.
pub struct ReviewState<'a> {
    /// Per item: (reviewer, action) in effect.
    pub per_item: Vec<Vec<&'a super::Action>>,
}

impl<'a> ReviewState<'a> {
    pub fn of(index: &Index, log: &'a Log) -> ReviewState<'a> {
        let mut per_item: Vec<Vec<&super::Action>> = vec![Vec::new(); index.items.len()];
        for a in log.effective() {
            if let Some(&i) = index.by_id.get(&a.id) {
                if index.items[i].sha == a.content_sha256 {
                    let v = &mut per_item[i];
                    v.retain(|x| x.reviewer != a.reviewer);
                    v.push(a);
                }
            }
        }
        ReviewState { per_item }
    }
    pub fn reviewed_by(&self, i: usize, reviewer: &str) -> bool {
        self.per_item[i].iter().any(|a| a.reviewer == reviewer)
    }
    pub fn disagreed(&self, i: usize) -> bool {
        let v = &self.per_item[i];
        v.iter().any(|a| a.decision != v[0].decision)
    }
}
