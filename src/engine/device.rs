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
