//! `serverless.yml`: parsing, variable resolution and validation into [`ServiceSpec`].
//!
//! ```no_run
//! let opts = tusk_manifest::LoadOptions::default();
//! let loaded = tusk_manifest::load_dir(std::path::Path::new("."), &opts)?;
//! for warning in &loaded.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok::<(), tusk_manifest::ManifestError>(())
//! ```
//!
//! The pipeline: YAML text → `serde_yaml::Value` (syntax errors carry serde_yaml's location)
//! → `build` reads the keys Tusk understands, resolving variables lazily
//! (`vars`) → semantic errors and warnings get their line from `locate`, which finds the
//! offending key in the text.

pub mod arn;
mod build;
mod error;
mod events;
mod locate;
mod model;
mod runtime;
mod validate;
mod vars;

pub use error::ManifestError;
pub use model::*;
pub use validate::{
    sqs_queue, valid_queue_name, validate, ValidateOptions, ValidationError, MAX_ENVIRONMENT_BYTES,
    MAX_FUNCTION_NAME, QUEUE_NAME_RULE, RESERVED_ENV_KEYS,
};

use error::Diag;
use std::collections::HashMap;
use std::path::Path;

/// Inputs from outside the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--stage`; wins over `provider.stage`.
    pub stage: Option<String>,
    /// `--region`; wins over `provider.region`.
    pub region: Option<String>,
    /// The process environment, for `${env:X}`.
    pub env: HashMap<String, String>,
    /// CLI options, for `${opt:X}` (`stage` is set from `--stage`).
    pub options: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: ServiceSpec,
    /// Human-readable, each prefixed with `file:line:column:` where known.
    pub warnings: Vec<String>,
}

/// The manifest file names tried in `load_dir`, in order.
pub const FILE_NAMES: [&str; 2] = ["serverless.yml", "serverless.yaml"];

/// Reads `dir/serverless.yml` (or `.yaml`). `${file(...)}` paths are relative to `dir`.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Loaded, ManifestError> {
    for name in FILE_NAMES {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return load(&path.display().to_string(), &text, opts, Some(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ManifestError::Io { path, source }),
        }
    }
    let other = ["serverless.ts", "serverless.js", "serverless.json"]
        .into_iter()
        .find(|name| dir.join(name).exists());
    let message = match other {
        Some(name) => format!(
            "{}: Tusk reads serverless.yml only; convert {name} to YAML",
            dir.join(name).display()
        ),
        None => format!(
            "no serverless.yml in {}: run tusk in your project directory or pass its path",
            dir.display()
        ),
    };
    Err(ManifestError::NotFound {
        dir: dir.to_path_buf(),
        message,
    })
}

/// Parses manifest text; `file_name` is used in messages only. `${file(...)}` is unavailable
/// here (there is no directory to read from); use [`load_dir`] for that.
pub fn load_str(file_name: &str, text: &str, opts: &LoadOptions) -> Result<Loaded, ManifestError> {
    load(file_name, text, opts, None)
}

fn load(
    file: &str,
    text: &str,
    opts: &LoadOptions,
    dir: Option<&Path>,
) -> Result<Loaded, ManifestError> {
    let map = locate::SourceMap::new(text);
    let mut root: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| syntax_error(file, &map, &e))?;
    // YAML merge keys (`<<: *defaults`) are common in Serverless files; serde_yaml leaves them
    // as plain keys unless asked.
    root.apply_merge()
        .map_err(|e| syntax_error(file, &map, &e))?;
    let place = |d: &Diag| map.locate(&d.path);
    match build::build(&root, opts, dir) {
        Ok((spec, warnings)) => {
            // The node checks the same rules again; second rates are its call (a test node
            // allows them), so the CLI lets them through with the node's warning.
            let opts = ValidateOptions {
                allow_second_schedules: true,
            };
            let checked = spec.validate(&opts).map_err(|e| ManifestError::Invalid {
                file: file.to_string(),
                line: None,
                column: None,
                message: e.to_string(),
            })?;
            let warnings = warnings
                .iter()
                .map(|w| {
                    let pos = place(w);
                    error::Located {
                        file,
                        line: pos.map(|p| p.line),
                        column: pos.map(|p| p.column),
                        message: &w.message,
                    }
                    .to_string()
                })
                .chain(checked.into_iter().map(|w| format!("{file}: {w}")))
                .collect();
            Ok(Loaded { spec, warnings })
        }
        Err(d) => {
            let pos = place(&d);
            Err(ManifestError::Invalid {
                file: file.to_string(),
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                message: d.message,
            })
        }
    }
}

fn syntax_error(file: &str, map: &locate::SourceMap, e: &serde_yaml::Error) -> ManifestError {
    let location = e.location();
    let mut message = e.to_string();
    let mut pos = location.as_ref().map(|l| locate::Pos {
        line: l.line(),
        column: l.column(),
    });
    if let Some(l) = &location {
        // The location leads the message already.
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(at) = message.find(&suffix) {
            message.replace_range(at..at + suffix.len(), "");
        }
    }
    if let Some(duplicate) = duplicate_position(map, &message) {
        pos = Some(duplicate);
        message.push_str("; remove or rename one of them");
    } else {
        message.push_str("; fix the syntax there");
    }
    ManifestError::Syntax {
        file: file.to_string(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        message: format!("invalid YAML: {message}"),
    }
}

/// serde_yaml points a duplicate key error at the first occurrence; the second is the one the
/// user just added. Its message reads `functions.hello: duplicate entry with key "a"`.
fn duplicate_position(map: &locate::SourceMap, message: &str) -> Option<locate::Pos> {
    const MARK: &str = "duplicate entry with key \"";
    let at = message.find(MARK)?;
    let parent = message[..at].strip_suffix(": ").unwrap_or(".");
    let mut key = String::new();
    let mut chars = message[at + MARK.len()..].chars();
    loop {
        match chars.next()? {
            '\\' => key.push(chars.next()?),
            '"' => break,
            c => key.push(c),
        }
    }
    let mut path = Vec::new();
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        let name = pieces.next().unwrap_or("");
        if !name.is_empty() {
            path.push(locate::Seg::key(name));
        }
        for index in pieces {
            path.push(locate::Seg::Index(
                index.trim_end_matches(']').parse().ok()?,
            ));
        }
    }
    map.locate_duplicate(&path, &key)
}
