//! Isolation for Tusk instances: every instance in its own sandbox, every failure contained.
//!
//! Over 600 lines: the probe behind `tusk doctor` and the per-instance set-up share the host
//! facts they detect (capabilities, cgroups, the self-test); the steps themselves live in the
//! submodules. Splitting the probe into its own file is the next step when it grows.
//!
//! Full isolation (root, the default wherever the host allows it):
//! - PID, mount, IPC, UTS and cgroup namespaces, plus a network namespace with `network: none`;
//! - a fresh root: system directories and an allow-listed `/etc` read-only, the package at
//!   `/var/task`, Tusk's runtime at `/opt`, a private `/tmp` capped at `ephemeralStorageSize`,
//!   nothing else writable ([`fs`]);
//! - a per-instance unprivileged uid, `no_new_privs`;
//! - a cgroup (v2, or v1 on hybrid hosts) for memory, CPU (Lambda's 1769 MB per core), pids,
//!   the freezer and killing the whole tree ([`cgroup`]);
//! - a seccomp filter refusing kernel interfaces functions never need ([`seccomp`]), installed
//!   last, right before `exec`.
//!
//! Degraded mode (no privileges): rlimits and the seccomp filter only, announced loudly;
//! `tusk doctor` shows what is active. `--sandbox off` runs instances bare, for benchmarks.
//! docs/isolation.md lists the attacks the test suite throws at this and what happens.

mod cgroup;
mod child;
mod fs;
mod net;
mod seccomp;
mod spawn;

pub use cgroup::{CgroupVersion, Controllers};
pub use fs::{RUNTIME_DIR, TASK_ROOT};
pub use net::tcp_peer_uid;

use cgroup::{InstanceCgroup, Limits, NodeCgroups};
use child::{ChildPlan, Rlimit};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `tusk serve --sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Full isolation where the host allows it, degraded (rlimits) otherwise.
    #[default]
    Auto,
    /// Full isolation or refuse to start.
    Full,
    /// No isolation at all (benchmarks, debugging).
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "full" => Ok(Mode::Full),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "unknown sandbox mode `{other}`: use auto, full or off"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Full => "full",
            Mode::Off => "off",
        })
    }
}

/// What a node actually runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Full,
    Degraded,
    Off,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Full => "full isolation",
            Level::Degraded => "DEGRADED (not isolated)",
            Level::Off => "OFF (not isolated)",
        })
    }
}

/// A function's network: the host's (default), or none at all (`network: none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Host,
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("full isolation is not available on this host: {0}; run `tusk doctor` for details, fix the host (run as root, delegate cgroups) or start with `--sandbox auto` to run degraded")]
    Unavailable(String),
    #[error("cannot prepare the instance's cgroup: {0} (run `tusk doctor`)")]
    Cgroup(io::Error),
    #[error("cannot prepare the instance's sandbox: {0}")]
    Setup(io::Error),
    #[error("cannot start the sandboxed process: could not {step}: {source} (run `tusk doctor`)")]
    Spawn { step: String, source: io::Error },
    #[error("cannot start the process: {0}")]
    Exec(io::Error),
    #[error("{0}")]
    Config(String),
}

/// One line of `tusk doctor` / the start-up report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub active: bool,
    pub detail: String,
}

/// What the host allows and what the node will use.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: Mode,
    pub level: Level,
    pub checks: Vec<Check>,
    /// Protections that are missing (empty at full isolation).
    pub missing: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "  {:<18} {:<4} {}",
                c.name,
                if c.active { "yes" } else { "NO" },
                c.detail
            )?;
        }
        write!(f, "  => sandbox {}: {}", self.mode, self.level)?;
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        Ok(())
    }
}

/// Node-level options.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// A directory Tusk owns (e.g. `DATA_DIR/run`): holds the empty mount point new roots are
    /// built on. Instances never see it.
    pub state_dir: PathBuf,
    /// Read-only paths instances need besides `/usr` (e.g. a PHP installed under `/opt/php`).
    pub extra_readonly: Vec<PathBuf>,
    /// How long an instance stays runnable after an invocation before it is frozen; `None`
    /// never freezes.
    pub freeze_after: Option<Duration>,
}

