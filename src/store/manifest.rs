//! `manifest.json`: what made this run directory, and how far each stage got.

use super::write_atomic;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub flywheel: String,
    pub spec_path: String,
    pub spec_sha256: String,
    /// Everything that changes the text of a generated record; a mismatch means the old
    /// records were made differently and must not be mixed with new ones.
    pub generation_fingerprint: Option<serde_json::Value>,
    pub models: Vec<ModelEntry>,
    pub stages: BTreeMap<String, StageStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelEntry {
    pub role: String,
    pub id: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageStatus {
    /// `running`, `interrupted`, `failed` or `done`.
    pub status: String,
    pub planned: usize,
    pub done: usize,
    pub written_this_run: usize,
    pub wall_seconds: f64,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let p = dir.join(super::run_dir::MANIFEST);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io("cannot read", &p, e))?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::RunConflict(format!(
                "{} is not a flywheel manifest ({e}); move it away or use another run name",
                p.display()
            ))
        })
    }

    /// Records that `stage` finished: stamps the spec and tool version, replaces the
    /// stage's entry and the models it names (by role), and saves. Every standalone stage
    /// marks the manifest through here; freshness itself is decided by the pipeline loop.
    pub fn mark_stage(
        dir: &Path,
        spec: (&Path, String),
        stage: &str,
        status: StageStatus,
        models: &[ModelEntry],
    ) -> Result<()> {
        let mut m = Manifest::load(dir)?.unwrap_or_default();
        m.spec_path = spec.0.display().to_string();
        m.spec_sha256 = spec.1;
        m.flywheel = env!("CARGO_PKG_VERSION").into();
        m.stages.insert(stage.into(), status);
        for e in models {
            m.models.retain(|x| x.role != e.role);
            m.models.push(e.clone());
        }
        m.save(dir)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&dir.join(super::run_dir::MANIFEST), &bytes)
    }
}
