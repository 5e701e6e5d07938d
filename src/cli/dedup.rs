//! `flywheel dedup`: with a spec, its `[filter]` and `[dedup]` sections; without one, the
//! same settings from flags, checked as the spec checks them.

use super::{doing, Ctx, DeviceFlag, OfflineFlag, ShardFlag};
use anyhow::{Context, Result};
use clap::Args;
use flywheel::dedup::stage::{self, DedupOptions};
use flywheel::dedup::{MinHashOptions, SemanticOptions, Shingle};
use flywheel::spec::{is_threshold, FilterSection};
use flywheel::Spec;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(mut_arg("device", |a| a.help("Where to embed: auto, cpu, cuda:N")))]
pub struct DedupArgs {
    /// A spec with [filter]/[dedup] sections (optional: without it, use --input/--output).
    spec: Option<PathBuf>,
    /// Records to read instead of <run>/verified.jsonl (any JSONL with text).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Kept records (required without a spec).
    #[arg(long, conflicts_with = "spec")]
    output: Option<PathBuf>,
    /// Rejected records with reasons (default: OUTPUT with `.rejected.jsonl`).
    #[arg(long, conflicts_with = "spec")]
    rejected: Option<PathBuf>,
    /// Exact duplicates (NFKC, case and whitespace normalized).
    #[arg(long, conflicts_with = "spec")]
    exact: bool,
    /// Near-duplicates by MinHash-LSH at this Jaccard similarity.
    #[arg(long, value_name = "JACCARD", num_args = 0..=1, default_missing_value = "0.8", conflicts_with = "spec")]
    minhash: Option<f32>,
    /// Semantic duplicates at this embedding cosine similarity.
    #[arg(long, value_name = "COSINE", num_args = 0..=1, default_missing_value = "0.92", conflicts_with = "spec")]
    semantic: Option<f32>,
    /// Eval sets (JSONL or plain text) to decontaminate against; repeatable.
    #[arg(long, value_name = "FILE", conflicts_with = "spec")]
    against: Vec<PathBuf>,
    /// Word n-gram length for decontamination.
    #[arg(long, default_value_t = 13, conflicts_with = "spec")]
    ngram: usize,
    /// Also flag records this close (embedding cosine) to an eval item.
    #[arg(long, value_name = "COSINE", conflicts_with = "spec")]
    against_semantic: Option<f32>,
    /// MinHash shingles: char:N or word:N.
    #[arg(long, default_value = "char:5", conflicts_with = "spec")]
    shingle: String,
    /// MinHash permutations.
    #[arg(long, default_value_t = 128, conflicts_with = "spec")]
    num_perm: usize,
    /// Confirm MinHash candidates with the exact shingle Jaccard, not the signature estimate.
    #[arg(long, conflicts_with = "spec")]
    exact_jaccard: bool,
    /// Text to compare: auto (non-system messages, else `text`…), assistant, user, or a field name.
    #[arg(long, default_value = "auto", conflicts_with = "spec")]
    field: String,
    /// Keep only records whose combined judge score (0–1) is at least this.
    #[arg(long, conflicts_with = "spec")]
    min_judge: Option<f64>,
    /// A verifier that must have passed; repeatable.
    #[arg(long, value_name = "NAME", conflicts_with = "spec")]
    require: Vec<String>,
    /// Keep records whose answer hit max_new_tokens (finish_reason "length"); by default
    /// they are rejected as `truncated` (they stop mid-sentence).
    #[arg(long, conflicts_with = "spec")]
    allow_truncated: bool,
    /// Embedder: a built-in id or a local sentence-transformers folder.
    #[arg(long, default_value = "all-minilm-l6-v2", conflicts_with = "spec")]
    embedder: String,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
    /// With a SPEC: the signature pass of shard I of N only. It writes the shard's dedup
    /// index (exact keys, MinHash signatures, and embeddings when [dedup] is semantic) to
    /// runs/<name>/shards/<I>-of-<N>/index/; the global dedup runs in `flywheel merge`,
    /// from those. `run --shard` does this after verify.
    #[command(flatten)]
    shard: ShardFlag,
}