/// Idle time before an instance is frozen. Back-to-back invocations never pay for the
/// freezer (a thaw measured 30-100 µs here); an instance idle longer than this uses no CPU.
pub const FREEZE_AFTER: Duration = Duration::from_millis(50);

impl Options {
    pub fn new(mode: Mode, state_dir: PathBuf) -> Options {
        Options {
            mode,
            state_dir,
            extra_readonly: Vec::new(),
            freeze_after: Some(FREEZE_AFTER),
        }
    }
}

/// Per-instance uids: `UID_BASE + random(0..UID_SPAN)`, far above real users and the usual
/// subuid ranges, so instances cannot touch each other's (or anyone's) processes and files.
pub const UID_BASE: u32 = 1_500_000_000;
const UID_SPAN: u32 = 1 << 24;
/// Processes (and threads) per instance.
pub const PIDS_MAX: u64 = 128;
/// Open files per instance, as on Lambda.
const NOFILE: u64 = 1024;

/// The node's sandbox: what the host allows, decided once at start.
pub struct Sandbox {
    report: Report,
    namespaces: bool,
    ids: bool,
    cgroups: Option<NodeCgroups>,
    host_fs: fs::HostFs,
    stage: PathBuf,
    freeze_after: Option<Duration>,
    /// Degraded mode: RLIMIT_NPROC for the shared uid (its current tasks + headroom).
    nproc: Option<u64>,
    /// The kernel answers sock_diag queries (Runtime API listeners can check their peer).
    peer_check: bool,
    /// The system call filter every instance gets (compiled once, here).
    seccomp: Option<Arc<seccomp::Program>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("level", &self.report.level)
            .finish_non_exhaustive()
    }
}

fn cap_eff() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SETGID: u64 = 1 << 6;
const CAP_SETUID: u64 = 1 << 7;
const CAP_SYS_ADMIN: u64 = 1 << 21;

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Tasks (threads) currently owned by `uid`.
fn tasks_of(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        if owner == Some(uid) {
            n += status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
        }
    }
    n
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into a live local buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        // Never expected on Linux ≥ 3.17; the time is unique enough for a uid pick.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    }
}

