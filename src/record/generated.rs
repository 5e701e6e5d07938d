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
    pub meta: Meta,
    pub provenance: Provenance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub task: String,
    /// The seed values filled into the template.
    pub vars: BTreeMap<String, String>,
    pub sample_index: usize,
    /// A task with steps: every step's value by step name (absent for a plain task, so
    /// plain records keep their exact bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, String>,
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
