//! The files of a run directory, by name in one place, so no stage spells another's
//! file name (and so none can read an earlier stage's file by mistake).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The manifest's file name (also read where only a directory path is at hand).
pub const MANIFEST: &str = "manifest.json";

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
    /// The file a stage reads: `given` (`--input FILE`), else `default`, an earlier stage's
    /// output here. A missing one is an error naming the command that makes it, so no stage
    /// quietly reads around the one before it.
    pub fn input(given: Option<&Path>, default: PathBuf, make_it: &str) -> Result<PathBuf> {
        let input = given.map(Path::to_path_buf).unwrap_or(default);
        if !input.exists() {
            return Err(Error::MissingInput {
                path: input,
                run_first: format!("flywheel {make_it}"),
                or: " (or pass --input FILE)",
            });
        }
        Ok(input)
    }
    /// The dedup index: each record's exact-dedup key, MinHash signature and embedding,
    /// made where the records are (a shard, or the run) for the global dedup.
    pub fn index(&self) -> PathBuf {
        self.0.join("index")
    }
    /// generate's output.
    pub fn generated(&self) -> PathBuf {
        self.0.join("generated.jsonl")
    }
    /// generate's per-step values of tasks with steps (resume at step granularity).
    pub fn steps(&self) -> PathBuf {
        self.0.join("steps.jsonl")
    }
    /// generate's records that failed a step, each with the step and the reason.
    pub fn steps_rejected(&self) -> PathBuf {
        self.0.join("steps_rejected.jsonl")
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
    /// The canary test's planted texts and what the teacher wrote for them (audit with
    /// `--canaries`).
    pub fn canary_planted(&self) -> PathBuf {
        self.0.join("canary_planted.jsonl")
    }
    pub fn canary_outputs(&self) -> PathBuf {
        self.0.join("canary_outputs.jsonl")
    }
    /// `flywheel review`'s journal of decisions (append-only).
    pub fn review(&self) -> PathBuf {
        self.0.join("review.jsonl")
    }
    /// blend's records that a reviewer rejected, each with its reason.
    pub fn review_rejected(&self) -> PathBuf {
        self.0.join("review_rejected.jsonl")
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
        self.0.join(MANIFEST)
    }
    /// The lock file (see [`super::RunLock`]).
    pub fn lock(&self) -> PathBuf {
        self.0.join(super::lock::LOCK_FILE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_one_distinct_name_under_the_dir() {
        let d = RunDir::new("runs/x");
        let all = [
            d.generated(),
            d.verified(),
            d.kept(),
            d.rejected(),
            d.audited(),
            d.privacy(),
            d.canary_planted(),
            d.canary_outputs(),
            d.review(),
            d.review_rejected(),
            d.dataset(),
            d.dataset_parquet(),
            d.card(),
            d.report_json(),
            d.report_html(),
            d.manifest(),
            d.lock(),
        ];
        let set: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len(), "two files share a name");
        assert!(all.iter().all(|p| p.parent() == Some(Path::new("runs/x"))));
    }

    #[test]
    fn asides_never_collide_and_stay_beside_their_file() {
        let f = RunDir::new("runs/x").verified();
        let a = RunDir::aside(&f, "rescored");
        let b = RunDir::aside(&f, "rescored");
        assert_ne!(a, b);
        assert_eq!(a.parent(), f.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("verified.") && name.ends_with(".rescored.jsonl"),
            "{name}"
        );
    }

    #[test]
    fn a_missing_input_names_the_command_that_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = RunDir::new(dir.path());
        let e = RunDir::input(None, d.kept(), "dedup spec.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kept.jsonl does not exist: run `flywheel dedup spec.toml` first"),
            "{e}"
        );
        std::fs::write(d.kept(), "").unwrap();
        assert_eq!(RunDir::input(None, d.kept(), "dedup").unwrap(), d.kept());
        let given = dir.path().join("mine.jsonl");
        assert!(RunDir::input(Some(&given), d.kept(), "dedup").is_err());
    }
}
