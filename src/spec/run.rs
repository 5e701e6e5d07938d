//! `[run]`: the run's name, seed and output directory.

use super::Locator;
use crate::error::Result;
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// `[run]`: the run's name, seed and output directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run name; records go to `<out_dir>/<name>/`.
    pub name: Spanned<String>,
    /// Run seed; each record's sampling seed is derived from it and the record id.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Parent directory of run directories (relative to the working directory).
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
}

fn default_seed() -> u64 {
    42
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// The run name names a directory, so it is one path component of plain characters.
pub(super) fn validate(run: &RunSection, loc: &Locator<'_>) -> Result<()> {
    let name = run.name.get_ref();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(loc.err(
            run.name.span(),
            "run.name",
            format!("{name:?} is not a valid run name: use letters, digits, '-', '_' or '.' (it names a directory)"),
        ));
    }
    Ok(())
}
