//! `flywheel run`: every stage in order.

use super::{doing, install_ctrlc, Ctx, DeviceFlag, OfflineFlag, ShardFlag};
use anyhow::{Context, Result};
use clap::Args;
use flywheel::pipeline::{self, RunOptions};
use flywheel::store::RunDir;
use flywheel::Spec;
use std::path::PathBuf;

#[derive(Args)]
#[command(mut_arg("device", |a| a.help(
    "Where to run models: auto (CUDA if built with it and a GPU answers, else CPU), cpu, cuda:N; or a list (cuda:0,cuda:1): one engine per device, the plan split as shards are, merged into one run"
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
    /// With a shard, only generate and verify run (the global stages wait for `merge`).
    #[command(flatten)]
    shard: ShardFlag,
}

pub fn run(a: RunArgs, cx: &Ctx) -> Result<()> {
    let spec = Spec::load(&a.spec)?;
    let devices: Vec<String> = a
        .device
        .device
        .split(',')
        .map(|d| d.trim().to_string())
        .collect();
    if devices.len() > 1 {
        return run_on_devices(&a, &spec, &devices, cx);
    }
    install_ctrlc();
    let context = doing("run", &a.spec);
    let opts = RunOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        force: a.force,
        canaries: a.canaries,
    };
    if let Some(shard) = a.shard.get()? {
        let mut i = 0;
        pipeline::merge::run_shard(&spec, shard, &opts, |o| {
            i += 1;
            println!("[{i}/3] {}: {}", o.stage, o.line);
        })
        .with_context(&context)?;
        println!(
            "done: shard {shard} in {} (when every shard is done: flywheel merge {})",
            spec.for_shard(shard).run_dir().display(),
            a.spec.display()
        );
        return Ok(());
    }
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

#[derive(Args)]
#[command(mut_arg("device", |a| a.help(
    "Where the global stages run their models (the embedder, canaries): auto, cpu, cuda:N"
)))]
#[command(mut_arg("offline", |a| a.help("Never download models (same as FLYWHEEL_OFFLINE=1)")))]
pub struct MergeArgs {
    /// The spec the shards ran (or the run directory, whose shards name their spec).
    spec: PathBuf,
    #[command(flatten)]
    device: DeviceFlag,
    /// Also run the canary test with N planted canaries during the audit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    canaries: usize,
    #[command(flatten)]
    offline: OfflineFlag,
}

/// The spec from a run directory: the one its first shard recorded.
fn spec_of_run(dir: &std::path::Path) -> Result<Spec> {
    let shards = dir.join("shards");
    let first = std::fs::read_dir(&shards)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            flywheel::store::Manifest::load(&e.path())
                .ok()
                .flatten()
                .map(|m| m.spec_path)
        });
    match first {
        Some(p) if std::path::Path::new(&p).is_file() => Ok(Spec::load(std::path::Path::new(&p))?),
        Some(p) => anyhow::bail!(
            "{}: the shards name their spec {p}, which is not there from here: pass the spec (flywheel merge SPEC)",
            dir.display()
        ),
        None => anyhow::bail!(
            "{} has no shards (runs/<name>/shards/<i>-of-<n>/): run `flywheel run SPEC --shard I/N` for each shard first",
            dir.display()
        ),
    }
}

pub fn merge(a: MergeArgs, cx: &Ctx) -> Result<()> {
    let spec = if a.spec.is_dir() {
        spec_of_run(&a.spec)?
    } else {
        Spec::load(&a.spec)?
    };
    install_ctrlc();
    let context = doing("merge", &a.spec);
    let opts = RunOptions {
        runtime: a.device.runtime(cx).with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        force: false,
        canaries: a.canaries,
    };
    let mut i = 0;
    let (s, _) = pipeline::merge::merge(&spec, &opts, |o| {
        i += 1;
        println!("[{i}/4] {}: {}", o.stage, o.line);
    })
    .with_context(&context)?;
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    let dir = RunDir::new(spec.run_dir());
    println!(
        "done: {} shards, {} verified records → {} (open {} in a browser)",
        s.shards,
        s.records,
        dir.dataset().display(),
        dir.report_html().display()
    );
    Ok(())
}

#[derive(Args)]
#[command(mut_arg("device", |a| a.help(
    "Where to time the calibration run (the device the shards will use): auto, cpu, cuda:N"
)))]
#[command(mut_arg("offline", |a| a.help("Never download models (same as FLYWHEEL_OFFLINE=1)")))]
pub struct PlanArgs {
    /// The TOML spec.
    spec: PathBuf,
    /// Split the plan over N shards (`run --shard I/N`).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Devices (GPUs, or machines) working at once: the wall time is the shards' times
    /// spread over them.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Records generated to time the teacher (default: two batches).
    #[arg(long)]
    calibrate: Option<usize>,
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    offline: OfflineFlag,
}

