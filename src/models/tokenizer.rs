//! Tokenizers built from GGUF metadata, so a model is one file, or from a Hugging Face
//! folder's `tokenizer.json` ([`Tokenizer::from_hf_json`]).
//!
//! - `gpt2` (byte-level BPE, SmolLM2, Llama 3, Qwen): a `tokenizers::Tokenizer` from the
//!   vocab and merges, with the pre-tokenizer chosen from `tokenizer.ggml.pre`. candle's
//!   `TokenizerFromGguf` treats SmolLM2's `smollm` like GPT-2 (leading space, grouped
//!   digits) and breaks round-trips; here it gets `Digits(individual) + ByteLevel(no
//!   prefix space)`, matching SmolLM2's tokenizer.json.
//! - `llama` (SentencePiece BPE with scores, Gemma): our own merge-by-score BPE with byte
//!   fallback, the algorithm llama.cpp uses, since `tokenizers` has no GGUF path for it.
//!
//! Control tokens (`<|im_start|>`, `<end_of_turn>`) written as text are ordinary text to
//! [`Tokenizer::encode`]: data (seed values, responses judged) must never forge a turn.
//! Only a chat template's own text makes control tokens, through
//! [`Tokenizer::encode_prompt`].

use super::chat::{Part, Prompt, END_OF_GENERATION, MARKERS};
use super::gguf::{value_u64, GgufFile};
use crate::error::{Error, Result};
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// A text ↔ token-id codec for one model.
pub struct Tokenizer {
    kind: Kind,
    /// Token strings by id (for special-token lookups and messages).
    tokens: Vec<String>,
    /// Control tokens (`<bos>`, `<|im_end|>`): left out of decoded text.
    control: Vec<bool>,
    /// Control tokens by text, for the chat template's markers.
    control_ids: HashMap<String, u32>,
    /// The same by first character, longest first: what template text is scanned for.
    control_by_first: HashMap<char, Vec<(String, u32)>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
}

enum Kind {
    /// Two copies of one tokenizer: the first matches control tokens written in the text,
    /// the second (`set_encode_special_tokens`) tokenizes them as ordinary text.
    Hf {
        special: Box<tokenizers::Tokenizer>,
        plain: Box<tokenizers::Tokenizer>,
        /// A separator added to `plain` (a `tokenizer.json`'s only) that text after a
        /// control token is encoded behind, then dropped: so that it is not at offset 0,
        /// where a `Metaspace` pre-tokenizer with `prepend_scheme: first` would add a
        /// space that encoding the whole string does not.
        sep: Option<(String, u32)>,
    },
    Spm(Box<Spm>),
}

