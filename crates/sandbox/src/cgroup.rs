//! Cgroups for a node and its instances: v2 where the host delegates the controllers to us,
//! v1 otherwise (hybrid hosts mount the v1 controllers next to an empty v2 hierarchy).
//!
//! Over 600 lines only with its unit tests (v1 and v2 against a fake cgroupfs).
//!
//! Layout: `<Tusk's own cgroup>/tusk-<pid>/<instance id>`, once in the v2 hierarchy or once per
//! v1 controller. Everything here is small reads and writes of cgroupfs files, served from
//! kernel memory: they never wait on a disk.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which cgroup hierarchy limits the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// The controllers Tusk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    Memory,
    Cpu,
    Pids,
    Freezer,
}

impl Ctl {
    const ALL: [Ctl; 4] = [Ctl::Memory, Ctl::Cpu, Ctl::Pids, Ctl::Freezer];

    fn name(self) -> &'static str {
        match self {
            Ctl::Memory => "memory",
            Ctl::Cpu => "cpu",
            Ctl::Pids => "pids",
            Ctl::Freezer => "freezer",
        }
    }
}

/// Which limits the node can apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controllers {
    pub memory: bool,
    pub cpu: bool,
    pub pids: bool,
    pub freezer: bool,
}

impl Controllers {
    fn set(&mut self, ctl: Ctl) {
        match ctl {
            Ctl::Memory => self.memory = true,
            Ctl::Cpu => self.cpu = true,
            Ctl::Pids => self.pids = true,
            Ctl::Freezer => self.freezer = true,
        }
    }

    fn has(&self, ctl: Ctl) -> bool {
        match ctl {
            Ctl::Memory => self.memory,
            Ctl::Cpu => self.cpu,
            Ctl::Pids => self.pids,
            Ctl::Freezer => self.freezer,
        }
    }

    pub fn all(&self) -> bool {
        self.memory && self.cpu && self.pids && self.freezer
    }

    pub fn names(&self) -> Vec<&'static str> {
        Ctl::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(Ctl::name)
            .collect()
    }
}

/// Where this process sits in the mounted cgroup hierarchies.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layout {
    /// Our own cgroup directory in the v2 hierarchy, when one is mounted.
    pub v2: Option<PathBuf>,
    /// Our own cgroup directory per v1 controller.
    pub v1: Vec<(Ctl, PathBuf)>,
}

/// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub(crate) fn detect_layout() -> io::Result<Layout> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let own = fs::read_to_string("/proc/self/cgroup")?;
    Ok(layout_from(&mountinfo, &own))
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under_mount(root: &str, mountpoint: &str, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(root)
        .filter(|_| root != "/")
        .unwrap_or(path)
        .trim_start_matches('/');
    Path::new(mountpoint).join(rel)
}

