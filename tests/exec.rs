//! Truth by execution: the `python_tests` verifier tells correct solutions from subtly
//! wrong ones through the real CLI, and the sandbox contains code that opens sockets,
//! writes outside its directory, forks without bound, allocates 10 GB, sleeps forever or
//! reads the environment — leaving the machine and the run directory as they were.
//! Where this machine lacks an isolation layer, the check that needs it says SKIPPED.

mod common;

use common::{flywheel, run, stderr, stdout};
use flywheel::verify::sandbox::{self, Isolation, Limits, Outcome};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn py(script: &str, limits: &Limits) -> sandbox::RunResult {
    sandbox::run(
        &["python3".into(), "-I".into(), "main.py".into()],
        &[("main.py", script.as_bytes())],
        limits,
        false,
    )
}

fn short() -> Limits {
    Limits {
        timeout: Duration::from_secs(5),
        cpu_seconds: 5,
        ..Limits::default()
    }
}

/// Every file under `dir` with its length: what "untouched" is compared on.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.display().to_string(),
                    e.metadata().map(|m| m.len()).unwrap_or(0),
                ));
            }
        }
    }
    out.sort();
    out
}

fn network_or_skip(what: &str) -> bool {
    let iso = Isolation::get();
    eprintln!("sandbox here: {}", iso.describe());
    if !iso.network {
        eprintln!("SKIPPED ({what}): this machine refuses a network namespace, so the executing verifiers refuse to run (tested below)");
    }
    iso.network
}

/// [`network_or_skip`], and a `python3` the sandbox can run (on /usr/local/bin:/usr/bin:/bin).
fn python_or_skip(what: &str) -> bool {
    if !network_or_skip(what) {
        return false;
    }
    let r = py("print('ok')\n", &short());
    if r.outcome != Outcome::Pass {
        eprintln!("SKIPPED ({what}): no python3 the sandbox can run here: {r:?}");
        return false;
    }
    true
}

#[test]
fn sockets_are_refused_even_to_a_server_on_this_machine() {
    if !python_or_skip("sockets") {
        return;
    }
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let r = py(
        &format!(
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED local')\nexcept OSError as e:\n    print('refused local', e)\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('CONNECTED remote')\nexcept OSError as e:\n    print('refused remote', e)\n"
        ),
        &short(),
    );
    assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
    assert!(
        r.tail.contains("refused local") && r.tail.contains("refused remote"),
        "{r:?}"
    );
    assert!(!r.tail.contains("CONNECTED"), "{r:?}");
    server.set_nonblocking(true).unwrap();
    assert!(server.accept().is_err(), "nothing reached the server");
}

