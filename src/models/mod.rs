//! Model sources and loading: which files make a model, where to find them offline, how
//! to check them, and how to turn a GGUF file into a tokenizer and chat template.

pub mod chat;
pub mod checkpoint;
pub mod checksum;
pub mod gguf;
pub mod hf;
pub mod registry;
pub mod source;
pub mod tokenizer;

pub use checkpoint::Checkpoint;
pub use registry::Manifest;
pub use source::{resolve, FetchPolicy, ResolvedModel};
