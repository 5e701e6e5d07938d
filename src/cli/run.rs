//! `flywheel run`: every stage in order.

use super::{doing, install_ctrlc, Ctx, DeviceFlag, OfflineFlag};
use anyhow::{Context, Result};
use clap::Args;
use flywheel::pipeline::{self, RunOptions};
use flywheel::store::RunDir;
use flywheel::Spec;
use std::path::PathBuf;

#[derive(Args)]
#[command(mut_arg("device", |a| a.help(
    "Where to run models: auto (CUDA if built with it and a GPU answers, else CPU), cpu, cuda:N"
)))]
#[command(mut_arg("offline", |a| a.help("Never download models (same as FLYWHEEL_OFFLINE=1)")))]
pub struct RunArgs {
    /// The TOML spec (see configs/demo.toml and configs/README.md).
    spec: PathBuf,
    #[command(flatten)]
    device: DeviceFlag,
    /// Reuse a run directory made with other settings (older records are moved aside).
    #[arg(long)]
    force: bool,
    /// Also run the canary test with N planted canaries during the audit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    canaries: usize,
    #[command(flatten)]
    offline: OfflineFlag,
}

pub fn run(a: RunArgs, cx: &Ctx) -> Result<()> {
    let spec = Spec::load(&a.spec)?;
    install_ctrlc();
    let context = doing("run", &a.spec);
    let opts = RunOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        force: a.force,
        canaries: a.canaries,
    };
    let n = pipeline::STAGES.len();
    let mut i = 0;
    pipeline::run(&spec, &opts, |o| {
        i += 1;
        println!("[{i}/{n}] {}: {}", o.stage, o.line);
    })
    .with_context(&context)?;
    let dir = RunDir::new(spec.run_dir());
    println!(
        "done: {} (open {} in a browser)",
        dir.dataset().display(),
        dir.report_html().display()
    );
    Ok(())
}