/// Whether control tokens written in the text become their ids.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Specials {
    Parse,
    AsText,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let err = |m: String| Error::Model(format!("{}: tokenizer: {m}", g.path.display()));
        let model = g
            .str("tokenizer.ggml.model")
            .ok_or_else(|| err("no tokenizer.ggml.model in metadata".into()))?;
        let tokens: Vec<String> = string_array(g, "tokenizer.ggml.tokens").map_err(err)?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| err(e.to_string()))?
                .iter()
                .map(|x| value_u64(x).unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let special: Vec<bool> = (0..tokens.len())
            .map(|i| {
                matches!(
                    types.get(i),
                    Some(&TOKEN_CONTROL) | Some(&TOKEN_USER_DEFINED)
                )
            })
            .collect();
        // Only control tokens are dropped when decoding; user-defined ones (Gemma's "\n"
        // and indents) are text, though both are matched verbatim in input. A chat marker
        // is control whatever its declared type, so that text can never produce it.
        let control: Vec<bool> = (0..tokens.len())
            .map(|i| {
                types.get(i) == Some(&TOKEN_CONTROL)
                    || (special[i] && MARKERS.contains(&tokens[i].as_str()))
            })
            .collect();
        let mut control_ids = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            if control[i] {
                control_ids.entry(t.clone()).or_insert(i as u32);
            }
        }
        let id = |k: &str| g.get(k).and_then(value_u64).map(|x| x as u32);
        let (bos_id, eos_id) = (
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        );
        let kind = match model {
            "gpt2" => {
                let merges: Vec<(String, String)> = string_array(g, "tokenizer.ggml.merges")
                    .map_err(err)?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| err(format!("bad merge entry {m:?}")))
                    })
                    .collect::<Result<_>>()?;
                let vocab: tokenizers::models::bpe::Vocab = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(|e| err(format!("building BPE: {e}")))?;
                let mut tk = tokenizers::Tokenizer::new(bpe);
                tk.with_pre_tokenizer(Some(
                    pre_tokenizer(g.str("tokenizer.ggml.pre").unwrap_or("default")).map_err(err)?,
                ));
                tk.with_decoder(Some(ByteLevel::new(false, true, true)));
                let added = |want_control: bool| -> Vec<AddedToken> {
                    tokens
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| special[*i] && control[*i] == want_control)
                        .map(|(i, t)| AddedToken::from(t.clone(), control[i]))
                        .collect()
                };
                tk.add_special_tokens(added(true))
                    .map_err(|e| err(format!("adding special tokens: {e}")))?;
                tk.add_tokens(added(false))
                    .map_err(|e| err(format!("adding user-defined tokens: {e}")))?;
                let mut plain = tk.clone();
                plain.set_encode_special_tokens(true);
                Kind::Hf {
                    special: Box::new(tk),
                    plain: Box::new(plain),
                    sep: None,
                }
            }
            "llama" => {
                let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .to_vec()
                        .map_err(|e| err(e.to_string()))?
                        .iter()
                        .map(|x| x.to_f32().unwrap_or(0.0))
                        .collect(),
                    None => {
                        return Err(err(
                            "SentencePiece model without tokenizer.ggml.scores".into()
                        ))
                    }
                };
                let add_space_prefix = matches!(
                    g.get("tokenizer.ggml.add_space_prefix"),
                    Some(candle_core::quantized::gguf_file::Value::Bool(true))
                );
                Kind::Spm(Box::new(Spm::new(
                    &tokens,
                    &scores,
                    &types,
                    &special,
                    &control,
                    add_space_prefix,
                )))
            }
            other => {
                return Err(err(format!(
                    "tokenizer model {other:?} is not supported (supported: gpt2, llama)"
                )))
            }
        };
        Ok(Tokenizer::new(
            kind,
            tokens,
            control,
            control_ids,
            bos_id,
            eos_id,
        ))
    }

    fn new(
        kind: Kind,
        tokens: Vec<String>,
        control: Vec<bool>,
        control_ids: HashMap<String, u32>,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
    ) -> Tokenizer {
        let mut control_by_first: HashMap<char, Vec<(String, u32)>> = HashMap::new();
        for (t, &id) in &control_ids {
            if let Some(c) = t.chars().next() {
                control_by_first.entry(c).or_default().push((t.clone(), id));
            }
        }
        for v in control_by_first.values_mut() {
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        }
        Tokenizer {
            kind,
            tokens,
            control,
            control_ids,
            control_by_first,
            bos_id,
            eos_id,
        }
    }

    /// Builds a tokenizer from a Hugging Face `tokenizer.json`, with the BOS and EOS
    /// `tokenizer_config.json` names (`bos_token`/`eos_token`: strings or `{content}`
    /// objects) when that file is given. Added tokens marked `special` are the control
    /// tokens: matched only in template text, left out of decoded text.
    pub fn from_hf_json(path: &Path, config: Option<&Path>) -> Result<Tokenizer> {
        let err = |m: String| Error::Model(format!("{}: tokenizer: {m}", path.display()));
        let tk = tokenizers::Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        let vocab = tk.get_vocab(true);
        let n = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let mut tokens = vec![String::new(); n];
        for (t, &id) in &vocab {
            tokens[id as usize] = t.clone();
        }
        let mut control = vec![false; n];
        let mut control_ids = HashMap::new();
        for (id, added) in tk.get_added_tokens_decoder() {
            if added.special && (id as usize) < n {
                control[id as usize] = true;
                control_ids.entry(added.content.clone()).or_insert(id);
            }
        }
        let (mut bos_id, mut eos_id) = (None, None);
        if let Some(cp) = config {
            if let Some(c) = super::chat::source::read_json_if_exists(cp)? {
                let id = |k: &str| -> Result<Option<u32>> {
                    match super::chat::source::special_token_text(c.get(k)) {
                        None => Ok(None),
                        Some(t) => vocab.get(&t).copied().map(Some).ok_or_else(|| {
                            Error::Model(format!(
                                "{}: {k} {t:?} is not in {}",
                                cp.display(),
                                path.display()
                            ))
                        }),
                    }
                };
                bos_id = id("bos_token")?;
                eos_id = id("eos_token")?;
            }
        }
        let mut plain = tk.clone();
        plain.set_encode_special_tokens(true);
        const SEP: &str = "\u{F8FF0}\u{F8FF1}";
        plain
            .add_tokens(vec![AddedToken::from(SEP, false).normalized(false)])
            .map_err(|e| err(format!("adding a separator token: {e}")))?;
        let sep = plain.token_to_id(SEP).map(|id| (SEP.to_string(), id));
        let kind = Kind::Hf {
            special: Box::new(tk),
            plain: Box::new(plain),
            sep,
        };
        Ok(Tokenizer::new(
            kind,
            tokens,
            control,
            control_ids,
            bos_id,
            eos_id,
        ))
    }

    /// Token ids that end generation: the EOS, and every control token whose text is
    /// one of [`END_OF_GENERATION`] (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`...).
    pub fn end_of_generation_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id.into_iter().collect();
        for t in END_OF_GENERATION {
            if let Some(&id) = self.control_ids.get(*t) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Whether a token id is a control token.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize) == Some(&true)
    }

    /// Token ids for text, control tokens written in it (`<|im_start|>`) tokenized as
    /// ordinary text: this is how data is encoded. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true, Specials::AsText)
    }

    /// Token ids for text the program wrote itself, control tokens written in it becoming
    /// their single ids. Never for data: use [`Tokenizer::encode_prompt`] to mix the two.
    pub fn encode_special(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true, Specials::Parse)
    }

    /// Token ids for a rendered chat prompt: control tokens spelled in template text
    /// become their ids, and the text between them (template text and content together,
    /// as encoding the whole string would) is encoded with [`Tokenizer::encode`], so
    /// content cannot open or close a turn.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut text = String::new();
        for part in &prompt.parts {
            match part {
                Part::Template(t) => {
                    let mut rest = t.as_str();
                    while let Some((pos, len, id)) = self.find_control(rest) {
                        text.push_str(&rest[..pos]);
                        self.flush_text(&mut text, &mut out)?;
                        out.push(id);
                        rest = &rest[pos + len..];
                    }
                    text.push_str(rest);
                }
                Part::Text(t) => text.push_str(t),
            }
        }
        self.flush_text(&mut text, &mut out)?;
        Ok(out)
    }

    /// The first control token spelled in `s` (the longest at that place): its byte
    /// offset, length and id.
    fn find_control(&self, s: &str) -> Option<(usize, usize, u32)> {
        s.char_indices().find_map(|(i, c)| {
            self.control_by_first
                .get(&c)?
                .iter()
                .find(|(t, _)| s[i..].starts_with(t.as_str()))
                .map(|(t, id)| (i, t.len(), *id))
        })
    }

    /// Encodes the text run between two markers, as encoding the whole rendered string
    /// with markers parsed would (a leading space prefix only at the very start).
    fn flush_text(&self, text: &mut String, out: &mut Vec<u32>) -> Result<()> {
        if !text.is_empty() {
            let ids = self.encode_with(text, out.is_empty(), Specials::AsText)?;
            out.extend(ids);
            text.clear();
        }
        Ok(())
    }

    fn encode_with(&self, text: &str, at_start: bool, specials: Specials) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Hf {
                plain,
                sep: Some((sep, sep_id)),
                ..
            } if !at_start && specials == Specials::AsText && !text.contains(sep.as_str()) => {
                let ids = plain
                    .encode(format!("{sep}{text}"), false)
                    .map_err(|e| Error::Model(format!("tokenizing failed: {e}")))?
                    .get_ids()
                    .to_vec();
                match ids.split_first() {
                    Some((first, rest)) if first == sep_id => Ok(rest.to_vec()),
                    _ => Err(Error::Internal(
                        "tokenizer separator was not kept apart".into(),
                    )),
                }
            }
            Kind::Hf { special, plain, .. } => {
                let tk = match specials {
                    Specials::Parse => special,
                    Specials::AsText => plain,
                };
                tk.encode(text, false)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::Model(format!("tokenizing failed: {e}")))
            }
            Kind::Spm(s) => Ok(s.encode(text, at_start, specials)),
        }
    }

    /// Text for token ids, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.kind {
            Kind::Hf { special: tk, .. } => tk
                .decode(ids, true)
                .map_err(|e| Error::Model(format!("detokenizing failed: {e}"))),
            Kind::Spm(s) => Ok(s.decode(ids, &self.control)),
        }
    }

    /// The id of a token given by its exact text (e.g. `<|im_end|>`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == text).map(|i| i as u32)
    }

    /// The text of one token id, as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The bytes each token id stands for, as a grammar matcher needs them (llguidance's
    /// token trie): byte-level BPE pieces mapped back through GPT-2's byte↔char table,
    /// SentencePiece pieces with '▁' as a space and `<0xNN>` as its byte. Control tokens
    /// get `None`: no grammar can produce them as text.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let byte_level = match &self.kind {
            Kind::Hf { special, .. } => is_byte_level(special.get_decoder()),
            Kind::Spm(_) => false,
        };
        let chars = gpt2_char_to_byte();
        self.tokens
            .iter()
            .enumerate()
            .map(|(id, t)| {
                if self.control.get(id) == Some(&true) {
                    return None;
                }
                if let Kind::Spm(s) = &self.kind {
                    if let Some(b) = s.byte_of.get(id).copied().flatten() {
                        return Some(vec![b]);
                    }
                    return Some(
                        s.decoded
                            .get(id)
                            .map_or_else(Vec::new, |d| d.as_bytes().to_vec()),
                    );
                }
                if byte_level {
                    t.chars().map(|c| chars.get(&c).copied()).collect()
                } else if let Some(b) = t
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(vec![b])
                } else {
                    Some(t.replace('\u{2581}', " ").into_bytes())
                }
            })
            .collect()
    }
}

