//! Which part of the plan a process makes: `--shard i/N`, or a scheduler's array index
//! (Slurm job arrays, Kubernetes Indexed Jobs). A record belongs to the shard given by a
//! hash of its id, so the split depends on nothing but the id and N: any shard can be run
//! again (after a crash, or on another node) and makes exactly the same records.

use sha2::{Digest, Sha256};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// The most shards a run may have (a directory per shard).
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    /// `i/N` with `0 <= i < N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: give INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(index, count).ok_or_else(bad)
    }

    pub fn new(index: usize, count: usize) -> Option<Shard> {
        ((1..=MAX_SHARDS).contains(&count) && index < count).then_some(Shard { index, count })
    }

    /// The shard a scheduler gave this process, and where it was read from:
    /// Slurm (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`) or
    /// a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of `FLYWHEEL_SHARDS`, which the
    /// job sets to its `completions`).
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, String> {
        let num = |k: &str| -> Result<Option<usize>, String> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{k}={v:?} is not a number")),
            }
        };
        if let (Some(id), Some(count)) =
            (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id
                .checked_sub(min)
                .ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?;
            return Shard::new(index, count)
                .map(|s| Some((s, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")))
                .ok_or_else(|| format!("Slurm array task {index} of {count}: the array must be contiguous (--array=0-{})", count.saturating_sub(1)));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num("FLYWHEEL_SHARDS")?.ok_or(
                "JOB_COMPLETION_INDEX is set but FLYWHEEL_SHARDS is not: set it to the Job's completions (deploy/k8s/indexed-job.yaml does)",
            )?;
            return Shard::new(index, count)
                .map(|s| Some((s, "JOB_COMPLETION_INDEX/FLYWHEEL_SHARDS")))
                .ok_or_else(|| {
                    format!("JOB_COMPLETION_INDEX {index} is not below FLYWHEEL_SHARDS {count}")
                });
        }
        Ok(None)
    }

    /// The shard a record id belongs to.
    pub fn of(id: &str, count: usize) -> usize {
        let h = Sha256::digest(id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        (u64::from_be_bytes(b) % count as u64) as usize
    }

    pub fn owns(&self, id: &str) -> bool {
        Shard::of(id, self.count) == self.index
    }

    /// `<i>-of-<N>`: the shard's directory name under `runs/<name>/shards/`.
    pub fn dir_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// The inverse of [`Shard::dir_name`].
    pub fn from_dir_name(s: &str) -> Option<Shard> {
        let (i, n) = s.split_once("-of-")?;
        Shard::new(i.parse().ok()?, n.parse().ok()?)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_every_id_exactly_once_and_evenly() {
        let ids: Vec<String> = (0..3000).map(|i| format!("{i:032x}")).collect();
        let mut sizes = [0usize; 3];
        for id in &ids {
            let owners: Vec<usize> = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.owns(id))
                .collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (900..1100).contains(&n)), "{sizes:?}");
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1", "a/b", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::from_dir_name("2-of-3"), Shard::new(2, 3));
        assert_eq!(Shard::from_dir_name("3-of-3"), None);
    }

    #[test]
    fn schedulers_give_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        let s = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
        ]))
        .unwrap();
        assert_eq!(s.unwrap().0, Shard { index: 2, count: 4 });
        let s = Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "1"),
            ("FLYWHEEL_SHARDS", "2"),
        ]))
        .unwrap();
        assert_eq!(s.unwrap().0, Shard { index: 1, count: 2 });
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
        assert!(Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "2"),
            ("FLYWHEEL_SHARDS", "2")
        ]))
        .is_err());
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
    }
}
