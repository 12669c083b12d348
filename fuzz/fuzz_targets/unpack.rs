//! Package unpacking (`tusk_control::package::unpack`): the fuzz bytes are an uploaded package,
//! written to a temporary file and unpacked into a directory inside a fresh sandbox
//! directory, next to a decoy directory `outside/`.
//!
//! Invariants: no panic; nothing is created outside the target directory (the sandbox holds
//! only the target, the upload and the still-empty decoy; staging directories are cleaned
//! up); and the package policy (docs/security.md, boundaries 1 and 5): nothing unpacked is a
//! symlink leading out of the target, setuid/setgid/sticky, or group/world-writable.
//! `TUSK_FUZZ_STRICT_UNPACK=0` turns the policy check off.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("TUSK_FUZZ_STRICT_UNPACK").is_none_or(|v| v != "0"))
}

fn walk(dir: &Path, root: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).expect("an entry has metadata");
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).expect("a link has a target");
            let resolved = path.parent().unwrap_or(root).join(&target);
            assert!(
                !target.is_absolute() && normalise(&resolved).starts_with(root),
                "unpacked symlink {} -> {} leaves the package",
                path.display(),
                target.display()
            );
            continue;
        }
        let mode = meta.permissions().mode();
        assert_eq!(
            mode & 0o7000,
            0,
            "{} is setuid/setgid/sticky: {mode:o}",
            path.display()
        );
        assert_eq!(
            mode & 0o022,
            0,
            "{} is group/world-writable: {mode:o}",
            path.display()
        );
        if meta.is_dir() {
            walk(&path, root);
        }
    }
}

/// Lexical `..` removal (the link target may not exist).
fn normalise(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Packages that declare more than this unpacked are skipped: a 64 KB zip can name the same
/// deflated data thousands of times, and unpacking that would fill the shared disk (the
/// 250 MB package limit of issue 11 belongs in `unpack`, not here). Sizes can lie, so the
/// entry count is capped too: each entry inflates at most ~1,000-fold from 64 KB.
const MAX_DECLARED: u64 = 64 << 20;
const MAX_ENTRIES: u64 = 64;

fn declared_size(data: &[u8]) -> u64 {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(data)) else {
        return 0;
    };
    if archive.len() as u64 > MAX_ENTRIES {
        return u64::MAX;
    }
    (0..archive.len())
        .filter_map(|i| archive.by_index_raw(i).ok().map(|f| f.size()))
        .fold(0u64, u64::saturating_add)
}

fuzz_target!(|data: &[u8]| {
    if declared_size(data) > MAX_DECLARED {
        return;
    }
    let sandbox = tempfile::tempdir().expect("a temp dir");
    let root = sandbox.path();
    let zip = root.join("upload.zip");
    fs::write(&zip, data).expect("write the upload");
    fs::create_dir(root.join("outside")).expect("the decoy");
    let code = root.join("code").join("v1");
    let result = tusk_control::package::unpack(&zip, &code, &tusk_control::package::Limits::default());

    // Outside `code/v1` only the upload and the `code` parent may exist.
    for entry in fs::read_dir(root).expect("list the sandbox").flatten() {
        let name = entry.file_name();
        assert!(
            name == "upload.zip" || name == "code" || name == "outside",
            "unpack wrote {name:?} outside the target"
        );
    }
    let decoy: Vec<_> = fs::read_dir(root.join("outside"))
        .expect("the decoy")
        .flatten()
        .collect();
    assert!(
        decoy.is_empty(),
        "unpack wrote into a sibling directory: {decoy:?}"
    );
    if let Ok(entries) = fs::read_dir(root.join("code")) {
        for entry in entries.flatten() {
            assert_eq!(
                entry.file_name(),
                "v1",
                "unpack left {:?} next to the target",
                entry.file_name()
            );
        }
    }
    if result.is_ok() {
        assert!(
            code.is_dir(),
            "unpack succeeded without creating the target"
        );
        if strict() {
            walk(&code, &code);
        }
    }
});
