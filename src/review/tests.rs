use super::log::{append, Action, Decision, Log};
use super::stats::{auroc, cohen_kappa, wilson};
use super::*;
use serde_json::json;

fn rec(id: &str, answer: &str) -> Value {
    json!({"id": id, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]})
}

fn act(who: &str, r: &Value, d: Decision) -> Action {
    Action::new(who, r["id"].as_str().unwrap(), d, &content_sha256(r))
}

#[test]
fn undo_takes_back_only_the_reviewers_own_action_and_verdicts_follow_content() {
    let r = rec("x", "four");
    let a1 = act("ann", &r, Decision::Accept);
    let mut b1 = act("bob", &r, Decision::Reject);
    b1.reason = Some("wrong".into());
    // Ann tries to undo Bob's action: ignored.
    let mut bad = act("ann", &r, Decision::Undo);
    bad.undoes = Some(b1.action.clone());
    let log = Log::fold(vec![a1.clone(), b1.clone(), bad]);
    assert_eq!(log.undone, 0);
    assert!(matches!(log.verdict(&r), Verdict::Rejected(a) if a.reviewer == "bob"));
    // Bob undoes his: Ann's acceptance is the verdict again.
    let mut u = act("bob", &r, Decision::Undo);
    u.undoes = Some(b1.action.clone());
    let log = Log::fold(vec![a1.clone(), b1, u]);
    assert_eq!(log.undone, 1);
    assert!(matches!(log.verdict(&r), Verdict::Accepted(a) if a.reviewer == "ann"));
    // The record's answer changed: the decision was made on other content.
    assert_eq!(log.verdict(&rec("x", "five")), Verdict::Unreviewed);
    // A rescore (scores added) keeps it: the conversation is the same.
    let mut scored = r.clone();
    scored["scores"] = json!({"judge_combined": {"score": 0.2}});
    assert!(matches!(log.verdict(&scored), Verdict::Accepted(_)));
}

#[test]
fn appends_survive_a_torn_line_and_are_read_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("review.jsonl");
    let r = rec("x", "four");
    let mut log = Log::load(&p).unwrap();
    append(&p, &act("ann", &r, Decision::Accept)).unwrap();
    log.refresh(&p).unwrap();
    assert_eq!(log.effective().count(), 1);
    // A crash mid-append leaves half a line: it is not read as an action…
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, b"{\"action\":\"torn").unwrap();
    log.refresh(&p).unwrap();
    assert_eq!(log.effective().count(), 1);
    // …and the next append cuts it, so the file is whole lines again.
    append(&p, &act("bob", &r, Decision::Accept)).unwrap();
    log.refresh(&p).unwrap();
    assert_eq!(log.effective().count(), 2);
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(!text.contains("torn"));
    assert_eq!(Log::load(&p).unwrap().effective().count(), 2);
    assert!(Log::load(&p).unwrap().bad_lines.is_empty());
}

#[test]
fn edits_replace_the_last_answer_only() {
    let r = json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
                                {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]});
    assert_eq!(editable_text(&r).as_deref(), Some("a2"));
    let e = with_edit(&r, "better").unwrap();
    assert_eq!(e["messages"][1]["content"], "a1");
    assert_eq!(e["messages"][3]["content"], "better");
    let pr = json!({"prompt": "p", "response": "r"});
    assert_eq!(with_edit(&pr, "s").unwrap()["response"], "s");
    assert!(with_edit(&json!({"text": "t"}), "s").is_none());
}

