//! The generation engine: a loaded model (decoder + tokenizer + chat template) and a
//! continuous-batching scheduler. Each step is one forward over every active sequence
//! (newly admitted prompts are prefilled in the same step); finished sequences leave
//! and their slots are refilled from the queue.

#[cfg(feature = "cuda")]
pub mod cuda_attention;
pub mod device;
pub mod inspect;
pub mod model;
pub mod precision;
pub mod sampler;

use crate::error::{Error, Result};
use crate::models::chat::{ChatTemplate, Message, Prompt};
use crate::models::tokenizer::Tokenizer;
use crate::models::{Checkpoint, ResolvedModel};
use crate::spec::Sampling;
use candle_core::Device;
pub use device::Runtime;
use model::{Decoder, Segment, SeqCache};
pub use precision::Precision;
use sampler::Sampler;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Set by the Ctrl-C handler; the scheduler stops after the step in flight.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What a record's provenance says about the model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ModelInfo {
    pub model: String,
    pub file_sha256: String,
    /// Quantization as stored in the file.
    pub quant: String,
    /// How the weights were run (e.g. `Q8_0 (from F32+Q4_1+Q8_0)`).
    pub weights: String,
    pub arch: String,
    pub chat_template: String,
    /// A Hugging Face folder's files by name, each with its sha256 (`file_sha256` is then
    /// the digest over all of them). Empty for a GGUF file.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
}

/// A loaded language model ready to generate.
pub struct Llm {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub info: ModelInfo,
    /// Token ids that end generation (EOS, end-of-turn).
    pub stop_ids: Vec<u32>,
    smollm_default_system: bool,
    /// Fault injection for tests (`FLYWHEEL_FAULT_OOM_ABOVE=N`): a step over more than N
    /// sequences fails as out-of-memory, so the back-off runs on machines without a GPU.
    fault_oom_above: Option<usize>,
    /// The vocabulary as a grammar engine sees it, built on the first constrained request.
    vocab: std::sync::OnceLock<std::result::Result<Arc<crate::constrain::Vocab>, String>>,
    /// Grammars compiled for this model, by [`crate::constrain::Constraint::key`].
    compiled: std::sync::Mutex<HashMap<String, Arc<crate::constrain::Compiled>>>,
    /// KV caches of recently finished sequences, for [`PrefixPool`] reuse.
    pool: std::sync::Mutex<PrefixPool>,
}

/// Whether an error is the device running out of memory (typed where it is detected: see
/// `Error::OutOfMemory`; the CPU allocator aborts instead, so this is GPU-only in
/// practice).
pub fn is_oom(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory(_))
}

impl Llm {
    /// Loads a resolved model (a GGUF file or a Hugging Face folder) onto a device, its
    /// matmuls in `precision`. `template` overrides the model's own chat template.
    pub fn load(
        m: &ResolvedModel,
        device: &Device,
        precision: Precision,
        template: Option<ChatTemplate>,
    ) -> Result<Llm> {
        let file = m.main_file();
        let ckpt = Checkpoint::open(&file.path)?;
        let tokenizer = open_tokenizer(&ckpt)?;
        let template = chat_template_of(&ckpt, m, template, &tokenizer)?;
        let decoder = Decoder::load(&ckpt, device, precision)?;
        let arch = ckpt.arch_name()?;
        let (declared_stops, quant, smollm_default_system) = match &ckpt {
            Checkpoint::Gguf(g) => (
                gguf_stop_ids(g),
                m.manifest.map(|mf| mf.quant.clone()).unwrap_or_else(|| {
                    g.get("general.file_type")
                        .and_then(crate::models::gguf::value_u64)
                        .map_or("unknown".into(), |t| format!("file_type {t}"))
                }),
                // Only for the built-in ChatML: SmolLM2's own Jinja template writes it.
                g.str("tokenizer.chat_template")
                    .is_some_and(|t| t.contains("named SmolLM")),
            ),
            Checkpoint::Hf(f) => (
                f.eos_token_ids()?,
                format!("safetensors {}", decoder.stored_formats),
                false,
            ),
        };
        let mut stop_ids = stop_ids(&tokenizer, &template, &declared_stops);
        stop_ids.dedup();
        Ok(Llm {
            info: ModelInfo {
                model: m.id.clone(),
                file_sha256: file.sha256.clone(),
                quant,
                weights: decoder.weight_format.clone(),
                arch,
                chat_template: template.provenance(),
                files: m
                    .folder_files()
                    .iter()
                    .map(|f| (f.name.clone(), f.sha256.clone()))
                    .collect(),
            },
            decoder,
            tokenizer,
            template,
            stop_ids,
            smollm_default_system,
            vocab: Default::default(),
            compiled: Default::default(),
            pool: Default::default(),
            fault_oom_above: std::env::var("FLYWHEEL_FAULT_OOM_ABOVE")
                .ok()
                .and_then(|v| v.parse().ok()),
        })
    }

