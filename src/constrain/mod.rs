//! Grammar-constrained decoding: a JSON Schema, a regex, a list of choices or a Lark
//! grammar, held by masking the logits of every token that would leave the grammar, so a
//! small model's JSON always parses. The grammar engine is `llguidance` (the one vLLM,
//! SGLang, llama.cpp and mistral.rs use), fed with the bytes of each token of our own
//! tokenizer.
//!
//! A [`Constraint`] is what the spec says; [`Vocab::compile`] turns it into a [`Compiled`]
//! grammar once per model; [`Compiled::start`] gives each sequence its own [`Guide`].
//! [`Constraint::check`] compiles against a byte-level vocabulary, so a bad schema or
//! grammar is reported by the spec, before any model loads.

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{self, ApproximateTokEnv, SimpleVob, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

/// What a generated text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// A JSON Schema (draft 2020-12 subset llguidance supports); the output is one JSON value.
    JsonSchema(serde_json::Value),
    /// A regular expression the whole output matches.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A Lark grammar (llguidance's dialect: `start:` rule, `%json`, regex terminals).
    Lark(String),
}

impl Constraint {
    /// `json_schema`, `regex`, `choice` or `grammar`: the spec's key, for records and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonSchema(_) => "json_schema",
            Constraint::Regex(_) => "regex",
            Constraint::Choice(_) => "choice",
            Constraint::Lark(_) => "grammar",
        }
    }

    /// A stable text for the constraint, for fingerprints and compile caches.
    pub fn key(&self) -> String {
        match self {
            Constraint::JsonSchema(v) => format!("json_schema:{v}"),
            Constraint::Regex(r) => format!("regex:{r}"),
            Constraint::Choice(c) => format!("choice:{}", serde_json::json!(c)),
            Constraint::Lark(g) => format!("grammar:{g}"),
        }
    }

    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Constraint::JsonSchema(v) => {
                // llguidance allows any run of whitespace between JSON tokens; a small
                // model can spend its whole budget there. Bound it (up to 12 spaces or
                // newlines: indented JSON still fits) unless the schema sets its own.
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.entry("x-guidance").or_insert_with(
                        || serde_json::json!({"whitespace_pattern": "[ \\n]{0,12}"}),
                    );
                }
                TopLevelGrammar::from_json_schema(v)
            }
            Constraint::Regex(r) => TopLevelGrammar::from_regex(r),
            Constraint::Choice(c) => {
                let alts: Vec<String> = c.iter().map(|s| regex_escape(s)).collect();
                TopLevelGrammar::from_regex(&format!("(?:{})", alts.join("|")))
            }
            Constraint::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        }
    }

    /// Compiles the constraint against a byte-level vocabulary: the schema or grammar
    /// errors a model would hit (an unsupported keyword, a syntax error, an empty
    /// language), without loading one. The `Err` is llguidance's reason.
    pub fn check(&self) -> Result<(), String> {
        if let Constraint::Choice(c) = self {
            if c.is_empty() || c.iter().any(String::is_empty) {
                return Err("choices must be a non-empty list of non-empty strings".into());
            }
        }
        let env = ApproximateTokEnv::single_byte_env();
        let mut f = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        f.quiet();
        let mut m = Matcher::new(f.create_parser(self.grammar()));
        if let Some(e) = m.get_error() {
            return Err(clean(&e));
        }
        // A grammar whose first step allows nothing (not even the end) matches no text.
        match m.compute_mask() {
            Ok(mask) if mask.is_zero() => Err("the grammar matches no text".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(clean(&e.to_string())),
        }
    }
}