/// Whether a tokenizer.json decoder is byte-level (GPT-2 style), possibly inside a sequence.
fn is_byte_level(d: Option<&tokenizers::DecoderWrapper>) -> bool {
    use tokenizers::DecoderWrapper as D;
    match d {
        Some(D::ByteLevel(_)) => true,
        Some(D::Sequence(s)) => s.get_decoders().iter().any(|d| is_byte_level(Some(d))),
        _ => false,
    }
}

/// GPT-2's byte-level table, reversed: the printable char each byte is written as.
fn gpt2_char_to_byte() -> HashMap<char, u8> {
    let mut m = HashMap::with_capacity(256);
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        let c = b as char;
        let printable = matches!(c, '!'..='~' | '\u{00A1}'..='\u{00AC}' | '\u{00AE}'..='\u{00FF}');
        if printable {
            m.insert(c, b);
        } else {
            m.insert(char::from_u32(next).unwrap_or(' '), b);
            next += 1;
        }
    }
    m
}

fn string_array(g: &GgufFile, key: &str) -> std::result::Result<Vec<String>, String> {
    let v = g
        .get(key)
        .ok_or_else(|| format!("no `{key}` in metadata"))?;
    v.to_vec()
        .map_err(|e| format!("`{key}`: {e}"))?
        .iter()
        .map(|x| x.to_string().cloned().map_err(|e| format!("`{key}`: {e}")))
        .collect()
}

