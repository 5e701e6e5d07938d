//! Text normalization and shingling shared by exact dedup, MinHash and decontamination.

use crate::spec::Shingle;
use unicode_normalization::UnicodeNormalization;

/// The text exact dedup compares: Unicode NFKC, lowercase, runs of whitespace collapsed to
/// one space, trimmed. Punctuation is kept: "exact" means equal up to case and spacing.
pub fn normalize_exact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for w in text
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .split_whitespace()
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Words for shingling: NFKC, lowercase, split on anything that is not a letter or digit,
/// so punctuation and case edits do not change a shingle.
pub fn words(text: &str) -> Vec<String> {
    let t: String = text.nfkc().collect::<String>().to_lowercase();
    t.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// 64-bit hashes of a text's shingles (deduplicated, sorted). A text shorter than one shingle
/// yields its whole normalized form as a single shingle, so short texts still compare.
pub fn shingle_hashes(text: &str, shingle: Shingle) -> Vec<u64> {
    let ws = words(text);
    let mut out = Vec::new();
    match shingle {
        Shingle::Word(n) => {
            let hs: Vec<u64> = ws.iter().map(|w| hash_bytes(w.as_bytes())).collect();
            if hs.is_empty() {
                return out;
            }
            if hs.len() < n {
                out.push(combine(&hs));
            } else {
                out.extend(hs.windows(n).map(combine));
            }
        }
        Shingle::Char(n) => {
            let joined: Vec<char> = ws.join(" ").chars().collect();
            if joined.is_empty() {
                return out;
            }
            let mut buf = [0u8; 4];
            let hs: Vec<u64> = joined
                .iter()
                .map(|c| hash_bytes(c.encode_utf8(&mut buf).as_bytes()))
                .collect();
            if hs.len() < n {
                out.push(combine(&hs));
            } else {
                out.extend(hs.windows(n).map(combine));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Hashes of consecutive n-word windows for decontamination (not deduplicated: callers want
/// each position). Texts shorter than n give their whole word sequence as one window.
pub fn ngram_hashes(ws: &[u64], n: usize) -> Vec<u64> {
    if ws.is_empty() {
        Vec::new()
    } else if ws.len() < n {
        vec![combine(ws)]
    } else {
        ws.windows(n).map(combine).collect()
    }
}

/// Word hashes of a text, in order (normalized as [`words`]).
pub fn word_hashes(text: &str) -> Vec<u64> {
    words(text)
        .iter()
        .map(|w| hash_bytes(w.as_bytes()))
        .collect()
}

/// A fast, well-mixed 64-bit hash (FNV-1a over bytes, then a murmur3 finalizer). Stable
/// across runs and platforms, unlike std's randomized hasher, so results are reproducible.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    fmix(h)
}

/// Order-sensitive combination of hashes (a polynomial rolling form, then mixed).
pub fn combine(hs: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &x in hs {
        h = (h ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    fmix(h ^ hs.len() as u64)
}

/// murmur3's 64-bit finalizer.
pub fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
