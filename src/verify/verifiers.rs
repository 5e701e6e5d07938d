//! Programmatic verifiers: hard truth where it exists. Each returns pass/fail and a reason
//! a person can act on; none panics on any input.

use crate::spec::{compile_regex, load_schema, LengthUnit, VerifierSpec};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// What a verifier looks at.
pub struct Input<'a> {
    pub prompt: &'a str,
    pub response: &'a str,
    /// The whole record, for reference fields.
    pub record: &'a serde_json::Value,
}

/// A verifier's finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An executing verifier's outcome: `pass`, `fail`, `timeout` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The tail of a run's stderr (its stdout when stderr was empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

impl Verdict {
    pub fn pass() -> Self {
        Verdict {
            pass: true,
            reason: None,
            outcome: None,
            stderr: None,
        }
    }
    pub fn fail(reason: impl Into<String>) -> Self {
        Verdict {
            pass: false,
            reason: Some(reason.into()),
            outcome: None,
            stderr: None,
        }
    }
}

/// A programmatic check of one record.
pub trait Verifier: Send + Sync {
    /// The key under `scores.verifiers`.
    fn name(&self) -> &str;
    fn check(&self, input: &Input<'_>) -> Verdict;
    /// Many records at once: verifiers that run code override this to run them in
    /// parallel.
    fn check_many(&self, inputs: &[Input<'_>]) -> Vec<Verdict> {
        inputs.iter().map(|i| self.check(i)).collect()
    }
}

/// The response parses as JSON (a ```json fence is allowed) and, optionally, fits a schema.
pub struct Json {
    pub schema: Option<jsonschema::Validator>,
}

impl Verifier for Json {
    fn name(&self) -> &str {
        "json"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let text = strip_fence(i.response.trim());
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Verdict::fail(format!("not valid JSON: {e}")),
        };
        if let Some(schema) = &self.schema {
            if let Some(err) = schema.iter_errors(&v).next() {
                return Verdict::fail(format!(
                    "JSON does not fit the schema at {}: {err}",
                    err.instance_path()
                ));
            }
        }
        Verdict::pass()
    }
}

fn strip_fence(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else {
        return s;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.trim_start_matches([' ', '\t'])
        .trim_start_matches('\n')
        .trim_end()
        .strip_suffix("```")
        .unwrap_or(rest)
        .trim()
}

/// Patterns the response must and must not match.
pub struct Pattern {
    pub must_match: Vec<Regex>,
    pub must_not_match: Vec<Regex>,
}

impl Verifier for Pattern {
    fn name(&self) -> &str {
        "regex"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        if let Some(r) = self.must_match.iter().find(|r| !r.is_match(i.response)) {
            return Verdict::fail(format!("does not match /{}/", r.as_str()));
        }
        if let Some(r) = self.must_not_match.iter().find(|r| r.is_match(i.response)) {
            return Verdict::fail(format!("matches forbidden /{}/", r.as_str()));
        }
        Verdict::pass()
    }
}

/// Length bounds in characters or words.
pub struct Length {
    pub unit: LengthUnit,
    pub min: Option<usize>,
    pub max: Option<usize>,
}

impl Verifier for Length {
    fn name(&self) -> &str {
        "length"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let n = match self.unit {
            LengthUnit::Chars => i.response.chars().count(),
            LengthUnit::Words => i.response.split_whitespace().count(),
        };
        let unit = if self.unit == LengthUnit::Chars {
            "chars"
        } else {
            "words"
        };
        match (self.min, self.max) {
            (Some(lo), _) if n < lo => Verdict::fail(format!("{n} {unit} < min {lo}")),
            (_, Some(hi)) if n > hi => Verdict::fail(format!("{n} {unit} > max {hi}")),
            _ => Verdict::pass(),
        }
    }
}

/// Share of repeated word n-grams: catches loops and degenerate text.
pub struct Repetition {
    pub n: usize,
    pub max_share: f64,
}

impl Verifier for Repetition {
    fn name(&self) -> &str {
        "repetition"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let share = repeated_ngram_share(i.response, self.n);
        if share > self.max_share {
            Verdict::fail(format!(
                "{:.0}% of {}-grams are repeats (max {:.0}%)",
                share * 100.0,
                self.n,
                self.max_share * 100.0
            ))
        } else {
            Verdict::pass()
        }
    }
}

/// 1 − distinct/total over lowercase word n-grams (0 for texts shorter than n words).
pub fn repeated_ngram_share(text: &str, n: usize) -> f64 {
    let words: Vec<String> = text.split_whitespace().map(|w| w.to_lowercase()).collect();
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let grams: Vec<&[String]> = words.windows(n).collect();
    let distinct: std::collections::HashSet<&[String]> = grams.iter().copied().collect();
    1.0 - distinct.len() as f64 / grams.len() as f64
}

/// Common refusal phrasings near the start of the response.
pub struct Refusal;

const REFUSALS: &[&str] = &[
    "i'm sorry, but",
    "i am sorry, but",
    "i'm sorry, i can",
    "sorry, but i can",
    "i cannot help",
    "i can't help",
    "i can't assist",
    "i cannot assist",
    "i cannot provide",
    "i can't provide",
    "i am unable to",
    "i'm unable to",
    "i won't be able to",
    "as an ai language model",
    "as an ai, i",
    "i'm not able to",
    "i must decline",
    "i cannot fulfill",
    "i can't fulfill",
];

impl Verifier for Refusal {
    fn name(&self) -> &str {
        "refusal"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let head: String = i
            .response
            .chars()
            .take(240)
            .collect::<String>()
            .to_lowercase()
            .replace('’', "'");
        match REFUSALS.iter().find(|p| head.contains(*p)) {
            Some(p) => Verdict::fail(format!("refusal: {p:?}")),
            None => Verdict::pass(),
        }
    }
}

/// Text that reads as language: enough letters, no control characters, no replacement
/// characters left by bad decoding, not empty.
pub struct Language {
    pub min_letter_share: f64,
}

impl Verifier for Language {
    fn name(&self) -> &str {
        "language"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let t = i.response;
        if t.trim().is_empty() {
            return Verdict::fail("empty response");
        }
        if let Some(c) = t
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Verdict::fail(format!("control character U+{:04X}", c as u32));
        }
        if t.contains('\u{FFFD}') {
            return Verdict::fail("contains U+FFFD (invalid UTF-8 was decoded)");
        }
        let visible: Vec<char> = t.chars().filter(|c| !c.is_whitespace()).collect();
        let letters = visible.iter().filter(|c| c.is_alphabetic()).count();
        let share = letters as f64 / visible.len() as f64;
        if share < self.min_letter_share {
            return Verdict::fail(format!(
                "only {:.0}% letters (min {:.0}%)",
                share * 100.0,
                self.min_letter_share * 100.0
            ));
        }
        Verdict::pass()
    }
}

/// The final answer (boxed, "the answer is …", or the last number) equals a reference
/// field of the record. Self-consistency (agreement with the majority of k samples) is
/// applied by the verify stage over groups, using [`extract_answer`].
pub struct MathAnswer {
    /// Dotted path into the record, e.g. `meta.vars.answer` or `answer`.
    pub reference: String,
}

impl Verifier for MathAnswer {
    fn name(&self) -> &str {
        "math_answer"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let Some(want) = lookup(i.record, &self.reference) else {
            return Verdict::fail(format!(
                "record has no reference field {:?}",
                self.reference
            ));
        };
        let want = match want {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(got) = extract_answer(i.response) else {
            return Verdict::fail("no final answer found");
        };
        if answers_equal(&got, &want) {
            Verdict::pass()
        } else {
            Verdict::fail(format!("answer {got:?} ≠ reference {want:?}"))
        }
    }
}

/// Builds a verifier from its spec entry (regexes compiled, schema loaded), or says why
/// it cannot be built (the spec's own check, [`VerifierSpec::check`], so the reasons are
/// the ones `Spec::parse` gives at the spec line). `MathAnswer` with only
/// `self_consistency` yields no per-record verifier: the verify stage applies it over
/// groups.
pub fn build(
    spec: &VerifierSpec,
    base_dir: &std::path::Path,
) -> Result<Option<Box<dyn Verifier>>, String> {
    use VerifierSpec as S;
    spec.check(base_dir)?;
    let compile = |p: &String| compile_regex(p);
    Ok(Some(match spec {
        S::Json { schema } => Box::new(Json {
            schema: schema
                .as_ref()
                .map(|f| load_schema(&base_dir.join(f)))
                .transpose()?,
        }),
        S::Regex {
            must_match,
            must_not_match,
        } => Box::new(Pattern {
            must_match: must_match.iter().map(compile).collect::<Result<_, _>>()?,
            must_not_match: must_not_match
                .iter()
                .map(compile)
                .collect::<Result<_, _>>()?,
        }),
        S::Length { unit, min, max } => Box::new(Length {
            unit: *unit,
            min: *min,
            max: *max,
        }),
        S::MathAnswer { reference, .. } => match reference {
            Some(r) => Box::new(MathAnswer {
                reference: r.clone(),
            }),
            // `check` made sure self-consistency is on.
            None => return Ok(None),
        },
        S::Repetition { n, max_share } => Box::new(Repetition {
            n: *n,
            max_share: *max_share,
        }),
        S::Refusal {} => Box::new(Refusal),
        S::PythonTests {
            tests,
            entry_point,
            python,
            limits,
        } => {
            let settings = exec_settings(limits)?;
            probe(&[python.clone(), "-c".into(), "pass".into()], &settings)?;
            Box::new(super::exec::PythonTests {
                tests: tests.clone(),
                entry_point: entry_point.clone(),
                python: python.clone(),
                settings,
            })
        }
        S::Sql {
            database,
            gold,
            timeout_s,
        } => {
            let path = base_dir.join(database);
            let script = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the database script {}: {e}", path.display()))?;
            Box::new(super::sql::Sql {
                script,
                gold: gold.clone(),
                timeout: std::time::Duration::from_secs_f64(*timeout_s),
            })
        }
        S::Exec {
            command,
            file,
            languages,
            tests,
            limits,
        } => {
            let settings = exec_settings(limits)?;
            // The program exists on the sandbox's PATH (or at its absolute path).
            probe(
                &[
                    "/bin/sh".into(),
                    "-c".into(),
                    "command -v \"$0\"".into(),
                    command[0].clone(),
                ],
                &settings,
            )?;
            Box::new(super::exec::Exec {
                command: command.clone(),
                file: file.clone(),
                languages: languages.clone(),
                tests: tests.clone(),
                settings,
            })
        }
        S::Language { min_letter_share } => Box::new(Language {
            min_letter_share: *min_letter_share,
        }),
    }))
}

/// Runs `argv` once in the sandbox, so that a missing interpreter (or a sandbox this
/// machine cannot set up) fails the stage with its reason instead of every record.
fn probe(argv: &[String], s: &super::exec::ExecSettings) -> Result<(), String> {
    let r = super::sandbox::run(argv, &[], &s.limits, s.allow_unsandboxed);
    if r.outcome == super::sandbox::Outcome::Pass {
        return Ok(());
    }
    Err(format!(
        "the verifier cannot run `{}` in its sandbox: {}{}",
        argv.join(" "),
        r.detail,
        if r.tail.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.tail)
        }
    ))
}

