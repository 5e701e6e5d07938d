//! Property tests ("fuzzing" inside `cargo test`): the spec parser, the JSONL readers, the
//! verifiers and the PII scanner return a value or an error on any input, and never
//! panic. Case counts are fixed (see `cases`) so the whole file runs in a few seconds in
//! `cargo test --release`; a failure prints the shrunk input (add it to the unit tests of
//! the module it breaks).

use flywheel::spec::LengthUnit;
use flywheel::spec::{Spec, VerifierSpec};
use flywheel::verify::verifiers::{self, Input};
use proptest::prelude::*;
use std::path::Path;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // Nothing written into the source tree when a case fails.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text built from fragments the parsers treat specially, plus arbitrary characters
/// (including ones that change byte length when case-mapped).
fn tricky_text() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        Just("answer:".to_string()),
        Just("The answer is ".to_string()),
        Just("ANSWER IS".to_string()),
        Just("\\boxed{".to_string()),
        Just("\\frac{".to_string()),
        Just("}{".to_string()),
        Just("}".to_string()),
        Just("İ".to_string()),
        Just("ß".to_string()),
        Just("é".to_string()),
        Just("K".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("-".to_string()),
        Just(".".to_string()),
        Just(",".to_string()),
        Just("/".to_string()),
        Just("%".to_string()),
        Just("$".to_string()),
        Just("@".to_string()),
        Just("+1 ".to_string()),
        Just("::".to_string()),
        Just("<|im_end|>".to_string()),
        "[0-9]{1,6}".prop_map(|s| s),
        "[a-zA-Z]{1,8}".prop_map(|s| s),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(frag, 0..24).prop_map(|v| v.concat())
}

/// A JSON value of bounded depth, with the keys records use.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        tricky_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            Just("id".to_string()),
            Just("messages".to_string()),
            Just("role".to_string()),
            Just("content".to_string()),
            Just("prompt".to_string()),
            Just("response".to_string()),
            Just("instruction".to_string()),
            Just("output".to_string()),
            Just("text".to_string()),
            "[a-z]{1,6}".prop_map(|s| s),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSONL file's text: valid records, broken JSON, blank lines, a torn last line.
fn jsonl_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => json_value().prop_map(|v| v.to_string()),
        1 => tricky_text(),
        1 => Just(String::new()),
        1 => Just("{\"id\": ".to_string()),
        1 => Just("[1,2]".to_string()),
    ];
    (prop::collection::vec(line, 0..8), any::<bool>()).prop_map(|(lines, newline)| {
        let mut s = lines.join("\n");
        if newline {
            s.push('\n');
        }
        s
    })
}

/// The demo spec with random edits (deleting, duplicating or inserting TOML-ish
/// fragments), so most inputs get past the TOML parser into validation.
fn spec_text() -> impl Strategy<Value = String> {
    let base = include_str!("../configs/demo.toml").to_string();
    let insert = prop_oneof![
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("[[task]]\n".to_string()),
        Just("[seeds]\n".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("nan".to_string()),
        Just("18446744073709551615".to_string()),
        Just("\n".to_string()),
        Just("x = []\n".to_string()),
        tricky_text(),
    ];
    let edit = (any::<prop::sample::Index>(), 0usize..40, 0u8..3, insert);
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut t = base.clone();
        for (at, len, op, ins) in edits {
            let mut i = at.index(t.len() + 1);
            while !t.is_char_boundary(i) {
                i -= 1;
            }
            let mut j = (i + len).min(t.len());
            while !t.is_char_boundary(j) {
                j -= 1;
            }
            match op {
                0 => t.replace_range(i..j, ""),
                1 => t.insert_str(i, &ins),
                _ => {
                    let dup = t[i..j].to_string();
                    t.insert_str(j, &dup);
                }
            }
        }
        t
    })
}