#[test]
fn kappa_auroc_and_wilson_match_hand_computed_values() {
    // 10 items: agree on 8 (4 yes, 4 no); p_o = .8, p_e = .5 → κ = .6.
    let mut pairs = vec![(1, 1); 4];
    pairs.extend(vec![(0, 0); 4]);
    pairs.push((1, 0));
    pairs.push((0, 1));
    assert!((cohen_kappa(&pairs).unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(cohen_kappa(&[(1, 1), (1, 1)]), Some(1.0));
    assert_eq!(cohen_kappa::<u8>(&[]), None);
    // Perfect ranking, reversed, and a tie counted half.
    let s = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
    assert_eq!(auroc(&s), Some(1.0));
    let rev: Vec<(f64, bool)> = s.iter().map(|&(x, l)| (x, !l)).collect();
    assert_eq!(auroc(&rev), Some(0.0));
    assert_eq!(auroc(&[(0.5, true), (0.5, false)]), Some(0.5));
    assert_eq!(auroc(&[(0.5, true)]), None);
    // Wilson 95 % for 5/10: [0.2366, 0.7634].
    let (lo, hi) = wilson(5, 10);
    assert!(
        (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
        "{lo} {hi}"
    );
    let (lo, hi) = wilson(0, 20);
    assert_eq!(lo, 0.0);
    assert!(hi > 0.1 && hi < 0.2);
}

#[test]
fn samples_are_seeded_and_independent_of_file_order() {
    let ids: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let a: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut b = a.clone();
    b.reverse();
    assert_eq!(sample_ids(&a, 10, 7), sample_ids(&b, 10, 7));
    assert_eq!(sample_ids(&a, 10, 7).len(), 10);
    assert_ne!(sample_ids(&a, 10, 7), sample_ids(&a, 10, 8));
}

#[test]
fn filters_parse_and_refuse_what_they_do_not_know() {
    use super::queue::{Filter, Flag};
    let f = Filter::parse("task:qa score:0-0.5 flag:pii unreviewed").unwrap();
    assert_eq!(f.task.as_deref(), Some("qa"));
    assert_eq!(f.score, Some((0.0, 0.5)));
    assert_eq!(f.flag, Some(Flag::Pii));
    assert!(f.unreviewed && !f.disagreed);
    assert_eq!(
        Filter::parse("flag:near-duplicate").unwrap().flag,
        Some(Flag::NearDuplicate)
    );
    assert!(Filter::parse("score:abc").is_err());
    assert!(Filter::parse("colour:red").is_err());
    assert!(Filter::parse("flag:nope").is_err());
}

#[test]
fn the_review_section_is_checked_where_it_is_written() {
    let base = "[run]\nname = \"b\"\n[[task]]\nname = \"q\"\ntemplate = \"x\"\n";
    let parse =
        |extra: &str| crate::Spec::parse(std::path::Path::new("s.toml"), format!("{base}{extra}"));
    let ok = parse("[review]\nreasons = [\"wrong\", \"too long\"]\nrequired = true\nsample = 50\n")
        .unwrap();
    assert_eq!(ok.review.reasons, ["wrong", "too long"]);
    assert!(ok.review.required);
    assert_eq!(ok.review.sample, Some(50));
    assert_eq!(
        parse("").unwrap().review.reasons.len(),
        5,
        "default reasons"
    );
    for (bad, want) in [
        (
            "[review]\nreasons = []\n",
            "s.toml:7:11: review.reasons: 0 reasons",
        ),
        (
            "[review]\nreasons = [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\"]\n",
            "10 reasons",
        ),
        (
            "[review]\nreasons = [\"a\", \"a\"]\n",
            "\"a\" is listed twice",
        ),
        ("[review]\nreasons = [\"<b>\"]\n", "a reason is 1–40"),
        (
            "[review]\nsample = 0\n",
            "s.toml:7:10: review.sample: must be at least 1",
        ),
        ("[review]\nrequire = true\n", "unknown field `require`"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn the_report_section_counts_verdicts_agreement_and_the_sample_interval() {
    let dir = tempfile::tempdir().unwrap();
    let audited = dir.path().join("audited.jsonl");
    let recs: Vec<Value> = (0..10)
        .map(|i| {
            let mut r = rec(&format!("r{i}"), &format!("answer {i}"));
            r["meta"] = json!({"task": if i < 5 { "a" } else { "b" }});
            r["scores"] = json!({"judge_combined": {"score": i as f64 / 10.0}});
            r
        })
        .collect();
    crate::store::write_jsonl(&audited, &recs).unwrap();
    let mut acts = Vec::new();
    // ann: r0–r3 rejected (low scores), r6–r9 accepted; bob agrees on r0, r9, not on r6.
    for (i, r) in recs.iter().enumerate() {
        match i {
            0..=3 => {
                let mut a = act("ann", r, Decision::Reject);
                a.reason = Some(if i == 0 { "unsafe" } else { "wrong" }.into());
                acts.push(a);
            }
            6..=9 => acts.push(act("ann", r, Decision::Accept)),
            _ => {}
        }
    }
    let mut b0 = act("bob", &recs[0], Decision::Reject);
    b0.reason = Some("unsafe".into());
    acts.push(b0);
    acts.push(act("bob", &recs[9], Decision::Accept));
    let mut b6 = act("bob", &recs[6], Decision::Edit);
    b6.edited = Some("better".into());
    acts.push(b6);
    let log = Log::fold(acts);
    let index = super::queue::Index::build(&audited, &dir.path().join("none"), None, 1).unwrap();
    let s = super::stats::section(&index, &log).unwrap();
    assert_eq!(s["candidates"], 10);
    assert_eq!(s["reviewed"], 8);
    assert_eq!(
        s["reject_reasons"][0],
        json!({"reason": "wrong", "count": 3})
    );
    // r6's verdict is bob's later edit: task b has r6 edited, r7–r9 accepted.
    assert_eq!(s["by_task"][1]["edited"], 1);
    assert_eq!(s["by_task"][1]["accepted"], 3);
    // The judge ranks every rejected record (0–0.3) below every accepted one (0.7–0.9);
    // r6 (0.6) was edited, so "not good as is", and still below: AUROC 1.
    assert_eq!(s["judge"]["auroc"], 1.0);
    assert_eq!(s["agreement"][0]["both"], 3);
    assert_eq!(s["agreement"][0]["agreed"], 2);
    assert_eq!(s["disagreed"], 1);
    assert!(s.get("sample").is_none());
    // As an audit sample of 4: the interval is there and brackets the rate.
    let index = super::queue::Index::build(&audited, &dir.path().join("none"), Some(4), 1).unwrap();
    let s = super::stats::section(&index, &log).unwrap();
    let smp = &s["sample"];
    assert_eq!(smp["size"], 4);
    let (rate, lo, hi) = (
        smp["error_rate"].as_f64().unwrap(),
        smp["ci95"][0].as_f64().unwrap(),
        smp["ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= rate && rate <= hi && hi - lo > 0.3, "{smp}");
}
