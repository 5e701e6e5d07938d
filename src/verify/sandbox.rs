//! Running untrusted code (a model's answer) to check it: one process per run, in a fresh
//! temporary directory, with a wall-clock timeout and resource limits, a cleared
//! environment, no network, and writes confined to its directory.
//!
//! The layers, each probed on this machine and reported by [`Isolation::describe`]:
//! - **process**: a new session (the whole process group is killed at the timeout),
//!   `RLIMIT_CPU`, `RLIMIT_AS` (memory), `RLIMIT_FSIZE`, `RLIMIT_NOFILE`, no core dumps,
//!   and `RLIMIT_NPROC` (under root the child first drops to the unprivileged `nobody`,
//!   because root ignores that limit);
//! - **network**: a new network namespace (`unshare(CLONE_NEWNET)`, inside a user
//!   namespace when not root): only a loopback that is down. Where the kernel refuses
//!   it, nothing runs unless the spec says `allow_unsandboxed = true`;
//! - **filesystem**: Landlock (Linux 5.13+) allows writes only in the run's directory
//!   (and `/dev/null`); without Landlock, the unprivileged uid can still write to
//!   world-writable places such as `/tmp`.
//!
//! Not protected against: reading world-readable files, kernel exploits, side channels;
//! this is a guard against the mistakes and accidents of generated code, not a
//! container boundary for hostile code.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub file_bytes: u64,
    /// Processes the run may have at once (its own included).
    pub processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            cpu_seconds: 10,
            memory_bytes: 512 << 20,
            file_bytes: 16 << 20,
            processes: 32,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Pass,
    /// Another exit status, or killed by a signal of its own making (a crash, a limit).
    Fail,
    /// Still running at the wall-clock timeout, or out of CPU seconds.
    Timeout,
    /// It could not be run at all (the sandbox could not be set up).
    Error,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// What a run left.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    /// Why, in a few words (`exit status 1`, `killed by SIGSEGV`, `timed out after 10s`).
    pub detail: String,
    /// The last bytes of its stderr (and of its stdout when stderr is empty).
    pub tail: String,
}

/// What isolation this machine allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isolation {
    /// A network namespace can be made.
    pub network: bool,
    /// The Landlock ABI version, 0 when unavailable.
    pub landlock: i32,
    /// Running as root: each run drops to an unprivileged uid of its own.
    pub drop_to_nobody: bool,
}

