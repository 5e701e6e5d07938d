//! flywheel: an offline factory for verified, deduplicated, provenance-tagged synthetic
//! training data, running open-weight models in-process through candle.
//!
//! The stages, each a module: [`spec`] (what to make) → [`generate`] (plan and teacher
//! generation on the [`engine`]) → records in a run directory ([`store`]). Models come
//! from [`models`]; [`bench`] measures the engine.

pub mod bench;
pub mod dedup;
pub mod embed;
pub mod engine;
pub mod error;
pub mod generate;
pub mod models;
pub mod progress;
pub mod spec;
pub mod store;
pub mod verify;

pub use error::{Error, Result};
pub use spec::Spec;
