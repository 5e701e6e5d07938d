use super::*;

fn parse(text: &str) -> Result<Spec> {
    Spec::parse(Path::new("t/spec.toml"), text.to_string())
}

const OK: &str = r#"
[run]
name = "t"

[teacher]
model = "smollm2-135m-instruct"

[seeds]
topic = ["a", "b"]

[[task]]
name = "q"
template = "About {{topic}}."
"#;

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn valid_spec_parses_with_defaults() {
    let s = parse(OK).unwrap();
    assert_eq!(s.name(), "t");
    assert_eq!(s.run.seed, 42);
    assert_eq!(s.teacher.as_ref().unwrap().max_new_tokens, 256);
    assert_eq!(s.tasks[0].vars, vec!["topic"]);
    assert_eq!(s.run_dir(), PathBuf::from("runs/t"));
}

#[test]
fn malformed_toml_names_file_and_line() {
    let e = err("[run]\nname = \"t\"\nseed = = 3\n");
    assert!(e.starts_with("t/spec.toml:3:"), "{e}");
}

#[test]
fn unknown_field_names_line_and_field() {
    let e = err(&OK.replace("[teacher]\n", "[teacher]\ntemprature = 0.5\n"));
    assert!(
        e.contains("t/spec.toml:6:") && e.contains("temprature"),
        "{e}"
    );
}

#[test]
fn missing_template_variable_is_reported_before_loading() {
    let e = err(&OK.replace("About {{topic}}.", "About {{topic}} for {{persona}}."));
    assert!(
        e.contains("task[0].template")
            && e.contains("{{persona}}")
            && e.contains("t/spec.toml:13:"),
        "{e}"
    );
}

#[test]
fn unknown_model_lists_known_ids() {
    let e = err(&OK.replace("smollm2-135m-instruct", "gpt-9"));
    assert!(
        e.contains("teacher.model") && e.contains("smollm2-135m-instruct") && e.contains(":6:"),
        "{e}"
    );
}

#[test]
fn bad_values_are_rejected() {
    assert!(err(&OK.replace("name = \"t\"", "name = \"../x\"")).contains("run.name"));
    assert!(
        err(&OK.replace("[seeds]", "[teacher.sampling]\ntop_p = 1.5\n[seeds]")).contains("top_p")
    );
    assert!(err(&OK.replace("topic = [\"a\", \"b\"]", "topic = []")).contains("seeds.topic"));
    assert!(
        err(&OK.replace("topic = [\"a\", \"b\"]", "topic = { file = \"nope.txt\" }"))
            .contains("nope.txt")
    );
    assert!(err(&OK.replace("About {{topic}}.", "About {{topic}.")).contains("unclosed"));
    // A spec with no [[task]] is valid (verify-only); `generate` refuses it (tests/cli.rs).
    let no_task = parse(&OK.replace(
        "[[task]]\nname = \"q\"\ntemplate = \"About {{topic}}.\"\n",
        "",
    ))
    .unwrap();
    assert!(no_task.tasks.is_empty());
}

#[test]
fn render_fills_placeholders() {
    let v: BTreeMap<String, String> = [("a".to_string(), "x".to_string())].into();
    assert_eq!(
        render("{{a}} and {{ a }} but {{b}}", &v),
        "x and x but {{b}}"
    );
    assert_eq!(collect_vars("{{a}}{{b_2}}").unwrap(), vec!["a", "b_2"]);
}

#[test]
fn seed_files_plain_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "one\n\ntwo\n").unwrap();
    std::fs::write(dir.path().join("t.jsonl"), "{\"x\": \"three\"}\n\"four\"\n").unwrap();
    let text = OK.replace(
        "topic = [\"a\", \"b\"]",
        "topic = { file = \"t.txt\" }\nother = { file = \"t.jsonl\", field = \"x\" }",
    );
    let s = Spec::parse(&dir.path().join("s.toml"), text).unwrap();
    assert_eq!(s.seeds["topic"].values, vec!["one", "two"]);
    assert_eq!(s.seeds["other"].values, vec!["three", "four"]);
}

