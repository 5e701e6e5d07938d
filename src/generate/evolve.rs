//! Evol-instruct and self-instruct checks: the rewrite prompt per operator, cleaning a
//! model's rewrite, the checks that refuse a bad one, and few-shot example drawing.
//!
//! Everything here is pure (no model, no I/O) so the step executor stays about scheduling
//! and these rules can be tested on plain strings.

use crate::dedup::minhash::{estimate, MinHasher};
use crate::dedup::text::words;
use crate::spec::{EvolveOp, Shingle};
use rand::seq::index::sample as sample_indices;
use rand::SeedableRng;
use std::sync::OnceLock;

/// MinHash Jaccard estimate at or above which a rewrite copies its parent.
pub const COPY_PARENT_SIMILARITY: f64 = 0.8;

/// A non-breadth rewrite must have at least this many more words than its parent: a
/// harder instruction says more (a constraint, a step, a concrete case).
pub const MIN_EXTRA_WORDS: usize = 3;

/// A rewrite that contains its parent verbatim must add at least this many words.
const MIN_NEW_WORDS_AROUND_PARENT: usize = 5;

/// What every operator's prompt shares: the rules that make a rewrite usable as data.
const RULES: &str = "The rewritten instruction must be a self-contained instruction that a person can understand and answer without seeing the original. Keep it reasonable: a person must still be able to answer it. Do not answer it. Write only the new instruction, with no preamble, label or explanation.";

/// The rewrite prompt for one round (WizardLM evol-instruct style, one template per
/// operator). Depth operators make the same instruction harder by one named method only,
/// so each round's difficulty step is attributable; `breadth` asks for a new instruction
/// in the same domain on a rarer topic, of similar length and difficulty.
pub fn prompt(op: EvolveOp, instruction: &str) -> String {
    let instruction = instruction.trim();
    if op == EvolveOp::Breadth {
        return format!(
            "You are an instruction writer. Draw inspiration from the given instruction to write a brand new instruction. The new instruction must belong to the same domain as the given one but be about a rarer, less common topic. It must be of similar length and difficulty to the given instruction. {RULES}\n\n#Given Instruction#:\n{instruction}\n\n#New Instruction#:\n"
        );
    }
    let method = match op {
        EvolveOp::AddConstraints => {
            "Add one more constraint or requirement to the instruction (for example a limit on length, format, audience or content)."
        }
        EvolveOp::Deepen => {
            "Increase the depth and breadth of the inquiry: where the instruction asks about a matter, ask about it more deeply and in more of its aspects."
        }
        EvolveOp::Concretize => {
            "Replace general concepts in the instruction with more specific, concrete ones (named cases, numbers, settings)."
        }
        EvolveOp::Reasoning => {
            "If the instruction can be solved with a few simple thinking steps, rewrite it to explicitly require multiple-step reasoning."
        }
        EvolveOp::Breadth => unreachable!("handled above"),
    };
    format!(
        "You are an instruction rewriter. Rewrite the given instruction into a more complex version, to make it a bit harder for famous AI assistants to handle. Use ONLY this method: {method} The rewritten instruction may add only 10 to 20 words to the given one. {RULES}\n\n#Given Instruction#:\n{instruction}\n\n#Rewritten Instruction#:\n"
    )
}

/// Cleans a model's rewrite: trims, drops a leading label ("Rewritten Instruction:",
/// "#Rewritten Prompt#:", "New instruction:", a "Here is ...:" line), markdown bold markers
/// and surrounding quotes. Small models add these even when told not to, and a label left
/// in would become part of the next round's instruction.
pub fn clean(output: &str) -> String {
    let mut s = output.replace("**", "").replace("__", "");
    // A label can wrap another ("Here is the rewritten instruction:\nRewritten
    // Instruction: ..."), so strip until nothing changes; a few rounds is plenty.
    for _ in 0..4 {
        let t = strip_quotes(strip_label(s.trim()).trim())
            .trim()
            .to_string();
        if t == s {
            break;
        }
        s = t;
    }
    s
}

