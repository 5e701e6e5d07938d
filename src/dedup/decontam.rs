//! Decontamination: does a record share a long word n-gram with an eval set item?
//!
//! 13-word windows by default, as GPT-3's and NeMo Curator's task decontamination use: long
//! enough that common phrases do not match, short enough that a copied question does.

use super::text;
use std::collections::{BTreeSet, HashMap};

/// Eval items shorter than this many words are not indexed: a 3-word item matches half of
/// any corpus. The count skipped is reported.
pub const MIN_WORDS: usize = 5;

/// One eval set item: where it came from and its text.
#[derive(Debug, Clone)]
pub struct EvalItem {
    pub file: String,
    pub id: String,
    pub text: String,
}

/// An index of eval n-grams.
#[derive(Debug, Default)]
pub struct EvalIndex {
    n: usize,
    /// n-gram hash → index of the first item holding it.
    grams: HashMap<u64, u32>,
    /// Word counts of items shorter than n, indexed whole.
    short_lens: BTreeSet<usize>,
    items: Vec<EvalItem>,
    /// Items too short to index.
    pub skipped: usize,
}

impl EvalIndex {
    pub fn build(items: Vec<EvalItem>, n: usize) -> EvalIndex {
        let mut idx = EvalIndex {
            n: n.max(1),
            ..Default::default()
        };
        for (k, it) in items.iter().enumerate() {
            let ws = text::word_hashes(&it.text);
            if ws.len() < MIN_WORDS.min(idx.n) {
                idx.skipped += 1;
                continue;
            }
            if ws.len() < idx.n {
                idx.short_lens.insert(ws.len());
            }
            for g in text::ngram_hashes(&ws, idx.n) {
                idx.grams.entry(g).or_insert(k as u32);
            }
        }
        idx.items = items;
        idx
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first eval item sharing an n-gram with `text`, if any.
    pub fn find(&self, text: &str) -> Option<&EvalItem> {
        let ws = text::word_hashes(text);
        let hit = |len: usize| -> Option<u32> {
            if ws.len() < len {
                return None;
            }
            ws.windows(len)
                .find_map(|w| self.grams.get(&text::combine(w)).copied())
        };
        if let Some(k) = hit(self.n) {
            return Some(&self.items[k as usize]);
        }
        // Eval items shorter than n words are matched whole, at their own length.
        self.short_lens
            .iter()
            .find_map(|&l| hit(l))
            .map(|k| &self.items[k as usize])
    }
}
