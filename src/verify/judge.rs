//! The LLM judge: a rubric asked as a question whose answer is one token, scored from the
//! logits at that position — no free text is parsed, so no verdict is ever "unparseable".
//!
//! The prompt is built with the judge's chat template and the assistant turn pre-filled up
//! to the verdict ("Verdict:" or "Score: "), so the next token is the bare label. Each
//! label may have several surface forms (" yes", " Yes", "yes", …); their probabilities are
//! summed. Items are packed as ragged segments into one forward pass (prefill only), and
//! because the engine is batch-invariant a batched score equals the batch-1 score.

use crate::engine::model::Segment;
use crate::engine::Llm;
use crate::error::{Error, Result};
use crate::models::chat::{Message, Prompt};
use serde::{Deserialize, Serialize};

use crate::spec::ScaleKind;
/// The rubric and how scores combine are spec configuration; they are re-exported here
/// because the judge is built from them (and the `judge` subcommand builds a rubric too).
pub use crate::spec::{load_rubric, Combine, Rubric};

/// A parsed scale: labels with their values, and the text that precedes the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub labels: Vec<(String, f64)>,
    /// Surface forms per label, tried in the tokenizer.
    forms: Vec<Vec<String>>,
    question: String,
    prefill: String,
}

impl Scale {
    /// Parses a scale (the spec's [`ScaleKind`]) into its labels, their surface forms
    /// and the question that asks for them.
    pub fn parse(s: &str) -> std::result::Result<Scale, String> {
        Ok(match ScaleKind::parse(s)? {
            ScaleKind::YesNo => Scale {
                labels: vec![("yes".into(), 1.0), ("no".into(), 0.0)],
                forms: vec![
                    vec![" yes".into(), " Yes".into(), "yes".into(), "Yes".into()],
                    vec![" no".into(), " No".into(), "no".into(), "No".into()],
                ],
                question: "Is this a good answer to the question? Reply yes or no.".into(),
                // The verdict is the first token of the assistant turn.
                prefill: String::new(),
            },
            ScaleKind::OneTo(hi) => {
                let lo = 1;
                Scale {
                    labels: (lo..=hi).map(|v| (v.to_string(), v as f64)).collect(),
                    forms: (lo..=hi).map(|v| vec![v.to_string(), format!(" {v}")]).collect(),
                    question: format!("Rate the answer from {lo} (worst) to {hi} (best). Reply with the number only."),
                    // A trailing space, so the next token is the bare digit (without it a
                    // small judge puts almost no mass on digits).
                    prefill: "Score: ".into(),
                }
            }
        })
    }