impl Sandbox {
    /// Probes the host and sets the node up (cgroup directories, a self-test). Blocking: a few
    /// milliseconds of procfs/cgroupfs work and one sandboxed `sh`.
    pub fn init(options: Options) -> Result<Sandbox, SandboxError> {
        let mode = options.mode;
        if mode == Mode::Off {
            return Ok(Sandbox::off());
        }
        let mut checks = Vec::new();
        let mut missing = Vec::new();
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let caps = cap_eff();
        checks.push(Check {
            name: "user",
            active: true,
            detail: format!(
                "uid {euid}{}",
                if caps & CAP_SYS_ADMIN != 0 {
                    " with CAP_SYS_ADMIN"
                } else {
                    " without CAP_SYS_ADMIN"
                }
            ),
        });

        let ns_probe = if caps & CAP_SYS_ADMIN == 0 {
            Err("needs CAP_SYS_ADMIN (run the node as root)".to_string())
        } else {
            spawn::in_new_namespaces_blocking(true, || {
                // SAFETY: unshare with flags only, on the probe's own short-lived thread.
                let rc = unsafe {
                    libc::unshare(
                        libc::CLONE_NEWNS
                            | libc::CLONE_NEWIPC
                            | libc::CLONE_NEWUTS
                            | libc::CLONE_NEWCGROUP,
                    )
                };
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| format!("unshare failed: {e}"))
        };
        let ids = caps & (CAP_SETUID | CAP_SETGID) == (CAP_SETUID | CAP_SETGID);

        let layout = cgroup::detect_layout().unwrap_or_default();
        // Nodes that died without cleaning up (SIGKILL, crash) may have left instances behind,
        // frozen ones included: kill them, in the background (their reaping can take a while).
        // Node cgroups are named after the node's PID namespace and pid: whether a node is
        // gone can only be told from inside its own PID namespace (a node in a container sees
        // the host's cgroups but not the host's processes), so only those are judged.
        let prefix = format!("tusk-{}-", pid_namespace_id());
        let stale_layout = layout.clone();
        let stale_prefix = prefix.clone();
        let _ = std::thread::Builder::new()
            .name("tusk-cgroup-gc".into())
            .spawn(move || {
                let stale = cgroup::cleanup_stale(&stale_layout, &stale_prefix);
                if stale > 0 {
                    tracing::info!(stale, "removed cgroups left by nodes that are gone");
                }
            });
        let cgroups = NodeCgroups::setup(&layout, &format!("{prefix}{}", std::process::id()));

        let host_fs = fs::HostFs::detect(&options.extra_readonly);
        // Absolute: the child changes directories before it mounts anything.
        let stage = std::path::absolute(options.state_dir.join("sandbox-root"))
            .map_err(SandboxError::Setup)?;
        let mut sandbox = Sandbox {
            report: Report {
                mode,
                level: Level::Degraded,
                checks: Vec::new(),
                missing: Vec::new(),
            },
            namespaces: false,
            ids: false,
            cgroups: None,
            host_fs,
            stage,
            freeze_after: options.freeze_after,
            nproc: None,
            peer_check: false,
            seccomp: None,
        };
        // TUSK_SECCOMP=off runs instances without the filter, to measure what it costs; the
        // node then reports itself degraded.
        let seccomp_wanted = match std::env::var("TUSK_SECCOMP").ok().as_deref().map(str::trim) {
            None | Some("" | "on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(SandboxError::Config(format!(
                    "TUSK_SECCOMP={other}: expected `on` (the default) or `off` (measurements only)"
                )))
            }
        };
        let seccomp = if seccomp_wanted {
            seccomp::kernel_supports_filters().and_then(|()| seccomp::Program::compile())
        } else {
            Err("disabled by TUSK_SECCOMP=off (for measurements only)".into())
        };
        sandbox.seccomp = seccomp.as_ref().ok().map(|(p, _)| p.clone());
        let (cg_ok, cg_detail) = match &cgroups {
            Ok(node) => (
                true,
                format!(
                    "{} ({}) under {}",
                    node.version,
                    node.controllers.names().join(", "),
                    node.describe()
                ),
            ),
            Err(e) => (false, e.clone()),
        };
        sandbox.cgroups = cgroups.ok();

        // The self-test: a sandboxed shell must see the contract and none of the host.
        let self_test = match &ns_probe {
            Ok(()) if ids => sandbox.self_test(),
            Ok(()) => Err("cannot switch uids (needs CAP_SETUID and CAP_SETGID)".into()),
            Err(e) => Err(e.clone()),
        };
        match &self_test {
            Ok(elapsed) => {
                sandbox.namespaces = true;
                sandbox.ids = true;
                checks.push(Check {
                    name: "namespaces",
                    active: true,
                    detail: "pid, mount, ipc, uts, cgroup; net for `network: none`".into(),
                });
                checks.push(Check {
                    name: "private root",
                    active: true,
                    detail: format!(
                        "{TASK_ROOT} and {RUNTIME_DIR} read-only, /tmp tmpfs capped, /etc allow-listed"
                    ),
                });
                checks.push(Check {
                    name: "instance uid",
                    active: true,
                    detail: format!("one per instance from {UID_BASE}, no_new_privs"),
                });
                checks.push(Check {
                    name: "self-test",
                    active: true,
                    detail: format!(
                        "sandboxed sh ran in {:.1} ms",
                        elapsed.as_secs_f64() * 1000.0
                    ),
                });
            }
            Err(e) => {
                missing.push("namespaces".to_string());
                missing.push("private filesystem".to_string());
                missing.push("unprivileged uid".to_string());
                checks.push(Check {
                    name: "namespaces",
                    active: false,
                    detail: e.clone(),
                });
                checks.push(Check {
                    name: "instance uid",
                    active: false,
                    detail: format!("instances run as uid {euid}, like Tusk"),
                });
            }
        }
        // Without the self-test (degraded), try the filter once on a throwaway `sh`, so that a
        // host refusing it (a container whose own profile forbids seccomp) is reported here
        // rather than failing every instance start.
        let seccomp = match seccomp {
            Ok((program, summary)) if self_test.is_err() => {
                seccomp::probe(&program).map(|()| (program, summary))
            }
            other => other,
        };
        if seccomp.is_err() {
            sandbox.seccomp = None;
        }
        match &seccomp {
            Ok((program, summary)) => checks.push(Check {
                name: "seccomp filter",
                active: true,
                detail: format!(
                    "{} system calls refused ({}), {} BPF instructions",
                    summary.denied,
                    seccomp::DESCRIPTION,
                    program.len()
                ),
            }),
            Err(e) => {
                // Not built for this architecture: not claimed, but no reason to refuse
                // `--sandbox full` either (docs/isolation.md says so).
                if seccomp::SUPPORTED_ARCH {
                    missing.push("seccomp filter".to_string());
                }
                checks.push(Check {
                    name: "seccomp filter",
                    active: false,
                    detail: e.clone(),
                });
            }
        }
        // Sandbox::self_test may have needed the cgroups; their status comes after.
        let controllers = sandbox
            .cgroups
            .as_ref()
            .map(|n| n.controllers)
            .unwrap_or_default();
        checks.push(Check {
            name: "cgroups",
            active: cg_ok,
            detail: cg_detail,
        });
        for (name, on, what) in [
            ("memory limit", controllers.memory, "memory"),
            ("cpu limit", controllers.cpu, "cpu"),
            ("pids limit", controllers.pids, "pids"),
            ("freezer", controllers.freezer, "freezer"),
        ] {
            if !on {
                missing.push(format!("{what} cgroup"));
            }
            checks.push(Check {
                name,
                active: on,
                detail: if on {
                    match name {
                        "memory limit" => "memorySize; OOM → Runtime.OutOfMemory".into(),
                        "cpu limit" => "1769 MB = one core".into(),
                        "pids limit" => format!("{PIDS_MAX} per instance"),
                        _ => "idle instances are frozen".into(),
                    }
                } else if name == "memory limit" {
                    "rlimits (RLIMIT_DATA, RLIMIT_AS) instead".into()
                } else {
                    "not available".into()
                },
            });
        }
        sandbox.peer_check = peer_check_works();
        if sandbox.ids && !sandbox.peer_check {
            missing.push("runtime API guard (sock_diag)".to_string());
        }
        checks.push(Check {
            name: "runtime API guard",
            active: sandbox.peer_check || !sandbox.ids,
            detail: if !sandbox.ids {
                "not needed: instances share Tusk's uid anyway".into()
            } else if sandbox.peer_check {
                "a Runtime API listener only serves its own instance's uid (sock_diag)".into()
            } else {
                "sock_diag unavailable: on the host network any instance can reach any Runtime API (use `network: none`)".into()
            },
        });
        let degraded = !missing.is_empty();
        if degraded {
            sandbox.nproc = Some(tasks_of(euid) + 512);
            checks.push(Check {
                name: "rlimits",
                active: true,
                detail: "NOFILE, CORE, FSIZE; DATA/AS without a memory cgroup; NPROC without a pids cgroup".into(),
            });
        }
        checks.push(Check {
            name: "bubblewrap",
            active: find_in_path("bwrap").is_some(),
            detail: match find_in_path("bwrap") {
                Some(p) => format!("{} (not needed: Tusk sandboxes directly)", p.display()),
                None => "not installed (not needed: Tusk sandboxes directly)".into(),
            },
        });
        let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        checks.push(Check {
            name: "user namespaces",
            active: userns > 0,
            detail: "not used (Tusk needs root for full isolation)".into(),
        });
        sandbox.report = Report {
            mode,
            level: if degraded {
                Level::Degraded
            } else {
                Level::Full
            },
            checks,
            missing,
        };
        if mode == Mode::Full && degraded {
            let why = sandbox.report.missing.join(", ");
            sandbox.shutdown();
            return Err(SandboxError::Unavailable(format!("missing {why}")));
        }
        Ok(sandbox)
    }

    /// A sandbox that isolates nothing (`--sandbox off`).
    pub fn off() -> Sandbox {
        Sandbox {
            report: Report {
                mode: Mode::Off,
                level: Level::Off,
                checks: Vec::new(),
                missing: vec!["everything (--sandbox off)".into()],
            },
            namespaces: false,
            ids: false,
            cgroups: None,
            host_fs: fs::HostFs::default(),
            stage: PathBuf::new(),
            freeze_after: None,
            nproc: None,
            peer_check: false,
            seccomp: None,
        }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    pub fn level(&self) -> Level {
        self.report.level
    }

    /// Where an instance sees its package.
    pub fn task_root(&self, code_dir: &Path) -> PathBuf {
        if self.namespaces {
            PathBuf::from(TASK_ROOT)
        } else {
            code_dir.to_path_buf()
        }
    }

    /// Where an instance sees Tusk's runtime directory.
    pub fn runtime_dir(&self, host_dir: &Path) -> PathBuf {
        if self.namespaces {
            PathBuf::from(RUNTIME_DIR)
        } else {
            host_dir.to_path_buf()
        }
    }

    /// Kills whatever instances are left and removes the node's cgroups (at node shutdown).
    pub fn shutdown(&self) {
        if let Some(node) = &self.cgroups {
            node.shutdown();
        }
    }

    /// Creates one instance's cgroup and plans its filesystem. Blocking (cgroupfs mkdir and
    /// writes): call it from `spawn_blocking`.
    pub fn prepare(&self, cfg: &InstanceConfig<'_>) -> Result<InstanceSandbox, SandboxError> {
        let limits = Limits::for_memory(cfg.memory_mb, PIDS_MAX);
        let cgroup = match &self.cgroups {
            Some(node) => Some(node.create(cfg.id, &limits).map_err(SandboxError::Cgroup)?),
            None => None,
        };
        let mut plan = ChildPlan {
            cgroup_procs: match &cgroup {
                Some(cg) => cg.join_fds().map_err(SandboxError::Cgroup)?,
                None => Vec::new(),
            },
            ..ChildPlan::default()
        };
        let uid = volume_uid(cfg.volumes).unwrap_or_else(|| UID_BASE + random_u32() % UID_SPAN);
        for volume in cfg.volumes {
            std::fs::create_dir_all(&volume.host_dir).map_err(SandboxError::Setup)?;
            if self.ids {
                // Owned by the instances' uid so they can write it; the node (root) still can.
                std::os::unix::fs::chown(&volume.host_dir, Some(uid), Some(uid))
                    .map_err(SandboxError::Setup)?;
            }
        }
        if self.namespaces {
            plan.unshare_flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if cgroup.is_some() {
                // After joining: the instance sees its own cgroup as the root.
                plan.unshare_flags |= libc::CLONE_NEWCGROUP;
            }
            plan.mounts = Some(
                fs::MountPlan::build(
                    &self.host_fs,
                    &self.stage,
                    &fs::RootSpec {
                        code_dir: &std::path::absolute(cfg.code_dir)
                            .map_err(SandboxError::Setup)?,
                        runtime_dir: &std::path::absolute(cfg.runtime_dir)
                            .map_err(SandboxError::Setup)?,
                        tmp_mb: cfg.tmp_mb,
                        volumes: cfg.volumes,
                        uid,
                        gid: uid,
                    },
                )
                .map_err(SandboxError::Setup)?,
            );
        }
        if self.ids {
            plan.ids = Some((uid, uid));
        }
        plan.seccomp = self.seccomp.clone();
        plan.rlimits = self.rlimits(cfg, cgroup.is_some());
        let report = if self.namespaces {
            Some(std::io::pipe().map_err(SandboxError::Setup)?)
        } else {
            None
        };
        let (report_rx, report_tx) = match report {
            Some((r, w)) => (Some(r), Some(w.into())),
            None => (None, None),
        };
        plan.report = report_tx;
        Ok(InstanceSandbox {
            level: self.report.level,
            namespaces: self.namespaces,
            network: cfg.network,
            uid: self.ids.then_some(uid),
            peer_check: self.peer_check,
            cgroup,
            limits,
            plan: Mutex::new(Some(plan)),
            report_rx: Mutex::new(report_rx),
            freeze_after: self.freeze_after,
            freezer: Mutex::new(FreezeState::default()),
        })
    }

    fn rlimits(&self, cfg: &InstanceConfig<'_>, cgroup: bool) -> Vec<Rlimit> {
        if self.report.level == Level::Off {
            return Vec::new();
        }
        let mut r = vec![
            Rlimit {
                resource: libc::RLIMIT_NOFILE,
                value: NOFILE,
            },
            Rlimit {
                resource: libc::RLIMIT_CORE,
                value: 0,
            },
        ];
        let has = |f: fn(&Controllers) -> bool| {
            cgroup && self.cgroups.as_ref().is_some_and(|n| f(&n.controllers))
        };
        if !self.namespaces {
            // No private /tmp: at least no single file may outgrow ephemeralStorageSize.
            r.push(Rlimit {
                resource: libc::RLIMIT_FSIZE,
                value: u64::from(cfg.tmp_mb) << 20,
            });
        }
        if !has(|c| c.memory) {
            // DATA counts the heap and private mappings (what PHP allocates); AS stops a
            // runaway mapping from exhausting the host's address space.
            let mb = u64::from(cfg.memory_mb.max(64));
            r.push(Rlimit {
                resource: libc::RLIMIT_DATA,
                value: mb << 20,
            });
            r.push(Rlimit {
                resource: libc::RLIMIT_AS,
                value: (mb + 1024) << 20,
            });
        }
        if !has(|c| c.pids) {
            if let Some(n) = self.nproc {
                r.push(Rlimit {
                    resource: libc::RLIMIT_NPROC,
                    value: n,
                });
            }
        }
        r
    }

    /// Starts `sh` in a full sandbox and checks what it sees: the proof that this host allows
    /// full isolation (some container runtimes forbid mounts even to root).
    fn self_test(&self) -> Result<Duration, String> {
        let base = self.stage.with_file_name("sandbox-selftest");
        let empty = base.join("empty");
        std::fs::create_dir_all(&self.stage)
            .map_err(|e| format!("{}: {e}", self.stage.display()))?;
        std::fs::create_dir_all(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
        let sandbox = Sandbox {
            report: Report {
                mode: Mode::Full,
                level: Level::Full,
                checks: Vec::new(),
                missing: Vec::new(),
            },
            namespaces: true,
            ids: true,
            cgroups: None,
            host_fs: self.host_fs.clone(),
            stage: self.stage.clone(),
            freeze_after: None,
            nproc: None,
            peer_check: false,
            seccomp: self.seccomp.clone(),
        };
        let id = format!("selftest-{}", std::process::id());
        let inst = sandbox
            .prepare(&InstanceConfig {
                id: &id,
                code_dir: &empty,
                runtime_dir: &empty,
                memory_mb: 128,
                tmp_mb: 16,
                volumes: &[],
                network: Network::None,
            })
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let plan = Arc::new(inst.take_plan().map_err(|e| e.to_string())?);
        let hook = plan.clone();
        let script = "test \"$(id -u)\" != 0 && test \"$(pwd)\" = /var/task && test -d /opt \
                      && ! test -e /etc/shadow && ! test -e /root && echo x > /tmp/x \
                      && ! touch /x 2>/dev/null && test \"$$\" = 1";
        let out = spawn::in_new_namespaces_blocking(true, move || {
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.args(["-c", script])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(std::process::Stdio::null());
            // SAFETY: the hook only makes system calls on memory prepared before the fork
            // (see child.rs), as pre_exec requires.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || hook.run());
            }
            cmd.output()
        });
        let _ = std::fs::remove_dir_all(&base);
        match out {
            Ok(o) if o.status.success() => Ok(started.elapsed()),
            Ok(o) => Err(format!(
                "the sandboxed self-test failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot start a sandboxed process: {}",
                inst.explain(e, &plan)
            )),
        }
    }
}

