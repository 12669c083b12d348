//! The control plane's errors. The admin API maps the first three to 400/404/409 and the rest
//! to 500; every variant that wraps a lower error keeps its type (never flattened to a String).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is wrong (bad manifest, package, name...): the message says what to fix.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is deployed (a route taken, a stale version).
    #[error("{0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(#[from] tusk_store::StoreError),
    #[error("{0}")]
    Queues(#[from] tusk_events::queue_db::QueueError),
    /// A file operation on the node's disk failed; `context` says what and where.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The disk (or quota) is full: says where to free space.
    #[error("the node's disk is full ({context}: {source}); free space under the data directory ({}) and deploy again", data_dir.display())]
    DiskFull {
        context: String,
        data_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Sandbox(#[from] tusk_sandbox::SandboxError),
    /// A node setting (flag or environment variable) is unusable.
    #[error("{0}")]
    Setting(String),
}

impl ControlError {
    /// An I/O error with what was being done (e.g. a path).
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
        let context = context.into();
        move |source| ControlError::Io { context, source }
    }
}
