//! Finding PHP on the node, and installing Tusk's PHP runtime into the data directory.

use crate::plane::PhpInstall;
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

/// Extensions the distribution enables that instances load only when a function asks for
/// them (`extension=NAME` in its package's `php/conf.d/*.ini`), the way Bref leaves rarely used
/// extensions off: FFI (libffi) and XSL (libxslt) cost every cold start CPU, and the System V
/// IPC, shmop and calendar functions are seldom used by web code. intl stays on: Symfony's
/// String and Console components need its Normalizer.
pub const OPT_IN_EXTENSIONS: &[&str] = &[
    "ffi", "xsl", "shmop", "sysvmsg", "sysvsem", "sysvshm", "calendar",
];

/// Copies the distribution's additional ini files for the CLI (function and console
/// runtimes) and CGI (web) SAPIs into `RUNTIME_DIR/conf.d/{cli,cgi}`, leaving out the
/// opt-in extensions; instances scan those copies instead of the distribution's directory.
/// Without a readable scan directory (a PHP built without one) instances keep PHP's own.
pub async fn install_extension_sets(runtime_dir: &Path, php: &PhpInstall) {
    let probe = runtime_dir.join("scan-dir-probe.php");
    if tokio::fs::write(&probe, "<?php echo PHP_CONFIG_FILE_SCAN_DIR;")
        .await
        .is_err()
    {
        return;
    }
    for (sapi, binary, args) in [
        ("cli", &php.cli, vec!["-f".to_string()]),
        ("cgi", &php.cgi, vec!["-q".to_string()]),
    ] {
        let out = tokio::process::Command::new(binary)
            .args(&args)
            .arg(&probe)
            .env_clear()
            .output()
            .await;
        let scan_dir = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => continue,
        };
        let target = runtime_dir.join("conf.d").join(sapi);
        let copied = tokio::task::spawn_blocking(move || copy_ini_files(&scan_dir, &target)).await;
        match copied {
            Ok(Ok(left_out)) => {
                tracing::debug!(sapi, ?left_out, "extensions left for functions to enable")
            }
            Ok(Err(e)) => {
                tracing::warn!(sapi, error = %e, "cannot copy PHP's ini files; instances load every extension the distribution enables")
            }
            Err(_) => {}
        }
    }
    let _ = tokio::fs::remove_file(&probe).await;
}

/// Returns the opt-in extensions that were left out.
fn copy_ini_files(scan_dir: &str, target: &Path) -> std::io::Result<Vec<String>> {
    if scan_dir.is_empty() {
        return Err(std::io::Error::other("PHP has no additional ini directory"));
    }
    let staging = target.with_extension("new");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let mut left_out = Vec::new();
    for entry in std::fs::read_dir(scan_dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "ini") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        if let Some(ext) = opt_in_extension(&text) {
            left_out.push(ext);
            continue;
        }
        if let Some(name) = path.file_name() {
            std::fs::write(staging.join(name), text)?;
        }
    }
    let _ = std::fs::remove_dir_all(target);
    std::fs::rename(&staging, target)?;
    Ok(left_out)
}

/// The opt-in extension an ini file loads, if it loads one (`extension=intl.so`).
fn opt_in_extension(ini: &str) -> Option<String> {
    ini.lines().find_map(|line| {
        let value = line.trim().strip_prefix("extension")?.trim_start();
        let value = value.strip_prefix('=')?.trim().trim_matches('"');
        let name = value.rsplit('/').next()?.trim_end_matches(".so");
        OPT_IN_EXTENSIONS.contains(&name).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::opt_in_extension;

    #[test]
    fn recognises_opt_in_extension_lines() {
        assert_eq!(
            opt_in_extension("; priority=20\nextension=xsl.so\n").as_deref(),
            Some("xsl")
        );
        assert_eq!(opt_in_extension("extension=intl.so"), None);
        assert_eq!(
            opt_in_extension("extension = \"ffi\"").as_deref(),
            Some("ffi")
        );
        assert_eq!(opt_in_extension("extension=mbstring.so"), None);
        assert_eq!(opt_in_extension("zend_extension=opcache.so"), None);
        assert_eq!(opt_in_extension(";extension=intl.so"), None);
    }
}
