//! Errors name the file and, wherever it can be found, the line: `serverless.yml:12:5: ...`.

use std::fmt;
use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum ManifestError {
    /// The directory has no `serverless.yml` / `serverless.yaml`.
    #[error("{message}")]
    NotFound { dir: PathBuf, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML.
    #[error("{}", Located { file, line: *line, column: *column, message })]
    Syntax {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// Valid YAML that does not describe a service Tusk can run.
    #[error("{}", Located { file, line: *line, column: *column, message })]
    Invalid {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

impl ManifestError {
    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ManifestError::Syntax { line, .. } | ManifestError::Invalid { line, .. } => *line,
            ManifestError::NotFound { .. } | ManifestError::Io { .. } => None,
        }
    }
}

/// `file:line:column: message`, dropping whatever part of the location is unknown.
pub(crate) struct Located<'a> {
    pub file: &'a str,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A problem found while reading the document, before it is given a line: the path of the
/// offending key (see [`crate::locate`]) and the message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    pub path: Vec<crate::locate::Seg>,
    pub message: String,
}

impl Diag {
    pub(crate) fn new(path: &[crate::locate::Seg], message: impl Into<String>) -> Diag {
        Diag {
            path: path.to_vec(),
            message: message.into(),
        }
    }
}