/// llguidance's messages carry a trailing newline and sometimes a context line; keep one.
fn clean(e: &str) -> String {
    e.trim().to_string()
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One model's vocabulary, as llguidance sees it: a token trie over the bytes of each
/// token, with the model's end-of-generation ids as EOS. Built once per model.
pub struct Vocab {
    factory: Arc<ParserFactory>,
    eos: Vec<u32>,
}

/// Why a vocabulary or a grammar could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConstrainError(pub String);

impl Vocab {
    /// `token_bytes[id]` is the text token `id` stands for (`None`: a control token, never
    /// text); `n_logits` is the model's logit count (a padded vocabulary is larger than
    /// the tokenizer's); `eos` are the ids that end a generation.
    pub fn new(
        token_bytes: &[Option<Vec<u8>>],
        n_logits: usize,
        eos: &[u32],
    ) -> Result<Vocab, ConstrainError> {
        let first_eos = *eos
            .first()
            .ok_or_else(|| ConstrainError("the model has no end-of-generation token".into()))?;
        let n = n_logits.max(token_bytes.len());
        let words: Vec<Vec<u8>> = (0..n)
            .map(|i| match token_bytes.get(i) {
                Some(Some(b)) if !b.is_empty() => b.clone(),
                // Control tokens and padding: special tokens, never matched as text.
                _ => {
                    let mut w = format!(".<[{i}]>").into_bytes();
                    w[0] = TokTrie::SPECIAL_TOKEN_MARKER;
                    w
                }
            })
            .collect();
        let info = TokRxInfo::new(n as u32, first_eos);
        let mut trie = TokTrie::from(&info, &words);
        if eos.len() > 1 {
            trie = trie.with_eos_tokens(eos);
        }
        let env: toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut f = ParserFactory::new_simple(&env).map_err(|e| ConstrainError(e.to_string()))?;
        f.quiet();
        Ok(Vocab {
            factory: Arc::new(f),
            eos: eos.to_vec(),
        })
    }

    /// Compiles a constraint for this vocabulary (once per distinct constraint; each
    /// sequence then starts from a copy).
    pub fn compile(&self, c: &Constraint) -> Result<Compiled, ConstrainError> {
        let m = Matcher::new(self.factory.create_parser(c.grammar()));
        if let Some(e) = m.get_error() {
            return Err(ConstrainError(format!(
                "{} constraint: {}",
                c.kind(),
                clean(&e)
            )));
        }
        Ok(Compiled {
            start: m,
            kind: c.kind(),
            eos: self.eos.clone(),
        })
    }
}

/// A grammar compiled for one model, shared by every sequence it constrains.
pub struct Compiled {
    start: Matcher,
    kind: &'static str,
    eos: Vec<u32>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({})", self.kind)
    }
}