    /// The injected out-of-memory error for a step over `n` sequences, if one is set up.
    pub fn injected_oom(&self, n: usize) -> Option<Error> {
        self.fault_oom_above.filter(|&k| n > k).map(|k| {
            Error::OutOfMemory(format!(
                "CUDA_ERROR_OUT_OF_MEMORY (injected: {n} sequences > FLYWHEEL_FAULT_OOM_ABOVE={k})"
            ))
        })
    }

    /// Sequences that fit in free device memory, by their KV caches (keys and values of
    /// `capacity` positions per layer, in the cache dtype) with half the free memory left
    /// for activations. `None` on the CPU (host memory is not the limit there) or when it
    /// cannot be asked.
    pub fn memory_batch_cap(&self, capacity: usize) -> Option<usize> {
        let c = &self.decoder.cfg;
        let elem = self.decoder.cache_dtype().size_in_bytes();
        let per_seq = 2 * c.n_layers * capacity * c.n_kv_heads * c.head_dim * elem;
        let free = free_device_memory(self.decoder.device())?;
        Some((free / 2 / per_seq.max(1)).max(1))
    }

    /// Adds generation stops the model declares outside its tokenizer (a Hugging Face
    /// folder's `generation_config.json`/`config.json` `eos_token_id`, int or list).
    /// Starts `cache` with the longest prefix of `prompt` that a kept sequence already
    /// computed (at least [`MIN_REUSE`] tokens, always leaving one token to feed), and
    /// returns how many positions it copied. Rows are computed independently of the
    /// batch around them, so a copied row equals the row a prefill would write: the
    /// output does not depend on what the pool held.
    fn reuse_prefix(&self, prompt: &[u32], cache: &mut SeqCache) -> Result<usize> {
        let pool = self
            .pool
            .lock()
            .map_err(|_| Error::Internal("prefix pool poisoned".into()))?;
        let Some((n, e)) = pool.longest(prompt) else {
            return Ok(0);
        };
        cache.copy_prefix_from(&e.cache, n)?;
        Ok(n)
    }

    /// Keeps a finished sequence's cache (its `tokens` are the positions it holds), so a
    /// later prompt that extends it (the next turn of a conversation, a step that
    /// continues an earlier step's chat, a shared system prompt) skips their prefill.
    fn keep_prefix(&self, tokens: Vec<u32>, cache: SeqCache, batch: usize) {
        if tokens.len() < MIN_REUSE {
            return;
        }
        let c = &self.decoder.cfg;
        let per_position =
            2 * c.n_layers * c.n_kv_heads * c.head_dim * self.decoder.cache_dtype().size_in_bytes();
        let bytes = |k: &Kept| k.cache.capacity * per_position;
        if let Ok(mut pool) = self.pool.lock() {
            let kept = Kept { tokens, cache };
            if bytes(&kept) > POOL_BYTES {
                return;
            }
            pool.entries.push_back(kept);
            // Two per running sequence: a conversation's assistant and simulated user
            // both finish between one assistant turn and the next. And a memory budget
            // (a kept cache holds its whole capacity, used or not).
            while pool.entries.len() > (2 * batch).max(8)
                || pool.entries.iter().map(bytes).sum::<usize>() > POOL_BYTES
            {
                pool.entries.pop_front();
            }
        }
    }

