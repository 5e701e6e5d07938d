//! With `--features cuda`, compiles `kernels/*.cu` to PTX with nvcc (into OUT_DIR), so the
//! CUDA code is checked at build time and loaded at run time without NVRTC. Without the
//! feature it does nothing: CPU builds need no CUDA toolchain.

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    // PTX for the oldest architecture asked for; the driver JIT-compiles it for newer GPUs.
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .and_then(|c| {
            c.split(',')
                .filter_map(|x| x.trim().parse::<u32>().ok())
                .min()
        })
        .unwrap_or(75);
    let mut sources: Vec<std::path::PathBuf> = std::fs::read_dir("kernels")
        .expect("kernels/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for src in sources {
        let name = src
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let src = src.display().to_string();
        let dst = out.join(format!("{name}.ptx"));
        let status = std::process::Command::new(&nvcc)
            .args(["--ptx", "-O3", "--use_fast_math", &format!("-arch=compute_{cap}"), "-o"])
            .arg(&dst)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {nvcc} to compile {src} ({e}); install CUDA or set NVCC (see README, Building with CUDA)")
            });
        assert!(status.success(), "nvcc failed on {src}");
    }
}