#[test]
fn writes_outside_the_run_directory_fail() {
    if !python_or_skip("writes") {
        return;
    }
    let iso = Isolation::get();
    let outside = tempfile::tempdir().unwrap();
    let before = listing(outside.path());
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let tmp_escape = std::env::temp_dir().join(format!("flywheel-escape-{}", std::process::id()));
    let script = format!(
        "import os\nfor p in [{v:?}, {n:?}, {t:?}]:\n    try:\n        open(p, 'w').write('x')\n        print('WROTE', p)\n    except OSError as e:\n        print('denied', p, e)\nopen('inside.txt', 'w').write('fine')\nprint('inside ok')\n",
        v = victim.display().to_string(),
        n = outside.path().join("new.txt").display().to_string(),
        t = tmp_escape.display().to_string(),
    );
    let r = py(&script, &short());
    assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
    assert!(
        r.tail.contains("inside ok"),
        "its own directory is writable: {r:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!outside.path().join("new.txt").exists());
    let mut after = listing(outside.path());
    after.retain(|(p, _)| !p.ends_with("victim.txt"));
    assert_eq!(before, after);
    if iso.landlock > 0 {
        assert!(
            !tmp_escape.exists(),
            "Landlock keeps writes in the run's directory: {r:?}"
        );
    } else {
        eprintln!(
            "SKIPPED (/tmp): no Landlock here, so the run's uid may write to world-writable /tmp"
        );
        let _ = std::fs::remove_file(&tmp_escape);
    }
}

#[test]
fn a_fork_bomb_is_bounded_and_leaves_nothing_running() {
    if !python_or_skip("fork bomb") {
        return;
    }
    let marker = format!("bomb{}", std::process::id());
    // Forks without bound, and one child leaves the process group to sleep on.
    let script = format!(
        "import os, time\n# {marker}\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(10 ** 6)\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n"
    );
    let t = Instant::now();
    let file = format!("{marker}.py");
    let r = sandbox::run(
        &["python3".into(), "-I".into(), file.clone()],
        &[(file.as_str(), script.as_bytes())],
        &Limits {
            timeout: Duration::from_secs(3),
            ..short()
        },
        false,
    );
    assert_ne!(r.outcome, Outcome::Pass, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    // No process of the run is left (their command lines hold the script's own name).
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.contains(&file))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn ten_gigabytes_sleeping_forever_and_the_environment() {
    if !python_or_skip("memory, sleep, environment") {
        return;
    }
    let r = py(
        "b = bytearray(10 * 1024 ** 3)\nprint('ALLOCATED')\n",
        &short(),
    );
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    assert!(
        r.tail.contains("MemoryError") && !r.tail.contains("ALLOCATED"),
        "{r:?}"
    );

    let t = Instant::now();
    let r = py(
        "import time\ntime.sleep(10 ** 6)\n",
        &Limits {
            timeout: Duration::from_secs(2),
            ..short()
        },
    );
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let r = py(
        "import os\nprint(sorted(os.environ))\nprint(os.environ.get('FLYWHEEL_HOME', 'no home'))\n",
        &short(),
    );
    assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
    // The test process has FLYWHEEL_HOME (and CARGO_*, PATH to the toolchain...): none of
    // it reaches the code.
    assert!(r.tail.contains("no home"), "{r:?}");
    assert!(!r.tail.contains("CARGO"), "{r:?}");
}

/// HumanEval-style items: each with a correct and a subtly wrong solution, plus code that
/// does not compile and code that never ends.
fn items() -> Vec<Value> {
    let median_tests = "def check(candidate):\n    assert candidate([3, 1, 2]) == 2\n    assert candidate([4, 1, 3, 2]) == 2.5\n    assert candidate([7]) == 7\n";
    let sum_tests = "def check(candidate):\n    assert candidate(1) == 1\n    assert candidate(4) == 10\n    assert candidate(0) == 0\n";
    let pal_tests = "def check(candidate):\n    assert candidate('Racecar')\n    assert candidate('')\n    assert not candidate('ab')\n";
    let mk = |id: &str, code: &str, tests: &str, entry: &str, label: &str| {
        json!({"id": id, "prompt": format!("Write {entry}."), "response": format!("Here it is:\n```python\n{code}```\n"),
               "label": label, "meta": {"vars": {"tests": tests, "entry_point": entry}}})
    };
    vec![
        mk("median-ok", "def median(l):\n    s = sorted(l)\n    n = len(s)\n    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n", median_tests, "median", "pass"),
        mk("median-even-bug", "def median(l):\n    s = sorted(l)\n    return s[len(s) // 2]\n", median_tests, "median", "fail"),
        mk("sum-ok", "def sum_to(n):\n    return sum(range(1, n + 1))\n", sum_tests, "sum_to", "pass"),
        mk("sum-off-by-one", "def sum_to(n):\n    return sum(range(1, n))\n", sum_tests, "sum_to", "fail"),
        mk("pal-ok", "def is_pal(s):\n    s = s.lower()\n    return s == s[::-1]\n", pal_tests, "is_pal", "pass"),
        mk("pal-case-bug", "def is_pal(s):\n    return s == s[::-1]\n", pal_tests, "is_pal", "fail"),
        mk("syntax", "def median(l)\n    return 1\n", median_tests, "median", "fail"),
        mk("forever", "def sum_to(n):\n    while True:\n        pass\n", sum_tests, "sum_to", "timeout"),
    ]
}

#[test]
fn python_tests_tells_correct_from_subtly_wrong_through_the_cli() {
    if !python_or_skip("python_tests") {
        // The verifier must refuse, naming the reason, rather than run unsandboxed.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("solutions.jsonl");
    let text: String = items().iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        r#"[run]
name = "x"

[[verifier]]
kind = "python_tests"
tests = "meta.vars.tests"
entry_point = "meta.vars.entry_point"
timeout_s = 3
workers = 2
"#,
    )
    .unwrap();
    let before = listing(dir.path());
    let out = dir.path().join("verified.jsonl");
    let t = Instant::now();
    let o = run(flywheel()
        .args(["verify", "-q"])
        .arg(&spec)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    eprintln!("8 solutions checked in {:.1?}", t.elapsed());
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let v = &r["scores"]["verifiers"]["python_tests"];
        let want = r["label"].as_str().unwrap();
        assert_eq!(v["outcome"], want, "{}: {v}", r["id"]);
        assert_eq!(v["pass"], want == "pass", "{}: {v}", r["id"]);
        if r["id"] == "median-even-bug" {
            assert!(
                v["stderr"].as_str().unwrap().contains("AssertionError"),
                "the stderr tail says why: {v}"
            );
        }
        if r["id"] == "syntax" {
            assert!(v["stderr"].as_str().unwrap().contains("SyntaxError"), "{v}");
        }
    }
    // The directory holds what it held, plus the output.
    let mut after = listing(dir.path());
    after.retain(|(p, _)| !p.ends_with("verified.jsonl"));
    assert_eq!(before, after);
}

#[test]
fn bad_executing_verifiers_fail_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    for (body, want) in [
        ("kind = \"python_tests\"\n", "tests"),
        (
            "kind = \"python_tests\"\ntests = \"t\"\ntimeout_s = 0\n",
            "timeout_s",
        ),
        (
            "kind = \"python_tests\"\ntests = \"t\"\ntimout_s = 3\n",
            "timout_s",
        ),
        (
            "kind = \"exec\"\ncommand = []\nfile = \"a.js\"\n",
            "command",
        ),
        (
            "kind = \"exec\"\ncommand = [\"node\", \"{file}\"]\nfile = \"../a.js\"\n",
            "file",
        ),
    ] {
        let spec = dir.path().join("spec.toml");
        std::fs::write(
            &spec,
            format!("[run]\nname = \"x\"\n\n[[verifier]]\n{body}"),
        )
        .unwrap();
        let o = run(flywheel()
            .args(["verify", "-q"])
            .arg(&spec)
            .arg("--input")
            .arg(&spec));
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains("spec.toml:") && e.contains(want),
            "{body}: {e}"
        );
    }
}

