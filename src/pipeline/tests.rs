//! The stage loop's freshness rules, on a stand-in stage that copies one file to another.

use super::*;
use std::cell::Cell;

/// Copies `in.txt` to `out.txt` (upper-cased) and counts its runs.
struct Copy {
    runs: Cell<usize>,
    fail: Cell<bool>,
    short: Cell<bool>,
    setting: Cell<u32>,
}

impl Copy {
    fn new() -> Copy {
        Copy {
            runs: Cell::new(0),
            fail: Cell::new(false),
            short: Cell::new(false),
            setting: Cell::new(1),
        }
    }
}

impl Stage for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }
    fn inputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![cx.dir.path().join("in.txt")]
    }
    fn settings(&self, _: &Ctx<'_>) -> Result<String> {
        Ok(format!("setting={}", self.setting.get()))
    }
    fn outputs(&self, cx: &Ctx<'_>) -> Vec<PathBuf> {
        vec![
            cx.dir.path().join("out.txt"),
            cx.dir.path().join("out2.txt"),
        ]
    }
    fn run(&self, cx: &Ctx<'_>) -> Result<StageReport> {
        self.runs.set(self.runs.get() + 1);
        if self.fail.get() {
            return Err(Error::Model("failed on purpose".into()));
        }
        let t = std::fs::read_to_string(cx.dir.path().join("in.txt")).unwrap_or_default();
        std::fs::write(cx.dir.path().join("out.txt"), t.to_uppercase()).unwrap();
        std::fs::write(cx.dir.path().join("out2.txt"), "second").unwrap();
        Ok(StageReport {
            line: "copied".into(),
            shortfall: self
                .short
                .get()
                .then(|| Error::Shortfall("fell short".into())),
        })
    }
}

fn with_ctx(f: impl FnOnce(&dyn Fn() -> Result<Vec<StageOutcome>>, &Copy, &Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::parse(
        &tmp.path().join("s.toml"),
        format!(
            "[run]\nname = \"t\"\nout_dir = {:?}\n",
            tmp.path().display().to_string()
        ),
    )
    .unwrap();
    let dir = RunDir::new(tmp.path());
    let opts = RunOptions {
        runtime: crate::engine::Runtime::cpu(),
        fetch: FetchPolicy::Offline,
        progress: false,
        force: false,
        canaries: 0,
    };
    let stage = Copy::new();
    std::fs::write(tmp.path().join("in.txt"), "hello").unwrap();
    let cx = Ctx {
        spec: &spec,
        dir: &dir,
        opts: &opts,
    };
    let go = || run_stages(&[&stage as &dyn Stage], &cx, |_| {});
    f(&go, &stage, tmp.path());
}

#[test]
fn runs_once_then_skips_while_nothing_changed() {
    with_ctx(|go, stage, _| {
        let o = go().unwrap();
        assert!(!o[0].skipped);
        assert_eq!(o[0].line, "copied");
        let o = go().unwrap();
        assert!(o[0].skipped, "{}", o[0].line);
        assert_eq!(stage.runs.get(), 1);
    });
}

#[test]
fn a_changed_input_or_setting_runs_again() {
    with_ctx(|go, stage, dir| {
        go().unwrap();
        std::fs::write(dir.join("in.txt"), "changed").unwrap();
        assert!(!go().unwrap()[0].skipped);
        assert_eq!(
            std::fs::read_to_string(dir.join("out.txt")).unwrap(),
            "CHANGED"
        );
        stage.setting.set(2);
        assert!(!go().unwrap()[0].skipped);
        assert!(go().unwrap()[0].skipped);
        assert_eq!(stage.runs.get(), 3);
        // A missing input is an input too ("absent"), not an error of the loop.
        std::fs::remove_file(dir.join("in.txt")).unwrap();
        assert!(!go().unwrap()[0].skipped);
    });
}

#[test]
fn a_missing_or_edited_output_runs_again() {
    with_ctx(|go, stage, dir| {
        go().unwrap();
        // Any one of the outputs, not only the first.
        std::fs::remove_file(dir.join("out2.txt")).unwrap();
        assert!(!go().unwrap()[0].skipped);
        assert!(dir.join("out2.txt").exists());
        std::fs::write(dir.join("out.txt"), "edited by hand").unwrap();
        assert!(!go().unwrap()[0].skipped);
        assert_eq!(
            std::fs::read_to_string(dir.join("out.txt")).unwrap(),
            "HELLO"
        );
        assert_eq!(stage.runs.get(), 3);
        assert!(go().unwrap()[0].skipped);
    });
}

#[test]
fn a_failed_or_short_stage_is_not_marked_up_to_date() {
    with_ctx(|go, stage, _| {
        stage.fail.set(true);
        assert!(go().is_err());
        stage.fail.set(false);
        stage.short.set(true);
        assert!(matches!(go(), Err(Error::Shortfall(_))));
        assert!(
            matches!(go(), Err(Error::Shortfall(_))),
            "a shortfall reruns"
        );
        stage.short.set(false);
        assert!(!go().unwrap()[0].skipped);
        assert!(go().unwrap()[0].skipped);
        assert_eq!(stage.runs.get(), 4);
    });
}

#[test]
fn run_dir_names_every_file_and_asides_never_collide() {
    let d = RunDir::new("runs/x");
    assert_eq!(d.kept(), Path::new("runs/x/kept.jsonl"));
    assert_eq!(d.audited(), Path::new("runs/x/audited.jsonl"));
    assert_eq!(d.report_html(), Path::new("runs/x/report.html"));
    let a = RunDir::aside(&d.generated(), "not-in-plan");
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("generated.") && name.ends_with(".not-in-plan.jsonl"));
    assert_ne!(a, RunDir::aside(&d.generated(), "not-in-plan"));
}

#[test]
fn changing_the_blend_order_reruns_blend() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = |extra: &str| {
        Spec::parse(
            &tmp.path().join("s.toml"),
            format!(
                "[run]\nname = \"t\"\nout_dir = {:?}\n[[task]]\nname = \"q\"\ntemplate = \"x\"\n[blend]\n{extra}",
                tmp.path().display().to_string()
            ),
        )
        .unwrap()
    };
    let dir = RunDir::new(tmp.path().join("t"));
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(
        dir.audited(),
        "{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}], \"meta\": {\"difficulty\": 2}}\n",
    )
    .unwrap();
    let opts = RunOptions {
        runtime: crate::engine::Runtime::cpu(),
        fetch: FetchPolicy::Offline,
        progress: false,
        force: false,
        canaries: 0,
    };
    let all = stages();
    let blend: Vec<&dyn Stage> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| s.name() == "blend")
        .collect();
    let go = |s: &Spec| {
        let cx = Ctx {
            spec: s,
            dir: &dir,
            opts: &opts,
        };
        run_stages(&blend, &cx, |_| {}).unwrap()[0].skipped
    };
    let shuffled = spec("");
    assert!(!go(&shuffled));
    assert!(go(&shuffled));
    assert!(
        go(&spec("order = \"shuffled\"\n")),
        "the default, written out"
    );
    let curriculum = spec("order = \"curriculum\"\n");
    assert!(!go(&curriculum));
    assert!(go(&curriculum));
}