/// `s` without a leading label line or label prefix.
fn strip_label(s: &str) -> &str {
    let (first, rest) = match s.find('\n') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let first_l = first.trim().to_lowercase();
    let here = first_l
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .starts_with("here is")
        || first_l
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .starts_with("here's")
        || first_l
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .starts_with("sure");
    // A whole "Here is ...:" line above the instruction.
    if here && first_l.ends_with(':') {
        if let Some(rest) = rest {
            return rest;
        }
    }
    let Some(colon) = first.find(':') else {
        return s;
    };
    let label = &first[..colon];
    let is_label = if here {
        let l = label.to_lowercase();
        ["instruction", "prompt", "question", "version", "rewrite"]
            .iter()
            .any(|w| l.contains(w))
    } else {
        is_label(label)
    };
    if !is_label {
        return s;
    }
    let after = s[colon + 1..].trim_start_matches(['#', ' ', '\t']);
    if after.trim().is_empty() {
        // "Rewritten Instruction:" alone; the instruction is on the next lines (or absent).
        rest.unwrap_or("")
    } else {
        after
    }
}

/// Whether `label` (the text before a colon) is a rewrite label such as "#Rewritten
/// Prompt#" or "New instruction", not the start of an instruction that contains a colon.
fn is_label(label: &str) -> bool {
    let ws: Vec<String> = words(label);
    let ws: Vec<&str> = ws
        .iter()
        .map(String::as_str)
        .skip_while(|w| *w == "the" || *w == "your" || *w == "my")
        .collect();
    const HEADS: [&str; 9] = [
        "instruction",
        "instructions",
        "prompt",
        "question",
        "version",
        "task",
        "rewrite",
        "output",
        "answer",
    ];
    const MODS: [&str; 14] = [
        "rewritten",
        "new",
        "evolved",
        "created",
        "revised",
        "updated",
        "final",
        "improved",
        "complex",
        "more",
        "harder",
        "given",
        "modified",
        "breadth",
    ];
    match ws.split_last() {
        Some((head, mods)) => {
            ws.len() <= 4 && HEADS.contains(head) && mods.iter().all(|m| MODS.contains(m))
        }
        None => false,
    }
}

/// `s` without one pair of matching surrounding quotes.
fn strip_quotes(s: &str) -> &str {
    for (open, close) in [('"', '"'), ('\'', '\''), ('“', '”'), ('`', '`'), ('«', '»')] {
        if s.len() >= open.len_utf8() + close.len_utf8()
            && s.starts_with(open)
            && s.ends_with(close)
        {
            return &s[open.len_utf8()..s.len() - close.len_utf8()];
        }
    }
    s
}

/// Openings that mark a refusal or an out-of-role reply rather than an instruction.
const REFUSALS: [&str; 22] = [
    "i'm sorry",
    "i am sorry",
    "sorry,",
    "sorry but",
    "sorry i",
    "i apologize",
    "apologies,",
    "my apologies",
    "i cannot",
    "i can't",
    "i can not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "as an ai",
    "as a language model",
    "as an assistant",
    "i won't",
    "i will not",
    "unfortunately, i",
    "unfortunately i",
];

/// Whether `text` opens as a refusal: one of [`REFUSALS`] starts its first or second
/// sentence within the first 150 characters ("Sure! However, I cannot ..."). Only
/// sentence starts count, so "Explain why I cannot divide by zero" is an instruction.
fn is_refusal(text: &str) -> bool {
    let lower: String = text.to_lowercase().replace(['’', '‘'], "'");
    let head: String = lower.chars().take(150).collect();
    let mut starts = vec![0usize];
    for (i, c) in head.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            starts.push(i + c.len_utf8());
            if starts.len() == 3 {
                break;
            }
        }
    }
    starts.iter().any(|&i| {
        let sentence = head[i..].trim_start_matches(|c: char| !c.is_alphanumeric());
        let sentence = sentence
            .strip_prefix("however,")
            .or_else(|| sentence.strip_prefix("but"))
            .map(str::trim_start)
            .unwrap_or(sentence);
        REFUSALS.iter().any(|r| sentence.starts_with(r))
    })
}

/// The MinHash configuration of these checks: word 3-shingles, 128 permutations, a fixed
/// seed so a check gives the same answer in every run.
fn hasher() -> &'static MinHasher {
    static H: OnceLock<MinHasher> = OnceLock::new();
    H.get_or_init(|| MinHasher::new(128, Shingle::Word(3), 0x5eed_e701))
}

