//! How a model's weight matrices are held and multiplied (`--dtype`).
//!
//! The CPU default is Q8_0: candle's Q8_0 kernels compute every output row the same way
//! whatever the row count, which makes records batch-invariant, and they use AVX2 /
//! AVX-512 VNNI. On a GPU the default is bf16: half the bytes of f32 per decode step and
//! tensor-core GEMMs for prefill, with f32's exponent range (so no overflow on models
//! trained in bf16, which f16 risks). The residual stream, norms, rope and softmax stay
//! in f32 in every mode; only matmul inputs are cast.

use crate::error::{Error, Result};
use candle_core::{DType, Device};

/// The weight format of the decoder's matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 8-bit blocks of 32 with an f16 scale (34 bytes per 32 weights).
    Q8_0,
    BF16,
    F16,
    F32,
}

/// What `--dtype` accepts, for help texts and errors.
pub const CHOICES: &str = "auto, q8_0, bf16, f16, f32";

impl Precision {
    /// Parses a `--dtype` value and resolves `auto` for the device: Q8_0 on the CPU, bf16
    /// on a GPU of compute capability 8.0 or newer (Ampere on), f16 on older GPUs, whose
    /// candle kernels have no bf16 arithmetic.
    pub fn resolve(s: &str, device: &Device) -> Result<Precision> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" if device.is_cpu() => Precision::Q8_0,
            "auto" => match super::device::compute_capability(device) {
                Some((major, _)) if major < 8 => Precision::F16,
                _ => Precision::BF16,
            },
            "q8_0" | "q8" => Precision::Q8_0,
            "bf16" | "bfloat16" => Precision::BF16,
            "f16" | "fp16" | "half" | "float16" => Precision::F16,
            "f32" | "fp32" | "float" | "float32" => Precision::F32,
            _ => {
                return Err(Error::Device(format!(
                    "unknown --dtype {s:?}: use one of {CHOICES}"
                )))
            }
        })
    }

    /// The name used in provenance, fingerprints and messages.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Q8_0 => "q8_0",
            Precision::BF16 => "bf16",
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }
    }

    /// The dtype dense weights are stored in (`None` for the quantized format).
    pub fn dense_dtype(self) -> Option<DType> {
        match self {
            Precision::Q8_0 => None,
            Precision::BF16 => Some(DType::BF16),
            Precision::F16 => Some(DType::F16),
            Precision::F32 => Some(DType::F32),
        }
    }

    /// Bytes one weight occupies, as streamed from memory at each decode step.
    pub fn bytes_per_weight(self) -> f64 {
        match self {
            Precision::Q8_0 => 34.0 / 32.0,
            Precision::BF16 | Precision::F16 => 2.0,
            Precision::F32 => 4.0,
        }
    }

    /// The dtype of the KV cache. The CPU attention kernel reads f32 slices; on a GPU the
    /// cache takes the matmul dtype, which halves its memory in bf16/f16 and so doubles
    /// the sequences that fit.
    pub fn cache_dtype(self, device: &Device) -> DType {
        match (device.is_cpu(), self.dense_dtype()) {
            (false, Some(dt)) => dt,
            _ => DType::F32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_depends_on_the_device_and_bad_values_name_the_choices() {
        assert_eq!(
            Precision::resolve("auto", &Device::Cpu).unwrap(),
            Precision::Q8_0
        );
        assert_eq!(
            Precision::resolve("BF16", &Device::Cpu).unwrap(),
            Precision::BF16
        );
        assert_eq!(
            Precision::resolve("half", &Device::Cpu).unwrap(),
            Precision::F16
        );
        let e = Precision::resolve("int4", &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"int4\"") && e.contains(CHOICES), "{e}");
        // The CPU attention kernel needs an f32 cache whatever the weights are.
        assert_eq!(Precision::BF16.cache_dtype(&Device::Cpu), DType::F32);
    }
}
