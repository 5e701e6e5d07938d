//! Scale-out: a spec run as 3 shard processes (`run --shard i/3`) and `flywheel merge`
//! gives the same dataset, byte for byte, as one `flywheel run` (the CPU's Q8_0 path):
//! with one shard killed mid-run and run again; and merge refuses missing, unfinished and
//! mismatched shards, saying which.

mod common;

use common::{flywheel, model_file, records_by_id, run, stderr, stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The same spec text in `dir` (relative `out_dir`, so two working directories hold two
/// runs of one spec: the spec's sha256 is in every record's provenance).
fn spec(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/real/anchor.jsonl"),
        dir.join("anchor.jsonl"),
    )
    .unwrap();
    let text = r#"[run]
name = "sh"
seed = 9
out_dir = "runs"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 24
batch_size = 2

[seeds]
topic = ["tides", "volcanoes", "rainbows", "magnets", "clouds", "erosion", "comets", "fossils"]
audience = ["a child", "a student"]

[[task]]
name = "explain"
template = "Explain {{topic}} to {{audience}}."

[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."

[filter]
require = []
allow_truncated = true

[dedup]
semantic = 0.9

[blend]
real = ["anchor.jsonl"]
real_share = 0.3
"#;
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn in_dir(dir: &Path, args: &[&str]) -> std::process::Output {
    let o = run(flywheel().current_dir(dir).args(args));
    assert!(
        o.status.success(),
        "flywheel {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn three_shards_and_a_merge_make_the_single_process_dataset() {
    model_file("smollm2-135m-instruct");
    let tmp = tempfile::tempdir().unwrap();
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    spec(&one);
    spec(&many);
    in_dir(&one, &["run", "-q", "--device", "cpu", "spec.toml"]);

    // Shard 1 is killed mid-generate: a merge now is refused, naming it.
    let mut child = flywheel()
        .current_dir(&many)
        .args([
            "run",
            "-q",
            "--device",
            "cpu",
            "spec.toml",
            "--shard",
            "1/3",
        ])
        .spawn()
        .unwrap();
    let gen1 = many.join("runs/sh/shards/1-of-3/generated.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&gen1)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "shard 1 wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    in_dir(
        &many,
        &[
            "run",
            "-q",
            "--device",
            "cpu",
            "spec.toml",
            "--shard",
            "0/3",
        ],
    );
    // Slurm's variables name the shard when --shard is not given.
    let o = run(flywheel()
        .current_dir(&many)
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .args(["run", "--device", "cpu", "spec.toml"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard 2/3 (from SLURM_ARRAY_TASK_ID"),
        "{}",
        stderr(&o)
    );
    assert!(many.join("runs/sh/shards/2-of-3/verified.jsonl").exists());
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "spec.toml"]));
    assert!(
        !o.status.success(),
        "a merge with a killed shard must be refused"
    );
    let e = stderr(&o);
    assert!(e.contains("shard 1-of-3") && e.contains("missing"), "{e}");
    assert!(
        !many.join("runs/sh/dataset.jsonl").exists(),
        "nothing merged"
    );

    // Only shard 1 runs again; it resumes from what it had.
    let had = std::fs::read_to_string(&gen1).unwrap().lines().count();
    let o = in_dir(
        &many,
        &["run", "--device", "cpu", "spec.toml", "--shard", "1/3"],
    );
    assert!(stdout(&o).contains("generate:"), "{}", stdout(&o));
    assert!(had >= 1);
    let sizes: Vec<usize> = (0..3)
        .map(|i| records_by_id(&many.join(format!("runs/sh/shards/{i}-of-3/verified.jsonl"))).len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 16, "{sizes:?}");
    assert!(
        sizes.iter().all(|&n| n > 0),
        "every shard has work: {sizes:?}"
    );

    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(
        stdout(&o).contains("done: 3 shards, 16 verified records"),
        "{}",
        stdout(&o)
    );
    let (a, b) = (one.join("runs/sh"), many.join("runs/sh"));
    // The merge's dedup started from the indexes the shards wrote: no note that it had to
    // make its own, and the run's index is the shards' rows, joined.
    assert!(!stderr(&o).contains("note: dedup made"), "{}", stderr(&o));
    for part in ["signatures.bin", "embeddings.bin"] {
        let joined: Vec<u8> = (0..3)
            .flat_map(|i| bytes(&b.join(format!("shards/{i}-of-3/index/{part}"))))
            .collect();
        assert!(!joined.is_empty(), "{part}: the shards wrote none");
        assert!(
            joined == bytes(&b.join("index").join(part)),
            "{part}: the run's index is not the shards' joined"
        );
    }
    // The same records, verified the same…
    assert_eq!(
        records_by_id(&a.join("verified.jsonl")),
        records_by_id(&b.join("verified.jsonl"))
    );
    // …and the same bytes from dedup on, whatever order the shards finished in.
    for f in [
        "kept.jsonl",
        "rejected.jsonl",
        "audited.jsonl",
        "dataset.jsonl",
        "dataset.parquet",
    ] {
        assert!(
            bytes(&a.join(f)) == bytes(&b.join(f)),
            "{f} differs between one process and 3 shards + merge"
        );
    }
    // Several devices in one command: one engine per device (here two CPU processes),
    // one run, the same bytes.
    let two = tmp.path().join("two");
    spec(&two);
    let o = in_dir(&two, &["run", "--device", "cpu,cpu", "spec.toml"]);
    assert!(
        stdout(&o).contains("2 devices (cpu, cpu)"),
        "{}",
        stdout(&o)
    );
    for f in ["kept.jsonl", "audited.jsonl", "dataset.jsonl"] {
        assert!(
            bytes(&a.join(f)) == bytes(&two.join("runs/sh").join(f)),
            "{f} differs with --device cpu,cpu"
        );
    }
    // A second merge has nothing to do.
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));

    // A shard whose index is gone costs time, never correctness: dedup makes the index of
    // the joined records itself, says so, and writes the same bytes.
    std::fs::remove_file(b.join("shards/2-of-3/index/embeddings.json")).unwrap();
    std::fs::remove_file(b.join("kept.jsonl")).unwrap();
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    let e = stderr(&o);
    assert!(
        e.contains("note: dedup made its index of the joined records itself")
            && e.contains("embeddings part has none"),
        "{e}"
    );
    assert!(
        bytes(&a.join("kept.jsonl")) == bytes(&b.join("kept.jsonl")),
        "kept.jsonl differs when dedup made the index itself"
    );
    // `embed --shard` makes that shard's embeddings again, `dedup --shard` its whole index
    // (through the stage contract); then the merge starts from them again.
    let o = in_dir(
        &many,
        &["embed", "--device", "cpu", "spec.toml", "--shard", "2/3"],
    );
    assert!(stdout(&o).contains("embeddings of"), "{}", stdout(&o));
    assert!(b.join("shards/2-of-3/index/embeddings.json").exists());
    let o = in_dir(
        &many,
        &["dedup", "--device", "cpu", "spec.toml", "--shard", "2/3"],
    );
    assert!(stdout(&o).contains("index → "), "{}", stdout(&o));
    std::fs::remove_file(b.join("kept.jsonl")).unwrap();
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(!stderr(&o).contains("note: dedup made"), "{}", stderr(&o));
    assert!(bytes(&a.join("kept.jsonl")) == bytes(&b.join("kept.jsonl")));

    // A shard made with other settings is refused: its manifest says so.
    let m2 = b.join("shards/2-of-3/manifest.json");
    let orig = std::fs::read_to_string(&m2).unwrap();
    std::fs::write(&m2, orig.replace("\"seed\": 9", "\"seed\": 10")).unwrap();
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "spec.toml"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("shard 2-of-3: generated with other settings"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&m2, &orig).unwrap();
    // A shard of another spec text is refused too.
    let edited = std::fs::read_to_string(many.join("spec.toml"))
        .unwrap()
        .replace("max_new_tokens = 24", "max_new_tokens = 25");
    std::fs::write(many.join("edited.toml"), edited).unwrap();
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "edited.toml"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("made from another spec text"),
        "{}",
        stderr(&o)
    );
    // A missing shard, by name; and shards of two different counts.
    std::fs::rename(b.join("shards/0-of-3"), tmp.path().join("away")).unwrap();
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "runs/sh"]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("shard 0-of-3: missing") && e.contains("planned records are missing"),
        "{e}"
    );
    std::fs::rename(tmp.path().join("away"), b.join("shards/0-of-3")).unwrap();
    // Split another way: the new shards take the records the old ones made (same spec, same
    // settings) and make none again; with both counts there, merge takes the complete one.
    std::fs::create_dir_all(b.join("shards/0-of-4")).unwrap();
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(
        stderr(&o).contains("merging the 3 complete ones, ignoring of-4"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(b.join("shards/0-of-4")).unwrap();
    let mut took = 0;
    for i in 0..2 {
        let o = in_dir(
            &many,
            &[
                "run",
                "--device",
                "cpu",
                "spec.toml",
                "--shard",
                &format!("{i}/2"),
            ],
        );
        let e = stderr(&o);
        let n: usize = e
            .split("note: took ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("shard {i}/2 took nothing: {e}"));
        took += n;
    }
    assert_eq!(took, 16, "every record was taken from the 3 shards");
    for i in 0..3 {
        std::fs::rename(
            b.join(format!("shards/{i}-of-3")),
            tmp.path().join(format!("old{i}")),
        )
        .unwrap();
    }
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(
        stdout(&o).contains("done: 2 shards, 16 verified records"),
        "{}",
        stdout(&o)
    );
    for f in ["kept.jsonl", "rejected.jsonl", "dataset.jsonl"] {
        assert!(
            bytes(&a.join(f)) == bytes(&b.join(f)),
            "{f} differs after re-sharding 3 → 2"
        );
    }
    // A [dedup] edit: the shards' records still stand; merge asks for the shards to be
    // brought up to date, a rerun of each skips what is fresh, and the merge goes through.
    let edited = std::fs::read_to_string(many.join("spec.toml"))
        .unwrap()
        .replace("semantic = 0.9", "semantic = 0.95");
    std::fs::write(many.join("spec.toml"), edited).unwrap();
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "spec.toml"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("made from another spec text"),
        "{}",
        stderr(&o)
    );
    for i in 0..2 {
        let o = in_dir(
            &many,
            &[
                "run",
                "--device",
                "cpu",
                "spec.toml",
                "--shard",
                &format!("{i}/2"),
            ],
        );
        let out = stdout(&o);
        assert!(
            out.contains("generate: up to date") && out.contains("verify: up to date"),
            "{out}"
        );
    }
    let o = in_dir(&many, &["merge", "--device", "cpu", "spec.toml"]);
    assert!(stdout(&o).contains("dedup: 16 →"), "{}", stdout(&o));
    // Incomplete shards of two counts: refused, each named.
    std::fs::create_dir_all(b.join("shards/0-of-5")).unwrap();
    std::fs::remove_dir_all(b.join("shards/1-of-2")).unwrap();
    let o = run(flywheel()
        .current_dir(&many)
        .args(["merge", "--device", "cpu", "spec.toml"]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("shards of different counts (of-2, of-5) and none is complete"),
        "{e}"
    );
}
