//! `[[verifier]]`: programmatic checks, chosen by `kind`. Validation compiles what the
//! verify stage will compile (regexes, JSON Schemas), so a bad one fails at its spec line.

use super::Locator;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::Spanned;

/// `[[verifier]]`: one programmatic check, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierSpec {
    /// The response is JSON; `schema` is a JSON Schema file (relative to the spec).
    Json {
        #[serde(default)]
        schema: Option<String>,
    },
    Regex {
        #[serde(default)]
        must_match: Vec<String>,
        #[serde(default)]
        must_not_match: Vec<String>,
    },
    Length {
        #[serde(default = "default_length_unit")]
        unit: LengthUnit,
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
    },
    /// Final answer vs a record field (`reference`, dotted path) and/or the majority of
    /// the samples that share the prompt (`self_consistency`).
    MathAnswer {
        #[serde(default)]
        reference: Option<String>,
        #[serde(default)]
        self_consistency: bool,
    },
    Repetition {
        #[serde(default = "default_rep_n")]
        n: usize,
        #[serde(default = "default_rep_share")]
        max_share: f64,
    },
    Refusal {},
    Language {
        #[serde(default = "default_letter_share")]
        min_letter_share: f64,
    },
    /// The answer's Python code run with tests from the record (a dotted path), in a
    /// sandboxed process; with `entry_point` (a record path too), HumanEval-style
    /// `check(candidate)` tests.
    PythonTests {
        tests: String,
        #[serde(default)]
        entry_point: Option<String>,
        /// The interpreter, looked up on `/usr/local/bin:/usr/bin:/bin`.
        #[serde(default = "default_python")]
        python: String,
        #[serde(flatten)]
        limits: ExecLimits,
    },
    /// The answer's SQL query run on an SQLite database built from `database` (a schema +
    /// data script), its rows compared with those of the record's gold query.
    Sql {
        database: String,
        gold: String,
        #[serde(default = "default_sql_timeout")]
        timeout_s: f64,
    },
    /// The answer's code written to `file` (plus the record's `tests`, if named) and
    /// `command` run on it (`{file}` in an argument is replaced by the file name).
    Exec {
        command: Vec<String>,
        file: String,
        /// Fence tags that mark the code block to run (`["javascript", "js"]`).
        #[serde(default)]
        languages: Vec<String>,
        #[serde(default)]
        tests: Option<String>,
        #[serde(flatten)]
        limits: ExecLimits,
    },
}

fn default_sql_timeout() -> f64 {
    5.0
}

/// The limits of an executing verifier (`python_tests`, `exec`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ExecLimits {
    /// Wall-clock seconds per run.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// CPU seconds per run (default: the timeout, rounded up).
    #[serde(default)]
    pub cpu_s: Option<u64>,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default = "default_file_mb")]
    pub file_mb: u64,
    #[serde(default = "default_processes")]
    pub processes: u64,
    /// Runs at once (default: the CPU cores).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Run without a network namespace where the kernel refuses one.
    #[serde(default)]
    pub allow_unsandboxed: bool,
}

fn default_python() -> String {
    "python3".into()
}
fn default_timeout() -> f64 {
    10.0
}
fn default_memory_mb() -> u64 {
    512
}
fn default_file_mb() -> u64 {
    16
}
fn default_processes() -> u64 {
    32
}

impl ExecLimits {
    fn check(&self) -> std::result::Result<(), String> {
        if !(self.timeout_s > 0.0 && self.timeout_s <= 3600.0) {
            return Err(format!(
                "timeout_s = {} must be in (0, 3600]",
                self.timeout_s
            ));
        }
        if self.memory_mb < 16 || self.memory_mb > 1 << 20 {
            return Err(format!(
                "memory_mb = {} must be in [16, 1048576]",
                self.memory_mb
            ));
        }
        if self.processes == 0 || self.processes > 4096 {
            return Err(format!(
                "processes = {} must be in [1, 4096]",
                self.processes
            ));
        }
        if self.file_mb == 0 {
            return Err("file_mb must be at least 1".into());
        }
        if self.workers == Some(0) {
            return Err("workers must be at least 1".into());
        }
        Ok(())
    }
}

/// What a length verifier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Chars,
    Words,
}

