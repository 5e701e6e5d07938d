//! The files of a run directory, by name in one place, so no stage spells another's
//! file name (and so none can read an earlier stage's file by mistake).

use std::path::{Path, PathBuf};

/// A run directory (`runs/<name>/`) and the paths of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(dir: impl Into<PathBuf>) -> RunDir {
        RunDir(dir.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// generate's output.
    pub fn generated(&self) -> PathBuf {
        self.0.join("generated.jsonl")
    }
    /// verify's output.
    pub fn verified(&self) -> PathBuf {
        self.0.join("verified.jsonl")
    }
    /// dedup's survivors.
    pub fn kept(&self) -> PathBuf {
        self.0.join("kept.jsonl")
    }
    /// dedup's rejections, each with its reason.
    pub fn rejected(&self) -> PathBuf {
        self.0.join("rejected.jsonl")
    }
    /// audit's survivors (policy applied).
    pub fn audited(&self) -> PathBuf {
        self.0.join("audited.jsonl")
    }
    /// audit's findings.
    pub fn privacy(&self) -> PathBuf {
        self.0.join("privacy.json")
    }
    /// blend's dataset.
    pub fn dataset(&self) -> PathBuf {
        self.0.join("dataset.jsonl")
    }
    pub fn dataset_parquet(&self) -> PathBuf {
        self.0.join("dataset.parquet")
    }
    /// The Hugging Face dataset card.
    pub fn card(&self) -> PathBuf {
        self.0.join("README.md")
    }
    pub fn report_json(&self) -> PathBuf {
        self.0.join("report.json")
    }
    pub fn report_html(&self) -> PathBuf {
        self.0.join("report.html")
    }
    pub fn manifest(&self) -> PathBuf {
        self.0.join("manifest.json")
    }
    /// Where records moved out of `file` are kept, e.g.
    /// `generated.1700000000-4242-0.not-in-plan.jsonl`: never deleted, never read downstream.
    pub fn aside(file: &Path, why: &str) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Two asides in the same second (or process) still get distinct names.
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = format!("{stamp}-{}-{seq}", std::process::id());
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "records".into());
        file.with_file_name(format!("{stem}.{stamp}.{why}.jsonl"))
    }
}
