//! `flywheel review`: the review page for a run.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use flywheel::review::queue::Order;
use flywheel::review::server::{Options, Server};
use flywheel::spec::ReviewSection;
use flywheel::Spec;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReviewArgs {
    /// The run directory (runs/<name>) or its spec. The candidates are <run>/audited.jsonl,
    /// the records blend would take; decisions go to <run>/review.jsonl.
    run: PathBuf,
    /// Who is reviewing: recorded with every decision; several reviewers may review one
    /// run (the report shows their agreement). Default: $USER.
    #[arg(long)]
    reviewer: Option<String>,
    /// The spec whose [review] section (reasons, sample) applies, when RUN is a directory
    /// (default: the spec recorded in the run's manifest, if it is still there).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Port on 127.0.0.1 (default: a free one). The server never listens elsewhere.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The queue order the page starts in (`o` cycles): lowest judge score first, a
    /// seeded shuffle, or file order.
    #[arg(long, value_enum, default_value = "score")]
    order: OrderArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    Score,
    Random,
    File,
}

/// The run directory, its `[review]` section and seed.
fn resolve(a: &ReviewArgs) -> Result<(PathBuf, ReviewSection, u64)> {
    let spec_file = if a.run.is_file() {
        Some(a.run.clone())
    } else {
        a.spec.clone()
    };
    if let Some(f) = spec_file {
        let spec = Spec::load(&f)?;
        let dir = if a.run.is_file() {
            spec.run_dir()
        } else {
            a.run.clone()
        };
        return Ok((dir, spec.review.clone(), spec.run.seed));
    }
    if !a.run.is_dir() {
        bail!(
            "{} is neither a run directory nor a spec file",
            a.run.display()
        );
    }
    let m = flywheel::store::Manifest::load(&a.run)?;
    let recorded = m.as_ref().map(|m| PathBuf::from(&m.spec_path));
    let same_dir = |s: &Spec| s.run_dir().canonicalize().ok() == a.run.canonicalize().ok();
    if let Some(spec) = recorded
        .as_deref()
        .filter(|p| p.is_file())
        .and_then(|p| Spec::load(p).ok())
        .filter(same_dir)
    {
        return Ok((a.run.clone(), spec.review.clone(), spec.run.seed));
    }
    if m.is_none() && !a.run.join("audited.jsonl").exists() {
        bail!(
            "{} is not a flywheel run directory (no manifest.json): pass runs/<name> or the spec",
            a.run.display()
        );
    }
    eprintln!(
        "note: the run's spec{} was not found: using the default reject reasons (pass --spec SPEC for its [review] section)",
        recorded
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default()
    );
    let seed = m
        .and_then(|m| m.generation_fingerprint)
        .and_then(|g| g["seed"].as_u64())
        .unwrap_or(0);
    Ok((a.run.clone(), ReviewSection::default(), seed))
}

pub fn review(a: ReviewArgs) -> Result<()> {
    let (dir, section, seed) = resolve(&a)?;
    let reviewer = a
        .reviewer
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "reviewer".into());
    let server = Server::bind(Options {
        run_dir: dir.clone(),
        reviewer: reviewer.clone(),
        reasons: section.reasons.clone(),
        sample: section.sample,
        seed,
        port: a.port,
        order: match a.order {
            OrderArg::Score => Order::Score,
            OrderArg::Random => Order::Random,
            OrderArg::File => Order::File,
        },
    })
    .with_context(|| format!("review {}", dir.display()))?;
    let (scope, done) = server.progress();
    println!(
        "review: {} as {} — {done} of {scope} records reviewed{}",
        Path::new(&dir).display(),
        reviewer,
        section
            .sample
            .map(|n| format!(" (an audit sample of {n})"))
            .unwrap_or_default()
    );
    println!("open {}", server.url());
    println!("keys: a accept · r reject (then 1-9) · e edit · u undo · j/k next/previous · / filter · o order · Ctrl-C stops (every decision is already saved)");
    std::io::stdout().flush().ok();
    server.serve()?;
    Ok(())
}