/// The sandbox settings of an executing verifier; refuses where the machine cannot
/// isolate the network and the spec did not allow that.
fn exec_settings(l: &crate::spec::ExecLimits) -> Result<super::exec::ExecSettings, String> {
    let iso = super::sandbox::Isolation::get();
    if !iso.network && !l.allow_unsandboxed {
        return Err(format!(
            "this verifier runs generated code, and this machine refuses a network namespace (so the code could reach the network); set `allow_unsandboxed = true` on the verifier to run it anyway. Sandbox here: {}",
            iso.describe()
        ));
    }
    let timeout = std::time::Duration::from_secs_f64(l.timeout_s);
    Ok(super::exec::ExecSettings {
        limits: super::sandbox::Limits {
            timeout,
            cpu_seconds: l.cpu_s.unwrap_or(l.timeout_s.ceil() as u64).max(1),
            memory_bytes: l.memory_mb << 20,
            file_bytes: l.file_mb << 20,
            processes: l.processes,
        },
        workers: l
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        allow_unsandboxed: l.allow_unsandboxed,
    })
}

/// Follows a dotted path (`meta.vars.answer`) into a JSON value.
pub fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// The final answer in a solution text: the last `\boxed{…}`, else the text after the last
/// "answer is"/"answer:", else the last number.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(pos) = text.rfind("\\boxed{") {
        let rest = &text[pos + 7..];
        let mut depth = 1;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(rest[..i].trim().to_string());
                    }
                }
                _ => {}
            }
        }
    }
    for key in ["answer is", "answer:"] {
        if let Some(pos) = rfind_ascii_ci(text, key) {
            let tail = &text[pos + key.len()..];
            if let Some(n) = numbers(tail).into_iter().next() {
                return Some(n);
            }
            let word = tail
                .trim()
                .trim_end_matches(['.', '!'])
                .split(['\n', ','])
                .next()
                .unwrap_or("")
                .trim();
            if !word.is_empty() {
                return Some(word.to_string());
            }
        }
    }
    numbers(text).pop()
}

