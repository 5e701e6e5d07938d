//! The CPU kernels the engine and the embedder share: one dot product (one summation
//! order), the softmax and axpy steps, and one attention over strided keys and values
//! ([`attention`]). CUDA kernels live in `kernels/` at the repository root; this module is
//! their CPU reference.
//!
//! Loops that matter are compiled twice, for the baseline x86-64 target (SSE2) and for
//! AVX2, picked at run time ([`multiversion!`](crate::multiversion)). The release build
//! targets any x86-64, so without this our own loops (bias adds, layer norm, GELU,
//! attention) run 4 lanes wide while the gemm crate, which dispatches itself, runs 8. Both
//! versions do the same operations in the same order: Rust never fuses a multiply and an
//! add, and never reorders float sums, on its own, so results are bit-identical on every
//! CPU. Measured on `flywheel bench embed`: 506–518 → 511–526 sentences/s, and the share of
//! time outside the gemm kernel fell from 24 % to 21 %.

pub mod attention;
mod vector;

pub use attention::{attention, attention_f64, KvView, QueryRow};
pub use vector::{axpy, dot, softmax_exp};

/// Defines `fn name(args)` that runs an AVX2 build of the same body when the CPU has AVX2.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, the only feature `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}