impl Compiled {
    /// A fresh matcher for one sequence.
    pub fn start(&self) -> Guide {
        Guide {
            m: self.start.deep_clone(),
            eos: self.eos.clone(),
            mask: None,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// One sequence's place in its grammar.
pub struct Guide {
    m: Matcher,
    eos: Vec<u32>,
    /// The allowed tokens for the next step, once computed.
    mask: Option<SimpleVob>,
}

impl Guide {
    /// Computes the allowed tokens for the next step (the costly part: ~50 µs to a few ms;
    /// callers run it beside the forward pass).
    pub fn prepare(&mut self) {
        if self.mask.is_none() {
            self.mask = Some(self.m.compute_mask_or_eos().unwrap_or_else(|_| {
                // A matcher in error allows nothing but the end: the sequence stops,
                // and is reported as not matching.
                let mut v = SimpleVob::alloc(self.eos.iter().max().map_or(1, |&e| e as usize + 1));
                for &e in &self.eos {
                    v.allow_token(e);
                }
                v
            }));
        }
    }

    /// Sets every logit the grammar forbids to −∞. `false` when nothing is allowed.
    pub fn apply(&mut self, logits: &mut [f32]) -> bool {
        self.prepare();
        let Some(mask) = &self.mask else {
            return false;
        };
        let mut any = false;
        for (i, l) in logits.iter_mut().enumerate() {
            if mask.is_allowed(i as u32) {
                any |= l.is_finite() || *l == f32::INFINITY;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        any
    }

    /// Advances past a sampled (non-EOS) token. `Err` when the grammar rejects it.
    pub fn commit(&mut self, tok: u32) -> Result<(), String> {
        self.mask = None;
        self.m.consume_token(tok).map_err(|e| clean(&e.to_string()))
    }

    /// Whether the text so far is a complete match.
    pub fn accepting(&mut self) -> bool {
        !self.m.is_error() && self.m.is_accepting().unwrap_or(false)
    }

    /// Whether the grammar is complete and allows nothing more (e.g. a closed JSON object).
    pub fn finished(&self) -> bool {
        self.m.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of single bytes plus a few multi-byte tokens and EOS (id 300).
    fn vocab() -> Vocab {
        let mut t: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        for w in ["{\"", "\":", "true", "false", "  "] {
            t.push(Some(w.as_bytes().to_vec()));
        }
        t.resize(300, None);
        Vocab::new(&t, 301, &[300]).unwrap()
    }

    /// Greedy walk: always the lowest allowed non-EOS token while one exists.
    fn walk(g: &mut Guide, max: usize) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for _ in 0..max {
            let mut logits = vec![0.0f32; 301];
            assert!(g.apply(&mut logits));
            if logits[300].is_finite() {
                return (out, true);
            }
            // The lowest allowed token that is not whitespace (JSON allows it forever).
            let ok = |i: &usize| logits[*i].is_finite();
            let tok = (0..300)
                .filter(ok)
                .find(|&i| i >= 256 || !(i as u8).is_ascii_whitespace())
                .or_else(|| (0..300).find(ok))
                .unwrap() as u32;
            g.commit(tok).unwrap();
            out.extend(if tok < 256 {
                vec![tok as u8]
            } else {
                [&b"{\""[..], b"\":", b"true", b"false", b"  "][tok as usize - 256].to_vec()
            });
            if g.finished() {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn choices_allow_only_their_strings() {
        let c = vocab()
            .compile(&Constraint::Choice(vec!["yes".into(), "no".into()]))
            .unwrap();
        let mut g = c.start();
        let mut logits = vec![0.0f32; 301];
        g.apply(&mut logits);
        let allowed: Vec<u8> = (0..256u32)
            .filter(|&i| logits[i as usize].is_finite())
            .map(|i| i as u8)
            .collect();
        assert_eq!(allowed, b"ny".to_vec());
        assert!(!logits[300].is_finite(), "EOS before a full match");
        let (text, done) = walk(&mut g, 10);
        assert!(done);
        assert_eq!(text, b"no");
    }

    #[test]
    fn a_regex_is_held_to_the_end() {
        let c = vocab()
            .compile(&Constraint::Regex(r"\d{4}-\d{2}-\d{2}".into()))
            .unwrap();
        let (text, done) = walk(&mut c.start(), 20);
        assert!(done);
        assert_eq!(text, b"0000-00-00");
        // A token outside the grammar is refused.
        let mut g = c.start();
        assert!(g.commit(b'x' as u32).is_err());
    }

    #[test]
    fn a_schema_makes_valid_json() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["ok", "n"],
            "additionalProperties": false
        });
        let c = vocab().compile(&Constraint::JsonSchema(schema)).unwrap();
        let mut g = c.start();
        // Walk greedily but prefer the longest tokens, then check the text parses.
        let (text, done) = walk(&mut g, 200);
        assert!(done, "{}", String::from_utf8_lossy(&text));
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert!(v["ok"].is_boolean() && v["n"].is_u64(), "{v}");
    }

    #[test]
    fn bad_constraints_say_why() {
        let e = Constraint::JsonSchema(serde_json::json!({"type": "string", "format": "x", "contentEncoding": "base64", "unevaluatedItems": false}))
            .check()
            .unwrap_err();
        assert!(
            e.contains("unevaluatedItems") || e.contains("contentEncoding"),
            "{e}"
        );
        let e = Constraint::Lark("start: foo".into()).check().unwrap_err();
        assert!(e.contains("foo"), "{e}");
        assert!(Constraint::Regex("(".into()).check().is_err());
        assert!(Constraint::Choice(vec![]).check().is_err());
        assert!(
            Constraint::Lark("start: \"a\" | NUMBER\nNUMBER: /[0-9]+/".into())
                .check()
                .is_ok()
        );
    }
}
