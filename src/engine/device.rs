//! Device choice: `auto`, `cpu`, `cuda:N`.

use crate::error::{Error, Result};
use candle_core::Device;

/// Parses a `--device` value. `auto` takes CUDA device 0 when this build has CUDA and a
/// GPU answers, else the CPU.
pub fn parse(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(cuda(0).unwrap_or(Device::Cpu)),
        _ => {
            let n = s
                .strip_prefix("cuda")
                .map(|r| r.strip_prefix(':').unwrap_or(r))
                .map(|r| {
                    if r.is_empty() {
                        Ok(0)
                    } else {
                        r.parse::<usize>()
                    }
                })
                .ok_or_else(|| {
                    Error::Device(format!("unknown device {s:?}: use auto, cpu or cuda:N"))
                })?
                .map_err(|_| {
                    Error::Device(format!("bad CUDA ordinal in {s:?}: use cuda:0, cuda:1, …"))
                })?;
            cuda(n)
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(n: usize) -> Result<Device> {
    Device::new_cuda(n).map_err(|e| {
        // candle appends a backtrace to driver errors; the first line says what happened.
        let first = e.to_string().lines().next().unwrap_or("").to_string();
        Error::Device(format!(
            "CUDA device {n} is not available ({first}); check that the NVIDIA driver is installed and the GPU is visible (nvidia-smi), or use --device cpu"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_n: usize) -> Result<Device> {
    Err(Error::Device(
        "this flywheel was built without CUDA; rebuild with `cargo build --release --features cuda` (see README), or use --device cpu".into(),
    ))
}

/// A short name for provenance and messages.
pub fn name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// What the device is, for bench headers and `doctor`: the CPU's model and threads, or
/// the GPU's name, compute capability and memory.
pub fn describe(d: &Device) -> String {
    match d {
        Device::Cpu => {
            let model = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split(':').nth(1))
                        .map(|m| m.trim().to_string())
                })
                .unwrap_or_else(|| std::env::consts::ARCH.to_string());
            format!("cpu ({model}, {} threads)", rayon::current_num_threads())
        }
        Device::Cuda(_) => describe_cuda(d),
        Device::Metal(_) => "metal".into(),
    }
}

/// A CUDA device's compute capability (major, minor); `None` elsewhere.
pub fn compute_capability(d: &Device) -> Option<(i32, i32)> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(c) = d {
        return c.cuda_stream().context().compute_capability().ok();
    }
    let _ = d;
    None
}

#[cfg(feature = "cuda")]
fn describe_cuda(d: &Device) -> String {
    let Device::Cuda(c) = d else {
        return name(d);
    };
    let ctx = c.cuda_stream().context().clone();
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let card = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let cap = compute_capability(d).map_or("sm_?".into(), |(a, b)| format!("sm_{a}{b}"));
    let total = ctx.total_mem().map(gib).unwrap_or(0.0);
    let _ = ctx.bind_to_thread();
    let free = candle_core::cuda_backend::cudarc::driver::result::mem_get_info()
        .map(|(f, _)| gib(f))
        .unwrap_or(0.0);
    format!(
        "cuda:{} {card} ({cap}, {total:.1} GiB, {free:.1} GiB free)",
        ctx.ordinal()
    )
}

#[cfg(not(feature = "cuda"))]
fn describe_cuda(d: &Device) -> String {
    name(d)
}

/// CUDA devices the driver reports (0 without the feature, a driver or a GPU).
pub fn cuda_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        candle_core::cuda_backend::cudarc::driver::CudaContext::device_count()
            .map_or(0, |n| n.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// Where and how models run: `--device` and `--dtype`, parsed once at the command line
/// and passed to every stage, so all of them use the same device (one CUDA context, whose
/// loaded models the [`crate::runtime`] cache can share) and the same precision.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub device: Device,
    pub precision: super::Precision,
}

impl Runtime {
    /// Parses `--device` and `--dtype`; `auto` precision resolves for the device.
    pub fn parse(device: &str, dtype: &str) -> Result<Runtime> {
        let device = parse(device)?;
        let precision = super::Precision::resolve(dtype, &device)?;
        Ok(Runtime { device, precision })
    }

    /// The CPU with its default precision (Q8_0): what `auto` gives on a machine without
    /// a GPU, and the library's default.
    pub fn cpu() -> Runtime {
        Runtime {
            device: Device::Cpu,
            precision: super::Precision::Q8_0,
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::cpu()
    }
}

/// `device=cpu dtype=q8_0`: the form stage fingerprints record, so a run directory made
/// on another device or precision is not taken as up to date.
impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device={} dtype={}",
            name(&self.device),
            self.precision.name()
        )
    }
}
