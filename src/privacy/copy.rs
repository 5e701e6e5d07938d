//! Memorization / near-copy: the longest run of words a synthetic text shares with any real
//! record, found through an index of the real data's word n-grams.
//!
//! Words are lowercased alphanumeric runs, so punctuation and case do not hide a copy; the
//! reported length in characters is measured on the synthetic text itself.

use crate::dedup::text::hash_bytes;
use serde::Serialize;

/// Seed length of the index: runs shorter than this are not looked for.
pub const SEED_WORDS: usize = 5;
/// An n-gram found in more real records than this is boilerplate, not a fingerprint.
const MAX_POSTINGS: usize = 64;

/// The longest copied run in one synthetic text. It is located by character offsets, not
/// quoted: the report it goes into must not repeat the real text it warns about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    pub real_id: String,
    pub words: usize,
    pub chars: usize,
    /// Character offsets of the run in the synthetic text: `[start, end)`.
    pub start: usize,
    pub end: usize,
}

/// Words of a text as (hash, byte start, byte end).
fn words(text: &str) -> Vec<(u64, usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push((hash_bytes(text[s..i].to_lowercase().as_bytes()), s, i));
        }
    }
    out
}

fn seed_hash(ws: &[(u64, usize, usize)]) -> u64 {
    ws.iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        crate::dedup::text::fmix(h ^ w.0).wrapping_mul(0x100_0000_01b3)
    })
}

/// The real data's word sequences and an n-gram → (record, position) index, in flat
/// arrays: 16 bytes per n-gram and 8 per word, so a million real records fit in a few GB.
pub struct CopyIndex {
    ids: Vec<String>,
    /// Every real record's word hashes, one record after another.
    words: Vec<u64>,
    /// Record `d`'s words are `words[starts[d]..starts[d + 1]]`.
    starts: Vec<usize>,
    /// (seed n-gram hash, record, word position), sorted; an n-gram found at more than
    /// [`MAX_POSTINGS`] places is boilerplate and left out.
    seeds: Vec<(u64, u32, u32)>,
    /// `seeds[buckets[b]..buckets[b + 1]]` are the hashes whose top `bits` bits are `b`:
    /// a lookup reads one bucket of a few entries, not a binary search through gigabytes.
    buckets: Vec<usize>,
    bits: u32,
}

impl CopyIndex {
    pub fn build<'a>(real: impl IntoIterator<Item = (&'a str, &'a str)>) -> CopyIndex {
        let mut ids = Vec::new();
        let mut all = Vec::new();
        let mut starts = vec![0];
        let mut seeds = Vec::new();
        for (d, (id, text)) in real.into_iter().enumerate() {
            let ws = words(text);
            for (p, win) in ws.windows(SEED_WORDS).enumerate() {
                seeds.push((seed_hash(win), d as u32, p as u32));
            }
            ids.push(id.to_string());
            all.extend(ws.into_iter().map(|w| w.0));
            starts.push(all.len());
        }
        // Each n-gram's places in record and position order: the order lookups try them.
        seeds.sort_unstable();
        let seeds: Vec<(u64, u32, u32)> = seeds
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|g| g.len() <= MAX_POSTINGS)
            .flatten()
            .copied()
            .collect();
        // About two to four entries per bucket.
        let bits = (usize::BITS - seeds.len().leading_zeros())
            .saturating_sub(2)
            .clamp(1, 30);
        let mut buckets = vec![0usize; (1 << bits) + 1];
        for s in &seeds {
            buckets[(s.0 >> (64 - bits)) as usize + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        CopyIndex {
            ids,
            words: all,
            starts,
            seeds,
            buckets,
            bits,
        }
    }

    fn posts(&self, h: u64) -> &[(u64, u32, u32)] {
        let b = (h >> (64 - self.bits)) as usize;
        let bucket = &self.seeds[self.buckets[b]..self.buckets[b + 1]];
        let lo = bucket.partition_point(|s| s.0 < h);
        let n = bucket[lo..].partition_point(|s| s.0 == h);
        &bucket[lo..lo + n]
    }

    /// The longest run `text` shares with one real record (at least [`SEED_WORDS`] words).
    pub fn longest(&self, text: &str) -> Option<Copy> {
        let ws = words(text);
        let mut best: Option<(usize, usize, usize)> = None; // (words, start word, doc)
        let mut i = 0;
        while i + SEED_WORDS <= ws.len() {
            for &(_, d, p) in self.posts(seed_hash(&ws[i..i + SEED_WORDS])) {
                let doc = &self.words[self.starts[d as usize]..self.starts[d as usize + 1]];
                let mut n = 0;
                while i + n < ws.len()
                    && (p as usize) + n < doc.len()
                    && ws[i + n].0 == doc[p as usize + n]
                {
                    n += 1;
                }
                if n >= SEED_WORDS && best.is_none_or(|b| n > b.0) {
                    best = Some((n, i, d as usize));
                }
            }
            i += 1;
        }
        best.map(|(n, s, d)| {
            let (a, b) = (ws[s].1, ws[s + n - 1].2);
            let start = text[..a].chars().count();
            let chars = text[a..b].chars().count();
            Copy {
                real_id: self.ids[d].clone(),
                words: n,
                chars,
                start,
                end: start + chars,
            }
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_shared_run_across_case_and_punctuation() {
        let idx = CopyIndex::build([
            (
                "r1",
                "The patient, a 54-year-old teacher, reported chest pain after climbing stairs.",
            ),
            (
                "r2",
                "Unrelated text about tides and the moon's pull on the oceans of the earth.",
            ),
        ]);
        let syn = "Summary: the PATIENT a 54 year old teacher reported chest pain at night.";
        let c = idx.longest(syn).unwrap();
        assert_eq!(c.real_id, "r1");
        assert_eq!(c.words, 10, "{c:?}"); // the patient a 54 year old teacher reported chest pain
        let run: String = syn.chars().skip(c.start).take(c.end - c.start).collect();
        assert_eq!(run, "the PATIENT a 54 year old teacher reported chest pain");
        assert_eq!(c.chars, run.chars().count());
        assert!(idx
            .longest("the moon and the sea are friends of the earth")
            .is_none());
        assert!(idx.longest("short").is_none());
    }

    /// Thousands of real records spread over many buckets: every planted run is found,
    /// in its own record, at its full length.
    #[test]
    fn finds_runs_among_many_real_records() {
        let text = |d: usize| -> String {
            (0..30)
                .map(|w| format!("t{d}x{w}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let real: Vec<(String, String)> = (0..3000).map(|d| (format!("r{d}"), text(d))).collect();
        let idx = CopyIndex::build(real.iter().map(|(i, t)| (i.as_str(), t.as_str())));
        assert!(idx.bits > 10, "{}", idx.bits);
        for d in (0..3000).step_by(97) {
            let words: Vec<&str> = real[d].1.split(' ').collect();
            let syn = format!("intro {} outro", words[4..22].join(" "));
            let c = idx.longest(&syn).unwrap();
            assert_eq!((c.real_id.as_str(), c.words), (real[d].0.as_str(), 18));
        }
        assert!(idx.longest("t1 t2 t3 t4 t5 t6").is_none());
    }
}
