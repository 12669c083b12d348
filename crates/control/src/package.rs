//! Package archives: stored as uploaded (`packages/<sha>.zip`), unpacked once per version.
//!
//! Unpacking is done entry by entry instead of `ZipArchive::extract` so the node decides what
//! lands on its disk: names stay inside the package, modes are normalised (0644 files, 0755
//! executables and directories, never setuid/setgid/sticky or group/world-writable), symlinks
//! may only point inside the package, and sizes are counted as bytes are written so a zip bomb
//! stops early, whatever the archive declares.

use crate::ControlError;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// What a package may hold once unpacked.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of all files together, counted as written (Lambda: 250 MB).
    pub max_unpacked_bytes: u64,
    /// Entries in the archive (files, directories and links).
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_unpacked_bytes: 250 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// Deflate cannot expand data more than ~1032:1; an entry that does claims a size it lies
/// about or hides another method.
const MAX_RATIO: u64 = 1100;

/// How deep symlink chains are followed when checking where a link leads (Linux: 40).
const MAX_LINK_DEPTH: usize = 40;

/// `1.1 GB`, `300 MB`, `12 KB`.
pub fn human_size(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    const GB: u64 = 1024 * MB;
    if bytes >= GB {
        format!("{:.1} GB", bytes as f64 / GB as f64)
    } else if bytes >= MB {
        format!("{} MB", (bytes + MB / 2) / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// An I/O error on the node's disk: a full disk says so and where to free space.
pub fn disk_error(what: &str, path: &Path, e: std::io::Error) -> ControlError {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        ControlError::DiskFull {
            context: what.to_string(),
            data_dir: data_dir_hint(path),
            source: e,
        }
    } else {
        ControlError::Io {
            context: format!("{what} {}", path.display()),
            source: e,
        }
    }
}

/// `DATA_DIR` from a path under `DATA_DIR/code/...` or `DATA_DIR/packages/...`.
fn data_dir_hint(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "code" || n == "packages")
        })
        .and_then(Path::parent)
        .unwrap_or(path)
        .to_path_buf()
}

fn too_large(size: String, limits: &Limits) -> ControlError {
    ControlError::BadRequest(format!(
        "package is {size} unpacked; the limit is {}, set with --max-package-mb",
        human_size(limits.max_unpacked_bytes)
    ))
}

/// Unpacks `zip_path` into `target` (atomically: into a staging directory next to it, then
/// renamed). Refuses, naming the entry, anything that would land or point outside `target`.
pub fn unpack(zip_path: &Path, target: &Path, limits: &Limits) -> Result<(), ControlError> {
    let file = std::fs::File::open(zip_path).map_err(|e| disk_error("cannot open", zip_path, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        ControlError::BadRequest(format!("the package is not a valid zip archive: {e}"))
    })?;
    let parent = target.parent().ok_or_else(|| ControlError::Io {
        context: format!("{}", target.display()),
        source: std::io::Error::other("the code directory has no parent"),
    })?;
    std::fs::create_dir_all(parent).map_err(|e| disk_error("cannot create", parent, e))?;
    // Removed on drop, so on every failure below.
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|e| disk_error("cannot create a staging directory in", parent, e))?;
    unpack_into(&mut archive, staging.path(), limits)?;
    // The package root is world-readable (0755) like every directory in it: sandboxed
    // instances run as an unprivileged uid, as on Lambda.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| disk_error("cannot set the mode of", staging.path(), e))?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another deploy of the same package won the race: fine.
        if !target.exists() {
            return Err(disk_error("cannot move the unpacked package to", target, e));
        }
    }
    Ok(())
}

