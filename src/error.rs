//! The library's error type. Every variant says what went wrong, where, and what to do,
//! because the CLI prints these messages to users as they are.

use std::path::PathBuf;

/// Errors from the flywheel library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec file problem, already formatted with `file:line:col` and the field.
    #[error("{0}")]
    Spec(String),
    /// A valid spec asks for something this build checks but cannot run yet; refused
    /// before any work so nothing half-made is written.
    #[error("{0}")]
    Unsupported(String),
    /// A file a stage reads does not exist yet: `run_first` is the command that makes it.
    /// (`or` ends the message with the other way out, e.g. " (or pass --input FILE)".)
    #[error("{} does not exist: run `{run_first}` first{or}", path.display())]
    MissingInput {
        path: PathBuf,
        run_first: String,
        or: &'static str,
    },
    /// A line of an input file that cannot be used where one bad line must stop the work
    /// (`--strict`, a header, an eval set). `advice` ends the message.
    #[error("{}:{line}: {reason}{advice}", path.display())]
    BadInput {
        path: PathBuf,
        line: usize,
        reason: String,
        advice: &'static str,
    },
    /// A model could not be found, fetched, verified or loaded.
    #[error("{0}")]
    Model(String),
    /// `flywheel review` cannot start or serve (a bad reviewer name, a busy port).
    #[error("{0}")]
    Review(String),
    /// A chat template could not be read, compiled or rendered (a template's own
    /// `raise_exception` message included).
    #[error("{0}")]
    Template(String),
    /// The device ran out of memory. Typed where it is detected (candle's error as it
    /// enters ours, or the test fault injection), so a batch can shrink and retry.
    #[error("{0}")]
    OutOfMemory(String),
    /// A bug in flywheel, not something the user did (e.g. a value that always
    /// serializes failed to).
    #[error("internal: {0}")]
    Internal(String),
    /// A file could not be read or written.
    /// (The cause is in the message, not chained as a source, so `{:#}` says it once.)
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The run directory holds records made with different settings.
    #[error("{0}")]
    RunConflict(String),
    /// A device was asked for that this build or machine does not have.
    #[error("{0}")]
    Device(String),
    /// A tensor operation failed inside candle (other than running out of memory).
    #[error("tensor operation failed: {0}")]
    Candle(candle_core::Error),
    /// A stage wrote what it could but fell short of what the spec asked (exit code 3).
    #[error("{0}")]
    Shortfall(String),
    /// Another flywheel process holds the run directory's lock.
    #[error("{0}")]
    Locked(String),
    /// Generation was interrupted (Ctrl-C); records written so far are kept.
    #[error("interrupted; records written so far are kept and a rerun resumes")]
    Interrupted,
}

impl Error {
    /// An I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}

impl From<candle_core::Error> for Error {
    /// candle has no out-of-memory variant: CUDA's arrives as a driver error whose text
    /// names `CUDA_ERROR_OUT_OF_MEMORY` (other backends say "out of memory"). It is
    /// classified here, once, where candle's error becomes ours; the message is unchanged.
    fn from(e: candle_core::Error) -> Self {
        let m = e.to_string();
        if m.contains("OUT_OF_MEMORY") || m.to_lowercase().contains("out of memory") {
            Error::OutOfMemory(format!("tensor operation failed: {m}"))
        } else {
            Error::Candle(e)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_variants_keep_their_messages() {
        let e = Error::MissingInput {
            path: "runs/x/kept.jsonl".into(),
            run_first: "flywheel dedup s.toml".into(),
            or: " (or pass --input FILE)",
        };
        assert_eq!(
            e.to_string(),
            "runs/x/kept.jsonl does not exist: run `flywheel dedup s.toml` first (or pass --input FILE)"
        );
        let e = Error::BadInput {
            path: "a.jsonl".into(),
            line: 3,
            reason: "bad_input:not_an_object".into(),
            advice: "; fix or remove that line",
        };
        assert_eq!(
            e.to_string(),
            "a.jsonl:3: bad_input:not_an_object; fix or remove that line"
        );
        assert_eq!(Error::Internal("x".into()).to_string(), "internal: x");
    }

    #[test]
    fn candle_out_of_memory_is_typed_where_it_enters() {
        let oom: Error =
            candle_core::Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY)".into()).into();
        assert!(matches!(oom, Error::OutOfMemory(_)));
        assert_eq!(
            oom.to_string(),
            "tensor operation failed: DriverError(CUDA_ERROR_OUT_OF_MEMORY)"
        );
        let other: Error = candle_core::Error::Msg("shape mismatch".into()).into();
        assert!(matches!(other, Error::Candle(_)));
        assert_eq!(other.to_string(), "tensor operation failed: shape mismatch");
    }
}
