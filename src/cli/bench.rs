//! `flywheel bench …`: flags into the library's bench settings; the reports are printed here.

use super::{Ctx, DeviceFlag};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use flywheel::bench::{
    self, dedup::DedupBench, dedup::EmbedBench, ConstraintCase, EndToEnd, GenerateBench,
    JudgeBench, MultiStep,
};
use flywheel::dedup::Shingle;
use flywheel::engine::device;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Decode and prefill throughput at several batch sizes, with hardware bounds.
    Generate(GenerateBenchArgs),
    /// Judge throughput (items/s, prompt tokens/s) at several batch sizes on a fixed item set.
    Judge(JudgeBenchArgs),
    /// Embedding throughput (sentences/s, tokens/s), optionally against sentence-transformers.
    Embed(EmbedBenchArgs),
    /// MinHash-LSH docs/s and F1, semantic all-pairs and k-means timings, optionally against
    /// datasketch, numpy and FAISS.
    Dedup(DedupBenchArgs),
    /// The merge's global dedup at scale: synthetic records in shards, each shard's index
    /// made as `run --shard` makes it, then the merge's join and streamed global pass, with
    /// its time and peak memory (anonymous, and resident with the mapped index); with
    /// --stages, audit, blend and report after it.
    Merge(MergeBenchArgs),
}

pub fn bench(cmd: BenchCmd, cx: &Ctx) -> Result<()> {
    let report = match cmd {
        BenchCmd::Generate(a) => bench::generate(&a.settings(cx)?)?,
        BenchCmd::Judge(a) => bench::judge(&a.settings(cx)?)?,
        BenchCmd::Embed(a) => bench::dedup::embed(&a.settings()?)?,
        BenchCmd::Dedup(a) => bench::dedup::dedup(&a.settings()?)?,
        BenchCmd::Merge(a) => bench::merge::merge(&bench::merge::MergeBench {
            records: a.records,
            shards: a.shards,
            semantic_dim: if a.semantic { a.dim } else { 0 },
            dir: a.dir,
            stages: a.stages,
        })?,
    };
    println!("{report}");
    Ok(())
}

/// Arguments of `flywheel bench merge`.
#[derive(Args)]
pub struct MergeBenchArgs {
    /// Synthetic records (about 330 bytes of JSONL each; 10,000,000 needs about 20 GB of
    /// disk for records and indexes, 35 GB with --semantic).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Shards that make them.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Semantic dedup too, on seeded unit vectors planted in the shards' indexes (the
    /// k-means path; slow on a CPU past a few million).
    #[arg(long)]
    semantic: bool,
    /// Vector width with --semantic.
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// Keep the shards and the merged run here (default: a temporary directory, removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Then the merge's later stages on the kept records, as `flywheel merge` runs them:
    /// audit (PII and copies against a real set of a tenth the size; no DCR embedder),
    /// blend (30 % real) and report (no embedder), each with its time and peak memory
    /// (10,000,000 records need about 8 GB more disk for the stages' files).
    #[arg(long)]
    stages: bool,
}

/// Arguments of `flywheel bench generate`.
#[derive(Args)]
pub struct GenerateBenchArgs {
    /// Model id or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    #[command(flatten)]
    device: DeviceFlag,
    /// Comma-separated numbers of concurrent sequences to decode.
    #[arg(long, default_value = "1,4,16,32", value_delimiter = ',')]
    batch_sizes: Vec<usize>,
    /// Tokens decoded per sequence in each measurement.
    #[arg(long, default_value_t = 48)]
    tokens: usize,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A Python interpreter with llama-cpp-python installed: measure llama.cpp on the same
    /// GGUF file and threads in this run, and print flywheel's speed as a ratio to it.
    #[arg(long, value_name = "PYTHON")]
    llama_cpp: Option<PathBuf>,
    /// Chat prompts in the end-to-end case (real executor, sampling on, records written;
    /// with --llama-cpp, llama.cpp's chat loop on the same prompts). 0: skip it.
    #[arg(long, default_value_t = 16)]
    e2e_records: usize,
    /// New tokens per prompt in the end-to-end case (at most).
    #[arg(long, default_value_t = 128)]
    e2e_tokens: usize,
    /// Batch sizes of the end-to-end case.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    e2e_batch_sizes: Vec<usize>,
    /// Records in the multi-step case: a 1-step task and a 2-step task making the same
    /// tokens per record through the real executor, compared in tokens/s (0: skip it).
    #[arg(long, default_value_t = 16)]
    multi_step_records: usize,
    /// Batch size of the multi-step case (both tasks).
    #[arg(long, default_value_t = 8)]
    multi_step_batch: usize,
    /// New tokens per record in the multi-step case (split evenly between the 2 steps).
    #[arg(long, default_value_t = 64)]
    multi_step_tokens: usize,
    /// A JSON Schema (.json) or Lark grammar (.lark): generate the same chat prompts with
    /// and without it at batch 1 and 16, and print tokens/s, the overhead and the mean
    /// grammar-mask time per token.
    #[arg(long, value_name = "FILE")]
    constraint: Option<PathBuf>,
    /// Prompts in the constrained case.
    #[arg(long, default_value_t = 16)]
    constraint_records: usize,
    /// New tokens per prompt in the constrained case (at most).
    #[arg(long, default_value_t = 128)]
    constraint_tokens: usize,
}

