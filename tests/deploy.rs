//! The launchers in deploy/: the Slurm script is valid bash that runs shards as an array
//! and chains the merge after them; the Kubernetes file parses, is an Indexed Job whose
//! shard count matches FLYWHEEL_SHARDS, plus a merge Job. Schema validation runs when
//! kubeconform is on PATH (and says so when it is not).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_slurm_array_script_is_valid_and_chains_the_merge() {
    let p = root().join("deploy/slurm/flywheel-array.sbatch");
    let o = Command::new("bash").arg("-n").arg(&p).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&p).unwrap();
    for want in [
        "--array=",
        "--dependency=\"afterok:",
        "run --quiet",
        "merge --quiet",
        "#SBATCH --requeue",
    ] {
        assert!(text.contains(want), "the script lacks {want:?}");
    }
    if Command::new("shellcheck").arg("--version").output().is_ok() {
        let o = Command::new("shellcheck").arg(&p).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED shellcheck of the sbatch script: no shellcheck on PATH"
        );
    }
    // Run as a shard without Slurm: it says what it needs instead of running unsharded.
    let o = Command::new("bash")
        .arg(&p)
        .arg("shard")
        .env("SPEC", "x.toml")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("array job"));
}

fn get<'a>(y: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(y, |y, k| match k.parse::<usize>() {
        Ok(i) => &y[i],
        Err(_) => &y[k],
    })
}

#[test]
fn the_kubernetes_jobs_parse_and_agree_on_the_shard_count() {
    let p = root().join("deploy/k8s/indexed-job.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    assert_eq!(docs.len(), 2);
    let (shards, merge) = (&docs[0], &docs[1]);
    for d in [shards, merge] {
        assert_eq!(get(d, "apiVersion").as_str(), Some("batch/v1"));
        assert_eq!(get(d, "kind").as_str(), Some("Job"));
        assert_eq!(
            get(d, "spec.template.spec.restartPolicy").as_str(),
            Some("Never")
        );
    }
    assert_eq!(get(shards, "spec.completionMode").as_str(), Some("Indexed"));
    let completions = get(shards, "spec.completions").as_i64().unwrap();
    let c = get(shards, "spec.template.spec.containers.0");
    let env = c["env"].as_vec().unwrap();
    let shards_env = env
        .iter()
        .find(|e| e["name"].as_str() == Some("FLYWHEEL_SHARDS"))
        .and_then(|e| e["value"].as_str())
        .expect("FLYWHEEL_SHARDS");
    assert_eq!(shards_env.parse::<i64>().unwrap(), completions);
    let cmd = |c: &Yaml| -> Vec<String> {
        c["command"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(&cmd(c)[..2], ["flywheel", "run"]);
    assert_eq!(
        &cmd(get(merge, "spec.template.spec.containers.0"))[..2],
        ["flywheel", "merge"]
    );
    if Command::new("kubeconform").arg("-v").output().is_ok() {
        let o = Command::new("kubeconform")
            .args(["-strict", "-summary"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    } else {
        let _ = writeln!(std::io::stderr(), "SKIPPED the Kubernetes schema check: no kubeconform on PATH (the YAML was parsed and its fields checked)");
    }
}