    fn min(&self) -> f64 {
        self.labels
            .iter()
            .map(|l| l.1)
            .fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.labels
            .iter()
            .map(|l| l.1)
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// One item to judge.
#[derive(Debug, Clone)]
pub struct JudgeItem {
    pub prompt: String,
    pub response: String,
}

/// A judge's verdict on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    pub judge: String,
    pub model: String,
    /// Probability of each label, normalized over the labels.
    pub probs: Vec<f64>,
    pub labels: Vec<String>,
    /// Expected value over the labels (P(yes) for yes-no).
    pub score: f64,
    /// `score` mapped to 0..1, comparable across scales.
    pub normalized: f64,
    /// Total probability the judge put on any label form; low means it did not take the
    /// question as intended.
    pub label_mass: f64,
    pub prompt_tokens: usize,
    /// The response was cut to fit the judge's context.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// `rationale = true`: what the judge wrote before its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// `rationale = true`: the label it wrote (held to the scale by a grammar); `probs`
    /// are still read from the logits at that position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// An item's judge prompt, its token ids, and whether its response was cut to fit.
type Prepared = (Prompt, Vec<u32>, bool);

/// The longest rationale, in characters (one or two sentences).
const RATIONALE_CHARS: usize = 300;
/// Tokens a rationale and its verdict may take.
const RATIONALE_TOKENS: usize = 160;

/// Prompt tokens packed into one judge forward pass at most on the CPU (more only for a
/// single longer item): beyond this, activations outgrow the CPU caches and throughput
/// drops.
pub const TOKENS_PER_FORWARD: usize = 2048;

/// The same budget on a GPU, where wider GEMMs keep the tensor cores busy; activations of
/// 16k tokens stay well under a gigabyte for the small judges this targets, and an
/// out-of-memory error halves the batch anyway.
pub const TOKENS_PER_FORWARD_GPU: usize = 16384;

/// A loaded judge: model, rubric and the token ids of its labels.
pub struct Judge<'a> {
    pub name: String,
    pub llm: &'a Llm,
    pub rubric: Rubric,
    pub scale: Scale,
    /// Per label, the single-token ids of its forms.
    label_ids: Vec<Vec<u32>>,
    /// A pairwise judge: each item's response holds "Answer A" and "Answer B", and the
    /// question is whether A is better (P(yes) = P(A better)).
    pairwise: bool,
    /// Context budget for one item (prompt + verdict position).
    pub max_tokens: usize,
}

impl<'a> Judge<'a> {
    /// Checks that every label has at least one single-token form in the judge's tokenizer.
    pub fn new(name: &str, llm: &'a Llm, rubric: Rubric, max_tokens: usize) -> Result<Judge<'a>> {
        let scale =
            Scale::parse(&rubric.scale).map_err(|e| Error::Spec(format!("judge {name}: {e}")))?;
        let mut label_ids = Vec::new();
        for ((label, _), forms) in scale.labels.iter().zip(&scale.forms) {
            let mut ids = Vec::new();
            for f in forms {
                let t = llm.tokenizer.encode(f)?;
                if t.len() == 1 && !ids.contains(&t[0]) {
                    ids.push(t[0]);
                }
            }
            if ids.is_empty() {
                return Err(Error::Spec(format!(
                    "judge {name}: the label {label:?} is not a single token in {}'s tokenizer (forms tried: {forms:?}); choose another scale",
                    llm.info.model
                )));
            }
            label_ids.push(ids);
        }
        let max_tokens = max_tokens.min(llm.decoder.cfg.context).max(64);
        Ok(Judge {
            name: name.to_string(),
            llm,
            rubric,
            scale,
            label_ids,
            max_tokens,
            pairwise: false,
        })
    }

    /// A yes-no judge that compares two answers to one question: the item's response is
    /// [`Judge::pair`], and the score is P(answer A is better). `eval` asks it in both
    /// orders, so a preference for a position cancels.
    pub fn pairwise(
        name: &str,
        llm: &'a Llm,
        criteria: &str,
        max_tokens: usize,
    ) -> Result<Judge<'a>> {
        let rubric = Rubric {
            criteria: criteria.to_string(),
            scale: "yes-no".into(),
            system: Some(format!(
                "You are a strict teacher comparing two answers to the same question. The better answer is correct, on topic, complete and helpful: {}",
                criteria.trim()
            )),
            rationale: false,
        };
        let mut j = Judge::new(name, llm, rubric, max_tokens)?;
        j.pairwise = true;
        Ok(j)
    }

    /// The response text of a pairwise item: both answers, each cut to `max_chars` so
    /// neither position loses more of its answer when the prompt must be shortened.
    pub fn pair(a: &str, b: &str, max_chars: usize) -> String {
        let cut = |t: &str| -> String {
            let t = t.trim();
            match t.char_indices().nth(max_chars) {
                Some((i, _)) => format!("{} […]", &t[..i]),
                None => t.to_string(),
            }
        };
        format!("Answer A: {}\nAnswer B: {}", cut(a), cut(b))
    }

    /// The judge's prompt for an item (chat template applied, verdict next). The item's
    /// text stays text: a response spelling `<|im_end|>` cannot close the judge's turn.
    ///
    /// The shape was chosen on a labeled set (tests/fixtures/judge_labeled.jsonl): a
    /// strict-grader system prompt carrying the criteria, a short question/answer turn, and
    /// the verdict as the first assistant token ranked best of seven formats tried with
    /// SmolLM2-135M (AUROC 0.63; the README reports what small judges can and cannot do).
    pub fn prompt_text(&self, item: &JudgeItem) -> Result<Prompt> {
        let system = match &self.rubric.system {
            Some(s) => s.clone(),
            None => format!(
                "You are a strict teacher grading answers. Wrong, off-topic, unfinished or unhelpful answers are bad. A good answer meets these criteria: {}",
                self.rubric.criteria.trim()
            ),
        };
        let question = if self.pairwise {
            "Is Answer A better than Answer B? Reply yes or no.".to_string()
        } else if self.rubric.rationale {
            format!(
                "First say in one sentence why the answer is good or bad, then give your verdict. {}",
                self.scale.question
            )
        } else {
            self.scale.question.clone()
        };
        let user = if self.pairwise {
            format!(
                "Question: {}\n{}\n{}",
                item.prompt.trim(),
                item.response.trim(),
                question
            )
        } else {
            format!(
                "Question: {}\nAnswer: {}\n{}",
                item.prompt.trim(),
                item.response.trim(),
                question
            )
        };
        let msgs = [Message::new("system", system), Message::new("user", user)];
        let mut prompt = self.llm.template.render(&msgs, true)?;
        if self.rubric.rationale {
            prompt.text("Reasoning:");
        } else {
            prompt.text(&self.scale.prefill);
        }
        Ok(prompt)
    }

