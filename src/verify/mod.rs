//! Verification: an LLM judge scored from logits ([`judge`]) and programmatic verifiers
//! ([`verifiers`]). Nothing is dropped here: scores are attached to every record, and the
//! keep-rule is applied later, so a threshold can change without re-scoring.

pub mod judge;
pub mod stage;
pub mod verifiers;