fn unpack_into<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    root: &Path,
    limits: &Limits,
) -> Result<(), ControlError> {
    let bad = |e: String| {
        ControlError::BadRequest(format!("the package is not a valid zip archive: {e}"))
    };
    if archive.len() > limits.max_entries {
        return Err(ControlError::BadRequest(format!(
            "package has {} entries; the limit is {}",
            archive.len(),
            limits.max_entries
        )));
    }
    // Declared sizes are only a first, cheap refusal; bytes are counted as written below.
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_unpacked_bytes {
        return Err(too_large(human_size(declared), limits));
    }

    let mut written: u64 = 0;
    let mut links: Vec<(PathBuf, String, String)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = entry.name().to_string();
        let rel = entry_path(entry.name_raw(), &name)?;
        let Some(rel) = rel else { continue };
        let mode = entry.unix_mode().unwrap_or(0o644);
        let is_link = mode & 0o170000 == 0o120000;
        let dest = root.join(&rel);
        make_parents(root, &rel, &name)?;
        if entry.is_dir() {
            if rel.as_os_str().is_empty() {
                continue;
            }
            make_dir(root, &dest, &name)?;
            continue;
        }
        if is_link {
            // A link target is a short path; anything longer is not one.
            let mut target = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| bad(format!("entry `{name}`: {e}")))?;
            links.push((rel, name, target));
            continue;
        }
        let exec = mode & 0o111 != 0;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(if exec { 0o755 } else { 0o644 })
            .open(&dest)
            .map_err(|e| entry_error(&name, &dest, e))?;
        let declared_size = entry.size();
        let ratio_cap = entry
            .compressed_size()
            .saturating_mul(MAX_RATIO)
            .max(1 << 20);
        let cap = declared_size.min(ratio_cap);
        let mut buf = vec![0u8; 64 * 1024];
        let mut this_entry: u64 = 0;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("entry `{name}`: {e}")))?;
            if n == 0 {
                break;
            }
            this_entry += n as u64;
            written += n as u64;
            if written > limits.max_unpacked_bytes {
                return Err(too_large(
                    format!("more than {}", human_size(limits.max_unpacked_bytes)),
                    limits,
                ));
            }
            if this_entry > cap {
                return Err(ControlError::BadRequest(format!(
                    "package entry `{name}` unpacks to more than it declares ({declared_size} bytes from {} compressed); rebuild the package",
                    entry.compressed_size()
                )));
            }
            out.write_all(&buf[..n])
                .map_err(|e| disk_error("cannot write", &dest, e))?;
        }
        // The umask may have narrowed the mode; set it exactly.
        out.set_permissions(std::fs::Permissions::from_mode(if exec {
            0o755
        } else {
            0o644
        }))
        .map_err(|e| disk_error("cannot set the mode of", &dest, e))?;
    }
    // Links last, so no entry is ever written through one.
    for (rel, name, target) in &links {
        check_link(rel, name, target)?;
        let dest = root.join(rel);
        std::os::unix::fs::symlink(target, &dest).map_err(|e| entry_error(name, &dest, e))?;
    }
    // Now that every link exists, follow chains for real: two links that each stay inside
    // can still lead out together (`a -> x/l/..` with `x/l -> ..`).
    for (rel, name, target) in &links {
        let parent: Vec<OsString> = rel
            .parent()
            .map(|p| p.iter().map(OsString::from).collect())
            .unwrap_or_default();
        if !resolves_inside(root, parent, Path::new(target)) {
            return Err(outside(name, target));
        }
    }
    Ok(())
}

fn entry_error(name: &str, dest: &Path, e: std::io::Error) -> ControlError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        ControlError::BadRequest(format!(
            "package entry `{name}` appears twice (or as a file and a directory); rebuild the package"
        ))
    } else {
        disk_error("cannot write", dest, e)
    }
}

fn outside(name: &str, target: &str) -> ControlError {
    ControlError::BadRequest(format!(
        "package entry `{name}` is a symlink to `{target}`, outside the package; packages may only link inside themselves"
    ))
}

/// The relative path of an entry, or an error naming it when its name could land outside the
/// package. `None` for the root itself (`./`).
fn entry_path(raw: &[u8], name: &str) -> Result<Option<PathBuf>, ControlError> {
    let refuse = |why: &str| {
        Err(ControlError::BadRequest(format!(
            "package entry `{}` {why}; rebuild the package with `tusk deploy`",
            name.escape_debug()
        )))
    };
    if raw.contains(&0) {
        return refuse("has a NUL byte in its name");
    }
    if name.contains('\\') {
        return refuse("has a backslash in its name");
    }
    if name.starts_with('/') {
        return refuse("is an absolute path");
    }
    let mut rel = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::ParentDir => return refuse("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return refuse("is an absolute path"),
        }
    }
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(rel))
}

/// Creates the directories above `rel`, refusing to go through a symlink.
fn make_parents(root: &Path, rel: &Path, name: &str) -> Result<(), ControlError> {
    let mut dir = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            make_dir(root, &dir, name)?;
        }
    }
    Ok(())
}

fn make_dir(root: &Path, dir: &Path, name: &str) -> Result<(), ControlError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ControlError::BadRequest(format!(
            "package entry `{name}` lies under `{}`, which is not a directory in the package; rebuild the package",
            dir.strip_prefix(root).unwrap_or(dir).display()
        ))),
        Err(_) => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| disk_error("cannot create", dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| disk_error("cannot set the mode of", dir, e))
        }
    }
}

/// A link's target must be relative and, resolved against the link's own directory, stay
/// inside the package.
fn check_link(rel: &Path, name: &str, target: &str) -> Result<(), ControlError> {
    if target.is_empty() || target.contains('\0') || target.starts_with('/') {
        return Err(outside(name, target));
    }
    let mut depth: usize = rel.parent().map_or(0, |p| p.components().count());
    for c in Path::new(target).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or_else(|| outside(name, target))?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside(name, target)),
        }
    }
    Ok(())
}

