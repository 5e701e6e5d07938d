//! A seeded, labeled near-duplicate corpus for quality tests and `flywheel bench dedup`.
//!
//! Base paragraphs are drawn from an English word bank (Zipf-weighted, so common words
//! repeat as in real text) and share boilerplate openings and closings, as LLM answers do.
//! Each base gets 0–3 near-duplicates made by edits at a known rate: adjacent-word swaps,
//! deletions, insertions, punctuation/case changes and synonym substitutions
//! ("paraphrase-like"). Hard negatives are *template siblings*: the same skeleton with a
//! quarter of its words replaced — different items that look alike. Ground truth: two texts
//! are duplicates exactly when they come from the same base.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: &str =
    "the of and to in is that it for as with was on be by this are or from at an which \
have not but they you one all can has more their will also its other been were when there some \
time we would what about into only new these may any after most first two over such many then \
people water light energy system process cell plant animal earth ocean river mountain city \
history science music language number market money data model network signal power heat sound \
memory brain child teacher student family doctor patient health food farm tree forest rain \
cloud wind storm season summer winter spring autumn morning evening night moon sun star planet \
orbit gravity force mass speed distance measure value price cost trade bank loan interest \
account record report result study method theory idea question answer problem solution reason \
example pattern rule change growth level rate range area region country state government law \
court policy public private service school library book story word letter page paper line \
road bridge car train ship engine machine tool metal glass stone wood iron steel gold silver \
protein enzyme gene virus bacteria immune blood heart lung muscle bone skin sleep exercise \
careful simple clear strong weak early late open close small little quick fast slow big large \
important useful common rare happy sad easy hard warm cold bright dark quiet loud safe risky \
begin start finish end build make create help support explain describe show find keep hold \
move carry reach grow rise fall turn return bring send receive protect allow require improve";

const SYNONYMS: &[(&str, &str)] = &[
    ("big", "large"),
    ("small", "little"),
    ("quick", "fast"),
    ("begin", "start"),
    ("finish", "end"),
    ("make", "create"),
    ("help", "support"),
    ("explain", "describe"),
    ("find", "locate"),
    ("keep", "hold"),
    ("important", "crucial"),
    ("useful", "helpful"),
    ("easy", "simple"),
    ("hard", "difficult"),
    ("rise", "grow"),
    ("show", "reveal"),
    ("careful", "cautious"),
    ("happy", "glad"),
    ("bring", "carry"),
    ("improve", "enhance"),
];

const OPENINGS: &[&str] = &[
    "Great question!",
    "Here is a clear explanation.",
    "Sure, let me explain.",
    "In short,",
    "",
    "",
];
const CLOSINGS: &[&str] = &[
    "I hope this helps!",
    "Let me know if you have more questions.",
    "",
    "",
];

/// A labeled corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub texts: Vec<String>,
    /// Same group ⇔ duplicates (a base and its edits).
    pub group: Vec<u32>,
    /// "base", "edit" or "sibling".
    pub kind: Vec<&'static str>,
}

/// Corpus size and difficulty.
#[derive(Debug, Clone, Copy)]
pub struct CorpusSpec {
    pub bases: usize,
    /// Share of a paragraph's words each near-duplicate edits (at least one edit).
    pub edit_rate: f64,
    /// Share of bases that also get a template sibling (a hard negative).
    pub sibling_rate: f64,
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            bases: 1000,
            edit_rate: 0.03,
            sibling_rate: 0.3,
            seed: 7,
        }
    }
}

fn bank() -> Vec<&'static str> {
    WORDS.split_whitespace().collect()
}

/// Zipf-like pick: index ⌊n·u²⌋ favors the front of the bank (the common words).
fn pick<'a>(rng: &mut ChaCha8Rng, bank: &[&'a str]) -> &'a str {
    let u: f64 = rng.random();
    bank[((u * u) * bank.len() as f64) as usize % bank.len()]
}

