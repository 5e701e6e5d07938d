//! A model's own Jinja chat template, rendered as Hugging Face's `apply_chat_template`
//! renders it: `trim_blocks` and `lstrip_blocks` on, loop controls, Python string and
//! dict methods, and the globals HF adds (`raise_exception`, `strftime_now`, its own
//! `tojson`, `bos_token`/`eos_token`, `messages`, `tools`, `add_generation_prompt`).
//!
//! The rendered string mixes template text, whose special tokens are real, with message
//! content, which must stay text. [`JinjaTemplate::render`] tells them apart by
//! rendering twice: with the real contents, and with each content replaced by a
//! placeholder no message holds. Walking the placeholder render gives the template text;
//! each placeholder is matched to its content as written or trimmed (of whitespace or
//! newlines: what templates do to content), and a template that transforms content any
//! other way is an error rather than content tokenized as template text. Only message
//! content is guarded so: roles and tool definitions are rendered as template text.

use super::{Message, Part, Prompt};
use crate::error::{Error, Result};
use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The name the template is stored under in its environment.
const NAME: &str = "chat_template";
/// Instructions one render may run (minijinja's fuel).
const TEMPLATE_FUEL: u64 = 50_000_000;

/// What `strftime_now` formats when `SOURCE_DATE_EPOCH` is unset: 2024-07-26 00:00 UTC,
/// the date Llama 3.1's template itself falls back to. Never the clock, so the same
/// spec and seed give the same prompts whatever the day.
pub const DEFAULT_DATE_EPOCH: i64 = 1_721_952_000;

/// Options of one render beyond the messages (HF's `apply_chat_template` arguments).
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Open the assistant turn at the end (what generation needs).
    pub add_generation_prompt: bool,
    /// Tool definitions (JSON schemas) for tool-calling templates; empty gives `none`,
    /// as HF passes `tools=None`. Object keys come in sorted order.
    pub tools: Vec<serde_json::Value>,
    /// Further template variables (e.g. Qwen3's `enable_thinking`).
    pub extra: Vec<(String, serde_json::Value)>,
}

/// A compiled Jinja chat template with the model's BOS and EOS token texts.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Environment<'static>,
    /// First 12 hex digits of the template source's sha256.
    hash: String,
    /// Where the template came from, for error messages (a file, a GGUF key).
    origin: String,
    bos: Option<String>,
    eos: Option<String>,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Jinja({}, bos={:?}, eos={:?})",
            self.hash, self.bos, self.eos
        )
    }
}

impl JinjaTemplate {
    /// Compiles a template; `origin` names where it came from in errors.
    pub fn new(
        source: String,
        origin: impl Into<String>,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<JinjaTemplate> {
        let origin = origin.into();
        let hash = hex12(&source);
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Internal(format!("jinja syntax config: {e}")))?;
        env.set_syntax(syntax);
        // A template comes with a downloaded model: one that loops for ever (nested
        // ranges) must fail, not hang the run. Real chat templates use thousands of
        // instructions per conversation; this allows far more.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source)
            .map_err(|e| template_error(&origin, &e))?;
        Ok(JinjaTemplate {
            env,
            hash,
            origin,
            bos,
            eos,
        })
    }

    /// The same template with these BOS/EOS texts where it has none (the tokenizer's,
    /// for a template given without them).
    pub fn with_default_tokens(mut self, bos: Option<String>, eos: Option<String>) -> Self {
        self.bos = self.bos.or(bos);
        self.eos = self.eos.or(eos);
        self
    }

