use super::*;
use serde_json::json;

fn run(v: &dyn Verifier, response: &str) -> Verdict {
    let rec = json!({});
    v.check(&Input {
        prompt: "",
        response,
        record: &rec,
    })
}

#[test]
fn math_answer_extraction_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("So the total is \\boxed{42}.", Some("42")),
        ("\\boxed{\\frac{3}{4}} and later \\boxed{7}", Some("7")),
        ("We get \\boxed{x^{2}+1}", Some("x^{2}+1")),
        ("The answer is 1,234.", Some("1,234")),
        ("Thus the answer is: -3.5 apples", Some("-3.5")),
        ("First 3, then 4, finally 12", Some("12")),
        ("Answer: 3/4", Some("3/4")),
        ("The answer is Paris.", Some("Paris")),
        ("no digits here", None),
        // Letters that change byte length when lowercased, before the key.
        ("İİİ answer:éé", Some("éé")),
        ("İ ANSWER IS 7", Some("7")),
    ];
    for (text, want) in cases {
        assert_eq!(extract_answer(text).as_deref(), *want, "{text:?}");
    }
}

#[test]
fn math_answer_equality_table() {
    let equal = [
        ("0.75", "3/4"),
        ("1,234", "1234"),
        ("$5", "5.00"),
        ("\\frac{1}{2}", "0.5"),
        ("50%", "50"),
        ("-0", "0"),
        ("Paris", "paris."),
        ("1e3", "1000"),
    ];
    for (a, b) in equal {
        assert!(answers_equal(a, b), "{a} == {b}");
    }
    let different = [
        ("0.33", "1/3"),
        ("12", "21"),
        ("1,234", "1.234"),
        ("x", "y"),
        ("3/0", "3"),
    ];
    for (a, b) in different {
        assert!(!answers_equal(a, b), "{a} != {b}");
    }
}

#[test]
fn math_answer_against_reference_field() {
    let v = MathAnswer {
        reference: "meta.answer".into(),
    };
    let rec = json!({"meta": {"answer": 12}});
    let check = |r: &str| {
        v.check(&Input {
            prompt: "",
            response: r,
            record: &rec,
        })
    };
    assert!(check("3 × 4 = \\boxed{12}").pass);
    assert!(!check("3 × 4 = \\boxed{13}").pass);
    assert!(check("the answer is 12.0").pass);
    let missing = v.check(&Input {
        prompt: "",
        response: "12",
        record: &json!({}),
    });
    assert!(!missing.pass && missing.reason.unwrap().contains("meta.answer"));
}

#[test]
fn json_verifier_with_fences_and_schema() {
    let plain = Json { schema: None };
    assert!(run(&plain, "{\"a\": 1}").pass);
    assert!(run(&plain, "```json\n{\"a\": 1}\n```").pass);
    assert!(!run(&plain, "{\"a\": 1,}").pass);
    assert!(!run(&plain, "Sure! {\"a\": 1}").pass);
    let schema = jsonschema::validator_for(&json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}})).unwrap();
    let with = Json {
        schema: Some(schema),
    };
    assert!(run(&with, "{\"name\": \"x\"}").pass);
    let bad = run(&with, "{\"name\": 3}");
    assert!(!bad.pass && bad.reason.unwrap().contains("/name"));
    assert!(!run(&with, "{}").pass);
}

#[test]
fn regex_length_repetition_refusal_language() {
    let re = Pattern {
        must_match: vec![regex::Regex::new(r"(?i)because").unwrap()],
        must_not_match: vec![regex::Regex::new(r"https?://").unwrap()],
    };
    assert!(run(&re, "Because the moon pulls.").pass);
    assert!(!run(&re, "The moon pulls.").pass);
    assert!(!run(&re, "because see http://x").pass);

    let len = Length {
        unit: LengthUnit::Words,
        min: Some(3),
        max: Some(5),
    };
    assert!(run(&len, "one two three").pass);
    assert!(!run(&len, "one two").pass);
    assert!(!run(&len, "a b c d e f").pass);
    let chars = Length {
        unit: LengthUnit::Chars,
        min: None,
        max: Some(3),
    };
    assert!(run(&chars, "héé").pass, "counts characters, not bytes");

    let rep = Repetition {
        n: 3,
        max_share: 0.3,
    };
    assert!(run(&rep, "the tide rises and the tide falls twice a day").pass);
    assert!(
        !run(
            &rep,
            "I like it. I like it. I like it. I like it. I like it."
        )
        .pass
    );
    assert_eq!(repeated_ngram_share("a b", 3), 0.0);

    assert!(!run(&Refusal, "I'm sorry, but I can't help with that.").pass);
    assert!(!run(&Refusal, "As an AI language model, I cannot …").pass);
    assert!(
        !run(&Refusal, "I’m unable to do that.").pass,
        "curly apostrophe"
    );
    assert!(
        run(
            &Refusal,
            "Tides are caused by the moon. Sorry for the long answer!"
        )
        .pass
    );

    let lang = Language {
        min_letter_share: 0.6,
    };
    assert!(run(&lang, "Tides rise twice a day.").pass);
    assert!(!run(&lang, "").pass);
    assert!(!run(&lang, "   ").pass);
    assert!(!run(&lang, "12345 !!!! ####").pass);
    assert!(!run(&lang, "ok\u{0007}bell").pass);
    assert!(!run(&lang, "broken \u{FFFD} text here").pass);
    assert!(run(&lang, "Les marées montent deux fois par jour.").pass);
}