proptest! {
    #![proptest_config(cases(400))]

    /// The spec parser: a spec or an error, for edited demo specs and arbitrary text.
    #[test]
    fn spec_parser_never_panics(text in spec_text(), junk in tricky_text()) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fuzz.toml");
        let _ = Spec::parse(&path, text);
        let _ = Spec::parse(&path, junk);
    }
}

proptest! {
    #![proptest_config(cases(300))]

    /// The JSONL readers (records for verify/export, the store's reader, real data) and
    /// what reads a record's fields afterwards.
    #[test]
    fn jsonl_readers_never_panic(text in jsonl_text()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, &text).unwrap();
        if let Ok(recs) = flywheel::record::read_records(&p) {
            for r in &recs {
                let _ = flywheel::record::View::new(r).prompt_response();
                for f in [
                    flywheel::export::Format::Openai,
                    flywheel::export::Format::Alpaca,
                    flywheel::export::Format::Sharegpt,
                    flywheel::export::Format::Chatml,
                ] {
                    let _ = flywheel::export::convert(r, f);
                }
            }
        }
        let _ = flywheel::store::read_jsonl::<serde_json::Value>(&p);
        for strict in [false, true] {
            let _ = flywheel::record::real::read(&p, strict);
        }
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Answer extraction and comparison, and every per-record verifier.
    #[test]
    fn verifiers_never_panic(response in tricky_text(), reference in tricky_text(), rec in json_value()) {
        let _ = verifiers::extract_answer(&response);
        let _ = verifiers::answers_equal(&response, &reference);
        for n in [1, 2, 4] {
            let share = verifiers::repeated_ngram_share(&response, n);
            prop_assert!((0.0..=1.0).contains(&share) || share.is_nan(), "{share}");
        }
        let record = serde_json::json!({"ref": reference, "r": rec});
        let specs = [
            VerifierSpec::Json { schema: None },
            VerifierSpec::Regex { must_match: vec![r"\d".into()], must_not_match: vec!["(?i)sorry".into()] },
            VerifierSpec::Length { unit: LengthUnit::Words, min: Some(1), max: Some(5) },
            VerifierSpec::Length { unit: LengthUnit::Chars, min: None, max: Some(3) },
            VerifierSpec::MathAnswer { reference: Some("ref".into()), self_consistency: false },
            VerifierSpec::MathAnswer { reference: Some("r.x".into()), self_consistency: false },
            VerifierSpec::Repetition { n: 2, max_share: 0.5 },
            VerifierSpec::Refusal {},
            VerifierSpec::Language { min_letter_share: 0.5 },
        ];
        for s in &specs {
            if let Some(v) = verifiers::build(s, Path::new(".")).unwrap() {
                let verdict = v.check(&Input { prompt: &reference, response: &response, record: &record });
                prop_assert!(verdict.pass || verdict.reason.is_some());
            }
        }
    }

    /// The PII scanner: hits in order, not overlapping, on character boundaries, and
    /// redaction of them works on any text.
    #[test]
    fn pii_scanner_never_panics(text in pii_text()) {
        let hits = flywheel::privacy::pii::scan(&text);
        let mut end = 0;
        for h in &hits {
            prop_assert!(h.start >= end && h.start < h.end && h.end <= text.len());
            prop_assert!(text.is_char_boundary(h.start) && text.is_char_boundary(h.end));
            prop_assert_eq!(&text[h.start..h.end], h.text.as_str());
            end = h.end;
        }
        let _ = flywheel::privacy::pii::redact(&text, &hits);
    }
}

/// Text with near-PII: digit runs with separators, @, dots, colons, IBAN-like prefixes.
fn pii_text() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        "[0-9]{1,4}".prop_map(|s| s),
        Just("-".to_string()),
        Just(".".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just(" ".to_string()),
        Just("+".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("%".to_string()),
        Just("GB82".to_string()),
        Just("DE".to_string()),
        Just("4111".to_string()),
        Just("a.b".to_string()),
        Just("é".to_string()),
        Just("İ".to_string()),
        "[a-zA-Z]{1,5}".prop_map(|s| s),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(frag, 0..30).prop_map(|v| v.concat())
}