#[test]
fn sampling_errors_point_at_the_field() {
    // Line 10 is `top_p`, not the [teacher.sampling] header (8) or teacher.model (6).
    let text = OK.replace(
        "[seeds]",
        "[teacher.sampling]\ntemperature = 0.5\ntop_p = 1.5\n\n[seeds]",
    );
    let e = err(&text);
    assert!(
        e.starts_with("t/spec.toml:10:9: teacher.sampling.top_p: top_p must be in (0, 1]"),
        "{e}"
    );
    let e = err(&OK.replace("[seeds]", "[teacher.sampling]\ntemperature = -1.0\n[seeds]"));
    assert!(
        e.starts_with("t/spec.toml:9:15: teacher.sampling.temperature:"),
        "{e}"
    );
    let e = err(&OK.replace(
        "model = \"smollm2-135m-instruct\"",
        "model = \"smollm2-135m-instruct\"\nsampling = { stop = [\"\"] }",
    ));
    assert!(e.starts_with("t/spec.toml:7:"), "{e}");
}

#[test]
fn blend_language_is_declared_only_when_given() {
    assert!(parse(OK).unwrap().blend.language.is_empty());
    let one = parse(&format!("{OK}\n[blend]\nlanguage = \"en\"\n")).unwrap();
    assert_eq!(one.blend.language, vec!["en"]);
    let two = parse(&format!("{OK}\n[blend]\nlanguage = [\"en\", \"pt-BR\"]\n")).unwrap();
    assert_eq!(two.blend.language, vec!["en", "pt-BR"]);
    let e = err(&format!(
        "{OK}\n[blend]\nstrict = true\nlanguage = \"English\"\n"
    ));
    assert!(
        e.starts_with("t/spec.toml:17:12: blend.language: \"English\" is not a language code"),
        "{e}"
    );
}

#[test]
fn blend_order_is_shuffled_or_curriculum() {
    assert_eq!(parse(OK).unwrap().blend.order, BlendOrder::Shuffled);
    let c = parse(&format!("{OK}\n[blend]\norder = \"curriculum\"\n")).unwrap();
    assert_eq!(c.blend.order, BlendOrder::Curriculum);
    let s = parse(&format!("{OK}\n[blend]\norder = \"shuffled\"\n")).unwrap();
    assert_eq!(s.blend.order, BlendOrder::Shuffled);
    let e = err(&format!(
        "{OK}\n[blend]\nstrict = true\norder = \"hardest\"\n"
    ));
    assert!(
        e.starts_with("t/spec.toml:17:9: blend.order: \"hardest\" is not an order")
            && e.contains("\"curriculum\""),
        "{e}"
    );
    // The blend stage's settings are the section's Debug form: the order is in them.
    assert_ne!(format!("{:?}", c.blend), format!("{:?}", s.blend));
}

#[test]
fn chat_template_is_a_built_in_name_or_a_jinja_file() {
    let with = |v: &str| {
        OK.replace(
            "[teacher]\n",
            &format!("[teacher]\nchat_template = {v:?}\n"),
        )
    };
    assert!(parse(&with("gemma")).is_ok());
    let e = err(&with("vicuna"));
    assert!(
        e.contains("t/spec.toml:6:") && e.contains("teacher.chat_template") && e.contains(".jinja"),
        "{e}"
    );
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.jinja");
    let e = err(&with(&missing.display().to_string()));
    assert!(e.contains(":6:") && e.contains("missing.jinja"), "{e}");
    let bad = d.path().join("bad.jinja");
    std::fs::write(&bad, "{% for m in messages %}").unwrap();
    let e = err(&with(&bad.display().to_string()));
    assert!(e.contains(":6:") && e.contains("bad.jinja"), "{e}");
    let good = d.path().join("good.jinja");
    std::fs::write(&good, "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    let s = parse(&with(&good.display().to_string())).unwrap();
    assert_eq!(
        s.teacher.unwrap().chat_template.unwrap(),
        good.display().to_string()
    );
}

#[test]
fn every_shipped_spec_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        // fuzz.toml is written by tests/fuzz.rs, not shipped.
        if p.extension().is_some_and(|x| x == "toml") && !p.ends_with("fuzz.toml") {
            Spec::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no specs in {}", dir.display());
}