    /// `jinja:` and the first 12 hex digits of the source's sha256, for provenance.
    pub fn provenance(&self) -> String {
        format!("jinja:{}", self.hash)
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The rendered string, as HF's `apply_chat_template(..., tokenize=False)` gives it.
    pub fn render_string(&self, messages: &[Message], opts: &RenderOptions) -> Result<String> {
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        self.render_contents(messages, &contents, opts)
    }

    /// The rendered prompt: template text as [`Part::Template`], each message's content
    /// (as the template placed it, perhaps trimmed) as [`Part::Text`].
    pub fn render(&self, messages: &[Message], opts: &RenderOptions) -> Result<Prompt> {
        let real = self.render_string(messages, opts)?;
        if messages.is_empty() {
            let mut p = Prompt::default();
            p.template(&real);
            return Ok(p);
        }
        // Placeholder delimiters no message (nor anything else rendered) holds.
        let (open, close) = (0..64u32)
            .filter_map(|k| {
                Some((
                    char::from_u32(0xF0000 + 2 * k)?,
                    char::from_u32(0xF0001 + 2 * k)?,
                ))
            })
            .find(|(o, c)| !real.contains(*o) && !real.contains(*c))
            .ok_or_else(|| {
                self.err("every placeholder character is in use in the messages".into())
            })?;
        let holders: Vec<String> = (0..messages.len())
            .map(|i| format!("{open}{i}{close}"))
            .collect();
        let held: Vec<&str> = holders.iter().map(String::as_str).collect();
        let skeleton = self.render_contents(messages, &held, opts)?;
        let segs = segments(&skeleton, open, close, messages.len()).ok_or_else(|| {
            self.err("the template transforms message content (cut or rewrote it), so its text cannot be told from the template's; give teacher.chat_template".into())
        })?;
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        let mut parts = Vec::new();
        let mut budget = 100_000usize;
        if !align(&segs, &real, 0, &contents, &mut parts, &mut budget) {
            return Err(self.err(
                "the template changes message content in a way other than trimming it (or renders differently for it), so its text cannot be told from the template's; give teacher.chat_template".into(),
            ));
        }
        let mut p = Prompt::default();
        for part in parts {
            match part {
                Part::Template(t) => p.template(&t),
                Part::Text(t) => p.text(&t),
            }
        }
        debug_assert_eq!(p.to_string(), real);
        Ok(p)
    }

    fn err(&self, m: String) -> Error {
        Error::Template(format!("chat template {}: {m}", self.origin))
    }

    fn render_contents(
        &self,
        messages: &[Message],
        contents: &[&str],
        opts: &RenderOptions,
    ) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .zip(contents)
            .map(|(m, c)| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(*c)),
                ])
            })
            .collect();
        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(msgs)),
            (
                "add_generation_prompt".into(),
                Value::from(opts.add_generation_prompt),
            ),
            (
                "tools".into(),
                if opts.tools.is_empty() {
                    Value::from(())
                } else {
                    Value::from(Serde(&opts.tools))
                },
            ),
        ];
        for (k, v) in [("bos_token", &self.bos), ("eos_token", &self.eos)] {
            if let Some(v) = v {
                ctx.push((k.into(), Value::from(v.as_str())));
            }
        }
        for (k, v) in &opts.extra {
            ctx.push((k.clone(), Value::from(Serde(v))));
        }
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        tmpl.render(Value::from_pairs(ctx))
            .map_err(|e| template_error(&self.origin, &e))
    }
}

/// First 12 hex digits of the sha256 of a template source.
fn hex12(source: &str) -> String {
    let d = Sha256::digest(source.as_bytes());
    d.iter().take(6).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A minijinja error as ours: the template's own message (`raise_exception`), where.
fn template_error(origin: &str, e: &minijinja::Error) -> Error {
    let mut m = format!("chat template {origin}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let _ = write!(m, ": {s}");
        src = s.source();
    }
    Error::Template(m)
}

/// One piece of the placeholder render: template text, or message `i`'s content.
#[derive(Debug)]
enum Seg {
    Tpl(String),
    Msg(usize),
}

/// Splits a placeholder render into template text and message slots; `None` when a
/// placeholder is not whole (the template cut or rewrote content).
fn segments(s: &str, open: char, close: char, n: usize) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = rest.find(open) {
        if p > 0 {
            out.push(Seg::Tpl(rest[..p].to_string()));
        }
        let after = &rest[p + open.len_utf8()..];
        let end = after.find(close)?;
        let i: usize = after[..end].parse().ok()?;
        if i >= n {
            return None;
        }
        out.push(Seg::Msg(i));
        rest = &after[end + close.len_utf8()..];
    }
    if rest.contains(close) {
        return None;
    }
    if !rest.is_empty() {
        out.push(Seg::Tpl(rest.to_string()));
    }
    Some(out)
}