impl GenerateBenchArgs {
    fn settings(self, cx: &Ctx) -> Result<GenerateBench> {
        Ok(GenerateBench {
            runtime: self.device.runtime(cx)?,
            model: self.model,
            batch_sizes: self.batch_sizes,
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            runs: self.runs,
            llama_cpp: self.llama_cpp,
            constraint: match &self.constraint {
                Some(f) => Some(ConstraintCase {
                    constraint: constraint_from_file(f)?,
                    file: f.clone(),
                    records: self.constraint_records.max(1),
                    tokens: self.constraint_tokens.max(1),
                }),
                None => None,
            },
            end_to_end: (self.e2e_records > 0).then(|| EndToEnd {
                records: self.e2e_records,
                tokens: self.e2e_tokens.max(1),
                batch_sizes: self.e2e_batch_sizes.iter().map(|&b| b.max(1)).collect(),
            }),
            multi_step: (self.multi_step_records > 0).then_some(MultiStep {
                records: self.multi_step_records,
                batch: self.multi_step_batch.max(1),
                tokens: self.multi_step_tokens.max(2),
            }),
        })
    }
}

/// Arguments of `flywheel bench judge`.
#[derive(Args)]
pub struct JudgeBenchArgs {
    /// Judge model id or GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    #[command(flatten)]
    device: DeviceFlag,
    /// Items in the fixed synthetic set (seeded; about 200 prompt tokens each).
    #[arg(long, default_value_t = 64)]
    items: usize,
    /// Comma-separated items per forward pass.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    batch_sizes: Vec<usize>,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A Python with llama-cpp-python: score the same token ids with llama.cpp in this run.
    #[arg(long, value_name = "PYTHON")]
    llama_cpp: Option<PathBuf>,
}

impl JudgeBenchArgs {
    fn settings(self, cx: &Ctx) -> Result<JudgeBench> {
        Ok(JudgeBench {
            runtime: self.device.runtime(cx)?,
            model: self.model,
            items: self.items,
            batch_sizes: self.batch_sizes,
            runs: self.runs,
            llama_cpp: self.llama_cpp,
        })
    }
}

/// Arguments of `flywheel bench embed`.
#[derive(Args)]
pub struct EmbedBenchArgs {
    /// Embedder: a built-in id or a local sentence-transformers folder.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model: String,
    /// Sentences to embed (seeded, 8–20 words each, as in short Q&A texts).
    #[arg(long, default_value_t = 2000)]
    n: usize,
    #[command(flatten)]
    device: DeviceFlag,
    /// Tokens per packed forward.
    #[arg(long, default_value_t = flywheel::embed::DEFAULT_TOKEN_BUDGET)]
    token_budget: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A Python with sentence-transformers: measure it on the same sentences, model files and
    /// threads (batch 64), and report the ratio.
    #[arg(long, value_name = "PYTHON")]
    reference: Option<PathBuf>,
}

impl EmbedBenchArgs {
    fn settings(self) -> Result<EmbedBench> {
        Ok(EmbedBench {
            device: self.device.open()?,
            model: self.model,
            n: self.n,
            token_budget: self.token_budget,
            runs: self.runs,
            reference: self.reference,
        })
    }
}

/// Arguments of `flywheel bench dedup`.
#[derive(Args)]
pub struct DedupBenchArgs {
    /// Documents for MinHash and vectors for semantic all-pairs.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Vectors for the k-means (clustered) semantic path; 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    kmeans_n: usize,
    /// Vector width.
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// All-pairs cosine threshold.
    #[arg(long, default_value_t = 0.9)]
    threshold: f32,
    /// MinHash shingles.
    #[arg(long, default_value = "char:5")]
    shingle: String,
    /// A Python with datasketch, numpy and faiss-cpu: measure them on the same data.
    #[arg(long, value_name = "PYTHON")]
    reference: Option<PathBuf>,
    /// Also run the all-pairs similarity kernel (kernels/similarity.cu) on this device
    /// (`cuda:N`; needs a build with `--features cuda`), checked against the CPU pairs.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Signatures for the merge case (the global MinHash of `flywheel merge`); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    merge_n: usize,
}

impl DedupBenchArgs {
    fn settings(self) -> Result<DedupBench> {
        // The device first: fail before the CPU part if it cannot be had.
        let device = device::parse(&self.device)?;
        let shingle = Shingle::parse(&self.shingle)
            .with_context(|| format!("--shingle {:?}: use char:N or word:N", self.shingle))?;
        Ok(DedupBench {
            n: self.n,
            kmeans_n: self.kmeans_n,
            dim: self.dim,
            threshold: self.threshold,
            shingle,
            reference: self.reference,
            device,
            merge_n: self.merge_n,
        })
    }
}

/// A bench constraint from a file: `.lark` is a grammar, anything else a JSON Schema.
fn constraint_from_file(f: &std::path::Path) -> Result<flywheel::constrain::Constraint> {
    use flywheel::constrain::Constraint;
    let text = std::fs::read_to_string(f)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
    let c = if f.extension().is_some_and(|e| e == "lark") {
        Constraint::Lark(text)
    } else {
        Constraint::JsonSchema(
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", f.display()))?,
        )
    };
    c.check()
        .map_err(|e| anyhow::anyhow!("{}: {} cannot be used: {e}", f.display(), c.kind()))?;
    Ok(c)
}