    /// Token ids for an item, cutting the response (and flagging it) when it does not fit.
    /// The inner `Err` is an item that cannot be judged at all (its question does not fit
    /// even with the response cut away): that item's problem, not the batch's.
    fn item_ids(&self, item: &JudgeItem) -> Result<std::result::Result<(Vec<u32>, bool), String>> {
        Ok(self.item_prompt(item)?.map(|(_, ids, cut)| (ids, cut)))
    }

    /// [`Self::item_ids`] with the prompt the ids encode.
    fn item_prompt(&self, item: &JudgeItem) -> Result<std::result::Result<Prepared, String>> {
        let prompt = self.prompt_text(item)?;
        let ids = self.llm.prompt_ids_raw(&prompt)?;
        if ids.len() <= self.max_tokens {
            return Ok(Ok((prompt, ids, false)));
        }
        let mut resp: Vec<char> = item.response.chars().collect();
        loop {
            let keep = resp.len() * 4 / 5;
            if keep == 0 {
                return Ok(Err(format!(
                    "judge {}: prompt_too_long: the question ({} chars) with the rubric exceeds the judge's {} tokens even with the response cut; not judged (raise the judge's max_tokens)",
                    self.name,
                    item.prompt.chars().count(),
                    self.max_tokens
                )));
            }
            resp.truncate(keep);
            let cut = JudgeItem {
                prompt: item.prompt.clone(),
                response: format!("{} […]", resp.iter().collect::<String>()),
            };
            let prompt = self.prompt_text(&cut)?;
            let ids = self.llm.prompt_ids_raw(&prompt)?;
            if ids.len() <= self.max_tokens {
                return Ok(Ok((prompt, ids, true)));
            }
        }
    }

    /// Scores items, at most `batch` per forward pass (and at most
    /// [`TOKENS_PER_FORWARD`] prompt tokens, so wide batches stay in cache). The prefix all
    /// items share (system prompt and rubric) is prefilled once and its KV copied into
    /// each item's cache. Order is preserved; scores do not depend on `batch`.
    /// An item that cannot be judged at all is an error here; [`Judge::score_each`] gives
    /// it its reason and scores the rest.
    pub fn score(&self, items: &[JudgeItem], batch: usize) -> Result<Vec<JudgeScore>> {
        self.score_each(items, batch)?
            .into_iter()
            .map(|r| r.map_err(Error::Model))
            .collect()
    }

    /// Like [`Judge::score`], but an item whose question alone overflows the judge's window
    /// gets `Err(reason)` in its place instead of failing every other item with it.
    pub fn score_each(
        &self,
        items: &[JudgeItem],
        batch: usize,
    ) -> Result<Vec<std::result::Result<JudgeScore, String>>> {
        if self.rubric.rationale {
            return self.score_with_rationale(items, batch);
        }
        let mut prepared = Vec::with_capacity(items.len());
        let mut each = Vec::with_capacity(items.len());
        for it in items {
            match self.item_ids(it)? {
                Ok(p) => {
                    prepared.push(p);
                    each.push(None);
                }
                Err(why) => each.push(Some(why)),
            }
        }
        let mut scored = self.score_prepared(prepared, batch)?.into_iter();
        each.into_iter()
            .map(|why| match why {
                Some(why) => Ok(Err(why)),
                None => scored.next().map(Ok).ok_or_else(|| {
                    Error::Internal(format!("judge {}: a score is missing", self.name))
                }),
            })
            .collect()
    }

