//! The stages one at a time: `generate`, `verify`, `judge`, `audit`, `blend`, `report`.

use super::{doing, install_ctrlc, refuse_same_file, Ctx, DeviceFlag, OfflineFlag, ShardFlag};
use anyhow::{Context, Result};
use clap::Args;
use flywheel::generate::stage::GenerateOptions;
use flywheel::verify::judge::{self, Rubric};
use flywheel::verify::stage::{Checks, VerifyOptions};
use flywheel::Spec;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(mut_arg("device", |a| a.help(
    "Where to run: auto (CUDA if built with it and a GPU answers, else CPU), cpu, cuda:N"
)))]
#[command(mut_arg("offline", |a| a.help(
    "Never download models (same as FLYWHEEL_OFFLINE=1); use only files on this machine"
)))]
pub struct GenerateArgs {
    /// The TOML spec (see configs/demo.toml and configs/README.md).
    spec: PathBuf,
    #[command(flatten)]
    device: DeviceFlag,
    /// Sequences decoded together (overrides [teacher].batch_size). Does not change outputs.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Generate only the first N planned records (a quick look).
    #[arg(long)]
    limit: Option<usize>,
    /// Run directory to use instead of <run.out_dir>/<run.name>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// If the run directory holds records made with other settings, move them aside and start over.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    offline: OfflineFlag,
    #[command(flatten)]
    shard: ShardFlag,
}

pub fn generate(a: GenerateArgs, cx: &Ctx) -> Result<()> {
    let spec = a.shard.apply(Spec::load(&a.spec)?)?;
    install_ctrlc();
    let context = doing("generate", &a.spec);
    let opts = GenerateOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        batch_size: a.batch_size,
        limit: a.limit,
        out: a.out,
        force: a.force,
        progress: cx.progress,
        fetch: a.offline.policy(),
    };
    let s = flywheel::generate::stage::run(&spec, &opts).with_context(&context)?;
    println!("{s}");
    Ok(())
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The TOML spec with [[judge]] and/or [[verifier]] sections.
    spec: PathBuf,
    /// Records to score instead of <run>/generated.jsonl.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write instead of <run>/verified.jsonl.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceFlag,
    /// Items per judge forward pass (overrides each judge's batch_size). Does not change scores.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Score only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    offline: OfflineFlag,
    #[command(flatten)]
    shard: ShardFlag,
}

pub fn verify(a: VerifyArgs, cx: &Ctx) -> Result<()> {
    let spec = a.shard.apply(Spec::load(&a.spec)?)?;
    install_ctrlc();
    let context = doing("verify", &a.spec);
    let opts = VerifyOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        batch_size: a.batch_size,
        limit: a.limit,
        progress: cx.progress,
        fetch: a.offline.policy(),
    };
    if let (Some(i), Some(o)) = (&a.input, &a.output) {
        refuse_same_file(i, o)?;
    }
    let (input, output) = (a.input.as_deref(), a.output.as_deref());
    let s = flywheel::verify::stage::run_spec_with(&spec, input, output, &opts, a.strict)
        .with_context(&context)?;
    println!("{s}");
    Ok(())
}

#[derive(Args)]
pub struct JudgeArgs {
    /// Judge model: a built-in id or a GGUF path.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Rubric file (TOML: criteria = "...", scale = "yes-no" | "1-5", optional system).
    #[arg(long, conflicts_with = "criteria")]
    rubric: Option<PathBuf>,
    /// The criteria inline, instead of a rubric file.
    #[arg(long)]
    criteria: Option<String>,
    /// Scale when --criteria is given: yes-no (best for small judges) or 1-N (N ≤ 9).
    #[arg(long, default_value = "yes-no")]
    scale: String,
    /// JSONL of records (chat `messages`, `prompt` + `response`, or alpaca).
    #[arg(long)]
    input: PathBuf,
    /// Output JSONL: the input records with scores.judge attached.
    #[arg(long)]
    output: PathBuf,
    /// Name of the judge in scores.judge.
    #[arg(long, default_value = "judge")]
    name: String,
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
    /// Items per forward pass. Does not change scores.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Longest judge prompt in tokens; longer responses are cut and flagged `truncated`.
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// The judge first writes a one-sentence rationale, then a verdict held to the scale
    /// by a grammar (the score is still read from the logits at the verdict).
    #[arg(long)]
    rationale: bool,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
}