fn hms(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

pub fn plan(a: PlanArgs, cx: &Ctx) -> Result<()> {
    let spec = Spec::load(&a.spec)?;
    let context = doing("plan", &a.spec);
    if a.shards == 0 || a.shards > flywheel::spec::MAX_SHARDS || a.devices == 0 {
        anyhow::bail!(
            "--shards and --devices are at least 1 (and at most {} shards)",
            flywheel::spec::MAX_SHARDS
        );
    }
    let runtime = a.device.runtime(cx).with_context(&context)?;
    let batch = spec.teacher.as_ref().map_or(8, |t| t.batch_size);
    let calibrate = a.calibrate.unwrap_or(2 * batch);
    let e = flywheel::generate::estimate::estimate(
        &spec,
        a.shards,
        calibrate,
        &runtime,
        a.offline.policy(),
    )
    .with_context(&context)?;
    println!(
        "{}: {} records over {} shard(s); calibration: {} records in {:.1} s at batch {} on {runtime} ({} per record)",
        a.spec.display(),
        e.records,
        a.shards,
        e.calibration_records,
        e.calibration_seconds,
        e.batch_size,
        e.seconds_per_record.map_or("-".into(), |s| format!("{s:.3} s")),
    );
    println!(
        "{:>6} {:>10} {:>14} {:>16} {:>12}",
        "shard", "records", "prompt tokens", "max out tokens", "est. time"
    );
    for s in &e.shards {
        println!(
            "{:>6} {:>10} {:>14} {:>16} {:>12}",
            format!("{}/{}", s.shard, a.shards),
            s.records,
            s.prompt_tokens,
            s.max_output_tokens,
            s.estimated_seconds.map_or("-".into(), hms)
        );
    }
    if let Some(per) = e.seconds_per_record {
        let total: f64 = e.shards.iter().filter_map(|s| s.estimated_seconds).sum();
        // Shards are handed to devices as they free up: the longest device's queue.
        let mut load = vec![0.0f64; a.devices];
        let mut times: Vec<f64> = e
            .shards
            .iter()
            .filter_map(|s| s.estimated_seconds)
            .collect();
        times.sort_by(|x, y| y.total_cmp(x));
        for t in times {
            let i = (0..a.devices)
                .min_by(|&x, &y| load[x].total_cmp(&load[y]))
                .unwrap_or(0);
            load[i] += t;
        }
        let wall = load.iter().cloned().fold(0.0, f64::max);
        println!(
            "total {} of generation ({per:.3} s per record); on {} device(s) at once: about {} wall (generation only: verify, dedup and the merge add to it)",
            hms(total),
            a.devices,
            hms(wall)
        );
    }
    if e.step_records > 0 {
        println!(
            "note: {} records of tasks with steps are counted but not timed (each makes several model calls)",
            e.step_records
        );
    }
    Ok(())
}

/// `run --device cuda:0,cuda:1,…`: one engine per device, each a shard process
/// (`run --shard I/D --device DEV_I`), one progress bar over all of them, then the merge
/// here: the same dataset as one device makes.
fn run_on_devices(a: &RunArgs, spec: &Spec, devices: &[String], cx: &Ctx) -> Result<()> {
    let context = doing("run", &a.spec);
    if a.shard.shard.is_some() {
        anyhow::bail!("--device with several devices splits the run itself: leave out --shard");
    }
    if devices.len() > flywheel::spec::MAX_SHARDS {
        anyhow::bail!("at most {} devices", flywheel::spec::MAX_SHARDS);
    }
    // Every device must exist before any work starts.
    for d in devices {
        super::DeviceFlag { device: d.clone() }
            .runtime(cx)
            .with_context(|| format!("--device {d}"))?;
    }
    let exe = std::env::current_exe().context("cannot find the flywheel binary")?;
    let n = devices.len();
    let mut children = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let mut c = std::process::Command::new(&exe);
        c.args(["--quiet", "--dtype", &cx.dtype, "run", "--device", d])
            .arg(&a.spec)
            .args(["--shard", &format!("{i}/{n}")])
            .stdout(std::process::Stdio::null());
        if a.force {
            c.arg("--force");
        }
        if let Some(t) = cx.threads {
            c.args(["--threads", &t.to_string()]);
        }
        if a.offline.offline {
            c.arg("--offline");
        }
        children.push((d.clone(), c.spawn().with_context(&context)?));
    }
    // One bar over every device: records generated and verified in the shard directories.
    let planned = flywheel::generate::plan_len(spec) as usize;
    let pb = flywheel::progress::bar(2 * planned, cx.progress, "generate + verify");
    let lines = |p: std::path::PathBuf| {
        std::fs::read(p)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    };
    let mut failed = Vec::new();
    loop {
        let mut running = 0;
        for (d, c) in children.iter_mut() {
            match c.try_wait() {
                Ok(None) => running += 1,
                Ok(Some(st)) if !st.success() && !failed.iter().any(|(x, _)| x == d) => {
                    failed.push((d.clone(), st))
                }
                _ => {}
            }
        }
        let done: usize = (0..n)
            .map(|i| {
                let dir = RunDir::new(
                    spec.for_shard(flywheel::spec::Shard { index: i, count: n })
                        .run_dir(),
                );
                lines(dir.generated()) + lines(dir.verified())
            })
            .sum();
        pb.set_position(done.min(2 * planned) as u64);
        if running == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    pb.finish_and_clear();
    if !failed.is_empty() {
        anyhow::bail!(
            "{}: the shard on {} failed ({}); its records so far are kept: run the same command again to resume",
            a.spec.display(),
            failed.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", "),
            failed.iter().map(|(_, s)| s.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    let opts = RunOptions {
        runtime: super::DeviceFlag {
            device: devices[0].clone(),
        }
        .runtime(cx)
        .with_context(&context)?,
        fetch: a.offline.policy(),
        progress: cx.progress,
        force: false,
        canaries: a.canaries,
    };
    println!(
        "[1-2/6] generate, verify: {n} devices ({})",
        devices.join(", ")
    );
    let mut i = 2;
    let (s, _) = pipeline::merge::merge(spec, &opts, |o| {
        i += 1;
        println!("[{i}/6] {}: {}", o.stage, o.line);
    })
    .with_context(&context)?;
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    let dir = RunDir::new(spec.run_dir());
    println!(
        "done: {} (open {} in a browser)",
        dir.dataset().display(),
        dir.report_html().display()
    );
    Ok(())
}
