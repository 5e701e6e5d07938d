//! Verifiers that run the answer: `python_tests` (the answer's code with tests taken from
//! the record, HumanEval style) and `exec` (any command, for other languages). Each run is
//! one sandboxed process ([`super::sandbox`]); a chunk's runs go in parallel on a bounded
//! pool of workers.

use super::sandbox::{self, Limits, Outcome};
use super::verifiers::{lookup, Input, Verdict, Verifier};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The code in an answer: the last fenced block tagged with one of `langs`, else the last
/// untagged one, else the last fenced block, else the whole answer.
pub fn extract_code(text: &str, langs: &[&str]) -> String {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (tag, body) = match after.find('\n') {
            Some(nl) => (after[..nl].trim().to_ascii_lowercase(), &after[nl + 1..]),
            None => break,
        };
        match body.find("```") {
            Some(end) => {
                blocks.push((tag, body[..end].to_string()));
                rest = &body[end + 3..];
            }
            // An unclosed fence (the answer ran out of tokens): take what is there.
            None => {
                blocks.push((tag, body.to_string()));
                break;
            }
        }
    }
    let tagged = blocks
        .iter()
        .rev()
        .find(|(t, _)| langs.iter().any(|l| t == l));
    let untagged = blocks.iter().rev().find(|(t, _)| t.is_empty());
    match tagged.or(untagged).or(blocks.last()) {
        Some((_, b)) => b.clone(),
        None => text.to_string(),
    }
}

/// What one run needs: the files of its directory, and the command.
struct Job {
    argv: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
}

/// Settings shared by the executing verifiers.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub limits: Limits,
    /// Runs at once.
    pub workers: usize,
    pub allow_unsandboxed: bool,
}

/// Runs `jobs` on `workers` threads; an `Err` job (nothing to run) is its own verdict.
fn run_all(jobs: Vec<Result<Job, Verdict>>, s: &ExecSettings) -> Vec<Verdict> {
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Verdict>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|sc| {
        for _ in 0..s.workers.max(1).min(jobs.len().max(1)) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let v = match job {
                    Err(v) => v.clone(),
                    Ok(j) => {
                        let files: Vec<(&str, &[u8])> = j
                            .files
                            .iter()
                            .map(|(n, b)| (n.as_str(), b.as_slice()))
                            .collect();
                        verdict(sandbox::run(
                            &j.argv,
                            &files,
                            &s.limits,
                            s.allow_unsandboxed,
                        ))
                    }
                };
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(v);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Verdict::fail("not run"))
        })
        .collect()
}

fn verdict(r: sandbox::RunResult) -> Verdict {
    let outcome = r.outcome.name();
    let mut v = if r.outcome == Outcome::Pass {
        Verdict::pass()
    } else {
        Verdict::fail(format!("{outcome}: {}", r.detail))
    };
    v.outcome = Some(outcome.to_string());
    if !r.tail.is_empty() {
        v.stderr = Some(r.tail);
    }
    v
}

/// A record field as text (numbers and other JSON written out).
fn field(record: &serde_json::Value, path: &str) -> Option<String> {
    lookup(record, path).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `kind = "python_tests"`: the answer's Python code, then the record's tests, run as one
/// script; with `entry_point`, the tests define `check(candidate)` and are called with
/// that function (HumanEval's shape).
pub struct PythonTests {
    /// Record path of the tests (`meta.vars.tests`, `meta.steps.tests`).
    pub tests: String,
    /// Record path of the function name to pass to `check`, if the tests use one.
    pub entry_point: Option<String>,
    pub python: String,
    pub settings: ExecSettings,
}

impl PythonTests {
    fn job(&self, i: &Input<'_>) -> Result<Job, Verdict> {
        let tests = field(i.record, &self.tests)
            .ok_or_else(|| Verdict::fail(format!("record has no tests field {:?}", self.tests)))?;
        let code = extract_code(i.response, &["python", "py", "python3"]);
        if code.trim().is_empty() {
            return Err(Verdict::fail("no code in the answer"));
        }
        let mut script = format!("{code}\n\n\n{tests}\n");
        if let Some(path) = &self.entry_point {
            let name = field(i.record, path).ok_or_else(|| {
                Verdict::fail(format!("record has no entry point field {path:?}"))
            })?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(Verdict::fail(format!(
                    "entry point {name:?} is not a Python name"
                )));
            }
            script.push_str(&format!("\n\ncheck({name})\n"));
        }
        Ok(Job {
            argv: vec![
                self.python.clone(),
                "-I".into(),
                "-B".into(),
                "solution_test.py".into(),
            ],
            files: vec![("solution_test.py".into(), script.into_bytes())],
        })
    }
}

impl Verifier for PythonTests {
    fn name(&self) -> &str {
        "python_tests"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        self.check_many(std::slice::from_ref(i)).remove(0)
    }
    fn check_many(&self, inputs: &[Input<'_>]) -> Vec<Verdict> {
        run_all(inputs.iter().map(|i| self.job(i)).collect(), &self.settings)
    }
}

/// `kind = "exec"`: the answer's code written to `file`, the record's tests (if any)
/// appended, then `command` run (`{file}` in it is the file name); exit 0 passes.
pub struct Exec {
    pub command: Vec<String>,
    pub file: String,
    /// Fence tags that mark the code block to take (e.g. `["javascript", "js"]`).
    pub languages: Vec<String>,
    pub tests: Option<String>,
    pub settings: ExecSettings,
}

impl Exec {
    fn job(&self, i: &Input<'_>) -> Result<Job, Verdict> {
        let langs: Vec<&str> = self.languages.iter().map(String::as_str).collect();
        let mut code = extract_code(i.response, &langs);
        if code.trim().is_empty() {
            return Err(Verdict::fail("no code in the answer"));
        }
        if let Some(path) = &self.tests {
            let tests = field(i.record, path)
                .ok_or_else(|| Verdict::fail(format!("record has no tests field {path:?}")))?;
            code = format!("{code}\n\n{tests}\n");
        }
        Ok(Job {
            argv: self
                .command
                .iter()
                .map(|a| a.replace("{file}", &self.file))
                .collect(),
            files: vec![(self.file.clone(), code.into_bytes())],
        })
    }
}

impl Verifier for Exec {
    fn name(&self) -> &str {
        "exec"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        self.check_many(std::slice::from_ref(i)).remove(0)
    }
    fn check_many(&self, inputs: &[Input<'_>]) -> Vec<Verdict> {
        run_all(inputs.iter().map(|i| self.job(i)).collect(), &self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_are_found_by_language_then_last() {
        let t = "Here:\n```python\ndef f():\n    return 1\n```\nand a test\n```\nprint(f())\n```";
        assert_eq!(extract_code(t, &["python"]), "def f():\n    return 1\n");
        let t = "```js\nx\n```\n```python\ny\n```\n```js\nz\n```";
        assert_eq!(extract_code(t, &["python"]), "y\n");
        assert_eq!(extract_code("def f(): pass", &["python"]), "def f(): pass");
        assert_eq!(extract_code("```python\ndef f(", &["python"]), "def f(");
    }
}
