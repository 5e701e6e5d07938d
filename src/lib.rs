//! flywheel: an offline factory for verified, deduplicated, provenance-tagged synthetic
//! training data, running open-weight models in-process through candle.
//!
//! The stages, each a module: [`spec`] (what to make) → [`generate`] (plan and teacher
//! generation on the [`engine`]) → [`verify`] (judges and verifiers) → [`dedup`] (filter,
//! duplicates, decontamination; [`embed`] for semantic similarity) → [`privacy`] (the
//! audit against real data) → [`blend`] (real + synthetic at a ratio) → [`report`] (the
//! dataset card). [`pipeline`] runs them in order over one run directory ([`store`]).
//! Models come from [`models`]; [`bench`] measures the engine.

pub mod bench;
pub mod blend;
pub mod constrain;
pub mod cpu;
pub mod dedup;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod generate;
pub mod models;
pub mod pipeline;
pub mod privacy;
pub mod progress;
pub mod record;
pub mod report;
pub mod review;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod verify;

pub use error::{Error, Result};
pub use spec::Spec;
