//! Records: how every stage reads them and what it reads out of them.
//!
//! A record is one JSON object per JSONL line. Inputs come from anywhere (a user's file, a
//! previous stage, real data), so shapes vary: chat `messages`, `prompt` + `response`,
//! alpaca `instruction`/`input`/`output`, or `text`. Stages never pick fields out of the raw
//! JSON themselves: they read files through [`lines`] / [`read`] / [`real`] and look at a
//! record through [`View`], so "the text of a record" or "its prompt and response" means the
//! same thing in dedup, verify, audit, blend, export and report.
//!
//! - [`lines`]: the tolerant JSONL reader (bad lines named, never fatal unless `strict`);
//! - [`read`]: records of a stage's file, each with a stable id;
//! - [`real`]: real data (JSONL, CSV, Parquet) as chat records tagged `source: "real"`;
//! - [`View`]: a typed view of one record (`text`, `messages`, `prompt_response`, …);
//! - [`Record`]: the typed record generate writes (shape in DESIGN.md).

pub mod generated;
pub mod lines;
pub mod read;
pub mod real;
mod view;

pub use crate::models::chat::Message;
pub use generated::{Record, SamplingRecord};
pub use lines::{BadLine, Line};
pub use read::{read_input, read_records, with_id};
pub use view::{prompt_key, View};
