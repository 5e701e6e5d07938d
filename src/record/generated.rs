//! The record: one chat sample with where it came from. Shape in DESIGN.md.

use crate::engine::{Finish, ModelInfo};
use crate::models::chat::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// `synthetic` or `real`.
    pub source: String,
    pub messages: Vec<Message>,
    /// The tools the assistant could call (OpenAI function format), on tool-calling
    /// records: trainers render them into the prompt as at generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<serde_json::Value>>,
    pub meta: Meta,
    pub provenance: Provenance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub task: String,
    /// The seed values filled into the template.
    pub vars: BTreeMap<String, String>,
    pub sample_index: usize,
    /// A task with steps: every step's value by step name (absent for a plain task, so
    /// plain records keep their exact bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, String>,
    /// A conversation record: its number of assistant turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<usize>,
    /// An evolved record: the evolution rounds that succeeded (its curriculum level;
    /// `[blend] order = "curriculum"` sorts on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<usize>,
    /// An evolved record: its instruction at each round, the seed first (round 0), then
    /// the failed round that stopped it, if one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<Lineage>,
    /// A constrained answer (`output = { … }`): which constraint, and whether the answer
    /// matches it in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputCheck>,
}

/// How a constrained answer ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputCheck {
    /// `json_schema`, `regex`, `choice` or `grammar`.
    pub constraint: String,
    /// `false`: it ran out of tokens before the grammar was complete (a valid prefix).
    pub valid: bool,
}

/// One round of an evolved instruction's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub round: usize,
    /// `seed` for round 0, else the operator's name (`deepen`, ...).
    pub operator: String,
    pub text: String,
    /// Why this round's rewrite was refused (`refusal`, `not_harder`, `copies_parent`,
    /// `empty`); it is then not the record's instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub generator: ModelInfo,
    pub sampling: SamplingRecord,
    pub finish_reason: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub device: String,
    pub spec_sha256: String,
    pub flywheel: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingRecord {
    /// This record's own seed, derived from the run seed and the record id.
    pub seed: u64,
    pub run_seed: u64,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
}