/// What one instance needs from its sandbox.
#[derive(Debug, Clone)]
pub struct InstanceConfig<'a> {
    pub id: &'a str,
    pub code_dir: &'a Path,
    pub runtime_dir: &'a Path,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub network: Network,
    /// Persistent directories mounted read-write (created when missing).
    pub volumes: &'a [Volume],
}

/// A node directory an instance sees read-write at `mount_path` (`fileSystemConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub host_dir: PathBuf,
    pub mount_path: String,
}

/// The uid of instances that mount volumes: the same for every instance of every function
/// mounting the first of those volumes, so files one instance writes (PHP's session files are
/// 0600) stay readable and writable by the next. Instances without volumes keep a random uid.
fn volume_uid(volumes: &[Volume]) -> Option<u32> {
    let first = volumes.first()?;
    // FNV-1a: stable across restarts and builds (std's hasher is not).
    let mut hash: u32 = 0x811c_9dc5;
    for b in first.name.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    Some(UID_BASE + hash % UID_SPAN)
}

#[derive(Debug, Default)]
struct FreezeState {
    frozen: bool,
    /// Set once the instance is being killed: a late delayed freeze must not catch its dying
    /// processes (a frozen v1 task does not die until thawed).
    killed: bool,
    /// Bumped whenever the instance gets work, so a pending delayed freeze knows it is stale.
    generation: u64,
}