impl Isolation {
    /// Probed once per process.
    pub fn get() -> Isolation {
        static ISO: OnceLock<Isolation> = OnceLock::new();
        *ISO.get_or_init(|| {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            // SAFETY: asks for the ABI version only (null attr, size 0, VERSION flag).
            let abi = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    std::ptr::null::<u8>(),
                    0usize,
                    LANDLOCK_CREATE_RULESET_VERSION,
                )
            };
            let flags = netns_flags(root);
            let mut probe = Command::new("/bin/sh");
            probe
                .args(["-c", "exit 0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: only the unshare syscall runs between fork and exec.
            unsafe {
                probe.pre_exec(move || {
                    if libc::unshare(flags) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let network = probe.status().is_ok_and(|s| s.success());
            Isolation {
                network,
                landlock: if abi > 0 { abi as i32 } else { 0 },
                drop_to_nobody: root,
            }
        })
    }

    /// One line for logs and test output.
    pub fn describe(&self) -> String {
        format!(
            "network namespace: {}; Landlock (writes only in the run's directory): {}; user: {}",
            if self.network {
                "yes"
            } else {
                "NO (the kernel refuses it)"
            },
            if self.landlock > 0 {
                format!("yes (ABI {})", self.landlock)
            } else {
                "no".into()
            },
            if self.drop_to_nobody {
                "root, each run as its own unprivileged uid"
            } else {
                "the invoking user"
            }
        )
    }
}

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
// Filesystem rights (linux/landlock.h).
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_REMOVE_DIR: u64 = 1 << 4;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_DIR: u64 = 1 << 7;
const FS_MAKE_REG: u64 = 1 << 8;
const FS_MAKE_SOCK: u64 = 1 << 9;
const FS_MAKE_FIFO: u64 = 1 << 10;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_MAKE_SYM: u64 = 1 << 12;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

fn netns_flags(root: bool) -> libc::c_int {
    if root {
        libc::CLONE_NEWNET
    } else {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNET
    }
}

/// Every right that changes the filesystem, as far as the ABI knows them.
fn write_rights(abi: i32) -> u64 {
    let mut r = FS_WRITE_FILE
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_CHAR
        | FS_MAKE_DIR
        | FS_MAKE_REG
        | FS_MAKE_SOCK
        | FS_MAKE_FIFO
        | FS_MAKE_BLOCK
        | FS_MAKE_SYM;
    if abi >= 2 {
        r |= FS_REFER;
    }
    if abi >= 3 {
        r |= FS_TRUNCATE;
    }
    r
}

/// Under root, each run in flight gets its own unprivileged uid (and gid): the process
/// limit counts per uid, so one run's fork bomb cannot starve the runs beside it. The
/// range is far above any real account, and offset by our pid so two flywheel
/// processes do not share one.
struct UidSlot(usize);

const SLOTS: usize = 100;
static IN_USE: std::sync::Mutex<[bool; SLOTS]> = std::sync::Mutex::new([false; SLOTS]);

impl UidSlot {
    fn take() -> Option<UidSlot> {
        let mut used = IN_USE.lock().ok()?;
        let k = used.iter().position(|u| !u)?;
        used[k] = true;
        Some(UidSlot(k))
    }

    fn uid(&self) -> u32 {
        1_000_000_000 + (std::process::id() % 100_000) * SLOTS as u32 + self.0 as u32
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        if let Ok(mut used) = IN_USE.lock() {
            used[self.0] = false;
        }
    }
}

/// What the child does to itself between fork and exec, all prepared beforehand.
struct Child {
    /// `unshare` flags for a new network namespace, if the machine allows one.
    network: Option<libc::c_int>,
    limits: Limits,
    nproc: u64,
    /// The unprivileged uid (and gid) to become, when running as root.
    uid: Option<u32>,
    /// The Landlock ABI, 0 when unavailable.
    landlock: i32,
    work: CString,
    null: CString,
}

impl Child {
    /// New session, network namespace (while still privileged), limits, the uid, and
    /// Landlock last.
    ///
    /// # Safety
    /// Runs in the forked child: system calls only, no allocation.
    unsafe fn confine(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        if libc::setsid() < 0 {
            return fail();
        }
        if let Some(flags) = self.network {
            if libc::unshare(flags) != 0 {
                return fail();
            }
        }
        let set = |res, soft: u64, hard: u64| {
            let r = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            libc::setrlimit(res, &r)
        };
        let l = &self.limits;
        if set(libc::RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1) != 0
            || set(libc::RLIMIT_AS, l.memory_bytes, l.memory_bytes) != 0
            || set(libc::RLIMIT_FSIZE, l.file_bytes, l.file_bytes) != 0
            || set(libc::RLIMIT_NOFILE, 256, 256) != 0
            || set(libc::RLIMIT_CORE, 0, 0) != 0
            || set(libc::RLIMIT_NPROC, self.nproc, self.nproc) != 0
        {
            return fail();
        }
        if let Some(uid) = self.uid {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return fail();
            }
        }
        if self.landlock > 0 {
            return self.landlock();
        }
        Ok(())
    }

    /// Writes only beneath the run's directory (and to `/dev/null`).
    ///
    /// # Safety
    /// As [`Self::confine`].
    unsafe fn landlock(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        let rights = write_rights(self.landlock);
        let attr = RulesetAttr {
            handled_access_fs: rights,
        };
        let fd = libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        ) as libc::c_int;
        if fd < 0 {
            return fail();
        }
        for (path, allowed) in [
            (self.work.as_ptr(), rights),
            (self.null.as_ptr(), FS_WRITE_FILE | (rights & FS_TRUNCATE)),
        ] {
            let pfd = libc::open(path, libc::O_PATH | libc::O_CLOEXEC);
            if pfd < 0 {
                return fail();
            }
            let rule = PathBeneath {
                allowed_access: allowed,
                parent_fd: pfd,
            };
            let r = libc::syscall(
                libc::SYS_landlock_add_rule,
                fd,
                LANDLOCK_RULE_PATH_BENEATH,
                &rule as *const PathBeneath,
                0u32,
            );
            libc::close(pfd);
            if r != 0 {
                return fail();
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0
        {
            return fail();
        }
        libc::close(fd);
        Ok(())
    }
}

/// Kills every process of `uid` (`kill(-1)` as that uid reaches exactly those).
fn reap(uid: u32) {
    let mut c = Command::new("/bin/true");
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only system calls between fork and _exit.
    unsafe {
        c.pre_exec(move || {
            if libc::setgid(uid) == 0 && libc::setuid(uid) == 0 {
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        });
    }
    let _ = c.status();
}

/// Processes the invoking (non-root) user has now: `RLIMIT_NPROC` counts them all.
fn user_processes() -> u64 {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            use std::os::unix::fs::MetadataExt;
            e.metadata().is_ok_and(|m| m.uid() == uid)
        })
        .count() as u64
}

/// Runs `argv` (argv[0] is looked up on a fixed `PATH`) in a fresh directory holding
/// `files`, under `limits`. `allow_unsandboxed` permits running without a network
/// namespace where the kernel refuses one; otherwise that is an [`Outcome::Error`].
pub fn run(
    argv: &[String],
    files: &[(&str, &[u8])],
    limits: &Limits,
    allow_unsandboxed: bool,
) -> RunResult {
    let iso = Isolation::get();
    let error = |detail: String| RunResult {
        outcome: Outcome::Error,
        detail,
        tail: String::new(),
    };
    if !iso.network && !allow_unsandboxed {
        return error("this machine refuses a network namespace, so generated code is not run (set allow_unsandboxed = true to run it with network access)".into());
    }
    let Some(program) = argv.first() else {
        return error("empty command".into());
    };
    let dir = match tempfile::Builder::new().prefix("flywheel-exec-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(format!("cannot make a temporary directory: {e}")),
    };
    let work = dir.path();
    for (name, bytes) in files {
        if let Err(e) = std::fs::write(work.join(name), bytes) {
            return error(format!("cannot write {name}: {e}"));
        }
    }
    let slot = if iso.drop_to_nobody {
        match UidSlot::take() {
            Some(s) => Some(s),
            None => return error(format!("more than {SLOTS} runs at once")),
        }
    } else {
        None
    };
    let uid = slot.as_ref().map_or(0, UidSlot::uid);
    if iso.drop_to_nobody {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777));
        for (name, _) in files {
            let _ =
                std::fs::set_permissions(work.join(name), std::fs::Permissions::from_mode(0o666));
        }
    }
    let (out_path, err_path) = (dir.path().join(".stdout"), dir.path().join(".stderr"));
    let (Ok(out), Ok(err)) = (
        std::fs::File::create(&out_path),
        std::fs::File::create(&err_path),
    ) else {
        return error("cannot create the output files".into());
    };
    let (Ok(work_c), Ok(null_c)) = (
        CString::new(work.as_os_str().as_encoded_bytes()),
        CString::new("/dev/null"),
    ) else {
        return error("the temporary directory's path has a NUL byte".into());
    };
    let nproc = if iso.drop_to_nobody {
        limits.processes
    } else {
        user_processes() + limits.processes
    };
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .current_dir(work)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work)
        .env("TMPDIR", work)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = Child {
        network: iso.network.then_some(netns_flags(iso.drop_to_nobody)),
        limits: *limits,
        nproc,
        uid: iso.drop_to_nobody.then_some(uid),
        landlock: iso.landlock,
        work: work_c,
        null: null_c,
    };
    // SAFETY: `confine` makes only async-signal-safe system calls (no allocation: the
    // paths were made above), as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || child.confine());
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return error(format!("cannot start {program}: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    let mut wait = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() >= limits.timeout => break None,
            Ok(None) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            Err(e) => return error(format!("cannot wait for {program}: {e}")),
        }
    };
    // The whole group goes, on time or not: a child the code left behind must not outlive
    // the check.
    // SAFETY: kill only signals; the group id is the child's pid (it called setsid).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    // A process that left the group (its own setsid) still has the run's uid: signal every
    // process of that uid, from a process that has it.
    if let Some(s) = &slot {
        reap(s.uid());
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.wait();
            return RunResult {
                outcome: Outcome::Timeout,
                detail: format!("timed out after {:.0?}", limits.timeout),
                tail: tail(&err_path, &out_path),
            };
        }
    };
    let tail = tail(&err_path, &out_path);
    let (outcome, detail) = match (status.code(), status.signal()) {
        (Some(0), _) => (Outcome::Pass, "exit status 0".to_string()),
        (Some(c), _) => (Outcome::Fail, format!("exit status {c}")),
        (None, Some(libc::SIGXCPU)) => (
            Outcome::Timeout,
            format!("out of CPU time ({} s)", limits.cpu_seconds),
        ),
        (None, Some(s)) => (Outcome::Fail, format!("killed by signal {s}")),
        (None, None) => (Outcome::Fail, "ended without a status".into()),
    };
    RunResult {
        outcome,
        detail,
        tail,
    }
}

/// The last 1,500 bytes of stderr, else of stdout, as text.
fn tail(err: &Path, out: &Path) -> String {
    let read = |p: &Path| -> String {
        let mut b = Vec::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            let _ = f.read_to_end(&mut b);
        }
        let start = b.len().saturating_sub(1500);
        String::from_utf8_lossy(&b[start..]).trim().to_string()
    };
    let e = read(err);
    if e.is_empty() {
        read(out)
    } else {
        e
    }
}