    /// Drops every kept prefix; returns how many there were.
    pub fn clear_pool(&self) -> usize {
        self.pool.lock().map_or(0, |mut p| {
            let n = p.entries.len();
            p.entries.clear();
            n
        })
    }

    pub fn extra_stop_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.stop_ids.contains(&id) {
                self.stop_ids.push(id);
            }
        }
    }

    /// The rendered prompt for a conversation, with the assistant turn opened.
    pub fn render(&self, messages: &[Message]) -> Result<Prompt> {
        self.template.render(messages, self.smollm_default_system)
    }

    /// The prompt token ids for a conversation, with the assistant turn opened. Only the
    /// template's own text makes control tokens; message text (seed values included)
    /// that spells one is tokenized as text. A Jinja template writes its own BOS
    /// (`{{ bos_token }}`), so none is added for it, as HF's `apply_chat_template` adds
    /// none.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let prompt = self.render(messages)?;
        let mut ids = self.tokenizer.encode_prompt(&prompt)?;
        if matches!(self.template, ChatTemplate::Raw) {
            if let Some(b) = self.tokenizer.bos_id {
                ids.insert(0, b);
            }
        }
        Ok(ids)
    }

    /// Token ids for a prompt already rendered with the chat template (and perhaps
    /// extended, as the judge's verdict prefill is): markers become control tokens, text
    /// stays text.
    pub fn prompt_ids_raw(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        self.tokenizer.encode_prompt(prompt)
    }

    /// A constraint compiled for this model (once per distinct constraint).
    pub fn compile(
        &self,
        c: &crate::constrain::Constraint,
    ) -> Result<Arc<crate::constrain::Compiled>> {
        let key = c.key();
        if let Some(g) = self.compiled.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(g);
        }
        let vocab = self
            .vocab
            .get_or_init(|| {
                crate::constrain::Vocab::new(
                    &self.tokenizer.token_bytes(),
                    self.decoder.cfg.vocab,
                    &self.stop_ids,
                )
                .map(Arc::new)
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| Error::Model(format!("{}: grammar vocabulary: {e}", self.info.model)))?;
        let g = Arc::new(
            vocab
                .compile(c)
                .map_err(|e| Error::Model(format!("{}: {e}", self.info.model)))?,
        );
        if let Ok(mut m) = self.compiled.lock() {
            m.insert(key, g.clone());
        }
        Ok(g)
    }

    /// Generates for every request with continuous batching. `on_done` receives each
    /// output as soon as its sequence finishes (in completion order).
    pub fn generate(
        &self,
        requests: impl IntoIterator<Item = Request>,
        params: &GenParams,
        mut on_done: impl FnMut(Output) -> Result<()>,
    ) -> Result<GenStats> {
        let mut queue = requests.into_iter();
        // Sequences sent back by an out-of-memory back-off, restarted before new ones.
        let mut returned: std::collections::VecDeque<Request> = Default::default();
        let mut active: Vec<Active> = Vec::new();
        let mut stats = GenStats::default();
        let ctx = self.decoder.cfg.context;
        let mut batch = params.batch_size.max(1);
        if let Some(cap) = self.memory_batch_cap(ctx.min(512 + params.max_new_tokens)) {
            if cap < batch {
                tracing::warn!("batch {batch} does not fit in free device memory; using {cap}");
                batch = cap;
            }
        }
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            // Admit new prompts into free slots.
            let mut admitted: Vec<Active> = Vec::new();
            while active.len() + admitted.len() < batch {
                let Some(r) = returned.pop_front().or_else(|| queue.next()) else {
                    break;
                };
                if r.prompt_ids.is_empty() || r.prompt_ids.len() >= ctx {
                    on_done(Output {
                        id: r.id,
                        tokens: vec![],
                        text: String::new(),
                        finish: Finish::PromptTooLong,
                        prompt_tokens: r.prompt_ids.len(),
                        valid: r.constraint.as_ref().map(|_| false),
                    })?;
                    continue;
                }
                let (sampling, max_new) = match &r.own {
                    Some(o) => (&o.sampling, o.max_new_tokens),
                    None => (&params.sampling, params.max_new_tokens),
                };
                let max_new = max_new.min(ctx - r.prompt_ids.len());
                let capacity = r.prompt_ids.len() + max_new;
                let mut alloc = self.decoder.new_cache(capacity);
                if alloc.as_ref().is_err_and(is_oom) && self.clear_pool() > 0 {
                    // Kept prefixes are a luxury: give their memory back first.
                    alloc = self.decoder.new_cache(capacity);
                }
                let cache = match alloc.and_then(|mut c| {
                    stats.reused_tokens += self.reuse_prefix(&r.prompt_ids, &mut c)?;
                    Ok(c)
                }) {
                    Ok(c) => c,
                    Err(e) if is_oom(&e) && active.len() + admitted.len() > 0 => {
                        returned.push_front(r);
                        batch = active.len() + admitted.len();
                        stats.oom_backoffs += 1;
                        tracing::warn!("out of memory allocating a KV cache; batch now {batch}");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                admitted.push(Active {
                    seed: r.seed,
                    sampler: Sampler::new(sampling, r.seed),
                    context: r.prompt_ids.clone(),
                    prompt_len: r.prompt_ids.len(),
                    max_new,
                    cache,
                    id: r.id,
                    own: r.own,
                    guide: r.constraint.as_ref().map(|c| c.start()),
                    constraint: r.constraint,
                    valid: None,
                });
            }
            if active.is_empty() && admitted.is_empty() {
                break;
            }
            let n_old = active.len();
            active.extend(admitted);
            // Each sequence feeds what its cache lacks: the whole prompt when new (or when
            // an out-of-memory step never ran), else the token sampled last.
            let feeds: Vec<Vec<u32>> = active
                .iter()
                .map(|a| a.context[a.cache.len..].to_vec())
                .collect();
            let step = {
                let mut segs: Vec<Segment<'_>> = Vec::with_capacity(active.len());
                let mut guides: Vec<&mut crate::constrain::Guide> = Vec::new();
                for (a, f) in active.iter_mut().zip(&feeds) {
                    segs.push(Segment {
                        cache: &mut a.cache,
                        tokens: f,
                    });
                    guides.extend(a.guide.as_mut());
                }
                let forward = |segs: &mut Vec<Segment<'_>>| match self.injected_oom(segs.len()) {
                    Some(e) => Err(e),
                    None => self.decoder.forward(segs),
                };
                if guides.is_empty() {
                    forward(&mut segs)
                } else {
                    // The grammar masks for this step depend only on tokens already
                    // sampled: compute them on another thread while the forward runs.
                    let t = Instant::now();
                    let r = std::thread::scope(|sc| {
                        let h = sc.spawn(|| {
                            let t = Instant::now();
                            for g in guides.iter_mut() {
                                g.prepare();
                            }
                            t.elapsed()
                        });
                        let r = forward(&mut segs);
                        (r, h.join())
                    });
                    match r.1 {
                        Ok(mask_time) => {
                            stats.mask_seconds += mask_time.as_secs_f64();
                            stats.masks += guides.len();
                        }
                        Err(_) => {
                            return Err(Error::Internal("grammar mask thread panicked".into()))
                        }
                    }
                    stats.constrained_step_seconds += t.elapsed().as_secs_f64();
                    r.0
                }
            };
            let logits = match step {
                Ok(l) => l,
                // A failed step leaves every cache's length unchanged (it advances only at
                // the end of a forward), so the survivors simply step again. The sequences
                // sent back restart from scratch: their sampler is seeded per record, so
                // their text is the same as if they had never started.
                // Kept prefixes go first; the step then runs again as it was.
                Err(e) if is_oom(&e) && self.clear_pool() > 0 => {
                    tracing::warn!("out of memory; dropped the kept prompt prefixes ({e})");
                    continue;
                }
                Err(e) if is_oom(&e) && active.len() > 1 => {
                    let new = active.len() - n_old;
                    let keep = if new > 0 && n_old > 0 { n_old } else { active.len() / 2 };
                    for a in active.drain(keep..).rev() {
                        returned.push_front(Request {
                            prompt_ids: a.context[..a.prompt_len].to_vec(),
                            seed: a.seed,
                            id: a.id,
                            own: a.own,
                            constraint: a.constraint,
                        });
                    }
                    batch = keep;
                    stats.oom_backoffs += 1;
                    tracing::warn!("out of memory stepping {} sequences; batch now {batch}", keep + returned.len());
                    continue;
                }
                Err(e) if is_oom(&e) => {
                    return Err(Error::Device(format!(
                        "out of memory even with one sequence ({} prompt tokens, cache of {} positions): use a smaller model, a shorter max_new_tokens, or the CPU ({e})",
                        active[0].prompt_len, active[0].cache.capacity
                    )))
                }
                Err(e) => return Err(e),
            };
            stats.prefill_tokens += feeds
                .iter()
                .filter(|f| f.len() > 1)
                .map(Vec::len)
                .sum::<usize>();
            let mut logits = logits.to_vec2::<f32>()?;
            stats.steps += 1;
            let mut finished = Vec::new();
            for (i, a) in active.iter_mut().enumerate() {
                if let Some(g) = a.guide.as_mut() {
                    if !g.apply(&mut logits[i]) {
                        // Nothing the grammar allows has a finite logit: stop, not matched.
                        a.valid = Some(false);
                        finished.push((i, Finish::Length, None));
                        continue;
                    }
                }
                let tok = a.sampler.sample(&mut logits[i], &a.context);
                stats.generated_tokens += 1;
                let n_gen = a.context.len() - a.prompt_len;
                if self.stop_ids.contains(&tok) {
                    if let Some(g) = a.guide.as_mut() {
                        a.valid = Some(g.accepting());
                    }
                    finished.push((i, Finish::Eos, None));
                    continue;
                }
                a.context.push(tok);
                if let Some(g) = a.guide.as_mut() {
                    // A constrained sequence ends when its grammar does (stop strings would
                    // cut a valid output short): matched, or at the length limit.
                    if g.commit(tok).is_err() {
                        a.valid = Some(false);
                        finished.push((i, Finish::Length, None));
                    } else if g.finished() {
                        a.valid = Some(true);
                        finished.push((i, Finish::Stop, None));
                    } else if n_gen + 1 >= a.max_new {
                        a.valid = Some(g.accepting());
                        finished.push((i, Finish::Length, None));
                    }
                    continue;
                }
                let stop = a.own.as_ref().map_or(&params.stop, |o| &o.stop);
                if !stop.is_empty() {
                    let text = self.tokenizer.decode(&a.context[a.prompt_len..])?;
                    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                        finished.push((i, Finish::Stop, Some(text[..cut].to_string())));
                        continue;
                    }
                }
                if n_gen + 1 >= a.max_new {
                    finished.push((i, Finish::Length, None));
                }
            }
            for (i, finish, text) in finished.into_iter().rev() {
                let a = active.remove(i);
                let tokens = a.context[a.prompt_len..].to_vec();
                self.keep_prefix(a.context[..a.cache.len].to_vec(), a.cache, batch);
                let text = match text {
                    Some(t) => t,
                    None => self.tokenizer.decode(&tokens)?,
                };
                on_done(Output {
                    id: a.id,
                    tokens,
                    text,
                    finish,
                    prompt_tokens: a.prompt_len,
                    valid: a.valid,
                })?;
            }
        }
        Ok(stats)
    }
}

