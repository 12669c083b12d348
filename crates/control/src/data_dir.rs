//! The node's data directory: its layout (`packages/`, `code/`, `run/`, the worker socket
//! directory) and its modes, set up once at start. Nothing here runs while the node serves.

use crate::plane::socket_dir;
use crate::ControlError;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Creates the data directory's layout under `dir`, restricts its modes and clears what a
/// crash left behind. Returns the directory as an absolute path.
pub async fn prepare(dir: &Path) -> Result<PathBuf, ControlError> {
    for sub in ["packages", "code", "run"] {
        tokio::fs::create_dir_all(dir.join(sub))
            .await
            .map_err(ControlError::io(
                "cannot create the data directory (check --data-dir and its permissions)",
            ))?;
    }
    // Instances start in their own working directory: every path handed to them is absolute.
    let data_dir = tokio::fs::canonicalize(&dir)
        .await
        .map_err(ControlError::io("cannot resolve the data directory"))?;
    // tusk.db holds environment values and admin.token the keys to the node: only the node's
    // user may look inside, whatever mode an earlier start or the operator left.
    tokio::fs::set_permissions(&data_dir, Permissions::from_mode(0o700))
        .await
        .map_err(ControlError::io(
            "cannot restrict the data directory to mode 0700 (is it owned by the node's user?)",
        ))?;
    // An unpack cut short by a crash leaves its staging directory behind.
    if let Ok(mut entries) = tokio::fs::read_dir(data_dir.join("code")).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with(".unpack-") {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
    }
    // Whatever the umask: packages and code are written by the node only.
    for sub in ["packages", "code"] {
        tokio::fs::set_permissions(data_dir.join(sub), Permissions::from_mode(0o755))
            .await
            .map_err(ControlError::io(
                "cannot set the mode of the package directories",
            ))?;
    }
    let sockets = socket_dir(&data_dir);
    tokio::fs::create_dir_all(&sockets)
        .await
        .map_err(ControlError::io(
            "cannot create the directory for worker sockets",
        ))?;
    tokio::fs::set_permissions(&sockets, Permissions::from_mode(0o700))
        .await
        .map_err(ControlError::io(
            "cannot restrict the directory for worker sockets",
        ))?;
    Ok(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn preparing_lays_out_the_directory_private_and_clears_stale_unpacks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("code/.unpack-stale")).unwrap();
        let prepared = prepare(&dir).await.unwrap();
        assert!(prepared.is_absolute());
        assert_eq!(mode(&prepared), 0o700);
        assert_eq!(mode(&prepared.join("packages")), 0o755);
        assert_eq!(mode(&prepared.join("code")), 0o755);
        assert_eq!(mode(&socket_dir(&prepared)), 0o700);
        assert!(!prepared.join("code/.unpack-stale").exists());
    }
}