/// The last byte offset of ASCII `key` in `text`, ignoring ASCII case. Searched in `text`
/// itself: an offset found in `text.to_lowercase()` is not one in `text` (`İ` grows from
/// two bytes to three), and slicing with it panics.
fn rfind_ascii_ci(text: &str, key: &str) -> Option<usize> {
    let (t, k) = (text.as_bytes(), key.as_bytes());
    // An ASCII byte never occurs inside a multi-byte UTF-8 sequence, so a match of an
    // ASCII key starts and ends on character boundaries.
    (0..=t.len().checked_sub(k.len())?)
        .rev()
        .find(|&i| t[i..i + k.len()].eq_ignore_ascii_case(k))
}

/// Numbers in text: integers, decimals, thousands separators, fractions, a sign.
fn numbers(text: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*-?\d+(?:\.\d+)?)?|-?\.\d+",
        )
        .expect("valid regex")
    });
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// Compares answers as numbers when both parse (fractions, decimals, commas, `$`, `%`,
/// `\frac{a}{b}`), else as normalized text.
pub fn answers_equal(a: &str, b: &str) -> bool {
    match (parse_number(a), parse_number(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => normalize_text(a) == normalize_text(b),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let mut t = s
        .trim()
        .trim_end_matches('.')
        .replace(['$', ' '], "")
        .replace("\\%", "")
        .replace('%', "");
    t = t.replace("\\!", "");
    if let Some(inner) = t
        .strip_prefix("\\frac{")
        .or_else(|| t.strip_prefix("\\dfrac{"))
    {
        let (num, rest) = inner.split_once("}{")?;
        let den = rest.strip_suffix('}')?;
        return Some(parse_number(num)? / parse_number(den)?);
    }
    if let Some((n, d)) = t.split_once('/') {
        let d = parse_number(d)?;
        return if d == 0.0 {
            None
        } else {
            Some(parse_number(n)? / d)
        };
    }
    let t = if t.contains(',')
        && t.split(',').skip(1).all(|g| {
            g.len() == 3
                || g.starts_with(|c: char| c.is_ascii_digit())
                    && g.split('.').next().is_some_and(|x| x.len() == 3)
        }) {
        t.replace(',', "")
    } else {
        t
    };
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn normalize_text(s: &str) -> String {
    s.trim()
        .trim_end_matches('.')
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[path = "verifiers_tests.rs"]
mod tests;
