//! The instance's filesystem: a fresh tmpfs root holding read-only binds of the system's
//! programs and libraries, an allow-listed `/etc`, the package at `/var/task`, Tusk's runtime at
//! `/opt`, a size-capped private `/tmp`, a minimal `/dev` and a `/proc` of its own.
//!
//! The plan is built in the parent (allocation allowed) and applied in the forked child, where
//! only raw system calls on the prepared C strings are allowed.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where an instance sees its package.
pub const TASK_ROOT: &str = "/var/task";
/// Where an instance sees Tusk's runtime (`bootstrap.php`).
pub const RUNTIME_DIR: &str = "/opt";

/// Top-level system directories bound read-only (or recreated as the same symlink).
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// `/etc` entries PHP, the dynamic loader, DNS, TLS and time zones need. An allow-list: the
/// rest of `/etc` (shadow, sudoers, ssh keys, service credentials) is never visible.
const ETC_ALLOW: &[&str] = &[
    "alternatives",
    "php",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "zoneinfo",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "os-release",
    "debian_version",
    "ImageMagick-6",
    "fonts",
];

/// Device nodes bound from the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

fn cstr(p: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

#[derive(Debug, Clone)]
enum Entry {
    Dir(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
}

/// What the host offers, read once per node.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostFs {
    /// (name under `/`, host entry)
    system: Vec<(String, Entry)>,
    /// (name under `/etc`, host entry)
    etc: Vec<(String, Entry)>,
    /// Further read-only paths, bound at the same place (e.g. PHP installed outside `/usr`).
    extra: Vec<PathBuf>,
}

impl HostFs {
    pub(crate) fn detect(extra: &[PathBuf]) -> HostFs {
        let mut host = HostFs::default();
        for name in SYSTEM_DIRS {
            let p = Path::new("/").join(name);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&p) {
                        host.system.push((name.to_string(), Entry::Symlink(target)));
                    }
                }
                Ok(m) if m.is_dir() => host.system.push((name.to_string(), Entry::Dir(p))),
                _ => {}
            }
        }
        for name in ETC_ALLOW {
            let p = Path::new("/etc").join(name);
            // Follow symlinks: a bind mount binds what the link points to.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => host.etc.push((name.to_string(), Entry::Dir(p))),
                Ok(_) => host.etc.push((name.to_string(), Entry::File(p))),
                Err(_) => {}
            }
        }
        host.extra = extra
            .iter()
            .filter(|p| p.is_absolute() && p.exists())
            .filter(|p| !covered_by_system(p))
            .cloned()
            .collect();
        host
    }
}

/// True when `p` is already visible through one of the system binds.
fn covered_by_system(p: &Path) -> bool {
    SYSTEM_DIRS
        .iter()
        .any(|d| p.starts_with(Path::new("/").join(d)))
}

/// One instance's filesystem description.
pub(crate) struct RootSpec<'a> {
    pub code_dir: &'a Path,
    pub runtime_dir: &'a Path,
    pub tmp_mb: u32,
    /// Persistent volumes, bound read-write.
    pub volumes: &'a [crate::Volume],
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug)]
enum Op {
    Mkdir(CString),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        src: CString,
        dst: CString,
        readonly: bool,
    },
    Tmpfs {
        dst: CString,
        data: CString,
    },
    Proc(CString),
    Write {
        path: CString,
        data: Vec<u8>,
    },
}

/// The mount operations for one instance, ready to run in the child.
#[derive(Debug)]
pub(crate) struct MountPlan {
    stage: CString,
    root_data: CString,
    ops: Vec<Op>,
    /// Human names of `ops`, for error messages.
    names: Vec<String>,
    slash: CString,
    dot: CString,
    workdir: CString,
}