/// One instance's sandbox: its cgroup, its spawn plan, its freezer.
pub struct InstanceSandbox {
    level: Level,
    namespaces: bool,
    network: Network,
    uid: Option<u32>,
    peer_check: bool,
    cgroup: Option<InstanceCgroup>,
    limits: Limits,
    plan: Mutex<Option<ChildPlan>>,
    report_rx: Mutex<Option<std::io::PipeReader>>,
    freeze_after: Option<Duration>,
    freezer: Mutex<FreezeState>,
}

impl fmt::Debug for InstanceSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceSandbox")
            .field("level", &self.level)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl InstanceSandbox {
    /// The uid the instance runs as, when it has one of its own.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// True when the instance's network is its own namespace (only it can reach its sockets).
    pub fn private_network(&self) -> bool {
        self.namespaces && self.network == Network::None
    }

    /// The only uid the instance's Runtime API listener should serve, when it has to check:
    /// on the host's network, with a uid of its own, where the kernel can tell.
    pub fn runtime_api_owner(&self) -> Option<u32> {
        if self.private_network() || !self.peer_check {
            return None;
        }
        self.uid
    }

    fn take_plan(&self) -> Result<ChildPlan, SandboxError> {
        self.plan
            .lock()
            .ok()
            .and_then(|mut p| p.take())
            .ok_or_else(|| SandboxError::Setup(io::Error::other("instance sandbox already used")))
    }

    /// Why a spawn failed: the step the child reported, if it got that far.
    fn explain(&self, e: io::Error, plan: &ChildPlan) -> SandboxError {
        let step = self.report_rx.lock().ok().and_then(|mut r| {
            let r = r.as_mut()?;
            set_nonblocking(r);
            let mut b = [0u8; 4];
            r.read_exact(&mut b).ok()?;
            Some(u32::from_ne_bytes(b))
        });
        match step {
            Some(step) => SandboxError::Spawn {
                step: plan.describe_step(step),
                source: e,
            },
            None => SandboxError::Exec(e),
        }
    }

    /// Spawns the instance's process. `setup` runs first, inside the instance's network
    /// namespace (bind the Runtime API listener there); `build` then makes the command, which
    /// is started inside the sandbox. The command must name its program by its path inside
    /// the sandbox and must not set a working directory (the sandbox starts in the task root).
    pub async fn spawn<T, S, B>(
        &self,
        setup: S,
        build: B,
    ) -> Result<(T, tokio::process::Child), SandboxError>
    where
        T: Send + 'static,
        S: FnOnce() -> io::Result<T> + Send + 'static,
        B: FnOnce(&T) -> io::Result<tokio::process::Command> + Send + 'static,
    {
        let plan = Arc::new(self.take_plan()?);
        let hook = plan.clone();
        let handle = tokio::runtime::Handle::current();
        let job = move || -> io::Result<(T, tokio::process::Child)> {
            let t = setup()?;
            let mut cmd = build(&t)?;
            // SAFETY: the hook only makes system calls on memory prepared before the fork
            // (see child.rs), as pre_exec requires.
            unsafe {
                cmd.pre_exec(move || hook.run());
            }
            let _runtime = handle.enter();
            let child = cmd.spawn()?;
            Ok((t, child))
        };
        let result = if self.namespaces {
            let rx = spawn::in_new_namespaces(self.network == Network::None, job)
                .map_err(SandboxError::Setup)?;
            rx.await.map_err(|_| {
                SandboxError::Setup(io::Error::other("the sandbox spawn thread died"))
            })?
        } else {
            job()
        };
        result.map_err(|e| {
            if self.namespaces {
                self.explain(e, &plan)
            } else {
                SandboxError::Exec(e)
            }
        })
    }

    /// The end of init: from now on the instance gets its memory-proportional CPU share.
    pub fn initialized(&self) {
        if let Some(cg) = &self.cgroup {
            // A small cgroupfs write; fine on an async thread.
            if let Err(e) = cg.set_cpu_quota(self.limits.cpu_quota_us, self.limits.cpu_period_us) {
                tracing::warn!(error = %e, "cannot set the instance's CPU quota");
            }
        }
    }

    /// The instance gets work: thaw it if it was frozen.
    pub fn resume(&self) {
        let Ok(mut state) = self.freezer.lock() else {
            return;
        };
        state.generation += 1;
        if state.frozen {
            if let Some(cg) = &self.cgroup {
                // A small cgroupfs write, under a lock held for microseconds.
                if let Err(e) = cg.set_frozen(false) {
                    tracing::warn!(error = %e, "cannot thaw an instance");
                }
            }
            state.frozen = false;
        }
    }

    /// The instance went idle: freeze it now, or after the node's delay unless it gets work
    /// first. Without a freezer this does nothing: an idle runtime blocks in `next`.
    pub fn pause(self: &Arc<Self>) {
        let Some(delay) = self.freeze_after else {
            return;
        };
        if self.cgroup.is_none() {
            return;
        }
        if delay.is_zero() {
            self.freeze_if(None);
            return;
        }
        let generation = self.freezer.lock().map(|s| s.generation).unwrap_or(0);
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(this) = this.upgrade() {
                this.freeze_if(Some(generation));
            }
        });
    }

    fn freeze_if(&self, generation: Option<u64>) {
        let Ok(mut state) = self.freezer.lock() else {
            return;
        };
        if state.frozen || state.killed || generation.is_some_and(|g| g != state.generation) {
            return;
        }
        if let Some(cg) = &self.cgroup {
            match cg.set_frozen(true) {
                Ok(true) => state.frozen = true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot freeze an idle instance"),
            }
        }
    }

    /// SIGKILLs every process of the instance, frozen or not (the main process is killed by
    /// the caller; with a PID namespace its death takes the rest along anyway).
    pub fn kill_all(&self) {
        if let Some(cg) = &self.cgroup {
            // Under the freezer lock: no freeze can slip in between the kill and the thaw.
            let state = self.freezer.lock();
            cg.kill_all();
            if let Ok(mut s) = state {
                s.frozen = false;
                s.killed = true;
            }
        }
    }

    /// Peak memory of the whole instance (all its processes, its /tmp, its page cache).
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        self.cgroup.as_ref()?.peak_memory()
    }

    /// True when the kernel OOM-killed a process of this instance.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > 0)
    }

    pub fn memory_limited(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Pids of the instance's processes, as the host sees them (tests, debugging).
    pub fn pids(&self) -> Vec<i32> {
        self.cgroup.as_ref().map(|c| c.pids()).unwrap_or_default()
    }
}

/// The inode of our PID namespace (what `readlink /proc/self/ns/pid` shows in brackets).
fn pid_namespace_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Asks sock_diag about a loopback connection of our own.
fn peer_check_works() -> bool {
    let probe = || -> io::Result<bool> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let local = listener.local_addr()?;
        let _client = std::net::TcpStream::connect(local)?;
        let (_server, peer) = listener.accept()?;
        // SAFETY: geteuid has no preconditions.
        Ok(tcp_peer_uid(local, peer)? == unsafe { libc::geteuid() })
    };
    probe().unwrap_or(false)
}

fn set_nonblocking(r: &std::io::PipeReader) {
    use std::os::fd::AsRawFd;
    let fd = r.as_raw_fd();
    // SAFETY: fcntl on a pipe fd we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

impl Drop for InstanceSandbox {
    fn drop(&mut self) {
        let Some(cg) = self.cgroup.take() else {
            return;
        };
        // Removing a cgroup waits for its killed processes to be gone: off the async threads.
        let cleanup = move || {
            cg.kill_all();
            if let Err(e) = cg.remove_waiting(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "cannot remove an instance's cgroup");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(cleanup);
            }
            Err(_) => cleanup(),
        }
    }
}