pub(crate) fn layout_from(mountinfo: &str, self_cgroup: &str) -> Layout {
    // (root, mountpoint) of the v2 mount and of each v1 controller's mount.
    let mut v2_mount: Option<(String, String)> = None;
    let mut v1_mounts: Vec<(Ctl, String, String)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mountpoint) = (unescape(pre[3]), unescape(pre[4]));
        match post[0] {
            "cgroup2" if v2_mount.is_none() => v2_mount = Some((root, mountpoint)),
            "cgroup" => {
                for opt in post[2].split(',') {
                    if let Some(ctl) = Ctl::ALL.into_iter().find(|c| c.name() == opt) {
                        if !v1_mounts.iter().any(|(c, _, _)| *c == ctl) {
                            v1_mounts.push((ctl, root.clone(), mountpoint.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut layout = Layout::default();
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            if let Some((root, mp)) = &v2_mount {
                layout.v2 = Some(under_mount(root, mp, path));
            }
            continue;
        }
        for name in controllers.split(',') {
            if let Some((ctl, root, mp)) = v1_mounts.iter().find(|(c, _, _)| c.name() == name) {
                layout.v1.push((*ctl, under_mount(root, mp, path)));
            }
        }
    }
    layout
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    // O_TRUNC is ignored by cgroupfs; it keeps the fake cgroupfs of the tests honest.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    // One write(2): cgroupfs parses each write as a whole value.
    f.write_all(value.as_bytes())
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The number after `key ` in a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Limits for one instance's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPU time per period once the instance is initialised.
    pub cpu_quota_us: u64,
    /// CPU time per period during init (at least one full core: see docs/isolation.md).
    pub cpu_init_quota_us: u64,
    pub cpu_period_us: u64,
    /// Relative weight under contention, in v2's 1..10000 scale.
    pub cpu_weight: u64,
}

/// Lambda's rule: 1769 MB buys one full vCPU, and CPU scales linearly with memory.
pub(crate) const MB_PER_CORE: u64 = 1769;
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

impl Limits {
    pub(crate) fn for_memory(memory_mb: u32, pids: u64) -> Limits {
        let mb = u64::from(memory_mb.max(1));
        let quota = (CPU_PERIOD_US * mb / MB_PER_CORE).max(1000);
        Limits {
            memory_bytes: mb * 1024 * 1024,
            pids,
            cpu_quota_us: quota,
            cpu_init_quota_us: quota.max(CPU_PERIOD_US),
            cpu_period_us: CPU_PERIOD_US,
            cpu_weight: (100 * mb / MB_PER_CORE).clamp(1, 10_000),
        }
    }
}

/// The node's own cgroup directories.
#[derive(Debug)]
pub(crate) struct NodeCgroups {
    pub version: CgroupVersion,
    pub controllers: Controllers,
    /// v2: one directory; v1: one per controller.
    dirs: Vec<(Option<Ctl>, PathBuf)>,
}

impl NodeCgroups {
    /// Creates `<own cgroup>/<name>` in v2 when it has the memory controller, else in each v1
    /// hierarchy that has one of ours. `Err` says why neither works, for `tusk doctor`.
    pub(crate) fn setup(layout: &Layout, name: &str) -> Result<NodeCgroups, String> {
        let mut why = Vec::new();
        if let Some(own) = &layout.v2 {
            match Self::setup_v2(own, name) {
                Ok(node) => return Ok(node),
                Err(e) => why.push(format!("v2: {e}")),
            }
        }
        if !layout.v1.is_empty() {
            match Self::setup_v1(layout, name) {
                Ok(node) => return Ok(node),
                Err(e) => why.push(format!("v1: {e}")),
            }
        }
        if why.is_empty() {
            why.push("no cgroup filesystem is mounted".into());
        }
        Err(why.join("; "))
    }

    fn setup_v2(own: &Path, name: &str) -> Result<NodeCgroups, String> {
        let available = fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| {
            format!(
                "cannot read {}: {e}",
                own.join("cgroup.controllers").display()
            )
        })?;
        let have: Vec<&str> = available.split_whitespace().collect();
        if !have.contains(&"memory") {
            return Err(format!(
                "the memory controller is not available in {} (hybrid host: it is on v1)",
                own.display()
            ));
        }
        let wanted: Vec<&str> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| have.contains(c))
            .collect();
        let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
        let enable = enable.trim_end();
        let subtree = own.join("cgroup.subtree_control");
        if let Err(e) = write_file(&subtree, enable) {
            // "No internal processes": a cgroup with processes cannot hand controllers to its
            // children. When we are alone in it, step down into a leaf and try again.
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(format!(
                    "cannot enable controllers in {}: {e} (delegate the cgroup to Tusk, e.g. systemd Delegate=yes)",
                    subtree.display()
                ));
            }
            let procs = fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
            let me = std::process::id().to_string();
            if procs.lines().any(|p| p.trim() != me) {
                return Err(format!(
                    "{} holds other processes besides Tusk; run Tusk in a cgroup of its own (systemd: Delegate=yes)",
                    own.display()
                ));
            }
            let leaf = own.join(format!("{name}-supervisor"));
            fs::create_dir_all(&leaf).map_err(|e| with_path(&leaf, e).to_string())?;
            write_file(&leaf.join("cgroup.procs"), &me)
                .map_err(|e| format!("cannot move Tusk into {}: {e}", leaf.display()))?;
            write_file(&subtree, enable).map_err(|e| with_path(&subtree, e).to_string())?;
        }
        let dir = own.join(name);
        fs::create_dir_all(&dir).map_err(|e| with_path(&dir, e).to_string())?;
        write_file(&dir.join("cgroup.subtree_control"), enable)
            .map_err(|e| with_path(&dir, e).to_string())?;
        let mut controllers = Controllers::default();
        for c in &wanted {
            if let Some(ctl) = Ctl::ALL.into_iter().find(|x| x.name() == *c) {
                controllers.set(ctl);
            }
        }
        // The v2 freezer is built in (cgroup.freeze) in every non-root cgroup.
        controllers.freezer = dir.join("cgroup.freeze").exists();
        Ok(NodeCgroups {
            version: CgroupVersion::V2,
            controllers,
            dirs: vec![(None, dir)],
        })
    }

    fn setup_v1(layout: &Layout, name: &str) -> Result<NodeCgroups, String> {
        let mut controllers = Controllers::default();
        let mut dirs = Vec::new();
        let mut errors = Vec::new();
        for (ctl, own) in &layout.v1 {
            let dir = own.join(name);
            match fs::create_dir_all(&dir) {
                Ok(()) => {
                    controllers.set(*ctl);
                    dirs.push((Some(*ctl), dir));
                }
                Err(e) => errors.push(with_path(&dir, e).to_string()),
            }
        }
        if dirs.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(NodeCgroups {
            version: CgroupVersion::V1,
            controllers,
            dirs,
        })
    }

    /// A human description of where instances' cgroups go.
    pub(crate) fn describe(&self) -> String {
        self.dirs
            .iter()
            .map(|(_, d)| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Creates and configures the cgroup of one instance.
    pub(crate) fn create(&self, id: &str, limits: &Limits) -> io::Result<InstanceCgroup> {
        let cg = InstanceCgroup {
            version: self.version,
            controllers: self.controllers,
            dirs: self
                .dirs
                .iter()
                .map(|(ctl, d)| (*ctl, d.join(id)))
                .collect(),
            peak_file: std::sync::OnceLock::new(),
        };
        for (_, dir) in &cg.dirs {
            fs::create_dir(dir).map_err(|e| with_path(dir, e))?;
        }
        if let Err(e) = cg.configure(limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// Kills every instance left in the node's cgroups and removes them and the node's own.
    pub(crate) fn shutdown(&self) {
        remove_tree(self.version, &self.dirs);
    }
}

/// Kills and removes the instance cgroups under `dirs`, then `dirs` themselves.
fn remove_tree(version: CgroupVersion, dirs: &[(Option<Ctl>, PathBuf)]) {
    let mut children: Vec<(Option<Ctl>, PathBuf)> = Vec::new();
    for (ctl, dir) in dirs {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    children.push((*ctl, e.path()));
                }
            }
        }
    }
    let mut controllers = Controllers::default();
    for (ctl, _) in dirs {
        if let Some(c) = ctl {
            controllers.set(*c);
        }
    }
    if version == CgroupVersion::V2 {
        controllers = Controllers {
            memory: true,
            cpu: true,
            pids: true,
            freezer: true,
        };
    }
    // Group the per-controller directories of one instance (same name) together.
    let mut names: Vec<String> = children
        .iter()
        .filter_map(|(_, p)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.dedup();
    let groups: Vec<InstanceCgroup> = names
        .iter()
        .map(|name| InstanceCgroup {
            version,
            controllers,
            dirs: children
                .iter()
                .filter(|(_, p)| p.file_name().is_some_and(|n| n.to_string_lossy() == *name))
                .cloned()
                .collect(),
            peak_file: std::sync::OnceLock::new(),
        })
        .collect();
    // Kill everything first, then wait once: killed processes whose parent is gone must be
    // reaped by init before their cgroup can go.
    for cg in &groups {
        cg.kill_all();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for cg in &groups {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = cg.remove_waiting(left);
    }
    for (_, dir) in dirs {
        let _ = fs::remove_dir(dir);
    }
}

/// Removes node cgroups (`<prefix><pid>`) of Tusk processes that no longer exist, killing
/// whatever they left behind (a node that crashed, or was killed with SIGKILL).
pub(crate) fn cleanup_stale(layout: &Layout, prefix: &str) -> usize {
    let mut parents: Vec<(CgroupVersion, Option<Ctl>, PathBuf)> = Vec::new();
    if let Some(v2) = &layout.v2 {
        parents.push((CgroupVersion::V2, None, v2.clone()));
    }
    for (ctl, dir) in &layout.v1 {
        parents.push((CgroupVersion::V1, Some(*ctl), dir.clone()));
    }
    let mut removed = 0;
    for (version, ctl, parent) in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(prefix)
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            remove_tree(version, &[(ctl, e.path())]);
            removed += 1;
        }
    }
    removed
}

/// One instance's cgroup (one directory in v2, one per controller in v1).
#[derive(Debug)]
pub(crate) struct InstanceCgroup {
    version: CgroupVersion,
    controllers: Controllers,
    dirs: Vec<(Option<Ctl>, PathBuf)>,
    /// The peak-memory file, opened once: it is read after every invocation, and reading
    /// it again at offset 0 makes the kernel print the current value (no path walk each time).
    peak_file: std::sync::OnceLock<Option<fs::File>>,
}

impl InstanceCgroup {
    fn dir(&self, ctl: Ctl) -> Option<&Path> {
        if !self.controllers.has(ctl) {
            return None;
        }
        self.dirs
            .iter()
            .find(|(c, _)| c.is_none() || *c == Some(ctl))
            .map(|(_, d)| d.as_path())
    }

    /// Any directory that lists all the instance's processes.
    fn any_dir(&self) -> Option<&Path> {
        self.dirs.first().map(|(_, d)| d.as_path())
    }

    fn configure(&self, l: &Limits) -> io::Result<()> {
        let w = |dir: &Path, file: &str, value: String| {
            write_file(&dir.join(file), &value).map_err(|e| with_path(&dir.join(file), e))
        };
        match self.version {
            CgroupVersion::V2 => {
                if let Some(d) = self.dir(Ctl::Memory) {
                    w(d, "memory.max", l.memory_bytes.to_string())?;
                    // Swapping would only hide the limit; ignore hosts without swap accounting.
                    let _ = w(d, "memory.swap.max", "0".into());
                    // One OOM kill takes the whole instance, as on Lambda.
                    let _ = w(d, "memory.oom.group", "1".into());
                }
                if let Some(d) = self.dir(Ctl::Pids) {
                    w(d, "pids.max", l.pids.to_string())?;
                }
                if let Some(d) = self.dir(Ctl::Cpu) {
                    w(d, "cpu.weight", l.cpu_weight.to_string())?;
                    w(
                        d,
                        "cpu.max",
                        format!("{} {}", l.cpu_init_quota_us, l.cpu_period_us),
                    )?;
                }
            }
            CgroupVersion::V1 => {
                if let Some(d) = self.dir(Ctl::Memory) {
                    w(d, "memory.limit_in_bytes", l.memory_bytes.to_string())?;
                    let _ = w(d, "memory.memsw.limit_in_bytes", l.memory_bytes.to_string());
                }
                if let Some(d) = self.dir(Ctl::Pids) {
                    w(d, "pids.max", l.pids.to_string())?;
                }
                if let Some(d) = self.dir(Ctl::Cpu) {
                    // v1 shares are on a 1024-per-core scale.
                    w(
                        d,
                        "cpu.shares",
                        (l.cpu_weight * 1024 / 100).max(2).to_string(),
                    )?;
                    w(d, "cpu.cfs_period_us", l.cpu_period_us.to_string())?;
                    w(d, "cpu.cfs_quota_us", l.cpu_init_quota_us.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The file of every hierarchy the child writes `0` (itself) into to join.
    ///
    /// v1: `tasks`. Moving a whole thread group (`cgroup.procs`) takes the global
    /// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (~10 ms on
    /// this VM, on every cold start); the kernel skips that lock when a single thread moves
    /// itself, and the freshly forked child has exactly one thread. v2 has no such file
    /// outside threaded subtrees, so it pays the grace period (clone3's CLONE_INTO_CGROUP
    /// would avoid it).
    pub(crate) fn join_fds(&self) -> io::Result<Vec<OwnedFd>> {
        let file = match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        };
        self.dirs
            .iter()
            .map(|(_, d)| {
                let p = d.join(file);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(OwnedFd::from)
                    .map_err(|e| with_path(&p, e))
            })
            .collect()
    }

    pub(crate) fn set_cpu_quota(&self, quota_us: u64, period_us: u64) -> io::Result<()> {
        let Some(d) = self.dir(Ctl::Cpu) else {
            return Ok(());
        };
        match self.version {
            CgroupVersion::V2 => write_file(&d.join("cpu.max"), &format!("{quota_us} {period_us}")),
            CgroupVersion::V1 => write_file(&d.join("cpu.cfs_quota_us"), &quota_us.to_string()),
        }
    }

    /// Freezes (or thaws) every process of the instance. False when there is no freezer.
    pub(crate) fn set_frozen(&self, frozen: bool) -> io::Result<bool> {
        let Some(d) = self.dir(Ctl::Freezer) else {
            return Ok(false);
        };
        match self.version {
            CgroupVersion::V2 => {
                write_file(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })?
            }
            CgroupVersion::V1 => write_file(
                &d.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )?,
        }
        Ok(true)
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        let Some(d) = self.any_dir() else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the instance's cgroup, frozen ones included.
    pub(crate) fn kill_all(&self) {
        if self.version == CgroupVersion::V2 {
            if let Some(d) = self.any_dir() {
                if write_file(&d.join("cgroup.kill"), "1").is_ok() {
                    return;
                }
            }
        }
        // v1: freeze first so nothing forks while we walk the list, then kill, then thaw so
        // the signals are delivered (a frozen v1 task does not die until thawed).
        let frozen = self.set_frozen(true).unwrap_or(false);
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours. The pids
                // come from the instance's own cgroup, so no other process is signalled.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if frozen {
            let _ = self.set_frozen(false);
        }
    }

    /// Peak memory use, when the kernel tracks it (v1 always, v2 from Linux 5.19).
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self
            .peak_file
            .get_or_init(|| {
                let d = self.dir(Ctl::Memory)?;
                let name = match self.version {
                    CgroupVersion::V2 => "memory.peak",
                    CgroupVersion::V1 => "memory.max_usage_in_bytes",
                };
                fs::File::open(d.join(name)).ok()
            })
            .as_ref()?;
        let mut buf = [0u8; 32];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// How many times the kernel OOM-killed a process of this instance.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some(d) = self.dir(Ctl::Memory) else {
            return 0;
        };
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        fs::read_to_string(d.join(file))
            .ok()
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// Removes the directories; fails with EBUSY while processes remain.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for (_, d) in &self.dirs {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => result = Err(with_path(d, e)),
            }
        }
        result
    }

    /// Removes the cgroup once its (killed) processes are gone, waiting at most `wait`.
    pub(crate) fn remove_waiting(&self, wait: Duration) -> io::Result<()> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.remove() {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() >= wait => return Err(e),
                Err(_) => {
                    self.kill_all();
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
8:pids:/
6:freezer:/
4:memory:/process_api/c406
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_finds_v1_controllers_and_the_empty_v2() {
        let l = layout_from(HYBRID_MOUNTINFO, HYBRID_SELF);
        assert_eq!(l.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert!(l.v1.contains(&(
            Ctl::Memory,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/c406")
        )));
        assert!(l
            .v1
            .contains(&(Ctl::Cpu, PathBuf::from("/sys/fs/cgroup/cpu"))));
        assert!(l
            .v1
            .contains(&(Ctl::Pids, PathBuf::from("/sys/fs/cgroup/pids"))));
        assert!(l
            .v1
            .contains(&(Ctl::Freezer, PathBuf::from("/sys/fs/cgroup/freezer"))));
        assert_eq!(l.v1.len(), 4, "cpuacct is not cpu: {:?}", l.v1);
    }

    #[test]
    fn pure_v2_and_comounted_v1_layouts() {
        let l = layout_from(
            "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/tusk.service\n",
        );
        assert_eq!(
            l.v2,
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/tusk.service"))
        );
        let l = layout_from(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            "3:cpu,cpuacct:/docker/abc\n",
        );
        assert_eq!(
            l.v1,
            vec![(
                Ctl::Cpu,
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
            )]
        );
    }

    #[test]
    fn container_mount_roots_are_stripped() {
        // In a container the hierarchy's root is our own cgroup, mounted at /sys/fs/cgroup.
        let l = layout_from(
            "25 1 0:22 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/docker/abc/sub\n",
        );
        assert_eq!(l.v2, Some(PathBuf::from("/sys/fs/cgroup/sub")));
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn limits_follow_lambda_cpu_rule() {
        let l = Limits::for_memory(1769, 128);
        assert_eq!(l.cpu_quota_us, 100_000);
        let l = Limits::for_memory(128, 128);
        assert_eq!(l.cpu_quota_us, 7_235);
        assert_eq!(l.cpu_init_quota_us, 100_000);
        assert_eq!(l.memory_bytes, 128 << 20);
        assert_eq!(Limits::for_memory(10240, 1).cpu_quota_us, 578_858);
    }

    /// The v1 file protocol against a fake cgroupfs (plain directories and files).
    #[test]
    fn v1_instance_files() {
        let root = tempfile::tempdir().unwrap();
        let mut layout = Layout::default();
        for ctl in Ctl::ALL {
            let d = root.path().join(ctl.name());
            fs::create_dir_all(&d).unwrap();
            layout.v1.push((ctl, d));
        }
        let node = NodeCgroups::setup(&layout, "tusk-1").unwrap();
        assert_eq!(node.version, CgroupVersion::V1);
        assert!(node.controllers.all());
        // A plain directory has no control files: create them as the kernel would.
        let id = "abc";
        let files = [
            ("memory", "memory.limit_in_bytes"),
            ("memory", "memory.max_usage_in_bytes"),
            ("memory", "memory.oom_control"),
            ("pids", "pids.max"),
            ("cpu", "cpu.shares"),
            ("cpu", "cpu.cfs_period_us"),
            ("cpu", "cpu.cfs_quota_us"),
            ("freezer", "freezer.state"),
        ];
        let cg = InstanceCgroup {
            version: node.version,
            controllers: node.controllers,
            dirs: node.dirs.iter().map(|(c, d)| (*c, d.join(id))).collect(),
            peak_file: std::sync::OnceLock::new(),
        };
        for (ctl, file) in files {
            let d = root.path().join(ctl).join("tusk-1").join(id);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(file), "").unwrap();
        }
        cg.configure(&Limits::for_memory(256, 64)).unwrap();
        let read = |ctl: &str, f: &str| {
            fs::read_to_string(root.path().join(ctl).join("tusk-1").join(id).join(f)).unwrap()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "268435456");
        assert_eq!(read("pids", "pids.max"), "64");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "100000");
        cg.set_cpu_quota(14_471, 100_000).unwrap();
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "14471");
        assert!(cg.set_frozen(true).unwrap());
        assert_eq!(read("freezer", "freezer.state"), "FROZEN");
        let mem = root.path().join("memory/tusk-1").join(id);
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(mem.join("memory.max_usage_in_bytes"), "5242880\n").unwrap();
        assert_eq!(cg.oom_kills(), 2);
        assert_eq!(cg.peak_memory(), Some(5 << 20));
    }

    #[test]
    fn v2_instance_files() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("tusk.service");
        let node_dir = own.join("tusk-1");
        fs::create_dir_all(&node_dir).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        fs::write(node_dir.join("cgroup.subtree_control"), "").unwrap();
        fs::write(node_dir.join("cgroup.freeze"), "0").unwrap();
        let layout = Layout {
            v2: Some(own.clone()),
            v1: vec![],
        };
        let node = NodeCgroups::setup(&layout, "tusk-1").unwrap();
        assert_eq!(node.version, CgroupVersion::V2);
        assert!(node.controllers.all());
        assert_eq!(
            fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +cpu +pids"
        );
        let d = node_dir.join("i1");
        fs::create_dir_all(&d).unwrap();
        for f in [
            "memory.max",
            "pids.max",
            "cpu.weight",
            "cpu.max",
            "cgroup.freeze",
        ] {
            fs::write(d.join(f), "").unwrap();
        }
        let cg = InstanceCgroup {
            version: node.version,
            controllers: node.controllers,
            dirs: vec![(None, d.clone())],
            peak_file: std::sync::OnceLock::new(),
        };
        cg.configure(&Limits::for_memory(1024, 128)).unwrap();
        assert_eq!(
            fs::read_to_string(d.join("memory.max")).unwrap(),
            "1073741824"
        );
        assert_eq!(
            fs::read_to_string(d.join("cpu.max")).unwrap(),
            "100000 100000"
        );
        assert_eq!(fs::read_to_string(d.join("cpu.weight")).unwrap(), "57");
        cg.set_frozen(true).unwrap();
        assert_eq!(fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "1");
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 1);
    }

    #[test]
    fn v2_without_memory_is_refused_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let layout = Layout {
            v2: Some(root.path().to_path_buf()),
            v1: vec![],
        };
        let err = NodeCgroups::setup(&layout, "tusk-1").unwrap_err();
        assert!(err.contains("memory controller"), "{err}");
    }
}