/// Steps before the ops; an op's step number is `OPS_BASE + index`.
pub(crate) const STEP_PRIVATE: u32 = 10;
pub(crate) const STEP_ROOT_TMPFS: u32 = 11;
pub(crate) const STEP_PIVOT: u32 = 12;
pub(crate) const STEP_READONLY_ROOT: u32 = 13;
pub(crate) const STEP_WORKDIR: u32 = 14;
pub(crate) const OPS_BASE: u32 = 1000;

impl MountPlan {
    pub(crate) fn build(host: &HostFs, stage: &Path, spec: &RootSpec<'_>) -> io::Result<MountPlan> {
        let mut plan = MountPlan {
            stage: cstr(stage)?,
            root_data: cstr("mode=0755,size=4m,nr_inodes=4096")?,
            ops: Vec::new(),
            names: Vec::new(),
            slash: cstr("/")?,
            dot: cstr(".")?,
            workdir: cstr(TASK_ROOT)?,
        };
        let at =
            |rel: &str| -> io::Result<CString> { cstr(stage.join(rel.trim_start_matches('/'))) };
        let mut made: Vec<String> = Vec::new();
        let mut mkdirs = |plan: &mut MountPlan, rel: &str| -> io::Result<()> {
            let mut cur = String::new();
            for part in rel.trim_start_matches('/').split('/') {
                if !cur.is_empty() {
                    cur.push('/');
                }
                cur.push_str(part);
                if !made.contains(&cur) {
                    plan.push(Op::Mkdir(at(&cur)?), format!("mkdir /{cur}"));
                    made.push(cur.clone());
                }
            }
            Ok(())
        };

        for (name, entry) in &host.system {
            match entry {
                Entry::Symlink(target) => plan.push(
                    Op::Symlink {
                        target: cstr(target)?,
                        link: at(name)?,
                    },
                    format!("symlink /{name}"),
                ),
                Entry::Dir(src) | Entry::File(src) => {
                    mkdirs(&mut plan, name)?;
                    plan.bind(src, at(name)?, true, format!("/{name}"))?;
                }
            }
        }
        for extra in &host.extra {
            let rel = extra.to_string_lossy();
            mkdirs(&mut plan, &rel)?;
            plan.bind(extra, at(&rel)?, true, rel.to_string())?;
        }

        mkdirs(&mut plan, "etc")?;
        for (name, entry) in &host.etc {
            let rel = format!("etc/{name}");
            match entry {
                Entry::Dir(src) => {
                    mkdirs(&mut plan, &rel)?;
                    plan.bind(src, at(&rel)?, true, format!("/{rel}"))?;
                }
                Entry::File(src) => {
                    plan.push(Op::Touch(at(&rel)?), format!("create /{rel}"));
                    plan.bind(src, at(&rel)?, true, format!("/{rel}"))?;
                }
                Entry::Symlink(_) => {}
            }
        }
        // Our own passwd/group: the host's user list is none of the instance's business.
        let passwd = format!(
            "root:x:0:0:root:/:/usr/sbin/nologin\nsbx_user:x:{}:{}::/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            spec.uid, spec.gid
        );
        let group = format!("root:x:0:\nsbx_user:x:{}:\nnogroup:x:65534:\n", spec.gid);
        plan.push(
            Op::Write {
                path: at("etc/passwd")?,
                data: passwd.into_bytes(),
            },
            "write /etc/passwd".into(),
        );
        plan.push(
            Op::Write {
                path: at("etc/group")?,
                data: group.into_bytes(),
            },
            "write /etc/group".into(),
        );

        mkdirs(&mut plan, TASK_ROOT)?;
        plan.bind(spec.code_dir, at(TASK_ROOT)?, true, TASK_ROOT.into())?;
        mkdirs(&mut plan, RUNTIME_DIR)?;
        plan.bind(spec.runtime_dir, at(RUNTIME_DIR)?, true, RUNTIME_DIR.into())?;

        mkdirs(&mut plan, "tmp")?;
        plan.push(
            Op::Tmpfs {
                dst: at("tmp")?,
                data: cstr(format!("size={}m,mode=1777", spec.tmp_mb.max(1)))?,
            },
            "mount /tmp".into(),
        );

        for volume in spec.volumes {
            // Validated by the manifest (under /mnt/, no `..`); checked again because a bind
            // outside the new root must never happen.
            if !volume.mount_path.starts_with("/mnt/")
                || volume.mount_path.split('/').any(|s| s == "..")
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("volume mount path {} is not under /mnt/", volume.mount_path),
                ));
            }
            mkdirs(&mut plan, &volume.mount_path)?;
            plan.bind(
                &volume.host_dir,
                at(&volume.mount_path)?,
                false,
                volume.mount_path.clone(),
            )?;
        }

        mkdirs(&mut plan, "dev")?;
        plan.push(
            Op::Tmpfs {
                dst: at("dev")?,
                data: cstr("size=64k,mode=0755,nr_inodes=64")?,
            },
            "mount /dev".into(),
        );
        for dev in DEVICES {
            let src = Path::new("/dev").join(dev);
            if src.exists() {
                let rel = format!("dev/{dev}");
                plan.push(Op::Touch(at(&rel)?), format!("create /{rel}"));
                plan.bind(&src, at(&rel)?, false, format!("/{rel}"))?;
            }
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            plan.push(
                Op::Symlink {
                    target: cstr(target)?,
                    link: at(&format!("dev/{name}"))?,
                },
                format!("symlink /dev/{name}"),
            );
        }

        mkdirs(&mut plan, "proc")?;
        plan.push(Op::Proc(at("proc")?), "mount /proc".into());
        Ok(plan)
    }

    fn push(&mut self, op: Op, name: String) {
        self.ops.push(op);
        self.names.push(name);
    }

    fn bind(&mut self, src: &Path, dst: CString, readonly: bool, name: String) -> io::Result<()> {
        self.push(
            Op::Bind {
                src: cstr(src)?,
                dst,
                readonly,
            },
            format!("bind {} at {name}", src.display()),
        );
        Ok(())
    }

    /// What step `step` (as reported by a failed child) was doing.
    pub(crate) fn describe_step(&self, step: u32) -> Option<String> {
        Some(match step {
            STEP_PRIVATE => "make the mounts private".into(),
            STEP_ROOT_TMPFS => "mount the root tmpfs".into(),
            STEP_PIVOT => "pivot_root into the new root".into(),
            STEP_READONLY_ROOT => "make the root read-only".into(),
            STEP_WORKDIR => format!("chdir {TASK_ROOT}"),
            s if s >= OPS_BASE => self.names.get((s - OPS_BASE) as usize)?.clone(),
            _ => return None,
        })
    }

    /// Builds the new root and switches to it. Runs in the forked child, so it only makes
    /// system calls on memory prepared in the parent; `step` says how far it got.
    pub(crate) fn apply(&self, step: &mut u32) -> io::Result<()> {
        *step = STEP_PRIVATE;
        // Nothing we mount may propagate back to the host.
        sys_mount(
            None,
            &self.slash,
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )?;
        *step = STEP_ROOT_TMPFS;
        sys_mount(
            Some(&self.dot),
            &self.stage,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&self.root_data),
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            *step = OPS_BASE + i as u32;
            op.apply()?;
        }
        *step = STEP_PIVOT;
        check(
            // SAFETY: chdir takes a NUL-terminated path prepared in the parent.
            unsafe { libc::chdir(self.stage.as_ptr()) },
        )?;
        // pivot_root(".", "."): the old root ends up stacked on the new one and is detached
        // right away (see pivot_root(2)), so no path leads back to the host's filesystem.
        check(
            // SAFETY: raw syscall with two NUL-terminated paths prepared in the parent.
            unsafe {
                libc::syscall(libc::SYS_pivot_root, self.dot.as_ptr(), self.dot.as_ptr()) as i32
            },
        )?;
        check(
            // SAFETY: umount2 takes a NUL-terminated path prepared in the parent.
            unsafe { libc::umount2(self.dot.as_ptr(), libc::MNT_DETACH) },
        )?;
        check(
            // SAFETY: as above.
            unsafe { libc::chdir(self.slash.as_ptr()) },
        )?;
        *step = STEP_READONLY_ROOT;
        sys_mount(
            None,
            &self.slash,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
        *step = STEP_WORKDIR;
        check(
            // SAFETY: as above.
            unsafe { libc::chdir(self.workdir.as_ptr()) },
        )
    }
}

