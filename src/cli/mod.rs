//! Arguments and one function per subcommand. Raw flags become typed library options here
//! (`--device`/`--dtype` into a [`Runtime`], `--offline` into a [`FetchPolicy`]); the
//! library does the work and returns summaries, which are printed here.

mod bench;
mod dedup;
mod eval;
mod review;
mod run;
mod stages;
mod tools;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use flywheel::engine::{device, Runtime};
use flywheel::models::FetchPolicy;
use std::io::IsTerminal;

/// Offline factory for synthetic training data: a written spec in, a verified,
/// provenance-tagged dataset out, with open-weight models running in-process.
#[derive(Parser)]
#[command(name = "flywheel", version, propagate_version = true)]
pub struct Cli {
    /// Print nothing but errors and the final summary (no progress bars).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// CPU threads for model math (default: all cores). On a machine busy with other work,
    /// fewer threads can be much faster: candle's matmul workers spin while they wait for
    /// each other. Never changes the records.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
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
    Run(run::RunArgs),
    /// Generate instruction/response records from a spec into <out_dir>/<name>/generated.jsonl.
    ///
    /// Rerunning the same spec resumes: records already in the file are skipped, a torn
    /// last line from a crash is repaired. Records are identical whatever the batch size.
    Generate(stages::GenerateArgs),
    /// Score records with the spec's LLM judges and programmatic verifiers.
    ///
    /// Reads <run>/generated.jsonl (or --input: any JSONL of chat `messages`, `prompt` +
    /// `response`, or alpaca records) and writes every record, scores attached, to
    /// <run>/verified.jsonl (or --output). Nothing is dropped; a rerun resumes.
    Verify(stages::VerifyArgs),
    /// Score any JSONL with one LLM judge and a rubric, no spec needed.
    ///
    /// The verdict is read from the judge's next-token probabilities over the scale's
    /// labels (yes/no or 1..N), so there is no free text to parse and no item is lost.
    Judge(stages::JudgeArgs),
    /// Filter verified records by the spec's keep-rules, then remove duplicates and eval-set
    /// contamination.
    ///
    /// With a SPEC: <run>/verified.jsonl → <run>/kept.jsonl + <run>/rejected.jsonl, using the
    /// spec's [filter] and [dedup] sections. Without: --input FILE --output FILE and the
    /// method flags (default: --exact --minhash 0.8). Every rejected record carries
    /// `decision.reason`: `judge<0.5`, `verifier:json`, `dup_of:<id> (minhash 0.91)`,
    /// `contaminated:<eval file>:<id>`, `bad_input:…`. Within a duplicate cluster the record
    /// with the best judge score survives (then the earliest).
    Dedup(dedup::DedupArgs),
    /// Check synthetic records against sensitive real data: PII, copied text, distance to
    /// the closest real record, and optionally the canary test.
    ///
    /// <run>/kept.jsonl → <run>/audited.jsonl (policy applied: [privacy] pii = flag|redact|drop,
    /// copy/dcr = flag|drop) + <run>/privacy.json (every finding, located by record, field and
    /// character span, its text never repeated). Runs
    /// before blend, so a dropped record cannot shift the real/synthetic ratio.
    Audit(stages::AuditArgs),
    /// Mix the audited synthetic records with real data at the spec's ratio ([blend]).
    ///
    /// Writes <run>/dataset.jsonl, dataset.parquet and a README.md dataset card (Hugging Face
    /// layout). If the survivors cannot meet [blend].total, writes what keeps the ratio,
    /// says how many are missing, and exits with code 3.
    Blend(stages::BlendArgs),
    /// Write report.json and a self-contained report.html for a run directory.
    Report(stages::ReportArgs),
    /// Join the shards of a run (`run --shard I/N`) and run the global stages over them.
    ///
    /// Checks that runs/<name>/shards/ holds every shard, each finished, made from this spec
    /// text with the same models, device and precision, and that every planned record is
    /// there exactly once; refuses with the list of what is missing or mismatched. Then
    /// writes runs/<name>/generated.jsonl and verified.jsonl (all shards') and runs dedup,
    /// audit, blend and report there: the same dataset, byte for byte, as one process.
    Merge(run::MergeArgs),
    /// How a spec's work splits over shards, and how long it takes here.
    ///
    /// Prints records, prompt tokens and the most output tokens per shard, and an estimated
    /// time per shard from a short calibration run of the teacher on the spec's own first
    /// prompts (this model, device, precision and batch size); with --devices, the wall
    /// time when that many GPUs or nodes work at once.
    Plan(run::PlanArgs),
    /// Does the model trained on the blend do better? Base vs tuned on a real held-out set.
    ///
    /// Both models answer every test prompt (greedy, batched); the answers are scored by
    /// the verifiers (the answer check where items carry `answer`, and --verifier/--spec
    /// ones), a pointwise judge and a pairwise judge asked in both orders. Prints each
    /// metric with 95% bootstrap intervals, the paired difference and a sign test, and
    /// writes eval.json + eval.html. With --train, test items found in the training blend
    /// are reported and left out first. A killed eval resumes from its journal.
    Eval(eval::EvalArgs),
    /// Review candidates in the browser at keyboard speed: accept, reject with a reason,
    /// edit, undo.
    ///
    /// Serves a page on 127.0.0.1 (a random token in the printed URL guards every request)
    /// showing one record of <run>/audited.jsonl at a time with its scores, flags and
    /// provenance. Keys: a accept · r then 1-9 reject with a reason · e edit the response
    /// (Ctrl+Enter saves) · u undo · j/k next/previous · / filter (task:NAME score:LO-HI
    /// flag:truncated|pii|near-duplicate unreviewed disagreed) · o order (lowest judge score
    /// first, random, file). Every action is appended to <run>/review.jsonl at once, so a
    /// restart resumes. blend then drops rejected records, takes edits in place of the
    /// originals, and with [review] required = true takes only accepted ones; `export
    /// --format dpo` adds (edited, original) pairs and `--format labels` writes the labels.
    Review(review::ReviewArgs),
    /// Convert a dataset to the format a trainer reads: openai (also TRL), alpaca, sharegpt, chatml.
    Export(tools::ExportArgs),
    /// Write sentence embeddings (all-MiniLM-L6-v2 by default) of a JSONL file's texts.
    ///
    /// Rows follow the input's readable records in order; their ids go to OUTPUT.ids (one per
    /// line). Lines without text are listed on stderr, not silently skipped. Texts longer
    /// than the model's window (256 tokens) are truncated, and counted.
    Embed(tools::EmbedArgs),
    /// List, fetch and verify the built-in models.
    Models {
        #[command(subcommand)]
        cmd: tools::ModelsCmd,
    },
    /// Measure the engine on this machine (tokens/s, and ratios to hardware bounds).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Report the devices this build can use.
    Doctor,
}

