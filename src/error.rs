//! The library's error type. Every variant says what went wrong, where, and what to do,
//! because the CLI prints these messages to users as they are.

use std::path::PathBuf;

/// Errors from the flywheel library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec file problem, already formatted with `file:line:col` and the field.
    #[error("{0}")]
    Spec(String),
    /// A model could not be found, fetched, verified or loaded.
    #[error("{0}")]
    Model(String),
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
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