fn paragraph(rng: &mut ChaCha8Rng, bank: &[&'static str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let open = OPENINGS[rng.random_range(0..OPENINGS.len())];
    out.extend(open.split_whitespace().map(str::to_string));
    let sentences = rng.random_range(3..8);
    for _ in 0..sentences {
        let len = rng.random_range(8..20);
        for k in 0..len {
            let mut w = pick(rng, bank).to_string();
            if k == 0 {
                w = capitalize(&w);
            }
            if k + 1 == len {
                w.push('.');
            } else if rng.random_bool(0.08) {
                w.push(',');
            }
            out.push(w);
        }
    }
    let close = CLOSINGS[rng.random_range(0..CLOSINGS.len())];
    out.extend(close.split_whitespace().map(str::to_string));
    out
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn strip(w: &str) -> &str {
    w.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Applies `k` random edits of the five kinds.
fn edit(rng: &mut ChaCha8Rng, words: &[String], k: usize, bank: &[&'static str]) -> Vec<String> {
    let mut w = words.to_vec();
    for _ in 0..k {
        if w.len() < 3 {
            break;
        }
        let i = rng.random_range(0..w.len() - 1);
        match rng.random_range(0..5) {
            0 => w.swap(i, i + 1),
            1 => {
                w.remove(i);
            }
            2 => w.insert(i, pick(rng, bank).to_string()),
            3 => {
                // punctuation / case change
                w[i] = if rng.random_bool(0.5) {
                    let s = strip(&w[i]).to_string();
                    if w[i].ends_with(['.', ',']) {
                        s
                    } else {
                        s + ","
                    }
                } else if w[i].chars().next().is_some_and(char::is_uppercase) {
                    w[i].to_lowercase()
                } else {
                    capitalize(&w[i])
                };
            }
            _ => {
                // synonym substitution: the first word with a synonym from i on, else a
                // random word replaced (a looser paraphrase)
                let hit = (i..w.len()).find_map(|j| {
                    let s = strip(&w[j]).to_lowercase();
                    SYNONYMS.iter().find_map(|&(a, b)| {
                        if s == a {
                            Some((j, b))
                        } else if s == b {
                            Some((j, a))
                        } else {
                            None
                        }
                    })
                });
                match hit {
                    Some((j, syn)) => {
                        let tail: String = w[j].chars().filter(|c| !c.is_alphanumeric()).collect();
                        w[j] = format!("{syn}{tail}");
                    }
                    None => w[i] = pick(rng, bank).to_string(),
                }
            }
        }
    }
    w
}

/// Builds the corpus, shuffled (a duplicate may come before its base).
pub fn build(spec: CorpusSpec) -> Corpus {
    let bank = bank();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut items: Vec<(String, u32, &'static str)> = Vec::new();
    let mut next_group = 0u32;
    for _ in 0..spec.bases {
        let base = paragraph(&mut rng, &bank);
        let g = next_group;
        next_group += 1;
        items.push((base.join(" "), g, "base"));
        for _ in 0..rng.random_range(0..4) {
            let k = ((base.len() as f64 * spec.edit_rate).round() as usize).max(1);
            items.push((edit(&mut rng, &base, k, &bank).join(" "), g, "edit"));
        }
        if rng.random_bool(spec.sibling_rate) {
            // Same skeleton, a quarter of the words replaced: a different item.
            let mut s = base.clone();
            let n = s.len();
            for _ in 0..n / 4 {
                let i = rng.random_range(0..n);
                s[i] = pick(&mut rng, &bank).to_string();
            }
            items.push((s.join(" "), next_group, "sibling"));
            next_group += 1;
        }
    }
    // Fisher–Yates with the same generator: deterministic order.
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
    Corpus {
        texts: items.iter().map(|x| x.0.clone()).collect(),
        group: items.iter().map(|x| x.1).collect(),
        kind: items.iter().map(|x| x.2).collect(),
    }
}

/// Pairwise precision, recall and F1 of predicted clusters against the groups.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub true_pairs: u64,
    pub predicted_pairs: u64,
}

/// Scores a clustering (`cluster[i]` = predicted cluster id of text i).
pub fn score(group: &[u32], cluster: &[usize]) -> Scores {
    use std::collections::HashMap;
    let pairs = |counts: HashMap<(u64, u64), u64>| -> u64 {
        counts.values().map(|c| c * (c - 1) / 2).sum()
    };
    let mut g: HashMap<(u64, u64), u64> = HashMap::new();
    let mut c: HashMap<(u64, u64), u64> = HashMap::new();
    let mut both: HashMap<(u64, u64), u64> = HashMap::new();
    for (i, &gi) in group.iter().enumerate() {
        *g.entry((gi as u64, 0)).or_default() += 1;
        *c.entry((cluster[i] as u64, 0)).or_default() += 1;
        *both.entry((gi as u64, cluster[i] as u64)).or_default() += 1;
    }
    let (t, p, tp) = (pairs(g), pairs(c), pairs(both));
    let precision = if p == 0 { 1.0 } else { tp as f64 / p as f64 };
    let recall = if t == 0 { 1.0 } else { tp as f64 / t as f64 };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Scores {
        precision,
        recall,
        f1,
        true_pairs: t,
        predicted_pairs: p,
    }
}
