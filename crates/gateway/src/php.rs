//! Finding PHP on the node, and installing Tusk's PHP runtime into the data directory.

use crate::control::PhpInstall;
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/php_runtime.rs"));
}

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Prefers Debian's versioned binaries (`php8.2`, `php-cgi8.2`), then the plain names.
pub async fn detect() -> Option<PhpInstall> {
    let (cli, cgi) = tokio::task::spawn_blocking(|| {
        let cli = find_in_path(&["php8.2", "php8.3", "php8.4", "php8.1", "php"])?;
        let cgi = find_in_path(&[
            "php-cgi8.2",
            "php-cgi8.3",
            "php-cgi8.4",
            "php-cgi8.1",
            "php-cgi",
        ])?;
        Some((cli, cgi))
    })
    .await
    .ok()??;
    let out = tokio::process::Command::new(&cli)
        .args(["-r", "echo PHP_MAJOR_VERSION, '.', PHP_MINOR_VERSION;"])
        .env_clear()
        .output()
        .await
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() {
        return None;
    }
    Some(PhpInstall { cli, cgi, version })
}

/// Writes the embedded runtime to `DATA_DIR/runtime/php` and returns that directory.
pub async fn install_runtime(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("runtime").join("php");
    for (rel, content) in embedded::RUNTIME_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&path, content).await?;
    }
    Ok(dir)
}