fn default_length_unit() -> LengthUnit {
    LengthUnit::Words
}
fn default_rep_n() -> usize {
    4
}
fn default_rep_share() -> f64 {
    0.3
}
fn default_letter_share() -> f64 {
    0.5
}

impl VerifierSpec {
    /// Whether the verify stage can build this verifier: the `Err` is the reason (the
    /// caller places it at the spec line, or names the verifier). Files are relative to
    /// `base_dir`.
    pub fn check(&self, base_dir: &Path) -> std::result::Result<(), String> {
        match self {
            VerifierSpec::Json { schema: Some(f) } => {
                load_schema(&base_dir.join(f))?;
            }
            VerifierSpec::Json { schema: None }
            | VerifierSpec::Refusal {}
            | VerifierSpec::Language { .. } => {}
            VerifierSpec::Regex {
                must_match,
                must_not_match,
            } => {
                if must_match.is_empty() && must_not_match.is_empty() {
                    return Err("regex verifier needs must_match or must_not_match".into());
                }
                for p in must_match.iter().chain(must_not_match) {
                    compile_regex(p)?;
                }
            }
            VerifierSpec::Length { min, max, .. } => {
                if let (Some(a), Some(b)) = (min, max) {
                    if a > b {
                        return Err(format!("length: min {a} > max {b}"));
                    }
                }
            }
            VerifierSpec::MathAnswer {
                reference,
                self_consistency,
            } => {
                if reference.is_none() && !self_consistency {
                    return Err(
                        "math_answer needs `reference = \"field.path\"` or `self_consistency = true`"
                            .into(),
                    );
                }
            }
            VerifierSpec::PythonTests {
                tests,
                python,
                limits,
                ..
            } => {
                if tests.trim().is_empty() || python.trim().is_empty() {
                    return Err("python_tests needs `tests = \"record.path\"` (e.g. meta.vars.tests) and a `python`".into());
                }
                limits.check()?;
            }
            VerifierSpec::Exec {
                command,
                file,
                limits,
                ..
            } => {
                if command.is_empty() || command[0].trim().is_empty() {
                    return Err("exec needs `command = [\"program\", \"{file}\"]`".into());
                }
                if file.is_empty()
                    || file.starts_with('.')
                    || !file
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    return Err(format!("exec: `file = {file:?}` must be a plain file name (letters, digits, '.', '_', '-')"));
                }
                limits.check()?;
            }
            VerifierSpec::Sql {
                database,
                gold,
                timeout_s,
            } => {
                if gold.trim().is_empty() {
                    return Err("sql needs `gold = \"record.path\"` (e.g. meta.vars.gold)".into());
                }
                if !(*timeout_s > 0.0 && *timeout_s <= 3600.0) {
                    return Err(format!("timeout_s = {timeout_s} must be in (0, 3600]"));
                }
                let path = base_dir.join(database);
                let script = std::fs::read_to_string(&path).map_err(|e| {
                    format!("cannot read the database script {}: {e}", path.display())
                })?;
                let c = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
                c.execute_batch(&script).map_err(|e| {
                    format!(
                        "the database script {} fails in SQLite: {e}",
                        path.display()
                    )
                })?;
            }
            VerifierSpec::Repetition { n, max_share } => {
                if *n == 0 || !(0.0..=1.0).contains(max_share) {
                    return Err("repetition: n ≥ 1 and 0 ≤ max_share ≤ 1".into());
                }
            }
        }
        Ok(())
    }
}

/// A verifier's regex, or why it does not compile.
pub fn compile_regex(p: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(p).map_err(|e| format!("regex {p:?} does not compile: {e}"))
}

/// A JSON Schema file, compiled, or why it cannot be.
pub fn load_schema(path: &Path) -> std::result::Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JSON Schema {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&v)
        .map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// Checks every verifier at its spec line.
pub(super) fn validate(
    raw: &[Spanned<VerifierSpec>],
    loc: &Locator<'_>,
) -> Result<Vec<VerifierSpec>> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            v.get_ref()
                .check(loc.base_dir())
                .map_err(|e| loc.err(v.span(), &format!("verifier[{i}]"), e))?;
            Ok(v.get_ref().clone())
        })
        .collect()
}
