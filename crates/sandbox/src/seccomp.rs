//! The seccomp filter every sandboxed instance runs under: kernel interfaces a function never
//! needs (namespaces, mounts, modules, keyrings, tracing other processes, perf, bpf, io_uring,
//! userfaultfd, clock and swap control, ...) fail with `EPERM`.
//!
//! A deny-list, modelled on what Docker's default profile refuses a container without extra
//! capabilities: everything else stays allowed, so PHP, php-cgi and whatever a `provided`
//! bootstrap runs keep working unchanged (docs/decisions.md says why not an allow-list).
//! Compiled once by the node with `seccompiler` (pure Rust, in-process); the forked child only
//! hands the finished program to the kernel, right before `exec`.
// Only x86_64 has a rule table so far; elsewhere the building blocks sit unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

/// A compiled filter, shared by every instance of the node.
#[derive(Debug)]
pub(crate) struct Program {
    filter: Box<[libc::sock_filter]>,
}

/// How many system calls the filter refuses outright or by argument (for `tusk doctor`).
pub(crate) struct Summary {
    pub denied: usize,
}

/// Whether this build has a filter for the machine it runs on.
pub(crate) const SUPPORTED_ARCH: bool = cfg!(target_arch = "x86_64");

/// What the filter is doing, in one line.
pub(crate) const DESCRIPTION: &str = "no namespaces, mount, modules, keyrings, ptrace, perf, bpf, io_uring, userfaultfd, clock/swap/reboot control; EPERM";

#[cfg(target_arch = "x86_64")]
mod table {
    use libc::*;

    /// Refused whatever their arguments.
    pub(super) const DENIED: &[c_long] = &[
        // Mounting and moving filesystems (the instance's root is built before the filter).
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_move_mount,
        SYS_open_tree,
        SYS_fsopen,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fspick,
        SYS_mount_setattr,
        467, // open_tree_attr (Linux 6.15; not in libc yet)
        // Joining other namespaces.
        SYS_setns,
        // Kernel modules.
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        // Keyrings: shared kernel state with a long CVE history, unused by PHP.
        SYS_add_key,
        SYS_request_key,
        SYS_keyctl,
        // Other processes' memory, even the instance's own children.
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_process_madvise,
        SYS_pidfd_getfd,
        SYS_kcmp,
        // Tracing and in-kernel programs.
        SYS_perf_event_open,
        SYS_bpf,
        SYS_lookup_dcookie,
        SYS_fanotify_init,
        // io_uring: a large, fast-moving attack surface (Google disabled it for the same reason).
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        // userfaultfd stalls kernel page faults at will: the classic race-widening tool.
        SYS_userfaultfd,
        // The machine itself.
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_reboot,
        SYS_swapon,
        SYS_swapoff,
        SYS_acct,
        SYS_settimeofday,
        SYS_clock_settime,
        SYS_clock_adjtime,
        SYS_adjtimex,
        SYS_sethostname,
        SYS_setdomainname,
        SYS_syslog,
        SYS_vhangup,
        SYS_quotactl,
        SYS_quotactl_fd,
        SYS_nfsservctl,
        SYS__sysctl,
        SYS_iopl,
        SYS_ioperm,
        // File handles bypass path permissions (the "shocker" container escape).
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        // NUMA page placement of other processes.
        SYS_move_pages,
        SYS_migrate_pages,
        // Obsolete.
        SYS_uselib,
        SYS_ustat,
        SYS_sysfs,
    ];
    pub(super) const CLONE: c_long = SYS_clone;
    pub(super) const UNSHARE: c_long = SYS_unshare;
    pub(super) const PERSONALITY: c_long = SYS_personality;
    /// Refused with ENOSYS so that libc falls back to `clone`, whose flags the filter can see.
    pub(super) const CLONE3: u32 = SYS_clone3 as u32;
    pub(super) const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    /// x32 system calls carry this bit: a deny-list must not let them through.
    pub(super) const X32_BIT: u32 = 0x4000_0000;
    pub(super) const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
}

/// The namespace flags of `clone`/`unshare`: no new namespace of any kind. (`CLONE_NEWTIME`
/// shares its bit with the exit signal in `clone`'s flags, so it is only refused in `unshare`;
/// `clone` cannot create a time namespace anyway.)
const CLONE_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
];
const CLONE_NEWTIME: u64 = 0x80;

/// `personality` values that stay allowed, as in Docker's profile: Linux, `PER_LINUX32`, each
/// with `UNAME26`, and the query. Everything else (`ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`,
/// other ABIs) is refused: they switch off exploit mitigations.
const PERSONALITIES: [u64; 5] = [0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

#[cfg(target_arch = "x86_64")]
fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        table::DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let any_flag = |flags: &[u64]| -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        flags
            .iter()
            .map(|&f| {
                SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(f),
                    f,
                )?])
            })
            .collect()
    };
    rules.insert(table::CLONE, any_flag(&CLONE_NAMESPACES)?);
    let mut unshare = CLONE_NAMESPACES.to_vec();
    unshare.push(CLONE_NEWTIME);
    rules.insert(table::UNSHARE, any_flag(&unshare)?);
    // One rule whose conditions must all hold: the value is none of the allowed ones.
    let personality = PERSONALITIES
        .iter()
        .map(|&p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(table::PERSONALITY, vec![SeccompRule::new(personality)?]);
    Ok(rules)
}