pub fn dedup(a: DedupArgs, cx: &Ctx) -> Result<()> {
    anyhow::ensure!(
        a.spec.is_some() || a.shard.shard.is_none(),
        "--shard needs a SPEC: it indexes that shard's verified records (see flywheel dedup --help)"
    );
    if let Some(path) = &a.spec {
        if let Some(shard) = a.shard.get()? {
            anyhow::ensure!(
                a.input.is_none(),
                "--shard indexes the shard's own verified records: --input does not go with it"
            );
            let spec = Spec::load(path)?.for_shard(shard);
            println!("{}", index_shard(&spec, &a.device, &a.offline, cx, false)?);
            return Ok(());
        }
    }
    let s = match &a.spec {
        Some(path) => with_spec(path, &a, cx)?,
        None => with_flags(a, cx)?,
    };
    println!("{s}");
    Ok(())
}

/// The index of a spec's run (or shard) through the pipeline: `dedup --shard`, `embed --shard`.
pub(super) fn index_shard(
    spec: &Spec,
    device: &DeviceFlag,
    offline: &OfflineFlag,
    cx: &Ctx,
    embed_only: bool,
) -> Result<String> {
    let context = doing(if embed_only { "embed" } else { "dedup" }, &spec.path);
    let opts = flywheel::pipeline::RunOptions {
        runtime: device.runtime(cx).with_context(&context)?,
        fetch: offline.policy(),
        progress: cx.progress,
        force: false,
        canaries: 0,
    };
    flywheel::pipeline::merge::index_shard(spec, &opts, embed_only).with_context(&context)
}

fn with_spec(path: &Path, a: &DedupArgs, cx: &Ctx) -> Result<stage::DedupSummary> {
    let spec = Spec::load(path)?;
    let context = doing("dedup", path);
    let base = spec.path.parent().unwrap_or(Path::new("."));
    let mut opts = DedupOptions::from_spec(&spec.filter, &spec.dedup, base);
    opts.device = a.device.open().with_context(&context)?;
    opts.fetch = a.offline.policy();
    opts.progress = cx.progress;
    stage::run_spec(&spec, a.input.as_deref(), &opts).with_context(&context)
}

fn with_flags(a: DedupArgs, cx: &Ctx) -> Result<stage::DedupSummary> {
    let (Some(input), Some(output)) = (&a.input, &a.output) else {
        anyhow::bail!("give a SPEC, or --input FILE and --output FILE (see flywheel dedup --help)");
    };
    let shingle = Shingle::parse(&a.shingle)
        .with_context(|| format!("--shingle {:?}: use char:N or word:N", a.shingle))?;
    for (flag, t) in [
        ("--minhash", a.minhash),
        ("--semantic", a.semantic),
        ("--against-semantic", a.against_semantic),
    ] {
        if let Some(t) = t.filter(|t| !is_threshold(f64::from(*t))) {
            anyhow::bail!("{flag} {t}: a similarity threshold must be in (0, 1]");
        }
    }
    let context = doing("dedup", input);
    // No method named: exact and MinHash at 0.8, as the spec's defaults.
    let none_chosen = !a.exact && a.minhash.is_none() && a.semantic.is_none();
    let opts = DedupOptions {
        exact: a.exact || none_chosen,
        minhash: a
            .minhash
            .or(none_chosen.then_some(0.8))
            .map(|threshold| MinHashOptions {
                threshold,
                num_perm: a.num_perm.clamp(16, 1024),
                shingle,
                exact_jaccard: a.exact_jaccard,
                ..Default::default()
            }),
        semantic: a.semantic.map(|threshold| SemanticOptions {
            threshold,
            ..Default::default()
        }),
        embedder: a.embedder,
        field: a.field,
        against: a.against,
        ngram: a.ngram.max(1),
        against_semantic: a.against_semantic,
        filter: FilterSection {
            min_judge: a.min_judge,
            min_score: Default::default(),
            // Flags name what must pass; with none, verifier results are not used.
            require: Some(a.require),
            allow_truncated: a.allow_truncated,
            per_prompt: Default::default(),
        },
        device: a.device.open().with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        // A file given by hand: its earliest line survives, as it always has.
        id_order: false,
    };
    let rejected = a
        .rejected
        .clone()
        .unwrap_or_else(|| output.with_extension("rejected.jsonl"));
    stage::run(input, output, &rejected, &opts).with_context(&context)
}