/// Estimated Jaccard similarity of two texts' word 3-shingles (0 when either has no word).
fn similarity(a: &str, b: &str) -> f64 {
    let h = hasher();
    match (h.signature(a), h.signature(b)) {
        (Some(x), Some(y)) => estimate(&x, &y) as f64,
        _ => 0.0,
    }
}

/// Whether `needle` occurs as a contiguous run of words in `hay`.
fn contains_words(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Why a rewrite is refused, or `Ok`. The reasons go into `meta.lineage[].failed` and
/// `steps_rejected.jsonl`:
/// - `empty`: nothing left (after [`clean`]);
/// - `refusal`: an apology or refusal at the start ("I'm sorry", "As an AI", ...);
/// - `copies_parent`: the same words as the parent, a word 3-shingle MinHash estimate
///   >= [`COPY_PARENT_SIMILARITY`], or the parent verbatim with fewer than 5 new words;
/// - `not_harder` (every operator but breadth): fewer words than the parent plus
///   [`MIN_EXTRA_WORDS`], i.e. not longer or more specific.
///
/// Breadth writes a new instruction on another topic, so it gets only the first three.
pub fn check(op: EvolveOp, parent: &str, child: &str) -> Result<(), &'static str> {
    let child_w = words(child);
    if child.trim().is_empty() || child_w.is_empty() {
        return Err("empty");
    }
    if is_refusal(child) {
        return Err("refusal");
    }
    let parent_w = words(parent);
    if child_w == parent_w
        || similarity(parent, child) >= COPY_PARENT_SIMILARITY
        || (contains_words(&child_w, &parent_w)
            && child_w.len() < parent_w.len() + MIN_NEW_WORDS_AROUND_PARENT)
    {
        return Err("copies_parent");
    }
    if op != EvolveOp::Breadth && child_w.len() < parent_w.len() + MIN_EXTRA_WORDS {
        return Err("not_harder");
    }
    Ok(())
}