/// The shipped examples, end to end with the real SmolLM2: Python functions checked by
/// their tests, and text-to-SQL checked against the shop database. The verdicts are
/// re-derived here (SQL rows by rusqlite directly), and only passing records are kept.
#[test]
fn code_and_sql_examples_run_end_to_end() {
    if !python_or_skip("examples") {
        return;
    }
    common::model_file("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for f in [
        "code-exec.toml",
        "sql.toml",
        "seeds/python-problems.jsonl",
        "seeds/sql-questions.jsonl",
        "sql/shop.sql",
        "grammars/sql.lark",
    ] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), to).unwrap();
    }
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for (name, key) in [("code-exec", "python_tests"), ("sql", "sql")] {
        let o = run(flywheel()
            .current_dir(dir.path())
            .args(["run", "-q", "--device", "cpu"])
            .arg(format!("{name}.toml")));
        assert!(o.status.success(), "{name}: {}\n{}", stdout(&o), stderr(&o));
        let rd = dir.path().join("runs").join(name);
        let verified = read(&rd.join("verified.jsonl"));
        assert_eq!(verified.len(), 32, "8 problems × 4 samples");
        let passed = verified
            .iter()
            .filter(|r| r["scores"]["verifiers"][key]["pass"] == true)
            .count();
        eprintln!("{name}: {passed} of 32 samples pass {key}");
        assert!(passed > 0, "{name}: no sample passed");
        for r in read(&rd.join("dataset.jsonl")) {
            assert_eq!(r["scores"]["verifiers"][key]["pass"], true, "{r}");
        }
        if name == "sql" {
            let db = rusqlite::Connection::open_in_memory().unwrap();
            db.execute_batch(&std::fs::read_to_string(root.join("sql/shop.sql")).unwrap())
                .unwrap();
            let rows = |q: &str| -> Option<Vec<String>> {
                let mut st = db.prepare(q).ok()?;
                let n = st.column_count();
                let mut out: Vec<String> = st
                    .query_map([], |r| {
                        Ok((0..n)
                            .map(|k| format!("{:?}", r.get_ref(k).unwrap()))
                            .collect::<Vec<_>>()
                            .join("|"))
                    })
                    .ok()?
                    .collect::<Result<_, _>>()
                    .ok()?;
                out.sort();
                Some(out)
            };
            for r in &verified {
                let q = r["messages"][1]["content"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches(';');
                let gold = r["meta"]["steps"]["gold"].as_str().unwrap();
                let same = rows(q).is_some() && rows(q) == rows(gold);
                // Where the gold orders its rows the verifier also compares the order;
                // as a multiset it must agree whenever it passed.
                if r["scores"]["verifiers"]["sql"]["pass"] == true {
                    assert!(same, "passed but the rows differ: {r}");
                } else if !gold.contains("ORDER BY") {
                    assert!(!same, "failed but the rows agree: {r}");
                }
            }
        }
    }
}