/// The tokenizer a checkpoint carries: a GGUF's metadata, or a folder's `tokenizer.json`
/// (with `tokenizer_config.json`'s BOS/EOS when present).
pub fn open_tokenizer(ckpt: &Checkpoint) -> Result<Tokenizer> {
    match ckpt {
        Checkpoint::Gguf(g) => Tokenizer::from_gguf(g),
        Checkpoint::Hf(f) => {
            let json = f.dir.join("tokenizer.json");
            if !json.is_file() {
                return Err(Error::Model(format!(
                    "{}: no tokenizer.json; flywheel reads fast tokenizers only (save the tokenizer with transformers' fast tokenizer, e.g. AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir))",
                    f.dir.display()
                )));
            }
            let config = f.dir.join("tokenizer_config.json");
            Tokenizer::from_hf_json(&json, config.is_file().then_some(config.as_path()))
        }
    }
}

/// The chat template a model is prompted with: `over` (the spec's) when given, else the
/// model's own Jinja template, else a built-in one (see `models::chat::source`).
pub fn chat_template_of(
    ckpt: &Checkpoint,
    m: &ResolvedModel,
    over: Option<ChatTemplate>,
    tokenizer: &Tokenizer,
) -> Result<ChatTemplate> {
    use crate::models::chat::source;
    match ckpt {
        Checkpoint::Gguf(g) => {
            let declared = m.manifest.and_then(|mf| mf.chat_template.as_deref());
            Ok(source::for_gguf(g, tokenizer, over, declared, &g.arch()?))
        }
        Checkpoint::Hf(f) => {
            let (bos, eos) = source::token_texts(tokenizer);
            if let Some(t) = over {
                return Ok(source::with_tokens(t, bos, eos));
            }
            Ok(source::from_hf_folder(&f.dir)?
                .unwrap_or_else(|| ChatTemplate::detect(None, f.model_type().unwrap_or(""))))
        }
    }
}