/// The index of the example `text` nearly copies, or `None`: equal words, or a word
/// 3-shingle MinHash estimate >= `threshold` (the most similar such example; ties go to
/// the first). A text or example shorter than one shingle (< 3 words) has no shingles to
/// estimate with, so it is a copy only when its set of words equals the other's.
pub fn copies_example(text: &str, examples: &[String], threshold: f64) -> Option<usize> {
    // The examples are shown as a numbered list, and a model copying one often copies
    // its number too: "1. Paris" copies "Paris".
    let text = strip_list_marker(text);
    let tw = words(text);
    if tw.is_empty() {
        return None;
    }
    let h = hasher();
    let sig = (tw.len() >= 3).then(|| h.signature(text)).flatten();
    let set =
        |ws: &[String]| -> std::collections::BTreeSet<String> { ws.iter().cloned().collect() };
    let mut best: Option<(usize, f64)> = None;
    for (i, ex) in examples.iter().enumerate() {
        let ew = words(ex);
        if ew.is_empty() {
            continue;
        }
        if ew == tw {
            return Some(i);
        }
        if tw.len() < 3 || ew.len() < 3 {
            if set(&tw) == set(&ew) {
                return Some(i);
            }
            continue;
        }
        let (Some(a), Some(b)) = (&sig, h.signature(ex)) else {
            continue;
        };
        let s = estimate(a, &b) as f64;
        if s >= threshold && best.is_none_or(|(_, bs)| s > bs) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// `text` without a leading list marker: `3.`, `3)`, `-`, `*` or `•`.
fn strip_list_marker(text: &str) -> &str {
    let t = text.trim_start();
    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = &t[digits..];
    let rest = if digits > 0 {
        match rest.strip_prefix('.').or_else(|| rest.strip_prefix(')')) {
            Some(r) => r,
            None => return t,
        }
    } else {
        match rest.strip_prefix(['-', '*', '•']) {
            Some(r) => r,
            None => return t,
        }
    };
    rest.trim_start()
}

/// The `k` examples drawn for a record with its `seed` (ChaCha8, without replacement, in
/// drawn order), as a numbered list "1. ...\n2. ...". Seeded per record so a rerun or a
/// resume builds the same prompt. `k` above the number of examples takes them all.
pub fn examples_block(examples: &[String], k: usize, seed: u64) -> String {
    let k = k.min(examples.len());
    if k == 0 {
        return String::new();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    sample_indices(&mut rng, examples.len(), k)
        .into_iter()
        .enumerate()
        .map(|(n, i)| format!("{}. {}", n + 1, examples[i].trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "Write a short story about a lighthouse keeper who finds a message in a bottle washed up on the rocks one stormy night, and describe how the message changes the rest of his quiet life on the island far from the mainland where he has lived alone for many years since his wife died.";

    #[test]
    fn prompts_name_their_method_and_the_instruction() {
        for op in EvolveOp::ALL {
            let p = prompt(op, "  Explain photosynthesis. ");
            assert!(p.contains("\nExplain photosynthesis.\n"), "{p}");
            assert!(p.contains("Write only the new instruction"), "{p}");
        }
        assert!(prompt(EvolveOp::AddConstraints, "x").contains("constraint"));
        assert!(prompt(EvolveOp::Reasoning, "x").contains("multiple-step reasoning"));
        assert!(prompt(EvolveOp::Concretize, "x").contains("specific"));
        assert!(prompt(EvolveOp::Deepen, "x").contains("depth"));
        let b = prompt(EvolveOp::Breadth, "x");
        assert!(b.contains("rarer") && b.contains("same domain") && b.contains("similar length"));
        assert!(!b.contains("more complex version"));
    }

    #[test]
    fn clean_strips_labels_quotes_and_bold() {
        let cases = [
            (
                "Rewritten Instruction: Explain X in 3 steps.",
                "Explain X in 3 steps.",
            ),
            (
                "#Rewritten Prompt#:\nExplain X in 3 steps.",
                "Explain X in 3 steps.",
            ),
            (
                "**New instruction:** \"Explain X in 3 steps.\"",
                "Explain X in 3 steps.",
            ),
            (
                "Here is the rewritten instruction:\n\n\"Explain X in 3 steps.\"",
                "Explain X in 3 steps.",
            ),
            (
                "Here's a more complex version: Explain X in 3 steps.",
                "Explain X in 3 steps.",
            ),
            (
                "Sure! Here is the new instruction:\nRewritten Instruction: Explain X.",
                "Explain X.",
            ),
            ("  “Explain X.”  ", "Explain X."),
            ("#New Instruction#: Explain X.", "Explain X."),
            ("Explain X.", "Explain X."),
            // A colon inside an instruction is not a label.
            (
                "Compare two sorts: quicksort and mergesort.",
                "Compare two sorts: quicksort and mergesort.",
            ),
            (
                "Here is a list of numbers: 3, 1, 2. Sort it.",
                "Here is a list of numbers: 3, 1, 2. Sort it.",
            ),
            ("Rewritten Instruction:", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "input {input:?}");
        }
    }

    #[test]
    fn refusals_are_caught() {
        for r in [
            "I'm sorry, but I can't help with rewriting that.",
            "I’m sorry, I cannot do that.",
            "As an AI language model, I cannot create harmful content.",
            "I am unable to rewrite this instruction.",
            "Sure. However, I cannot make this more complex.",
            "Unfortunately, I cannot comply.",
        ] {
            assert_eq!(
                check(EvolveOp::Deepen, "Explain recursion.", r),
                Err("refusal"),
                "{r}"
            );
            assert_eq!(
                check(EvolveOp::Breadth, "Explain recursion.", r),
                Err("refusal"),
                "{r}"
            );
        }
        // A refusal word inside an instruction is not a refusal.
        assert_eq!(
            check(
                EvolveOp::Reasoning,
                "Explain division.",
                "Explain step by step why I cannot divide a number by zero, with an example."
            ),
            Ok(())
        );
    }

    #[test]
    fn copies_are_caught() {
        // One word changed in a long instruction.
        let one_word = PARENT.replace("lighthouse keeper", "lighthouse guard");
        assert_eq!(
            check(EvolveOp::Deepen, PARENT, &one_word),
            Err("copies_parent")
        );
        assert_eq!(
            check(EvolveOp::Breadth, PARENT, &one_word),
            Err("copies_parent")
        );
        // The same words, other case and punctuation.
        let same = PARENT.to_uppercase().replace(',', "");
        assert_eq!(
            check(EvolveOp::Concretize, PARENT, &same),
            Err("copies_parent")
        );
        // The parent verbatim with a few words added.
        let short = "Explain how a bicycle gear works.";
        assert_eq!(
            check(
                EvolveOp::AddConstraints,
                short,
                &format!("{short} Be brief please.")
            ),
            Err("copies_parent")
        );
    }

    #[test]
    fn a_longer_rewrite_passes_and_a_shorter_one_is_not_harder() {
        let parent = "Explain how a bicycle gear works.";
        let longer = "Explain how the gears of a 21-speed road bicycle change the force a rider needs on a steep hill, using a worked example with chainring and cog sizes.";
        for op in EvolveOp::ALL {
            assert_eq!(check(op, parent, longer), Ok(()), "{op:?}");
        }
        // The parent kept and five words added is not a copy.
        assert_eq!(
            check(
                EvolveOp::AddConstraints,
                parent,
                &format!("{parent} Answer in exactly three short sentences.")
            ),
            Ok(())
        );
        let shorter = "Describe bicycle gears.";
        assert_eq!(check(EvolveOp::Deepen, parent, shorter), Err("not_harder"));
        // Only two words more is not harder either.
        assert_eq!(
            check(
                EvolveOp::Concretize,
                parent,
                "Explain how a Shimano derailleur gear system works."
            ),
            Err("not_harder")
        );
        assert_eq!(check(EvolveOp::Reasoning, parent, "  "), Err("empty"));
        assert_eq!(check(EvolveOp::Breadth, parent, "..."), Err("empty"));
    }

    #[test]
    fn breadth_with_a_shorter_new_topic_passes() {
        let parent = "Explain how a bicycle gear works, with an example of shifting on a hill.";
        assert_eq!(
            check(
                EvolveOp::Breadth,
                parent,
                "Explain how a unicycle stays upright."
            ),
            Ok(())
        );
    }

    #[test]
    fn example_copies_are_found() {
        let examples: Vec<String> = [
            "Write a haiku about autumn leaves falling in a quiet park at dusk.",
            "List five uses of baking soda in the kitchen and explain each briefly.",
            "Hi there",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            copies_example(
                "list five uses of baking soda in the kitchen, and explain each briefly!",
                &examples,
                0.7
            ),
            Some(1)
        );
        assert_eq!(
            copies_example(
                "List five uses of baking soda in the kitchen and explain each one briefly.",
                &examples,
                0.7
            ),
            Some(1)
        );
        assert_eq!(copies_example("there, hi!", &examples, 0.7), Some(2));
        assert_eq!(copies_example("Hi", &examples, 0.7), None);
        assert_eq!(
            copies_example(
                "Describe the water cycle to a ten-year-old using a kettle as the example.",
                &examples,
                0.7
            ),
            None
        );
        assert_eq!(copies_example("", &examples, 0.7), None);
        // A copied list number does not hide a copy; a number that is the text does not vanish.
        assert_eq!(copies_example("2) there, hi!", &examples, 0.7), Some(2));
        assert_eq!(copies_example("  - there hi", &examples, 0.7), Some(2));
        assert_eq!(strip_list_marker("12. Paris"), "Paris");
        assert_eq!(strip_list_marker("1984 was a year"), "1984 was a year");
        assert_eq!(copies_example("anything at all here", &[], 0.7), None);
    }

    #[test]
    fn examples_are_drawn_by_seed() {
        let examples: Vec<String> = (0..20).map(|i| format!("example {i}")).collect();
        let a = examples_block(&examples, 3, 7);
        assert_eq!(a, examples_block(&examples, 3, 7));
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines.len(), 3);
        for (n, l) in lines.iter().enumerate() {
            assert!(l.starts_with(&format!("{}. example ", n + 1)), "{a}");
        }
        let draws: std::collections::BTreeSet<String> =
            (0..8).map(|s| examples_block(&examples, 3, s)).collect();
        assert!(draws.len() > 1, "different seeds draw differently");
        assert_ne!(a, examples_block(&examples, 3, 8));
        assert_eq!(examples_block(&examples, 50, 1).lines().count(), 20);
        assert_eq!(examples_block(&examples, 0, 1), "");
        assert_eq!(examples_block(&[], 3, 1), "");
    }
}
