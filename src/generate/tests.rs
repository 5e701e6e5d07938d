use super::*;
use crate::spec::Spec;
use std::path::Path;

fn spec(seeds: &str, task_extra: &str) -> Spec {
    let text = format!(
        "[run]\nname = \"t\"\n[teacher]\nmodel = \"smollm2-135m-instruct\"\n[seeds]\n{seeds}\n[[task]]\nname = \"q\"\ntemplate = \"{{{{a}}}} / {{{{b}}}}\"\nsamples_per_prompt = 2\n{task_extra}\n"
    );
    Spec::parse(Path::new("s.toml"), text).unwrap()
}

#[test]
fn cartesian_product_times_samples() {
    let p = plan(&spec("a = [\"1\", \"2\", \"3\"]\nb = [\"x\", \"y\"]", ""));
    assert_eq!(p.len(), 3 * 2 * 2);
    assert_eq!(p[0].messages[0].content, "1 / x");
    let ids: std::collections::HashSet<_> = p.iter().map(|i| &i.id).collect();
    assert_eq!(ids.len(), p.len(), "ids must be unique");
}

#[test]
fn ids_do_not_depend_on_position() {
    let before = plan(&spec("a = [\"1\", \"2\"]\nb = [\"x\"]", ""));
    let after = plan(&spec("a = [\"0\", \"1\", \"2\"]\nb = [\"x\"]", ""));
    for it in &before {
        assert!(
            after
                .iter()
                .any(|j| j.id == it.id && j.messages == it.messages),
            "id of {:?} changed",
            it.vars
        );
    }
}

#[test]
fn sampled_combinations_are_seeded_and_distinct() {
    let s = spec(
        "a = [\"1\", \"2\", \"3\", \"4\", \"5\"]\nb = [\"x\", \"y\", \"z\"]",
        "sample = 4",
    );
    let p1 = plan(&s);
    assert_eq!(p1.len(), 4 * 2);
    assert_eq!(p1, plan(&s), "same seed, same plan");
    let combos: std::collections::HashSet<_> = p1.iter().map(|i| i.vars.clone()).collect();
    assert_eq!(combos.len(), 4);
}

#[test]
fn duplicate_seed_values_plan_once() {
    let p = plan(&spec("a = [\"1\", \"1\"]\nb = [\"x\"]", ""));
    assert_eq!(p.len(), 2);
}