impl Program {
    /// Compiles the node's filter. `Err` says why there is none (unsupported architecture).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn compile() -> Result<(Arc<Program>, Summary), String> {
        use seccompiler::BpfProgram;
        let rules = rules().map_err(|e| format!("cannot build the seccomp rules: {e}"))?;
        let denied = rules.len() + 1;
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            table::ARCH,
        )
        .map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
        let body: BpfProgram = filter
            .try_into()
            .map_err(|e| format!("cannot compile the seccomp filter: {e}"))?;
        // seccompiler has one action for every match; clone3 needs ENOSYS and x32 needs a
        // range check, so a short prologue comes first. BPF jumps are relative and forward
        // only, so the compiled body is unaffected by what precedes it.
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let mut filter = vec![
            // 0: A = arch; another architecture goes straight to the body, which kills it.
            stmt(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_ARCH),
            jump(BPF_JEQ, table::AUDIT_ARCH, 0, 4),
            // 2: A = nr; x32 (nr ≥ 0x40000000) or clone3 → ENOSYS.
            stmt(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_NR),
            jump(BPF_JGE, table::X32_BIT, 1, 0),
            jump(BPF_JEQ, table::CLONE3, 0, 1),
            stmt(BPF_RET | BPF_K, enosys),
        ];
        filter.extend(body.into_iter().map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        }));
        if filter.len() > usize::from(u16::MAX) {
            return Err(format!(
                "the seccomp filter is too long ({} instructions)",
                filter.len()
            ));
        }
        Ok((
            Arc::new(Program {
                filter: filter.into_boxed_slice(),
            }),
            Summary { denied },
        ))
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn compile() -> Result<(Arc<Program>, Summary), String> {
        Err(format!(
            "not built for {} yet (x86_64 only): instances run without a system call filter",
            std::env::consts::ARCH
        ))
    }

    /// Installs the filter on the calling thread. Runs in the forked child right before
    /// `exec`, after `no_new_privs`: no allocation, only a system call on memory prepared in
    /// the parent.
    pub(crate) fn install(&self) -> io::Result<()> {
        let prog = libc::sock_fprog {
            // compile() keeps the length within u16.
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: the kernel copies the program from `prog`, which points at a live slice for
        // the duration of the call; no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.filter.len()
    }
}

/// Whether this kernel supports seccomp filters returning an errno (without installing one).
pub(crate) fn kernel_supports_filters() -> Result<(), String> {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL only reads one u32 from a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "the kernel does not offer seccomp filters: {}",
            io::Error::last_os_error()
        ))
    }
}

/// Installs the filter in a throwaway `sh -c :` (for nodes without the sandboxed self-test,
/// which otherwise proves it). Blocking: one fork and exec.
pub(crate) fn probe(program: &Arc<Program>) -> Result<(), String> {
    let hook = program.clone();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", ":"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the hook only makes system calls on memory prepared before the fork (prctl with
    // integers, then `install`), as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            hook.install()
        });
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("a process under the filter failed: {s}")),
        Err(e) => Err(format!(
            "cannot install the seccomp filter on this host: {e}"
        )),
    }
}

const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_K: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(op: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JMP | op | BPF_K,
        jt,
        jf,
        k,
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn compiles_with_the_prologue_first() {
        let (p, summary) = Program::compile().expect("compiles");
        assert!(summary.denied > 50);
        assert_eq!(p.filter[0].k, SECCOMP_DATA_ARCH);
        assert_eq!(p.filter[1].k, table::AUDIT_ARCH);
        // The arch check's "no" branch lands on the first instruction of seccompiler's body,
        // which loads the arch again.
        let target = 1 + 1 + usize::from(p.filter[1].jf);
        assert_eq!(p.filter[target].code, BPF_LD | BPF_W | BPF_ABS);
        assert_eq!(p.filter[target].k, SECCOMP_DATA_ARCH);
        assert_eq!(target, 6);
        assert!(p.len() < 4096, "BPF_MAXINSNS");
    }

    /// What the filter adds to each system call (`cargo test --release -p tusk-sandbox --lib
    /// syscall_cost -- --ignored --nocapture`). Each case runs on a thread of its own: a filter
    /// without TSYNC binds only the thread that installs it, and dies with it.
    #[test]
    #[ignore]
    fn syscall_cost() {
        use std::time::Instant;
        const N: u32 = 2_000_000;
        let (ours, _) = Program::compile().expect("compiles");
        let allow_all = Arc::new(Program {
            filter: vec![stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW)].into_boxed_slice(),
        });
        let path = c"/tmp";
        let measure = |filter: Option<Arc<Program>>| {
            std::thread::spawn(move || {
                if let Some(f) = filter {
                    // SAFETY: prctl with integer arguments only.
                    assert_eq!(
                        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
                        0
                    );
                    f.install().expect("installs");
                }
                let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                let mut best = [f64::MAX; 2];
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..N {
                        // SAFETY: no arguments.
                        unsafe { libc::getppid() };
                    }
                    best[0] = best[0].min(t.elapsed().as_nanos() as f64 / f64::from(N));
                    let t = Instant::now();
                    for _ in 0..N / 4 {
                        // SAFETY: a static C string and a live local to write into.
                        unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) };
                    }
                    best[1] = best[1].min(t.elapsed().as_nanos() as f64 / f64::from(N / 4));
                }
                best
            })
            .join()
            .expect("measuring thread")
        };
        for round in 0..3 {
            let none = measure(None);
            let allow = measure(Some(allow_all.clone()));
            let filter = measure(Some(ours.clone()));
            eprintln!(
                "round {round}: getppid ns: none {:.0}, allow-all filter {:.0}, Tusk's {:.0}; \
                 stat ns: none {:.0}, allow-all {:.0}, Tusk's {:.0}",
                none[0], allow[0], filter[0], none[1], allow[1], filter[1]
            );
        }
    }
}