/// Whether `target`, resolved from the directory `at` (components under `root`), stays under
/// `root`, following links inside the package as the kernel would.
fn resolves_inside(root: &Path, mut at: Vec<OsString>, target: &Path) -> bool {
    resolve_into(root, &mut at, target, 0)
}

/// Resolves `target` from `at`, leaving the location in `at`; false when it leaves `root`.
fn resolve_into(root: &Path, at: &mut Vec<OsString>, target: &Path, depth: usize) -> bool {
    if depth > MAX_LINK_DEPTH {
        return false;
    }
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
            Component::Normal(n) => {
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>()).join(n);
                match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() => {
                        let Ok(next) = std::fs::read_link(&here) else {
                            return false;
                        };
                        if !resolve_into(root, at, &next, depth + 1) {
                            return false;
                        }
                    }
                    _ => at.push(n.to_os_string()),
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, u32, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, mode, data) in entries {
            if mode & 0o170000 == 0o120000 {
                w.add_symlink(
                    *name,
                    std::str::from_utf8(data).unwrap(),
                    SimpleFileOptions::default(),
                )
                .unwrap();
            } else if name.ends_with('/') {
                w.add_directory(*name, SimpleFileOptions::default().unix_permissions(*mode))
                    .unwrap();
            } else {
                w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                    .unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap();
        file
    }

    fn unpacked(entries: &[(&str, u32, &[u8])]) -> (tempfile::TempDir, Result<(), ControlError>) {
        let zip = zip_of(entries);
        let dir = tempfile::tempdir().unwrap();
        let r = unpack(zip.path(), &dir.path().join("code"), &Limits::default());
        (dir, r)
    }

    #[test]
    fn modes_are_normalised() {
        let (dir, r) = unpacked(&[
            ("a.php", 0o4777, b"x"),
            ("bin/run", 0o2775, b"y"),
            ("w.txt", 0o666, b"z"),
            ("d/", 0o1777, b""),
        ]);
        r.unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(dir.path().join("code").join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a.php"), 0o755);
        assert_eq!(mode("bin/run"), 0o755);
        assert_eq!(mode("bin"), 0o755);
        assert_eq!(mode("w.txt"), 0o644);
        assert_eq!(mode("d"), 0o755);
        assert_eq!(mode(""), 0o755);
    }

    #[test]
    fn links_inside_are_kept_and_links_outside_refused() {
        let (dir, r) = unpacked(&[
            ("styles/a.css", 0o644, b"body{}"),
            ("public/latest.css", 0o120777, b"../styles/a.css"),
        ]);
        r.unwrap();
        let text = std::fs::read_to_string(dir.path().join("code/public/latest.css")).unwrap();
        assert_eq!(text, "body{}");

        for target in ["/", "../..", "../../x", "a/../../.."] {
            let (dir, r) = unpacked(&[("public/sym", 0o120777, target.as_bytes())]);
            let err = r.unwrap_err().to_string();
            assert!(err.contains("`public/sym` is a symlink to"), "{err}");
            assert!(!dir.path().join("code").exists());
            // No staging directory left behind.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        // Two links that each stay inside but lead out together.
        let (_dir, r) = unpacked(&[("x/l", 0o120777, b".."), ("a", 0o120777, b"x/l/../..")]);
        assert!(r.is_err());
        let (_dir, r) = unpacked(&[("x/l", 0o120777, b".."), ("a", 0o120777, b"x/l/..")]);
        assert!(r.unwrap_err().to_string().contains("`a`"));
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in ["/etc/x", "../x", "a/../../x", "a\\..\\x"] {
            let (_dir, r) = unpacked(&[(name, 0o644, b"x")]);
            let err = r.unwrap_err().to_string();
            assert!(err.contains("package entry"), "{name}: {err}");
        }
        // Nothing is written through a link.
        let (_dir, r) = unpacked(&[("l", 0o120777, b"d"), ("l/x", 0o644, b"x")]);
        assert!(r.is_err());
    }

    #[test]
    fn sizes_are_counted() {
        let zeros = vec![0u8; 3 << 20];
        let zip = zip_of(&[("big", 0o644, &zeros)]);
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_unpacked_bytes: 1 << 20,
            max_entries: 10,
        };
        let err = unpack(zip.path(), &dir.path().join("code"), &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("package is 3 MB unpacked; the limit is 1 MB"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_disk_says_where_to_free_space_and_keeps_the_io_error() {
        let e = disk_error(
            "cannot write",
            Path::new("/srv/tusk/code/abc/index.php"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(e, ControlError::DiskFull { .. }), "{e:?}");
        assert!(e
            .to_string()
            .contains("free space under the data directory (/srv/tusk)"));
        assert!(std::error::Error::source(&e).is_some());
        let e = disk_error(
            "cannot open",
            Path::new("/x.zip"),
            std::io::Error::other("boom"),
        );
        assert_eq!(e.to_string(), "cannot open /x.zip: boom");
    }
}