/// The pre-tokenizer a GGUF `tokenizer.ggml.pre` names; the `Err` is the reason, which
/// `Tokenizer::from_gguf` places in the file it was reading.
fn pre_tokenizer(pre: &str) -> std::result::Result<PreTokenizerWrapper, String> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let split = |re: &str| -> std::result::Result<PreTokenizerWrapper, String> {
        let s = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(Sequence::new(vec![s.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    Ok(match pre {
        // SmolLM2's tokenizer.json: digits one by one, then byte-level with GPT-2's regex
        // and no prefix space.
        "smollm" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        "llama3" | "llama-bpe" | "smaug-bpe" => split(LLAMA3)?,
        "qwen2" => split(QWEN2)?,
        _ => ByteLevel::new(false, true, true).into(),
    })
}

/// SentencePiece BPE: repeatedly merge the adjacent pair whose merged piece has the best
/// score; pieces not in the vocabulary fall back to `<0xXX>` byte tokens.
struct Spm {
    vocab: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    /// Special tokens matched verbatim in input text, longest first, and whether each is
    /// a control token (matched only when parsing specials).
    specials: Vec<(String, u32, bool)>,
    unk: u32,
    add_space_prefix: bool,
    /// Decoding tables by id: the piece with '▁' already turned into ' ', or the byte.
    decoded: Vec<String>,
    byte_of: Vec<Option<u8>>,
}

#[derive(PartialEq)]
struct Candidate {
    score: f32,
    left: usize,
    len: usize,
}
impl Eq for Candidate {}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Best score first; on ties the leftmost pair.
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Spm {
    fn new(
        tokens: &[String],
        scores: &[f32],
        types: &[u64],
        special: &[bool],
        control: &[bool],
        add_space_prefix: bool,
    ) -> Spm {
        let mut vocab = HashMap::with_capacity(tokens.len());
        let mut byte_ids = [None; 256];
        let mut specials = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if types.get(i) == Some(&6) {
                if let Some(b) = t
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    byte_ids[b as usize] = Some(i as u32);
                }
                continue;
            }
            if special[i] {
                specials.push((t.clone(), i as u32, control[i]));
                continue;
            }
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let unk = tokens.iter().position(|t| t == "<unk>").unwrap_or(0) as u32;
        let decoded = tokens.iter().map(|t| t.replace('\u{2581}', " ")).collect();
        let mut byte_of = vec![None; tokens.len()];
        for (b, id) in byte_ids.iter().enumerate() {
            if let Some(id) = id {
                byte_of[*id as usize] = Some(b as u8);
            }
        }
        Spm {
            vocab,
            scores: scores.to_vec(),
            byte_ids,
            specials,
            unk,
            add_space_prefix,
            decoded,
            byte_of,
        }
    }

    /// `at_start`: the text begins the input (where the space prefix goes).
    fn encode(&self, text: &str, at_start: bool, specials: Specials) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        let mut first = at_start;
        while !rest.is_empty() {
            // The earliest special token in the remaining text, longest on ties.
            let hit = self
                .specials
                .iter()
                .filter(|(_, _, control)| !control || specials == Specials::Parse)
                .filter_map(|(s, id, _)| rest.find(s.as_str()).map(|p| (p, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let next = match hit {
                Some((p, len, id)) => {
                    self.encode_plain(&rest[..p], first, &mut out);
                    out.push(id);
                    &rest[p + len..]
                }
                None => {
                    self.encode_plain(rest, first, &mut out);
                    ""
                }
            };
            first = false;
            rest = next;
        }
        out
    }

    fn encode_plain(&self, text: &str, first: bool, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut norm = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && first {
            norm.push('\u{2581}');
        }
        norm.push_str(&text.replace(' ', "\u{2581}"));
        // Symbols as byte ranges into `norm`, linked as a list.
        let start: Vec<usize> = norm.char_indices().map(|(i, _)| i).collect();
        let n = start.len();
        let mut len: Vec<usize> = (0..n)
            .map(|i| start.get(i + 1).copied().unwrap_or(norm.len()) - start[i])
            .collect();
        let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Candidate>,
                    l: usize,
                    r: usize,
                    start: &[usize],
                    len: &[usize]| {
            let piece = &norm[start[l]..start[r] + len[r]];
            if let Some(&id) = self.vocab.get(piece) {
                heap.push(Candidate {
                    score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                    left: l,
                    len: piece.len(),
                });
            }
        };
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, i, i + 1, &start, &len);
        }
        while let Some(c) = heap.pop() {
            let l = c.left;
            let r = next[l];
            // Stale candidate: a side was merged since it was pushed.
            if len[l] == 0 || r >= n || len[l] + len[r] != c.len {
                continue;
            }
            len[l] += len[r];
            len[r] = 0;
            next[l] = next[r];
            if next[l] < n {
                prev[next[l]] = l as isize;
            }
            if prev[l] >= 0 {
                push(&mut heap, prev[l] as usize, l, &start, &len);
            }
            if next[l] < n {
                push(&mut heap, l, next[l], &start, &len);
            }
        }
        let mut i = 0;
        while i < n {
            let piece = &norm[start[i]..start[i] + len[i]];
            match self.vocab.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_ids[b as usize].unwrap_or(self.unk));
                    }
                }
            }
            i = next[i];
        }
    }

    fn decode(&self, ids: &[u32], control: &[bool]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let i = id as usize;
            if control.get(i) == Some(&true) {
                continue;
            }
            match self.byte_of.get(i) {
                Some(Some(b)) => bytes.push(*b),
                Some(None) => bytes.extend_from_slice(self.decoded[i].as_bytes()),
                None => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
