//! What the forked child does before `exec`: join the cgroup, enter fresh namespaces, build its
//! root, cap its resources, drop to an unprivileged uid with no way back and install the
//! seccomp filter.
//!
//! This code runs between fork and exec of a multi-threaded parent: it may only make system
//! calls on memory prepared before the fork (no allocation, no locks, no logging).

use crate::fs::MountPlan;
use crate::seccomp;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

pub(crate) const STEP_CGROUP: u32 = 1;
pub(crate) const STEP_UNSHARE: u32 = 2;
pub(crate) const STEP_HOSTNAME: u32 = 3;
pub(crate) const STEP_RLIMIT: u32 = 4;
pub(crate) const STEP_IDS: u32 = 5;
pub(crate) const STEP_NO_NEW_PRIVS: u32 = 6;
pub(crate) const STEP_SECCOMP: u32 = 7;

/// One resource limit (soft = hard).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub value: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ChildPlan {
    /// Cgroup membership files (`tasks` on v1, `cgroup.procs` on v2) to write `0` (this
    /// process, single-threaded after fork) into.
    pub cgroup_procs: Vec<OwnedFd>,
    /// Namespaces to unshare (mount, IPC, UTS, cgroup); the PID and network namespaces are
    /// entered by the spawning thread, see `spawn.rs`.
    pub unshare_flags: libc::c_int,
    pub mounts: Option<MountPlan>,
    pub rlimits: Vec<Rlimit>,
    /// (uid, gid) to switch to.
    pub ids: Option<(u32, u32)>,
    /// The node's filter, installed last (shared: the child only reads it).
    pub seccomp: Option<Arc<seccomp::Program>>,
    /// Where the child writes the number of the step that failed (write end of a pipe).
    pub report: Option<OwnedFd>,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildPlan {
    /// The `pre_exec` body.
    pub(crate) fn run(&self) -> io::Result<()> {
        let mut step = 0;
        let result = self.steps(&mut step);
        if result.is_err() {
            if let Some(fd) = &self.report {
                let bytes = step.to_ne_bytes();
                // SAFETY: writes 4 bytes from a live local into a pipe fd we own; a failed
                // write only loses the detail, the error itself still reaches the parent.
                unsafe {
                    libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                }
            }
        }
        result
    }

    fn steps(&self, step: &mut u32) -> io::Result<()> {
        *step = STEP_CGROUP;
        for fd in &self.cgroup_procs {
            // SAFETY: one byte from a static string into an fd opened by the parent.
            let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.unshare_flags != 0 {
            *step = STEP_UNSHARE;
            // SAFETY: unshare takes flags only; the child is single-threaded after fork.
            check(unsafe { libc::unshare(self.unshare_flags) })?;
        }
        if self.unshare_flags & libc::CLONE_NEWUTS != 0 {
            *step = STEP_HOSTNAME;
            let name = b"localhost";
            // SAFETY: pointer and length of a static byte string.
            check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
        }
        if let Some(mounts) = &self.mounts {
            mounts.apply(step)?;
        }
        *step = STEP_RLIMIT;
        for r in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.value,
                rlim_max: r.value,
            };
            // SAFETY: setrlimit reads one rlimit struct from a live local.
            let rc = unsafe { libc::setrlimit(r.resource, &lim) };
            if rc < 0 {
                // Lowering a limit never fails; raising one above the hard limit does (no
                // CAP_SYS_RESOURCE). Keep the lower existing hard limit then.
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit/setrlimit write/read one struct in a live local.
                unsafe {
                    if libc::getrlimit(r.resource, &mut cur) == 0 {
                        cur.rlim_cur = cur.rlim_max.min(r.value);
                        check(libc::setrlimit(r.resource, &cur))?;
                    } else {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
        }
        if let Some((uid, gid)) = self.ids {
            *step = STEP_IDS;
            // SAFETY: plain integer arguments; a null list with size 0 clears the groups.
            unsafe {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(gid, gid, gid))?;
                check(libc::setresuid(uid, uid, uid))?;
            }
        }
        *step = STEP_NO_NEW_PRIVS;
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        // Last, right before exec: the steps above need calls the filter refuses (unshare,
        // mount, pivot_root), and with no_new_privs set it needs no privilege.
        if let Some(filter) = &self.seccomp {
            *step = STEP_SECCOMP;
            filter.install()?;
        }
        Ok(())
    }

    /// A readable name for a step number reported by a failed child.
    pub(crate) fn describe_step(&self, step: u32) -> String {
        match step {
            STEP_CGROUP => "join the instance's cgroup".into(),
            STEP_UNSHARE => "create the mount/IPC/UTS/cgroup namespaces".into(),
            STEP_HOSTNAME => "set the host name".into(),
            STEP_RLIMIT => "set resource limits".into(),
            STEP_IDS => "switch to the instance's uid".into(),
            STEP_NO_NEW_PRIVS => "set no_new_privs".into(),
            STEP_SECCOMP => "install the seccomp filter".into(),
            s => self
                .mounts
                .as_ref()
                .and_then(|m| m.describe_step(s))
                .unwrap_or_else(|| format!("step {s}")),
        }
    }
}