/// What every subcommand may use from the global flags.
pub struct Ctx {
    /// Progress bars: on a terminal, unless `--quiet`.
    progress: bool,
    /// The global `--dtype`, resolved with a command's `--device` into a [`Runtime`].
    dtype: String,
    /// The global `--threads`, passed on to the processes `run --device A,B` starts.
    threads: Option<usize>,
}

/// `--device`, shared by every command that runs a model. Commands whose help words it
/// otherwise override the text with `mut_arg` (the flag is the same).
#[derive(Args)]
pub struct DeviceFlag {
    /// Where to run: auto, cpu, cuda:N (`run` also takes a list, cuda:0,cuda:1: one
    /// engine per device, merged into one run).
    #[arg(long, default_value = "auto")]
    device: String,
}

impl DeviceFlag {
    /// The device and, with the global `--dtype`, the precision models run in.
    fn runtime(&self, cx: &Ctx) -> Result<Runtime> {
        Ok(Runtime::parse(&self.device, &cx.dtype)?)
    }

    /// The device alone, for commands that run only the embedder (no `--dtype`).
    fn open(&self) -> Result<candle_core::Device> {
        Ok(device::parse(&self.device)?)
    }
}

/// `--shard I/N`, shared by the commands that make a shard's records (run, generate,
/// verify).
#[derive(Args)]
pub struct ShardFlag {
    /// Make only shard I of N (0-based) of the plan, in runs/<name>/shards/<I>-of-<N>/ with
    /// its own manifest and resume; `flywheel merge` joins the shards. A record's shard is
    /// a hash of its id. Not given: read from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT
    /// (a Slurm job array) or JOB_COMPLETION_INDEX/FLYWHEEL_SHARDS (a Kubernetes Indexed
    /// Job) when those are set.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

impl ShardFlag {
    fn get(&self) -> Result<Option<flywheel::spec::Shard>> {
        use flywheel::spec::Shard;
        if let Some(s) = &self.shard {
            return Ok(Some(Shard::parse(s).map_err(anyhow::Error::msg)?));
        }
        let found = Shard::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
        if let Some((s, from)) = found {
            eprintln!("shard {s} (from {from})");
            return Ok(Some(s));
        }
        Ok(None)
    }

    /// `spec` as this process should run it: the whole plan, or its shard.
    fn apply(&self, spec: flywheel::Spec) -> Result<flywheel::Spec> {
        Ok(match self.get()? {
            Some(s) => spec.for_shard(s),
            None => spec,
        })
    }
}

/// `--offline`, shared by every command that may fetch a model.
#[derive(Args)]
pub struct OfflineFlag {
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

impl OfflineFlag {
    /// `--offline` wins; otherwise `FLYWHEEL_OFFLINE` decides.
    fn policy(&self) -> FetchPolicy {
        if self.offline {
            FetchPolicy::Offline
        } else {
            FetchPolicy::from_env()
        }
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let cx = Ctx {
        progress: !cli.quiet && std::io::stderr().is_terminal(),
        dtype: cli.dtype,
        threads: cli.threads,
    };
    match cli.cmd {
        Command::Run(a) => run::run(a, &cx),
        Command::Generate(a) => stages::generate(a, &cx),
        Command::Verify(a) => stages::verify(a, &cx),
        Command::Judge(a) => stages::judge(a, &cx),
        Command::Dedup(a) => dedup::dedup(a, &cx),
        Command::Audit(a) => stages::audit(a, &cx),
        Command::Blend(a) => stages::blend(a),
        Command::Report(a) => stages::report(a, &cx),
        Command::Merge(a) => run::merge(a, &cx),
        Command::Plan(a) => run::plan(a, &cx),
        Command::Eval(a) => eval::eval(a, &cx),
        Command::Review(a) => review::review(a),
        Command::Export(a) => tools::export(a),
        Command::Embed(a) => tools::embed(a, &cx),
        Command::Models { cmd } => tools::models(cmd),
        Command::Bench { cmd } => bench::bench(cmd, &cx),
        Command::Doctor => tools::doctor(),
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

/// Scoring a file into itself would find every id already "done" and score nothing.
fn refuse_same_file(input: &std::path::Path, output: &std::path::Path) -> Result<()> {
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

/// `what file` as the context of a command's error (`generate spec.toml: …`).
fn doing(what: &str, file: &std::path::Path) -> impl Fn() -> String {
    let s = format!("{what} {}", file.display());
    move || s.clone()
}
