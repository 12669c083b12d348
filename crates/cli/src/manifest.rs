//! Reading `serverless.yml` the way every client command does: process env for `${env:X}`,
//! command-line options for `${opt:...}`, warnings printed to stderr.

use anyhow::{anyhow, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tusk_manifest::{LoadOptions, ServiceSpec};

/// Loads and resolves `dir/serverless.yml`, printing its warnings as `warning: ...`.
pub fn load(dir: &Path, stage: Option<&str>, region: Option<&str>) -> Result<ServiceSpec> {
    let mut options = HashMap::new();
    if let Some(stage) = stage {
        options.insert("stage".to_string(), stage.to_string());
    }
    if let Some(region) = region {
        options.insert("region".to_string(), region.to_string());
    }
    let opts = LoadOptions {
        stage: stage.map(str::to_string),
        region: region.map(str::to_string),
        env: std::env::vars().collect(),
        options,
    };
    // The error's Display already names the file and line; its source would only repeat it.
    let loaded = tusk_manifest::load_dir(dir, &opts).map_err(|err| anyhow!("{err}"))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded.spec)
}

/// The manifest files that exist or may appear in `dir`, for change detection.
pub fn candidate_paths(dir: &Path) -> Vec<PathBuf> {
    tusk_manifest::FILE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .collect()
}