pub fn judge(a: JudgeArgs, cx: &Ctx) -> Result<()> {
    let mut rubric = match (&a.rubric, a.criteria) {
        // A rubric file's scale is checked as it loads, as in a spec.
        (Some(f), _) => judge::load_rubric(f).map_err(anyhow::Error::msg)?,
        (None, Some(criteria)) => {
            judge::Scale::parse(&a.scale).map_err(|e| anyhow::anyhow!("--scale: {e}"))?;
            Rubric {
                criteria,
                scale: a.scale,
                system: None,
                rationale: false,
            }
        }
        (None, None) => {
            anyhow::bail!("give --rubric FILE or --criteria TEXT (what a good answer is)")
        }
    };
    rubric.rationale |= a.rationale;
    install_ctrlc();
    let context = doing("judge", &a.input);
    let judges = [flywheel::spec::JudgeSpec {
        name: a.name,
        model: a.model,
        rubric,
        batch_size: a.batch_size.max(1),
        max_tokens: a.max_tokens.max(64),
    }];
    let opts = VerifyOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        batch_size: None,
        limit: None,
        progress: cx.progress,
        fetch: a.offline.policy(),
    };
    refuse_same_file(&a.input, &a.output)?;
    let checks = Checks {
        judges: &judges,
        verifiers: &[],
        combine: Default::default(),
        scope: Default::default(),
        base_dir: Path::new("."),
    };
    let s = flywheel::verify::stage::run(&a.input, &a.output, &checks, &opts, a.strict)
        .with_context(&context)?;
    println!("{s}");
    Ok(())
}

#[derive(Args)]
#[command(mut_arg("device", |a| a.help("Where to run models: auto, cpu, cuda:N")))]
pub struct AuditArgs {
    /// The spec ([privacy] section; real data from [privacy].sensitive or [blend].real).
    spec: PathBuf,
    /// Records to audit instead of <run>/kept.jsonl.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
    /// Plant N canaries in a copy of the real data, show those records to the teacher, and
    /// count how many come back in its output (with N never-shown control canaries).
    #[arg(long, default_value_t = 0, value_name = "N")]
    canaries: usize,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
}

pub fn audit(a: AuditArgs, cx: &Ctx) -> Result<()> {
    let spec = Spec::load(&a.spec)?;
    install_ctrlc();
    let context = doing("audit", &a.spec);
    let opts = flywheel::privacy::AuditOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        canaries: a.canaries,
    };
    let s = flywheel::privacy::run_spec_with(&spec, a.input.as_deref(), &opts, a.strict)
        .with_context(&context)?;
    println!("{s}");
    Ok(())
}

#[derive(Args)]
pub struct BlendArgs {
    /// The spec with a [blend] section.
    spec: PathBuf,
    /// Synthetic records instead of <run>/audited.jsonl.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Fail on a bad real-data row instead of skipping it.
    #[arg(long)]
    strict: bool,
}

pub fn blend(a: BlendArgs) -> Result<()> {
    let mut spec = Spec::load(&a.spec)?;
    spec.blend.strict |= a.strict;
    let s = flywheel::blend::run_spec(&spec, a.input.as_deref())
        .with_context(doing("blend", &a.spec))?;
    println!("{s}");
    match flywheel::blend::shortfall(&s, &spec) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[derive(Args)]
#[command(mut_arg("device", |a| a.help("Where to embed: auto, cpu, cuda:N")))]
pub struct ReportArgs {
    /// A run directory (runs/<name>), or a spec whose run directory to report on.
    run: PathBuf,
    /// Embedder for similarity and dispersion, or `none` (default: the run's own).
    #[arg(long)]
    embedder: Option<String>,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
}

pub fn report(a: ReportArgs, cx: &Ctx) -> Result<()> {
    let dir = if a.run.is_file() {
        refuse_record_file(&a.run)?;
        Spec::load(&a.run)?.run_dir()
    } else {
        a.run.clone()
    };
    let context = doing("report", &dir);
    let opts = flywheel::report::ReportOptions {
        embedder: a.embedder,
        device: a.device.open().with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
    };
    let s = flywheel::report::write(&dir, &opts).with_context(&context)?;
    println!("{s}");
    Ok(())
}

/// `report` reads a run directory or a spec; a record file is neither, and parsing it as
/// TOML would only give a baffling syntax error.
fn refuse_record_file(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        use std::io::Read;
        let _ = f.take(4096).read_to_end(&mut head);
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(ext, "jsonl" | "json" | "parquet" | "csv") || first == Some(&b'{') {
        let hint = match path.parent().filter(|d| d.join("manifest.json").exists()) {
            Some(d) => format!("; its run directory is {}", d.display()),
            None => String::new(),
        };
        anyhow::bail!(
            "{} is a data file: report takes a run directory (runs/<name>) or the spec (.toml) that made one{hint}",
            path.display()
        );
    }
    Ok(())
}
