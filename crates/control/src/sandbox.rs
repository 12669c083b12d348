//! Starting the node's sandbox and saying loudly when instances are not isolated.

use crate::plane::PhpInstall;
use crate::ControlError;
use std::path::Path;
use std::sync::Arc;
use tusk_sandbox::{Level, Mode, Options, Sandbox};

/// Probes the host (a few ms: cgroupfs, a sandboxed `sh`) and sets up the node's cgroups.
pub async fn start(
    mode: Mode,
    data_dir: &Path,
    php: Option<&PhpInstall>,
) -> Result<Arc<Sandbox>, ControlError> {
    let mut options = Options::new(mode, data_dir.join("run"));
    // TUSK_FREEZE_AFTER_MS: how long an instance may stay idle before it is frozen (default
    // 50; 0 freezes right after each invocation, as Lambda does; `never` keeps idle instances
    // runnable, for benchmarks).
    match std::env::var("TUSK_FREEZE_AFTER_MS")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => {}
        Some("never") => options.freeze_after = None,
        Some(ms) => match ms.parse::<u64>() {
            Ok(ms) => options.freeze_after = Some(std::time::Duration::from_millis(ms)),
            Err(_) => {
                return Err(ControlError::Setting(format!(
                    "TUSK_FREEZE_AFTER_MS={ms}: expected milliseconds or `never`"
                )))
            }
        },
    }
    // A PHP outside /usr (e.g. /opt/php/bin/php) must be visible inside the sandbox too.
    if let Some(php) = php {
        for bin in [&php.cli, &php.cgi] {
            let real = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.clone());
            if let Some(prefix) = real.parent().and_then(Path::parent) {
                options.extra_readonly.push(prefix.to_path_buf());
            }
        }
    }
    let sandbox = tokio::task::spawn_blocking(move || Sandbox::init(options)).await??;
    let report = sandbox.report();
    match report.level {
        Level::Full => tracing::info!("sandbox: full isolation\n{report}"),
        Level::Degraded => {
            tracing::warn!("sandbox:\n{report}");
            tracing::warn!(
                "!!! INSTANCES ARE NOT FULLY ISOLATED: missing {}. Functions on this node can read, slow down or kill each other and the node. Run `tusk doctor`, then run the node as root (or give it a delegated cgroup) for full isolation. !!!",
                report.missing.join(", ")
            );
        }
        Level::Off => tracing::warn!(
            "!!! --sandbox off: instances run as the node's own user with no isolation or limits; use this only for benchmarks !!!"
        ),
    }
    Ok(Arc::new(sandbox))
}
