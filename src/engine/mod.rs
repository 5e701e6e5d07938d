//! The generation engine: a loaded model (decoder + tokenizer + chat template) and a
//! continuous-batching scheduler. Each step is one forward over every active sequence
//! (newly admitted prompts are prefilled in the same step); finished sequences leave
//! and their slots are refilled from the queue.

pub mod device;
pub mod model;
pub mod sampler;

use crate::error::{Error, Result};
use crate::models::chat::{ChatTemplate, Message};
use crate::models::gguf::GgufFile;
use crate::models::tokenizer::Tokenizer;
use crate::models::ResolvedModel;
use crate::spec::Sampling;
use candle_core::Device;
use model::{Decoder, Segment, SeqCache};
use sampler::Sampler;
use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl Llm {
    /// Loads a resolved GGUF model onto a device. `template` overrides the declared one.
    pub fn load(m: &ResolvedModel, device: &Device, template: Option<ChatTemplate>) -> Result<Llm> {
        let file = m.main_file();
        let g = GgufFile::open(&file.path)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let decoder = Decoder::load(&g, device)?;
        let arch = g.arch()?;
        let declared = m
            .manifest
            .and_then(|mf| mf.chat_template.as_deref())
            .and_then(ChatTemplate::from_name)
            .unwrap_or_else(|| ChatTemplate::detect(g.str("tokenizer.chat_template"), &arch));
        let template = template.unwrap_or(declared);
        let mut stop_ids: Vec<u32> = tokenizer.eos_id.into_iter().collect();
        if let Some(eot) = template.end_of_turn().and_then(|t| tokenizer.token_id(t)) {
            if !stop_ids.contains(&eot) {
                stop_ids.push(eot);
            }
        }
        let quant = m.manifest.map(|mf| mf.quant.clone()).unwrap_or_else(|| {
            g.get("general.file_type")
                .and_then(crate::models::gguf::value_u64)
                .map_or("unknown".into(), |t| format!("file_type {t}"))
        });
        let smollm_default_system = g
            .str("tokenizer.chat_template")
            .is_some_and(|t| t.contains("named SmolLM"));
        Ok(Llm {
            info: ModelInfo {
                model: m.id.clone(),
                file_sha256: file.sha256.clone(),
                quant,
                weights: decoder.weight_format.clone(),
                arch,
                chat_template: template.name().into(),
            },
            decoder,
            tokenizer,
            template,
            stop_ids,
            smollm_default_system,
        })
    }

    /// The prompt token ids for a conversation, with the assistant turn opened.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, self.smollm_default_system);
        let mut ids = self.tokenizer.encode(&text)?;
        if self.template == ChatTemplate::Raw {
            if let Some(b) = self.tokenizer.bos_id {
                ids.insert(0, b);
            }
        }
        Ok(ids)
    }

    /// Token ids for text already rendered with the chat template (special tokens in the
    /// text become their ids).
    pub fn prompt_ids_raw(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
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
        let mut active: Vec<Active> = Vec::new();
        let mut stats = GenStats::default();
        let ctx = self.decoder.cfg.context;
        let batch = params.batch_size.max(1);
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            // Admit new prompts into free slots.
            let mut admitted: Vec<Active> = Vec::new();
            while active.len() + admitted.len() < batch {
                let Some(r) = queue.next() else { break };
                if r.prompt_ids.is_empty() || r.prompt_ids.len() >= ctx {
                    on_done(Output {
                        id: r.id,
                        tokens: vec![],
                        text: String::new(),
                        finish: Finish::PromptTooLong,
                        prompt_tokens: r.prompt_ids.len(),
                    })?;
                    continue;
                }
                let max_new = params.max_new_tokens.min(ctx - r.prompt_ids.len());
                let cache = self.decoder.new_cache(r.prompt_ids.len() + max_new)?;
                admitted.push(Active {
                    sampler: Sampler::new(&params.sampling, r.seed),
                    context: r.prompt_ids.clone(),
                    prompt_len: r.prompt_ids.len(),
                    max_new,
                    cache,
                    id: r.id,
                });
            }
            if active.is_empty() && admitted.is_empty() {
                break;
            }
            let n_old = active.len();
            active.extend(admitted);
            // Old sequences feed their last token; new ones their whole prompt.
            let feeds: Vec<Vec<u32>> = active
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    if i < n_old {
                        vec![*a.context.last().expect("non-empty")]
                    } else {
                        a.context.clone()
                    }
                })
                .collect();
            stats.prefill_tokens += feeds[n_old..].iter().map(Vec::len).sum::<usize>();
            let logits = {
                let mut segs: Vec<Segment<'_>> = active
                    .iter_mut()
                    .zip(&feeds)
                    .map(|(a, f)| Segment {
                        cache: &mut a.cache,
                        tokens: f,
                    })
                    .collect();
                self.decoder.forward(&mut segs)?
            };
            let mut logits = logits.to_vec2::<f32>()?;
            stats.steps += 1;
            let mut finished = Vec::new();
            for (i, a) in active.iter_mut().enumerate() {
                let tok = a.sampler.sample(&mut logits[i], &a.context);
                stats.generated_tokens += 1;
                let n_gen = a.context.len() - a.prompt_len;
                if self.stop_ids.contains(&tok) {
                    finished.push((i, Finish::Eos, None));
                    continue;
                }
                a.context.push(tok);
                if !params.stop.is_empty() {
                    let text = self.tokenizer.decode(&a.context[a.prompt_len..])?;
                    if let Some(cut) = params
                        .stop
                        .iter()
                        .filter_map(|s| text.find(s.as_str()))
                        .min()
                    {
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
                })?;
            }
        }
        Ok(stats)
    }
}

/// One prompt to complete.
pub struct Request {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub seed: u64,
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
}

/// Counters for progress and benches.
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    pub steps: usize,
    pub prefill_tokens: usize,
    pub generated_tokens: usize,
}

struct Active {
    id: String,
    sampler: Sampler,
    context: Vec<u32>,
    prompt_len: usize,
    max_new: usize,
    cache: SeqCache,
}