/// Token ids that end generation: the tokenizer's end-of-generation tokens (EOS and
/// control tokens such as `<|eot_id|>`, `<|im_end|>`), the model's `declared` ones
/// (GGUF `eot_token_id`/`eos_token_id`, or a Hugging Face `eos_token_id` list), and a
/// built-in template's end of turn.
pub fn stop_ids(tokenizer: &Tokenizer, template: &ChatTemplate, declared: &[u32]) -> Vec<u32> {
    let mut ids = tokenizer.end_of_generation_ids();
    let eot = template.end_of_turn().and_then(|t| tokenizer.token_id(t));
    for id in declared.iter().copied().chain(eot) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// A GGUF's declared end tokens: `tokenizer.ggml.eot_token_id` and `eos_token_id`
/// (either may be an array: all are taken).
fn gguf_stop_ids(g: &crate::models::gguf::GgufFile) -> Vec<u32> {
    use candle_core::quantized::gguf_file::Value;
    let mut ids = Vec::new();
    for k in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eos_token_id"] {
        match g.get(k) {
            Some(Value::Array(a)) => ids.extend(
                a.iter()
                    .filter_map(crate::models::gguf::value_u64)
                    .map(|x| x as u32),
            ),
            Some(v) => ids.extend(crate::models::gguf::value_u64(v).map(|x| x as u32)),
            None => {}
        }
    }
    ids
}