    fn score_prepared(
        &self,
        prepared: Vec<(Vec<u32>, bool)>,
        mut batch: usize,
    ) -> Result<Vec<JudgeScore>> {
        let Some(first) = prepared.first() else {
            return Ok(Vec::new());
        };
        // The shared prefix, leaving every item at least one token of its own.
        let mut p = prepared
            .iter()
            .map(|(ids, _)| ids.len() - 1)
            .min()
            .unwrap_or(0);
        for (ids, _) in &prepared[1..] {
            p = p.min(first.0.iter().zip(ids).take_while(|(a, b)| a == b).count());
        }
        let d = &self.llm.decoder;
        let prefix = if p >= 8 && prepared.len() > 1 {
            let mut c = d.new_cache(p)?;
            d.forward(&mut [Segment {
                cache: &mut c,
                tokens: &first.0[..p],
            }])?;
            Some(c)
        } else {
            None
        };
        let start = if prefix.is_some() { p } else { 0 };
        let budget = if d.device().is_cpu() {
            TOKENS_PER_FORWARD
        } else {
            TOKENS_PER_FORWARD_GPU
        };
        let mut out = Vec::with_capacity(prepared.len());
        let mut i = 0;
        while i < prepared.len() {
            // Next chunk: up to `batch` items within the token budget (at least one).
            let mut j = i;
            let mut tokens = 0;
            while j < prepared.len()
                && j - i < batch.max(1)
                && (j == i || tokens + prepared[j].0.len() - start <= budget)
            {
                tokens += prepared[j].0.len() - start;
                j += 1;
            }
            let chunk = &prepared[i..j];
            let step = || -> Result<Vec<Vec<f32>>> {
                let mut caches = Vec::with_capacity(chunk.len());
                for (ids, _) in chunk {
                    let mut c = d.new_cache(ids.len())?;
                    if let Some(pc) = &prefix {
                        c.copy_prefix_from(pc, p)?;
                    }
                    caches.push(c);
                }
                let mut segs: Vec<Segment<'_>> = caches
                    .iter_mut()
                    .zip(chunk)
                    .map(|(c, (ids, _))| Segment {
                        cache: c,
                        tokens: &ids[start..],
                    })
                    .collect();
                if let Some(e) = self.llm.injected_oom(segs.len()) {
                    return Err(e);
                }
                Ok(d.forward(&mut segs)?.to_vec2::<f32>()?)
            };
            let logits = match step() {
                Ok(l) => l,
                // Out of device memory: halve the batch and score the same items again
                // (scores do not depend on the batch, so nothing changes but the speed).
                Err(e) if crate::engine::is_oom(&e) && chunk.len() > 1 => {
                    batch = chunk.len() / 2;
                    tracing::warn!(
                        "judge {}: out of memory with {} items; batch now {batch}",
                        self.name,
                        chunk.len()
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (row, (ids, truncated)) in logits.iter().zip(chunk) {
                out.push(self.read_verdict(row, ids.len(), *truncated));
            }
            i = j;
        }
        Ok(out)
    }

    /// The grammar of a rationale and its verdict: one line of reasons, then `Verdict: `
    /// and exactly one of the scale's labels.
    fn rationale_grammar(&self) -> crate::constrain::Constraint {
        let labels: Vec<String> = self
            .scale
            .labels
            .iter()
            .map(|(l, _)| format!("\"{l}\""))
            .collect();
        crate::constrain::Constraint::Lark(format!(
            "start: REASON \"\\nVerdict: \" LABEL\nREASON: /[^\\n]{{1,{RATIONALE_CHARS}}}/\nLABEL: {}\n",
            labels.join(" | ")
        ))
    }

    /// `rationale = true`: each item's rationale and verdict are generated (greedy, the
    /// verdict held to the scale's labels), then the score is read from the logits at the
    /// label, after the judge's own words, as in the default mode.
    fn score_with_rationale(
        &self,
        items: &[JudgeItem],
        batch: usize,
    ) -> Result<Vec<std::result::Result<JudgeScore, String>>> {
        let grammar = self.llm.compile(&self.rationale_grammar())?;
        let mut each: Vec<Option<std::result::Result<(Prompt, bool), String>>> =
            Vec::with_capacity(items.len());
        let mut requests = Vec::new();
        for (k, it) in items.iter().enumerate() {
            match self.item_prompt(it)? {
                Ok((prompt, ids, cut)) => {
                    let mut r = crate::engine::Request::new(k.to_string(), ids, 0);
                    r.constraint = Some(grammar.clone());
                    requests.push(r);
                    each.push(Some(Ok((prompt, cut))));
                }
                Err(why) => each.push(Some(Err(why))),
            }
        }
        let params = crate::engine::GenParams {
            sampling: crate::spec::Sampling {
                temperature: 0.0,
                ..Default::default()
            },
            max_new_tokens: RATIONALE_TOKENS,
            batch_size: batch.max(1),
            stop: Vec::new(),
        };
        let mut written: Vec<Option<(String, bool)>> = vec![None; items.len()];
        self.llm.generate(requests, &params, |o| {
            if let Ok(k) = o.id.parse::<usize>() {
                if let Some(slot) = written.get_mut(k) {
                    *slot = Some((o.text, o.valid == Some(true)));
                }
            }
            Ok(())
        })?;
        // The scoring prompts: the judge's own reasons, then the verdict position.
        let mut prepared = Vec::new();
        let mut meta = Vec::new();
        let mut out: Vec<Option<std::result::Result<JudgeScore, String>>> = Vec::new();
        for (k, e) in each.into_iter().enumerate() {
            match (e, written[k].take()) {
                (Some(Err(why)), _) => out.push(Some(Err(why))),
                (Some(Ok((mut prompt, cut))), Some((text, true))) => {
                    let (reason, label) = text
                        .rsplit_once("\nVerdict: ")
                        .map(|(r, l)| (r.trim().to_string(), l.trim().to_string()))
                        .unwrap_or((text.trim().to_string(), String::new()));
                    prompt.text(&format!(" {reason}\nVerdict:"));
                    let ids = self.llm.prompt_ids_raw(&prompt)?;
                    prepared.push((ids, cut));
                    meta.push((reason, label));
                    out.push(None);
                }
                (Some(Ok(_)), _) => out.push(Some(Err(format!(
                    "judge {}: its rationale did not reach a verdict within {RATIONALE_TOKENS} tokens; not judged",
                    self.name
                )))),
                (None, _) => {
                    return Err(Error::Internal(format!("judge {}: an item is missing", self.name)))
                }
            }
        }
        let mut scored = self.score_prepared(prepared, batch)?.into_iter().zip(meta);
        out.into_iter()
            .map(|o| match o {
                Some(r) => Ok(r),
                None => {
                    let (mut s, (reason, label)) = scored.next().ok_or_else(|| {
                        Error::Internal(format!("judge {}: a score is missing", self.name))
                    })?;
                    s.rationale = Some(reason);
                    s.verdict = Some(label);
                    Ok(Ok(s))
                }
            })
            .collect()
    }

    fn read_verdict(&self, logits: &[f32], prompt_tokens: usize, truncated: bool) -> JudgeScore {
        // log-sum-exp over the whole vocabulary, in f64.
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let p = |id: u32| ((logits[id as usize] as f64 - max).exp()) / z;
        let raw: Vec<f64> = self
            .label_ids
            .iter()
            .map(|ids| ids.iter().map(|&i| p(i)).sum())
            .collect();
        let mass: f64 = raw.iter().sum();
        let probs: Vec<f64> = raw.iter().map(|x| x / mass).collect();
        let score: f64 = probs
            .iter()
            .zip(&self.scale.labels)
            .map(|(p, (_, v))| p * v)
            .sum();
        let (lo, hi) = (self.scale.min(), self.scale.max());
        JudgeScore {
            judge: self.name.clone(),
            model: self.llm.info.model.clone(),
            probs,
            labels: self.scale.labels.iter().map(|l| l.0.clone()).collect(),
            score,
            normalized: (score - lo) / (hi - lo),
            label_mass: mass,
            prompt_tokens,
            truncated,
            rationale: None,
            verdict: None,
        }
    }
}

/// Combined score and agreement (1 − spread of normalized scores) over judges.
pub fn combine(scores: &[JudgeScore], how: Combine) -> Option<(f64, f64)> {
    if scores.is_empty() {
        return None;
    }
    let v: Vec<f64> = scores.iter().map(|s| s.normalized).collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let combined = match how {
        Combine::Mean => v.iter().sum::<f64>() / v.len() as f64,
        Combine::Min => lo,
    };
    Some((combined, 1.0 - (hi - lo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_parse() {
        let s = Scale::parse("1-5").unwrap();
        assert_eq!(s.labels.len(), 5);
        assert_eq!((s.min(), s.max()), (1.0, 5.0));
        assert!(Scale::parse("yes-no").unwrap().prefill.is_empty());
        assert_eq!(Scale::parse("1-5").unwrap().prefill, "Score: ");
        assert!(Scale::parse("1-10").unwrap_err().contains("one digit"));
        assert!(Scale::parse("good-bad").is_err());
    }

    #[test]
    fn combine_mean_min_and_agreement() {
        let mk = |n: f64| JudgeScore {
            judge: "j".into(),
            model: "m".into(),
            probs: vec![],
            labels: vec![],
            score: n,
            normalized: n,
            label_mass: 1.0,
            prompt_tokens: 1,
            truncated: false,
            rationale: None,
            verdict: None,
        };
        let (m, a) = combine(&[mk(0.8), mk(0.4)], Combine::Mean).unwrap();
        assert!((m - 0.6).abs() < 1e-12 && (a - 0.6).abs() < 1e-12);
        assert_eq!(combine(&[mk(0.8), mk(0.4)], Combine::Min).unwrap().0, 0.4);
        assert!(combine(&[], Combine::Mean).is_none());
    }
}
