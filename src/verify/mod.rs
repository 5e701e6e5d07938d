//! Verification: an LLM judge scored from logits ([`judge`]), programmatic verifiers
//! ([`verifiers`]) and verifiers that run the answer's code in a sandbox ([`exec`],
//! [`sandbox`]). Nothing is dropped here: scores are attached to every record, and the
//! keep-rule is applied later, so a threshold can change without re-scoring.

pub mod exec;
pub mod judge;
pub mod sandbox;
pub mod sql;
pub mod stage;
pub mod verifiers;