fn check(rc: i32) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn opt_ptr(s: Option<&std::ffi::CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

fn sys_mount(
    src: Option<&std::ffi::CStr>,
    dst: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    check(
        // SAFETY: every pointer is either null (allowed by mount(2) for these arguments) or a
        // NUL-terminated string that outlives the call.
        unsafe {
            libc::mount(
                opt_ptr(src),
                dst.as_ptr(),
                opt_ptr(fstype),
                flags,
                opt_ptr(data).cast(),
            )
        },
    )
}

impl Op {
    fn apply(&self) -> io::Result<()> {
        match self {
            Op::Mkdir(p) => {
                // SAFETY: NUL-terminated path prepared in the parent.
                let rc = unsafe { libc::mkdir(p.as_ptr(), 0o755) };
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            Op::Touch(p) => {
                // SAFETY: NUL-terminated path; the returned fd is closed right away.
                let fd = unsafe {
                    libc::open(
                        p.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                check(fd)?;
                // SAFETY: fd was just opened by us and is closed once.
                unsafe { libc::close(fd) };
                Ok(())
            }
            Op::Symlink { target, link } => check(
                // SAFETY: two NUL-terminated strings prepared in the parent.
                unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) },
            ),
            Op::Bind { src, dst, readonly } => {
                sys_mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
                if *readonly {
                    sys_mount(
                        None,
                        dst,
                        None,
                        libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV,
                        None,
                    )?;
                }
                Ok(())
            }
            Op::Tmpfs { dst, data } => sys_mount(
                Some(c"tmpfs"),
                dst,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(data),
            ),
            Op::Proc(dst) => sys_mount(
                Some(c"proc"),
                dst,
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            ),
            Op::Write { path, data } => {
                // SAFETY: NUL-terminated path; the fd is ours and closed once; `data` is a
                // live buffer of `data.len()` bytes.
                unsafe {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    );
                    check(fd)?;
                    let n = libc::write(fd, data.as_ptr().cast(), data.len());
                    libc::close(fd);
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_the_contract_paths_and_no_secrets() {
        let host = HostFs::detect(&[]);
        let plan = MountPlan::build(
            &host,
            Path::new("/stage"),
            &RootSpec {
                code_dir: Path::new("/data/code/abc"),
                runtime_dir: Path::new("/data/runtime/php"),
                tmp_mb: 512,
                volumes: &[],
                uid: 1234,
                gid: 1234,
            },
        )
        .unwrap();
        let names = plan.names.join("\n");
        assert!(
            names.contains("bind /data/code/abc at /var/task"),
            "{names}"
        );
        assert!(names.contains("bind /data/runtime/php at /opt"), "{names}");
        assert!(names.contains("mount /tmp"));
        assert!(names.contains("mount /proc"));
        assert!(!names.contains("shadow"));
        assert!(!names.contains("bind /etc at"));
        assert!(plan.ops.iter().any(|op| matches!(op, Op::Tmpfs { data, .. } if data.to_str().unwrap() == "size=512m,mode=1777")));
        assert_eq!(
            plan.describe_step(OPS_BASE).as_deref(),
            plan.names.first().map(String::as_str)
        );
        assert_eq!(
            plan.describe_step(STEP_PIVOT).unwrap(),
            "pivot_root into the new root"
        );
    }

    #[test]
    fn extra_paths_under_usr_are_not_bound_twice() {
        let host = HostFs::detect(&[PathBuf::from("/usr/bin/php8.2")]);
        assert!(host.extra.is_empty());
    }
}