/// Fewest shared tokens worth copying from a kept cache.
const MIN_REUSE: usize = 8;

/// Most bytes the kept caches may hold together (beside the running batch's own caches):
/// 2 GiB is ~45,000 positions of SmolLM2's f32 cache, ~16,000 of an 8B model's f16 one.
const POOL_BYTES: usize = 2 << 30;

/// A finished sequence's cache and the tokens it holds.
struct Kept {
    tokens: Vec<u32>,
    cache: SeqCache,
}

/// Recently finished sequences, oldest first (automatic prefix caching, bounded).
#[derive(Default)]
struct PrefixPool {
    entries: std::collections::VecDeque<Kept>,
}

impl PrefixPool {
    /// The kept sequence sharing the longest prefix with `prompt` (the newest on a tie),
    /// with the number of positions to copy: at most `prompt.len() - 1`, so the last
    /// prompt token is fed and gives the first logits.
    fn longest(&self, prompt: &[u32]) -> Option<(usize, &Kept)> {
        let limit = prompt.len().saturating_sub(1);
        self.entries
            .iter()
            .rev()
            .map(|e| {
                let n = e
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (n.min(limit).min(e.cache.len), e)
            })
            .filter(|(n, _)| *n >= MIN_REUSE)
            .fold(None, |best: Option<(usize, &Kept)>, c| match best {
                Some(b) if b.0 >= c.0 => Some(b),
                _ => Some(c),
            })
    }
}