/// `kind = "exec"`: any language through a command template; here POSIX shell, with the
/// record's tests appended to the answer's ```sh block.
#[test]
fn exec_runs_other_languages_through_a_command_template() {
    if !network_or_skip("exec") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tests = "[ \"$(double 4)\" = 8 ] || { echo 'double 4 is not 8' >&2; exit 1; }\n";
    let recs = [
        ("ok", "```sh\ndouble() { echo $(( $1 * 2 )); }\n```", "pass"),
        (
            "wrong",
            "```sh\ndouble() { echo $(( $1 + 2 )); }\n```",
            "fail",
        ),
        (
            "other-block",
            "```python\nprint(1)\n```\n```sh\ndouble() { echo 8; }\n```",
            "pass",
        ),
    ];
    let text: String = recs
        .iter()
        .map(|(id, resp, want)| {
            format!(
                "{}\n",
                json!({"id": id, "prompt": "Write double in sh.", "response": resp, "want": want,
                       "meta": {"vars": {"tests": tests}}})
            )
        })
        .collect();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, text).unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[run]\nname = \"x\"\n\n[[verifier]]\nkind = \"exec\"\ncommand = [\"sh\", \"{file}\"]\nfile = \"main.sh\"\nlanguages = [\"sh\", \"bash\"]\ntests = \"meta.vars.tests\"\ntimeout_s = 3\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let o = run(flywheel()
        .args(["verify", "-q"])
        .arg(&spec)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let v = &r["scores"]["verifiers"]["exec"];
        assert_eq!(v["outcome"], r["want"], "{}: {v}", r["id"]);
        if r["id"] == "wrong" {
            assert!(
                v["stderr"].as_str().unwrap().contains("double 4 is not 8"),
                "{v}"
            );
        }
    }
}

/// The SQL database file is part of what made a verdict: edit it and `verify` checks the
/// records again. A missing interpreter fails the stage, naming it, not every record.
#[test]
fn editing_the_database_rescores_and_a_missing_interpreter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db.sql"),
        "CREATE TABLE t(id INTEGER, name TEXT); INSERT INTO t VALUES (1, 'pen');",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n",
            json!({"id": "a", "prompt": "Name of item 1?", "response": "SELECT 'pen'",
                   "meta": {"vars": {"gold": "SELECT name FROM t WHERE id = 1"}}})
        ),
    )
    .unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[run]\nname = \"x\"\n\n[[verifier]]\nkind = \"sql\"\ndatabase = \"db.sql\"\ngold = \"meta.vars.gold\"\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let verdict = || -> Value {
        let o = run(flywheel()
            .args(["verify", "-q"])
            .arg(&spec)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out));
        assert!(o.status.success(), "{}", stderr(&o));
        let line = std::fs::read_to_string(&out).unwrap();
        let r: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        r["scores"]["verifiers"]["sql"].clone()
    };
    assert_eq!(verdict()["pass"], true);
    std::fs::write(
        dir.path().join("db.sql"),
        "CREATE TABLE t(id INTEGER, name TEXT); INSERT INTO t VALUES (1, 'pencil');",
    )
    .unwrap();
    assert_eq!(verdict()["pass"], false, "the edited database must be used");

    if !network_or_skip("missing interpreter") {
        return;
    }
    std::fs::write(
        &spec,
        "[run]\nname = \"x\"\n\n[[verifier]]\nkind = \"python_tests\"\ntests = \"meta.vars.gold\"\npython = \"python-nope\"\n",
    )
    .unwrap();
    let o = run(flywheel()
        .args(["verify", "-q"])
        .arg(&spec)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o2.jsonl")));
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("python-nope"), "{e}");
}