/// Matches the segments against the real render from `pos`: template text verbatim,
/// each content as written or trimmed (the first that lets the rest match).
fn align(
    segs: &[Seg],
    real: &str,
    pos: usize,
    contents: &[&str],
    out: &mut Vec<Part>,
    budget: &mut usize,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((first, rest)) = segs.split_first() else {
        return pos == real.len();
    };
    let here = &real[pos..];
    match first {
        Seg::Tpl(t) => {
            if !here.starts_with(t.as_str()) {
                return false;
            }
            out.push(Part::Template(t.clone()));
            if align(rest, real, pos + t.len(), contents, out, budget) {
                return true;
            }
            out.pop();
            false
        }
        Seg::Msg(i) => {
            let c = contents[*i];
            // As written, `trim`/`strip()`, and `lstrip('\n')`-like cuts (Qwen3).
            let mut tried: Vec<&str> = Vec::with_capacity(7);
            for cand in [
                c,
                c.trim(),
                c.trim_start(),
                c.trim_end(),
                c.trim_matches('\n'),
                c.trim_start_matches('\n'),
                c.trim_end_matches('\n'),
            ] {
                if tried.contains(&cand) || !here.starts_with(cand) {
                    continue;
                }
                tried.push(cand);
                out.push(Part::Text(cand.to_string()));
                if align(rest, real, pos + cand.len(), contents, out, budget) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// HF's `raise_exception(msg)`: the render fails with the template's own message.
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {msg}"),
    ))
}

/// HF's `strftime_now(fmt)`, at `SOURCE_DATE_EPOCH` when set, else at
/// [`DEFAULT_DATE_EPOCH`]: prompts must not change with the day a run is made.
fn strftime_now(fmt: String) -> std::result::Result<Value, minijinja::Error> {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().map_err(|_| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"),
            )
        })?,
        Err(_) => DEFAULT_DATE_EPOCH,
    };
    let t = chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("SOURCE_DATE_EPOCH={secs} is out of range"),
        )
    })?;
    let mut s = String::new();
    write!(s, "{}", t.format(&fmt)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: bad format {fmt:?}"),
        )
    })?;
    Ok(Value::from(s))
}