/// One prompt to complete.
pub struct Request {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub seed: u64,
    /// This request's own settings instead of the call's: lets the steps of a multi-step
    /// task, each with its own sampling and length, share one continuous batch.
    pub own: Option<Arc<SeqParams>>,
    /// A grammar the output must match (from [`Llm::compile`]); `None` costs nothing.
    pub constraint: Option<Arc<crate::constrain::Compiled>>,
}

impl Request {
    /// A request that uses the call's [`GenParams`].
    pub fn new(id: String, prompt_ids: Vec<u32>, seed: u64) -> Request {
        Request {
            id,
            prompt_ids,
            seed,
            own: None,
            constraint: None,
        }
    }
}

/// Per-request settings (see [`Request::own`]).
#[derive(Debug, Clone)]
pub struct SeqParams {
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    /// Stop strings (cut from the output).
    pub stop: Vec<String>,
}

/// Settings shared by all requests of a generate call.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Stop strings (cut from the output).
    pub stop: Vec<String>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Eos,
    Stop,
    Length,
    PromptTooLong,
}

/// A finished sequence.
#[derive(Debug, Clone)]
pub struct Output {
    pub id: String,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// A constrained sequence: whether its text matches the grammar in full (`false`
    /// when it ran out of tokens mid-grammar). `None` for an unconstrained one.
    pub valid: Option<bool>,
}

/// Counters for progress and benches.
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    /// Times the batch was cut after running out of device memory.
    pub oom_backoffs: usize,
    pub steps: usize,
    pub prefill_tokens: usize,
    /// Prompt positions copied from kept caches instead of prefilled.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    /// Grammar masks computed, and the seconds spent computing them (beside the forward).
    pub masks: usize,
    pub mask_seconds: f64,
    /// Wall seconds of the steps that had a constrained sequence (forward and masks).
    pub constrained_step_seconds: f64,
}

struct Active {
    id: String,
    seed: u64,
    sampler: Sampler,
    context: Vec<u32>,
    prompt_len: usize,
    max_new: usize,
    cache: SeqCache,
    own: Option<Arc<SeqParams>>,
    constraint: Option<Arc<crate::constrain::Compiled>>,
    guide: Option<crate::constrain::Guide>,
    valid: Option<bool>,
}

/// Free memory on a CUDA device, in bytes.
#[cfg(feature = "cuda")]
fn free_device_memory(d: &Device) -> Option<usize> {
    match d {
        Device::Cuda(c) => {
            let _ = c.cuda_stream().context().bind_to_thread();
            candle_core::cuda_backend::cudarc::driver::result::mem_get_info()
                .ok()
                .map(|(free, _total)| free)
        }
        _ => None,
    }
}

#[cfg(not(feature = "cuda"))]
fn free_device_memory(_d: &Device) -> Option<usize> {
    None
}
