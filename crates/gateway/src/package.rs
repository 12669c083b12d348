//! Package archives: stored as uploaded (`packages/<sha>.zip`), unpacked once per version.

use crate::GatewayError;
use std::path::Path;

/// Unpacks `zip_path` into `target`, keeping unix modes; refuses paths that escape `target`.
pub fn unpack(zip_path: &Path, target: &Path) -> Result<(), GatewayError> {
    let bad = |e: String| {
        GatewayError::BadRequest(format!("the package is not a valid zip archive: {e}"))
    };
    let file = std::fs::File::open(zip_path).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let parent = target
        .parent()
        .ok_or_else(|| GatewayError::Internal("code directory has no parent".into()))?;
    std::fs::create_dir_all(parent).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    archive
        .extract(staging.path())
        .map_err(|e| bad(e.to_string()))?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another deploy of the same package won the race: fine.
        if !target.exists() {
            return Err(GatewayError::Internal(e.to_string()));
        }
    }
    Ok(())
}