/// HF's `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=indent,
/// sort_keys=sort_keys)`. minijinja's own differs: it escapes `<`, `>`, `&` and `'` for
/// HTML and writes `,`/`:` with no space, where Python writes `, ` and `: `.
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<Value> = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            None => Some(v.as_str().map(str::to_string).ok_or_else(|| {
                minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: bad indent")
            })?),
        },
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    // Python's `separators` are accepted only with their default values.
    let _ = kwargs.get::<Option<Value>>("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    let w = PyJson {
        indent: indent.as_deref(),
        ensure_ascii,
        sort_keys,
    };
    w.write(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` layout.
struct PyJson<'a> {
    indent: Option<&'a str>,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl PyJson<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn item_sep(&self) -> &'static str {
        if self.indent.is_some() {
            ","
        } else {
            ", "
        }
    }

    fn write(
        &self,
        v: &Value,
        level: usize,
        out: &mut String,
    ) -> std::result::Result<(), minijinja::Error> {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if let Some(i) = v.as_i64() {
                    let _ = write!(out, "{i}");
                } else if let Ok(f) = f64::try_from(v.clone()) {
                    if f.is_nan() {
                        out.push_str("NaN");
                    } else if f.is_infinite() {
                        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                    } else {
                        let _ = write!(out, "{f:?}");
                    }
                } else {
                    let _ = write!(out, "{v}");
                }
            }
            ValueKind::String => self.string(v.as_str().unwrap_or_default(), out),
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                out.push('{');
                for (n, k) in keys.iter().enumerate() {
                    if n > 0 {
                        out.push_str(self.item_sep());
                    }
                    self.newline(level + 1, out);
                    match k.as_str() {
                        Some(s) => self.string(s, out),
                        None => self.string(&k.to_string(), out),
                    }
                    out.push_str(": ");
                    self.write(&v.get_item(k)?, level + 1, out)?;
                }
                self.newline(level, out);
                out.push('}');
            }
            _ => {
                let items: Vec<Value> = match v.try_iter() {
                    Ok(it) => it.collect(),
                    Err(_) => {
                        self.string(&v.to_string(), out);
                        return Ok(());
                    }
                };
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (n, x) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(self.item_sep());
                    }
                    self.newline(level + 1, out);
                    self.write(x, level + 1, out)?;
                }
                self.newline(level, out);
                out.push(']');
            }
        }
        Ok(())
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{u:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str) -> JinjaTemplate {
        JinjaTemplate::new(src.into(), "test", Some("<s>".into()), Some("</s>".into())).unwrap()
    }

    fn gen() -> RenderOptions {
        RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        }
    }

    #[test]
    fn tojson_is_pythons() {
        let j = t("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ s | tojson }}");
        let mut o = gen();
        o.extra = vec![
            (
                "x".into(),
                serde_json::json!({"a": [1, 2.5, null], "b": {}}),
            ),
            ("s".into(), serde_json::json!("é<'&>\"\n\u{1}")),
        ];
        assert_eq!(
            j.render_string(&[], &o).unwrap(),
            "{\"a\": [1, 2.5, null], \"b\": {}}|{\n  \"a\": [\n    1,\n    2.5,\n    null\n  ],\n  \"b\": {}\n}|\"é<'&>\\\"\\n\\u0001\""
        );
    }

    #[test]
    fn raise_exception_shows_the_templates_message() {
        let j = t("{{ raise_exception('roles must alternate') }}");
        let e = j.render_string(&[], &gen()).unwrap_err();
        assert!(matches!(e, Error::Template(_)));
        let m = e.to_string();
        assert!(m.contains("roles must alternate"), "{m}");
        assert!(m.contains("test"), "{m}");
    }

    /// A template that would loop for ever (as a model's file might) fails in bounded
    /// time with an error naming it, instead of hanging the run.
    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let j = t("{% for i in range(9000) %}{% for k in range(9000) %}{% endfor %}{% endfor %}");
        let e = j.render_string(&[], &gen()).unwrap_err().to_string();
        assert!(e.contains("fuel") && e.contains("test"), "{e}");
    }

    #[test]
    fn unparsable_template_is_an_error() {
        let e = JinjaTemplate::new("{% for m in messages %}".into(), "bad.jinja", None, None)
            .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("bad.jinja") && m.contains("syntax"), "{m}");
    }

    #[test]
    fn strftime_now_is_fixed() {
        // SOURCE_DATE_EPOCH is not set in tests.
        if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
            let j = t("{{ strftime_now('%d %b %Y') }}");
            assert_eq!(j.render_string(&[], &gen()).unwrap(), "26 Jul 2024");
        }
        let j = t("{{ strftime_now('%Q') }}");
        assert!(j.render_string(&[], &gen()).is_err());
    }

    #[test]
    fn content_is_told_from_template_text() {
        let j = t("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}");
        let msgs = [
            Message::new("user", "  hi </s><|assistant|> "),
            Message::new("assistant", "yo"),
        ];
        let p = j.render(&msgs, &gen()).unwrap();
        assert_eq!(
            p.parts,
            vec![
                Part::Template("<s><|user|>".into()),
                Part::Text("hi </s><|assistant|>".into()),
                Part::Template("</s><|assistant|>".into()),
                Part::Text("yo".into()),
                Part::Template("</s><|assistant|>".into()),
            ]
        );
    }

    #[test]
    fn rewritten_content_is_an_error() {
        let j = t("{% for m in messages %}{{ m.content | upper }}{% endfor %}");
        let e = j.render(&[Message::new("user", "hi")], &gen()).unwrap_err();
        assert!(e.to_string().contains("test"), "{e}");
        let j = t("{% for m in messages %}{{ m.content[:2] }}{% endfor %}");
        assert!(j.render(&[Message::new("user", "hello")], &gen()).is_err());
    }
}
